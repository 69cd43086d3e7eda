package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/dp"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/orchestrator/hfl"
	"github.com/silofl/silo/internal/sqlstore"
)

// sessionRoutes declares the session, model and prediction API.
func (s *Server) sessionRoutes() []Route {
	return []Route{
		{Method: "GET", Path: "/api/v1/sessions", Access: Perm(silo.PermSessionsRead), Summary: "List sessions (a Data Custodian sees those using their datasets)", Out: []silo.Session{}, Handler: s.handleListSessions},
		{Method: "POST", Path: "/api/v1/sessions", Access: Perm(silo.PermSessionsManage), Summary: "Create a session from its JSON config (type hfl or prl; see docs/sessions.md)", In: silo.SessionConfig{}, Out: silo.Session{}, Handler: s.handleCreateSession},
		{Method: "GET", Path: "/api/v1/sessions/{id}", Access: Perm(silo.PermSessionsRead), Summary: "Show a session", Out: silo.Session{}, Handler: s.handleGetSession},
		{Method: "GET", Path: "/api/v1/sessions/{id}/metrics", Access: Perm(silo.PermSessionsRead), Summary: "Metrics: federated and per-client metrics of every round (training), or each dataset's overlap (record linkage: clients with n_records, n_overlapped_records, frac_overlapped)", Out: silo.SessionMetrics{}, Handler: s.handleSessionMetrics},
		{Method: "POST", Path: "/api/v1/sessions/{id}/cancel", Access: Perm(silo.PermSessionsManage), Summary: "Cancel a session", Out: silo.Session{}, Handler: s.handleCancelSession},
		{Method: "GET", Path: "/api/v1/sessions/{id}/model", Access: Perm(silo.PermModelsDownload), Summary: "Download the final (or ?best=true the best) model as a JSON document", Handler: s.handleDownloadModel},
		{Method: "POST", Path: "/api/v1/predictions", Access: Perm(silo.PermPredictionsRun), Summary: "Predict a registered dataset on its runner; the runner writes the predictions to its own storage", In: PredictionRequest{}, Out: silo.PredictOutput{}, Handler: s.handlePredict},
	}
}

// CanSeeSession is the object-level rule for reading a session (and its
// metrics, model and predictions): admins see every session; a Model
// Builder sees a session only if every one of its datasets is open to them
// (allowed_users), so a dataset's custodian can keep its sessions' models
// and metrics from other builders; a Data Custodian sees the sessions that
// use a dataset they own. Datasets are looked up by id, deregistered ones
// included: a later dataset of the same name changes nothing. A store
// error hides the session (and is logged): the rule fails closed.
func (s *Server) CanSeeSession(ctx context.Context, ss *sqlstore.StoredSession) bool {
	a := silo.ActorFromContext(ctx)
	if a == nil || a.User == nil {
		return false
	}
	if a.User.HasRole(silo.RoleAdmin) {
		return true
	}
	var ids []int64
	for _, c := range ss.Clients {
		if !slices.Contains(ids, c.DatasetID) {
			ids = append(ids, c.DatasetID)
		}
	}
	datasets, err := s.db.DatasetsByID(ctx, ids)
	if err != nil {
		s.Logger.Error("read a session's datasets to authorise it", "session", ss.ID, "err", err)
		return false
	}
	builder := a.User.HasRole(silo.RoleModelBuilder) && len(datasets) == len(ids) && len(ids) > 0
	for _, d := range datasets {
		if a.User.HasRole(silo.RoleDataCustodian) && strings.EqualFold(d.Owner, a.User.Email) {
			return true
		}
		builder = builder && d.Privacy.AllowsUser(a.User.Email)
	}
	return builder
}

// sessionByPath finds the session in the path that the caller may see.
func (s *Server) sessionByPath(r *http.Request) (*sqlstore.StoredSession, error) {
	return s.SessionByID(r.Context(), r.PathValue("id"))
}

// SessionByID finds a session the caller may see; one they may not is
// reported as missing.
func (s *Server) SessionByID(ctx context.Context, id string) (*sqlstore.StoredSession, error) {
	ss, err := s.db.FindSession(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.CanSeeSession(ctx, ss) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no session %s: see 'silo sessions list'", id)
	}
	return ss, nil
}

func (s *Server) handleListSessions(w http.ResponseWriter, r *http.Request) {
	list, err := s.db.ListSessions(r.Context(), false)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	out := []*silo.Session{}
	for _, ss := range list {
		if s.CanSeeSession(r.Context(), ss) {
			out = append(out, s.SessionView(r.Context(), ss))
		}
	}
	httpjson.Write(w, http.StatusOK, out)
}

func (s *Server) handleGetSession(w http.ResponseWriter, r *http.Request) {
	ss, err := s.sessionByPath(r)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, s.SessionView(r.Context(), ss))
}

// SessionView is a session as the API and the UI show it: with its current
// step's progress while it runs.
func (s *Server) SessionView(ctx context.Context, ss *sqlstore.StoredSession) *silo.Session {
	out := ss.Session
	if ss.Status == silo.SessionRunning && ss.Phase != "" {
		p, err := s.db.StepProgress(ctx, ss.ID, ss.PhaseRound, ss.Phase)
		if err != nil {
			s.Logger.Warn("session progress", "session", ss.ID, "err", err)
		}
		out.Progress = p
	}
	return &out
}

// Metrics are a session's metrics as the API returns them: rounds for
// training, overlaps for a linkage.
func (s *Server) Metrics(ctx context.Context, ss *sqlstore.StoredSession) (any, error) {
	return s.engine.Metrics(ctx, ss)
}

func (s *Server) handleSessionMetrics(w http.ResponseWriter, r *http.Request) {
	ss, err := s.sessionByPath(r)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	m, err := s.Metrics(r.Context(), ss)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, m)
}

func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if httpjson.IsMaxBytes(err) {
		httpjson.Error(w, r, s.Logger, httpjson.TooLarge(err))
		return
	} else if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	ss, err := s.CreateSession(r.Context(), body)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, ss)
}

// CreateSession checks a config against the datasets' privacy controls
// (every session type) and, through its kind, their schemas; it stores the
// session pending and starts driving it. The API, UI and quickstart share it.
func (s *Server) CreateSession(ctx context.Context, raw []byte) (*silo.Session, error) {
	cfg, err := silo.ParseSessionConfig(raw)
	var clients []sqlstore.SessionClient
	var reserve []sqlstore.Reservation
	if err == nil {
		clients, reserve, err = s.checkSessionConfig(ctx, cfg)
	}
	if err != nil {
		name := "session"
		if cfg != nil {
			name = cfg.Name
		}
		s.auditResult(ctx, "session.create", name, err)
		return nil, err
	}
	ss := &sqlstore.StoredSession{Session: silo.Session{ID: "sess_" + randomSecret(8), Name: cfg.Name, Status: silo.SessionPending,
		StatusReason: "waiting for the runners", Config: *cfg, Rounds: cfg.Rounds, CreatedBy: silo.ActorFromContext(ctx).Name()}, Clients: clients}
	err = s.db.CreateSessionReserving(ctx, ss, reserve)
	s.auditResult(ctx, "session.create", ss.ID+" ("+cfg.Name+")", err)
	if err != nil {
		return nil, err
	}
	s.engine.Drive(ss.ID)
	return &ss.Session, nil
}

// checkSessionConfig applies the datasets' privacy controls to a config,
// then lets the session's kind check it against their schemas. It returns
// the session's clients and, for a differentially private session, the
// epsilon to reserve on each dataset (checked when the session is stored).
func (s *Server) checkSessionConfig(ctx context.Context, cfg *silo.SessionConfig) ([]sqlstore.SessionClient, []sqlstore.Reservation, error) {
	actor := silo.ActorFromContext(ctx)
	var clients []sqlstore.SessionClient
	var reserve []sqlstore.Reservation
	var datasets []*silo.Dataset
	var stored []*sqlstore.StoredDataset
	for _, name := range cfg.Datasets {
		d, err := s.db.FindDataset(ctx, name)
		if silo.ErrorCode(err) == silo.ENOTFOUND {
			return nil, nil, silo.FieldErrorf("datasets", "no dataset named %q: see 'silo datasets list'", name)
		} else if err != nil {
			return nil, nil, err
		}
		if d.Status != silo.DatasetConnected {
			return nil, nil, silo.FieldErrorf("datasets", "dataset %s is %s, not connected: %s", name, d.Status, cmpOr(d.Error, "wait for its runner to read it"))
		}
		// What binds the data, not only this dataset's own controls: the
		// strictest of every live dataset on the same data and the runner's
		// policy, and one epsilon budget for the data.
		b, err := s.bindData(ctx, d, nil)
		if err != nil {
			return nil, nil, err
		}
		for _, other := range stored {
			if other.RunnerID == d.RunnerID && blob.LocationsOverlap(dataLocation(other), dataLocation(d)) {
				return nil, nil, silo.FieldErrorf("datasets", "datasets %s and %s are the same data on runner %s (%s): use it once", other.Name, name, d.Runner, dataLocation(d))
			}
		}
		stored = append(stored, d)
		if b.refused != "" {
			return nil, nil, silo.FieldErrorf("datasets", "dataset %s: %s", name, b.refused)
		}
		p := &b.eff.Controls
		if !p.AllowsSessionType(cfg.Type) {
			return nil, nil, silo.FieldErrorf("type", "dataset %s does not allow %s sessions (allowed: %s; set by %s)", name, cfg.Type, cmpOr(strings.Join(p.AllowedSessionTypes, ", "), "none"), sourcesOf(b, "allowed_session_types"))
		}
		if !p.AllowsUser(actor.User.Email) {
			return nil, nil, silo.FieldErrorf("datasets", "dataset %s is not open to %s (allowed users set by %s): ask its custodian (%s)", name, actor.User.Email, sourcesOf(b, "allowed_users"), d.Owner)
		}
		if p.RequireDifferentialPrivacy && cfg.DifferentialPrivacy == nil {
			return nil, nil, silo.FieldErrorf("differential_privacy", "dataset %s requires differential privacy (set by %s): add \"differential_privacy\": {\"epsilon\": …, \"delta\": %g}", name, sourcesOf(b, "require_differential_privacy"), p.Delta)
		}
		if dpc := cfg.DifferentialPrivacy; dpc != nil {
			if dpc.Delta > p.Delta {
				return nil, nil, silo.FieldErrorf("differential_privacy.delta", "dataset %s allows delta at most %g (set by %s), the session asks for %g", name, p.Delta, sourcesOf(b, "delta"), dpc.Delta)
			}
			// The budget is checked, and the epsilon reserved, by the store
			// in the transaction that creates the session, with every
			// dataset on the same data locked: checked here, it could
			// race another session's.
			var shared []int64
			for _, o := range b.sameData {
				shared = append(shared, o.ID)
			}
			budget, perSession := p.EpsilonBudget, p.MaxEpsilonPerSession
			reserve = append(reserve, sqlstore.Reservation{Dataset: name, DatasetID: d.ID, Shared: shared, Epsilon: dpc.Epsilon, Delta: dpc.Delta,
				Check: func(charges []float64) error {
					err := dp.CheckBudget(budget, perSession, charges, dpc.Epsilon)
					if err == nil {
						return nil
					}
					field := "epsilon_budget"
					if errors.Is(err, dp.ErrSessionLimit) {
						field = "max_epsilon_per_session"
					}
					return silo.FieldErrorf("differential_privacy.epsilon", "dataset %s: %v (set by %s; the budget is shared by every dataset on the same data)", name, err, sourcesOf(b, field))
				}})
		}
		// The session's kind checks columns against the controls in effect.
		d.Dataset.Effective = &b.eff
		datasets = append(datasets, &d.Dataset)
		clients = append(clients, sqlstore.SessionClient{Dataset: d.Name, DatasetID: d.ID, Runner: d.Runner})
	}
	if err := s.engine.Prepare(ctx, cfg, datasets); err != nil {
		return nil, nil, err
	}
	return clients, reserve, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Server) handleCancelSession(w http.ResponseWriter, r *http.Request) {
	ss, err := s.CancelSession(r.Context(), r.PathValue("id"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, &ss.Session)
}

// CancelSession cancels a pending or running session the caller may see,
// stops its clients' tasks and records it in the audit log. The API and the
// UI share it.
func (s *Server) CancelSession(ctx context.Context, id string) (*sqlstore.StoredSession, error) {
	ss, err := s.SessionByID(ctx, id)
	if err == nil {
		ss, err = s.db.UpdateSession(ctx, ss.ID, nil, func(ss *sqlstore.StoredSession) error {
			if ss.Status.Done() {
				return silo.Errorf(silo.ECONFLICT, "session %s is already %s", ss.ID, ss.Status)
			}
			ss.Status, ss.StatusReason = silo.SessionCancelled, "cancelled by "+silo.ActorFromContext(ctx).Name()
			return nil
		})
	}
	if err == nil {
		s.engine.Ended(ctx, ss.ID, "the session was cancelled")
	}
	s.auditResult(ctx, "session.cancel", id, err)
	if err != nil {
		return nil, err
	}
	return ss, nil
}

func (s *Server) handleDownloadModel(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ss, err := s.sessionByPath(r)
	best := r.URL.Query().Get("best") == "true"
	var doc []byte
	if err == nil {
		doc, err = s.modelDocument(ctx, ss, best)
	}
	s.auditResult(ctx, "model.download", r.PathValue("id")+map[bool]string{true: " (best)", false: ""}[best], err)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+ss.ID+map[bool]string{true: "-best", false: ""}[best]+`.json"`)
	// #nosec G705 -- a JSON model document served as application/json with nosniff
	_, _ = w.Write(doc)
}

// PredictionRequest asks for a session's final (or best) model to be run on
// a dataset.
type PredictionRequest struct {
	Session string `json:"session"`
	Dataset string `json:"dataset"`
	Best    bool   `json:"best,omitempty"`
	Format  string `json:"format,omitempty"` // csv (default) or parquet
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	var req PredictionRequest
	if err := httpjson.Decode(w, r, &req); err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	out, err := s.Predict(r.Context(), req)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Predict runs a session's model on a dataset's runner, waits (up to ten
// minutes) for the row count and path, and records it in the audit log. The
// API and the UI share it.
func (s *Server) Predict(ctx context.Context, req PredictionRequest) (*silo.PredictOutput, error) {
	out, err := s.predict(ctx, req)
	s.auditResult(ctx, "prediction.run", req.Session+" on "+req.Dataset, err)
	return out, err
}

func (s *Server) predict(ctx context.Context, req PredictionRequest) (*silo.PredictOutput, error) {
	if req.Format == "" {
		req.Format = "csv"
	}
	if req.Format != "csv" && req.Format != "parquet" {
		return nil, silo.FieldErrorf("format", "format must be csv or parquet, not %q", req.Format)
	}
	ss, err := s.SessionByID(ctx, req.Session)
	if err != nil {
		return nil, err
	}
	d, err := s.db.FindDataset(ctx, req.Dataset)
	if err != nil {
		return nil, err
	}
	b, err := s.bindData(ctx, d, nil)
	if err != nil {
		return nil, err
	}
	if !b.eff.Controls.AllowPredictions {
		return nil, silo.Errorf(silo.EFORBIDDEN, "dataset %s does not allow predictions (set by %s)", d.Name, sourcesOf(b, "allow_predictions"))
	}
	if !b.eff.Controls.AllowsUser(silo.ActorFromContext(ctx).User.Email) {
		return nil, silo.Errorf(silo.EFORBIDDEN, "dataset %s is not open to you (allowed users set by %s): ask its custodian (%s)", d.Name, sourcesOf(b, "allowed_users"), d.Owner)
	}
	if d.Status != silo.DatasetConnected {
		return nil, silo.Errorf(silo.ECONFLICT, "dataset %s is %s, not connected", d.Name, d.Status)
	}
	doc, err := s.modelDocument(ctx, ss, req.Best)
	if err != nil {
		return nil, err
	}
	rn, err := s.db.FindRunner(ctx, d.Runner)
	if err != nil {
		return nil, err
	}
	output := predictionsURI(rn, d, ss.ID, req.Best, req.Format, s.now())
	payload, err := json.Marshal(silo.PredictPayload{Dataset: d.Name, URI: d.URI, Schema: datasetSchema(d), Privacy: d.Privacy, Document: doc, Format: req.Format, Output: output})
	if err != nil {
		return nil, err
	}
	t, err := s.QueueTask(ctx, d.Runner, &silo.Task{Type: silo.TaskPredict, Payload: payload, VCPU: 1, MemoryMB: 512, Session: ss.ID, Dataset: d.Name})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		t, err = s.db.FindTask(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		switch t.Status {
		case silo.TaskSucceeded:
			var out silo.PredictOutput
			if err := json.Unmarshal(t.Output, &out); err != nil {
				return nil, err
			}
			return &out, nil
		case silo.TaskFailed, silo.TaskRefused, silo.TaskCancelled:
			return nil, silo.Errorf(silo.ECONFLICT, "prediction on %s %s: %s", d.Name, t.Status, t.Error)
		}
		if time.Now().After(deadline) {
			return nil, silo.Errorf(silo.ECONFLICT, "runner %s has not finished predicting after 10 minutes (task %s): see 'silo runners logs %s'", d.Runner, t.ID, d.Runner)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// modelDocument is the downloadable model of a session, as JSON.
func (s *Server) modelDocument(ctx context.Context, ss *sqlstore.StoredSession, best bool) ([]byte, error) {
	doc, err := hfl.Document(ctx, s.db, ss, best)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(doc, "", " ")
}

// predictionsURI is where a runner writes predictions: a predictions/
// folder in its own storage.
func predictionsURI(rn *sqlstore.StoredRunner, d *sqlstore.StoredDataset, session string, best bool, format string, now time.Time) string {
	which := "final"
	if best {
		which = "best"
	}
	name := fmt.Sprintf("predictions/%s/%s-%s-%s.%s", d.Name, session, which, now.Format("20060102T150405Z"), format)
	switch rn.Provider {
	case silo.ProviderLocal:
		return "file://" + strings.TrimSuffix(LocalRoot(rn.StoragePath), "/") + "/" + name
	case silo.ProviderAWS:
		bucket, _, _ := strings.Cut(strings.TrimPrefix(d.URI, "s3://"), "/")
		return "s3://" + bucket + "/" + name
	}
	container, _, _ := strings.Cut(strings.TrimPrefix(d.URI, "azure://"), "/")
	return "azure://" + container + "/" + name
}

func datasetSchema(d *sqlstore.StoredDataset) []silo.ColumnType {
	var out []silo.ColumnType
	for _, c := range d.Columns {
		if !c.Excluded {
			out = append(out, silo.ColumnType{Name: c.Name, Type: c.Type})
		}
	}
	return out
}
