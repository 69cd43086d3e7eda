package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/sqlstore"
)

// runnerRoutes declares the task-runner API users call.
func (s *Server) runnerRoutes() []Route {
	manage := Perm(silo.PermRunnersManage)
	read := Perm(silo.PermRunnersRead)
	return []Route{
		{Method: "GET", Path: "/api/v1/runners", Access: read, Summary: "List task runners by name, a page at a time: ?limit= (1–1000, default 1000), ?after=NAME for the page after NAME (a full page's Link header names the next), ?deregistered=true to include deregistered ones", Out: []silo.Runner{}, Handler: s.handleListRunners},
		{Method: "POST", Path: "/api/v1/runners", Access: manage, Summary: "Register a task runner; its token is in this response only", In: silo.RunnerSpec{}, Out: silo.Runner{}, Handler: s.handleRegisterRunner},
		{Method: "GET", Path: "/api/v1/runners/{name}", Access: read, Summary: "Show a task runner", Out: silo.Runner{}, Handler: s.handleGetRunner},
		{Method: "PATCH", Path: "/api/v1/runners/{name}", Access: manage, Summary: "Edit a task runner (fields given replace the stored ones)", In: silo.RunnerSpec{}, Out: silo.Runner{}, Handler: s.handleEditRunner},
		{Method: "DELETE", Path: "/api/v1/runners/{name}", Access: manage, Summary: "Deregister a task runner; its token stops working at once", Out: silo.Runner{}, Handler: s.handleDeregisterRunner},
		{Method: "POST", Path: "/api/v1/runners/{name}/token", Access: manage, Summary: "Replace the runner's token; the new one is in this response only", Out: silo.Runner{}, Handler: s.handleRotateRunnerToken},
		{Method: "POST", Path: "/api/v1/runners/{name}/provision", Access: manage, Summary: "Provision (again): create or verify the runner's storage", Out: silo.Runner{}, Handler: s.handleProvisionRunner},
		{Method: "GET", Path: "/api/v1/runners/{name}/bundle", Access: manage, Summary: "Download the deployment bundle (zip); ?server_url=URL sets the URL the runner dials (default: --public-url, else this request's address; a cloud runner needs one its network can reach)", Handler: s.handleRunnerBundle},
		{Method: "POST", Path: "/api/v1/runners/{name}/start", Access: Perm(silo.PermRunnersLaunch), Summary: "Start a local runner as a child process of the server (its storage must be inside the server's --local-runners-root)", Out: silo.Runner{}, Handler: s.handleStartRunner},
		{Method: "POST", Path: "/api/v1/runners/{name}/stop", Access: Perm(silo.PermRunnersLaunch), Summary: "Stop a local runner the server started", Out: silo.Runner{}, Handler: s.handleStopRunner},
		{Method: "GET", Path: "/api/v1/runners/{name}/tasks", Access: read, Summary: "The runner's recent tasks", Out: []silo.Task{}, Handler: s.handleListRunnerTasks},
		{Method: "POST", Path: "/api/v1/runners/{name}/tasks", Access: manage, Summary: "Queue a diagnostics task (checks storage and resources; reads no data)", In: taskRequest{}, Out: silo.Task{}, Handler: s.handleCreateRunnerTask},
		{Method: "POST", Path: "/api/v1/runners/{name}/tasks/{id}/cancel", Access: manage, Summary: "Cancel a queued or running diagnostics task (session and connect tasks end with their session or dataset)", Out: silo.Task{}, Handler: s.handleCancelRunnerTask},
		{Method: "GET", Path: "/api/v1/runners/{name}/logs", Access: read, Summary: "Task logs (?task=ID&after=LINE_ID)", Out: []silo.LogLine{}, Handler: s.handleRunnerLogs},
	}
}

// RunnerView returns the API view of a stored runner: secrets redacted,
// their names listed. The store keeps only sealed secrets, so this opens
// them to learn which are set; a value that does not open is logged and
// left out.
func (s *Server) RunnerView(r *sqlstore.StoredRunner) *silo.Runner {
	opened := sqlstore.StoredRunner{Runner: r.Runner, SealedSecrets: r.SealedSecrets}
	if err := s.openSecrets(&opened); err != nil {
		s.Logger.Error("open runner secrets", "runner", r.Name, "err", err)
	}
	v := opened.Runner
	v.Redact()
	return &v
}

// MaxRunnersPage bounds a page of GET /api/v1/runners; it is the default
// page too, so a workspace of ten thousand runners is never listed whole
// in one answer.
const MaxRunnersPage = 1000

// runnerQuery reads the ?deregistered=, ?limit= and ?after= of a runner
// listing.
func runnerQuery(q url.Values) (sqlstore.RunnerQuery, error) {
	limit, err := limitParam(q, MaxRunnersPage)
	return sqlstore.RunnerQuery{Deregistered: q.Get("deregistered") == "true", After: q.Get("after"), Limit: cmp.Or(limit, MaxRunnersPage)}, err
}

func (s *Server) handleListRunners(w http.ResponseWriter, r *http.Request) {
	q, err := runnerQuery(r.URL.Query())
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	runners, err := s.db.ListRunners(r.Context(), q)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	out := make([]*silo.Runner, len(runners))
	for i, rn := range runners {
		out[i] = s.RunnerView(rn)
	}
	if len(out) >= q.Limit { // a full page: the next one may hold more
		next := url.Values{"limit": {strconv.Itoa(q.Limit)}, "after": {out[len(out)-1].Name}}
		if q.Deregistered {
			next.Set("deregistered", "true")
		}
		w.Header().Set("Link", `</api/v1/runners?`+next.Encode()+`>; rel="next"`)
	}
	httpjson.Write(w, http.StatusOK, out)
}

func (s *Server) handleGetRunner(w http.ResponseWriter, r *http.Request) {
	rn, err := s.db.FindRunner(r.Context(), r.PathValue("name"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, s.RunnerView(rn))
}

func (s *Server) handleRegisterRunner(w http.ResponseWriter, r *http.Request) {
	var spec silo.RunnerSpec
	if err := httpjson.Decode(w, r, &spec); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	rn, err := s.RegisterRunner(r.Context(), spec)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, rn)
}

// RegisterRunner validates spec, stores the runner with its secrets sealed
// and a new token, and starts provisioning for cloud runners. The API, UI
// and quickstart share it. The runner's token is returned this once, for
// every provider: a local runner's agent starts with it, and a cloud
// runner's deployment takes it as a parameter (the bundle never holds it).
// A lost token is replaced through the token route.
func (s *Server) RegisterRunner(ctx context.Context, spec silo.RunnerSpec) (*silo.Runner, error) {
	ws, err := s.db.Workspace(ctx)
	if err != nil {
		return nil, err
	}
	if err := spec.Validate(ws.Name); err != nil {
		s.auditResult(ctx, "runner.register", spec.Name, err)
		return nil, err
	}
	token := newRunnerToken()
	stored := &sqlstore.StoredRunner{Runner: silo.Runner{RunnerSpec: spec, Status: silo.RunnerRegistering, CreatedBy: silo.ActorFromContext(ctx).Name()},
		TokenHash: hashSecret(token)}
	if stored.SealedSecrets, err = s.sealSecrets(&spec); err != nil {
		return nil, err
	}
	if spec.Provider != silo.ProviderLocal {
		stored.Status, stored.StatusReason = silo.RunnerProvisioning, "creating or verifying storage"
	} else {
		stored.StatusReason = "waiting for the agent to connect: run 'silo runner --server URL --token TOKEN' or start it from the server"
	}
	err = s.db.CreateRunner(ctx, stored)
	s.auditResult(ctx, "runner.register", spec.Name+" ("+string(spec.Provider)+")", err)
	if err != nil {
		return nil, err
	}
	if spec.Provider != silo.ProviderLocal {
		if stored, err = s.Provision(ctx, spec.Name); err != nil {
			return nil, err
		}
	}
	view := s.RunnerView(stored)
	view.Token = token
	return view, nil
}

// newRunnerToken returns a runner credential. Its prefix differs from user
// tokens', so neither is accepted where the other belongs.
func newRunnerToken() string { return silo.RunnerTokenPrefix + randomSecret(30) }

// sealSecrets seals the spec's secrets as one JSON object, bound to the
// runner's name.
func (s *Server) sealSecrets(spec *silo.RunnerSpec) ([]byte, error) {
	vals := map[string]string{}
	for name, p := range spec.Secrets() {
		if *p != "" {
			vals[name] = *p
		}
	}
	if len(vals) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(vals)
	if err != nil {
		return nil, err
	}
	return s.SecretKey.Seal(b, "runner:"+spec.Name), nil
}

// openSecrets fills the spec of a stored runner with its sealed secrets.
func (s *Server) openSecrets(r *sqlstore.StoredRunner) error {
	if len(r.SealedSecrets) == 0 {
		return nil
	}
	b, err := s.SecretKey.Open(r.SealedSecrets, "runner:"+r.Name)
	if err != nil {
		return fmt.Errorf("runner %s secrets: %w", r.Name, err)
	}
	var vals map[string]string
	if err := json.Unmarshal(b, &vals); err != nil {
		return err
	}
	for name, p := range r.Secrets() {
		*p = vals[name]
	}
	return nil
}

// mayChangeRunner is the object-level rule for changing a runner (editing,
// deregistering, replacing its token, provisioning; starting and stopping,
// which runners:launch also guards): its registrant or a Workspace
// Administrator may; other holders of runners:manage may only read it and
// queue diagnostics.
func mayChangeRunner(ctx context.Context, r *sqlstore.StoredRunner) error {
	a := silo.ActorFromContext(ctx)
	if a.Can(silo.PermRunnersManage) && (a.User.HasRole(silo.RoleAdmin) || strings.EqualFold(r.CreatedBy, a.User.Email)) {
		return nil
	}
	return silo.Errorf(silo.EFORBIDDEN, "runner %s was registered by %s: only they or a Workspace Administrator may change it", r.Name, r.CreatedBy)
}

// findRunnerToChange returns the named runner if the caller may change it.
func (s *Server) findRunnerToChange(ctx context.Context, name string) (*sqlstore.StoredRunner, error) {
	rn, err := s.db.FindRunner(ctx, name)
	if err != nil {
		return nil, err
	}
	return rn, mayChangeRunner(ctx, rn)
}

func (s *Server) handleEditRunner(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	// Decode the body over a copy of the stored spec: fields given replace
	// stored ones, the rest are kept (secrets left out are kept too).
	old, err := s.db.FindRunner(ctx, name)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	next := old.RunnerSpec
	if err := httpjson.Decode(w, r, &next); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	rn, err := s.EditRunner(ctx, name, next)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, rn)
}

// EditRunner validates next against the stored runner and saves it.
func (s *Server) EditRunner(ctx context.Context, name string, next silo.RunnerSpec) (*silo.Runner, error) {
	ws, err := s.db.Workspace(ctx)
	if err != nil {
		return nil, err
	}
	updated, err := s.db.UpdateRunner(ctx, name, func(r *sqlstore.StoredRunner) error {
		if err := mayChangeRunner(ctx, r); err != nil {
			return err
		}
		if err := s.openSecrets(r); err != nil {
			return err
		}
		if err := next.ValidateUpdate(&r.RunnerSpec, ws.Name); err != nil {
			return err
		}
		sealed, err := s.sealSecrets(&next)
		if err != nil {
			return err
		}
		r.RunnerSpec, r.SealedSecrets = next, sealed
		return nil
	})
	s.auditResult(ctx, "runner.edit", name, err)
	if err != nil {
		return nil, err
	}
	return s.RunnerView(updated), nil
}

func (s *Server) handleDeregisterRunner(w http.ResponseWriter, r *http.Request) {
	rn, err := s.DeregisterRunner(r.Context(), r.PathValue("name"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, rn)
}

// DeregisterRunner retires a runner: its token stops working at once, its
// queued and running tasks are cancelled, and a child process is stopped.
func (s *Server) DeregisterRunner(ctx context.Context, name string) (*silo.Runner, error) {
	updated, err := s.db.UpdateRunner(ctx, name, func(r *sqlstore.StoredRunner) error {
		if err := mayChangeRunner(ctx, r); err != nil {
			return err
		}
		r.Status, r.StatusReason, r.TokenHash = silo.RunnerDeregistered, "deregistered by "+silo.ActorFromContext(ctx).Name(), ""
		return nil
	})
	s.auditResult(ctx, "runner.deregister", name, err)
	if err != nil {
		return nil, err
	}
	s.local.stop(name)
	return s.RunnerView(updated), nil
}

func (s *Server) handleRotateRunnerToken(w http.ResponseWriter, r *http.Request) {
	rn, err := s.RotateRunnerToken(r.Context(), r.PathValue("name"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, rn)
}

// RotateRunnerToken replaces a runner's token; the old one stops working.
func (s *Server) RotateRunnerToken(ctx context.Context, name string) (*silo.Runner, error) {
	token := newRunnerToken()
	updated, err := s.db.UpdateRunner(ctx, name, func(r *sqlstore.StoredRunner) error {
		if err := mayChangeRunner(ctx, r); err != nil {
			return err
		}
		r.TokenHash = hashSecret(token)
		clearAgentFailure(r)
		return nil
	})
	s.auditResult(ctx, "runner.rotate_token", name, err)
	if err != nil {
		return nil, err
	}
	v := s.RunnerView(updated)
	v.Token = token
	return v, nil
}

type taskRequest struct {
	Type     string `json:"type"`
	VCPU     int    `json:"vcpu,omitempty"`
	MemoryMB int    `json:"memory_mb,omitempty"`
}

func (s *Server) handleCreateRunnerTask(w http.ResponseWriter, r *http.Request) {
	var req taskRequest
	if err := httpjson.Decode(w, r, &req); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	if req.Type != silo.TaskDiagnostics {
		httpjson.Error(w, r, s.Logger, silo.FieldErrorf("type", "task type %q cannot be queued by hand: use %q", req.Type, silo.TaskDiagnostics))
		return
	}
	if req.VCPU < 0 || req.MemoryMB < 0 {
		httpjson.Error(w, r, s.Logger, silo.Errorf(silo.EINVALID, "vcpu and memory_mb must not be negative"))
		return
	}
	t, err := s.QueueTask(r.Context(), r.PathValue("name"), &silo.Task{Type: req.Type, VCPU: max(req.VCPU, 1), MemoryMB: max(req.MemoryMB, 16)})
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, t)
}

// QueueTask queues t for the named runner and wakes its long-poll.
func (s *Server) QueueTask(ctx context.Context, runner string, t *silo.Task) (*silo.Task, error) {
	rn, err := s.db.FindRunner(ctx, runner)
	if err != nil {
		return nil, err
	}
	if t.ID == "" {
		t.ID = "task_" + randomSecret(10)
	}
	t.Runner = rn.Name
	err = s.db.CreateTask(ctx, rn.ID, t)
	s.auditResult(ctx, "task.queue", rn.Name+": "+t.Type+" "+t.ID, err)
	if err != nil {
		return nil, err
	}
	s.agents.Notify(rn.ID)
	return t, nil
}

func (s *Server) handleCancelRunnerTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.CancelRunnerTask(r.Context(), r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, t)
}

// CancelRunnerTask cancels a diagnostics task that has not finished, so one
// whose runner never answered does not wait in its queue for ever. A task
// that already ended is returned as it is.
func (s *Server) CancelRunnerTask(ctx context.Context, runner, id string) (*silo.Task, error) {
	t, err := s.db.FindTask(ctx, id)
	if err != nil || t.Runner != runner {
		return nil, silo.Errorf(silo.ENOTFOUND, "runner %s has no task %s", runner, id)
	}
	if t.Type != silo.TaskDiagnostics {
		return nil, silo.Errorf(silo.ECONFLICT, "task %s is a %s task: only diagnostics tasks are cancelled by hand (a session's tasks end when it is cancelled)", id, t.Type)
	}
	_, err = s.db.CancelTask(ctx, id, "cancelled by "+silo.ActorFromContext(ctx).Name())
	s.auditResult(ctx, "task.cancel", runner+": "+id, err)
	if err != nil {
		return nil, err
	}
	return s.db.FindTask(ctx, id)
}

func (s *Server) handleListRunnerTasks(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn, err := s.db.FindRunner(ctx, r.PathValue("name"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	tasks, err := s.db.ListTasks(ctx, rn.ID, 100)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, nonNil(s.TaskAccess(ctx).Views(tasks)))
}

// TaskAccess decides what the caller may see of tasks, remembering which
// sessions they may see. Every caller sees a task's metadata (id, type,
// status, error, timings, resources, session, round, dataset). Its details
// — output and log lines — go only to those who may see what the task
// serves: its session (the rule for sessions), the dataset it connects (as
// dataset metadata), or the runner it checks (diagnostics). Never shown:
// payloads and their parts (the server's instructions to the runner:
// models, privacy controls, storage locations) and the outputs of
// statistics, fit and evaluate tasks (one client's category counts, model
// update or score histograms; sessions publish only what is merged).
type TaskAccess struct {
	s        *Server
	ctx      context.Context
	sessions map[string]bool
}

// TaskAccess returns the rule for what the caller in ctx may see of tasks;
// the API and the UI share it.
func (s *Server) TaskAccess(ctx context.Context) *TaskAccess {
	return &TaskAccess{s: s, ctx: ctx, sessions: map[string]bool{}}
}

// Details reports whether the caller may see t's output and logs.
func (a *TaskAccess) Details(t *silo.Task) bool {
	actor := silo.ActorFromContext(a.ctx)
	switch {
	case t.Session != "":
		if !actor.Can(silo.PermSessionsRead) { // a token scoped to runners:read, say
			return false
		}
		seen, ok := a.sessions[t.Session]
		if !ok {
			ss, err := a.s.db.FindSession(a.ctx, t.Session)
			seen = err == nil && a.s.CanSeeSession(a.ctx, ss)
			a.sessions[t.Session] = seen
		}
		return seen
	case t.Type == silo.TaskConnect:
		return actor.Can(silo.PermDatasetsRead)
	case t.Type == silo.TaskDiagnostics:
		return actor.Can(silo.PermRunnersRead)
	}
	return false
}

// View returns what the caller may see of t.
func (a *TaskAccess) View(t *silo.Task) *silo.Task {
	v := *t
	v.Payload, v.Parts = nil, nil
	if slices.Contains([]string{silo.TaskStats, silo.TaskFit, silo.TaskEvaluate}, t.Type) || !a.Details(t) {
		v.Output = nil
	}
	return &v
}

// Views is View of each task.
func (a *TaskAccess) Views(tasks []*silo.Task) []*silo.Task {
	out := make([]*silo.Task, len(tasks))
	for i, t := range tasks {
		out[i] = a.View(t)
	}
	return out
}

func (s *Server) handleRunnerLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn, err := s.db.FindRunner(ctx, r.PathValue("name"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	access := s.TaskAccess(ctx)
	q := r.URL.Query()
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	var ids []string
	if id := q.Get("task"); id != "" {
		t, err := s.db.FindTask(ctx, id)
		if err != nil || t.Runner != rn.Name {
			httpjson.Error(w, r, s.Logger, silo.Errorf(silo.ENOTFOUND, "runner %s has no task %s", rn.Name, id))
			return
		}
		if !access.Details(t) {
			httpjson.Error(w, r, s.Logger, silo.Errorf(silo.EFORBIDDEN, "the logs of task %s belong to session %s, which you may not see", id, t.Session))
			return
		}
		ids = []string{id}
	} else {
		tasks, err := s.db.ListTasks(ctx, rn.ID, 20)
		if err != nil {
			httpjson.Error(w, r, s.Logger, err)
			return
		}
		for _, t := range tasks {
			if access.Details(t) {
				ids = append(ids, t.ID)
			}
		}
	}
	lines, err := s.db.ListTaskLogs(ctx, ids, after, 1000)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, nonNil(lines))
}

// clearAgentFailure lets a runner that failed (an incompatible agent, say)
// start over with a new token: it waits for its agent again. A cloud
// runner's storage failure is cleared by provisioning, not here.
func clearAgentFailure(r *sqlstore.StoredRunner) {
	if r.Status == silo.RunnerFailed && (r.Provider == silo.ProviderLocal || strings.HasPrefix(r.StatusReason, "protocol version mismatch")) {
		r.Status, r.StatusReason = silo.RunnerRegistering, "waiting for the agent to connect with the new token"
	}
}

// LocalRoot returns the directory of a file:// storage path.
func LocalRoot(storagePath string) string {
	return strings.TrimPrefix(storagePath, "file://")
}
