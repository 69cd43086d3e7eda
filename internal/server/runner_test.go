package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/sqlstore"
)

// TestRunnerLifecycle starts a server and three local runners in-process and
// walks the lifecycle: registering → online, tasks within resources, logs,
// a runner killed (offline) and restarted (online), a deregistered runner's
// token refused at once.
func TestRunnerLifecycle(t *testing.T) {
	e := envOf(servertest.New(t, func(s *server.Server) { s.HeartbeatInterval = 100 * time.Millisecond }))
	ag := newAgents(t, e)
	ctx := context.Background()
	admin := client.New(e.ts.URL, e.admin)
	mb := client.New(e.ts.URL, e.addUser("mb@example.org", "model_builder"))

	names := []string{"hospital-a", "hospital-b", "hospital-c"}
	tokens := map[string]string{}
	for _, n := range names {
		r, err := mb.RegisterRunner(ctx, silo.RunnerSpec{Name: n, Provider: silo.ProviderLocal, StoragePath: "file://" + filepath.Join(e.srv.LocalRunnersRoot, n), VCPU: 2, MemoryGB: 1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != silo.RunnerRegistering || !strings.HasPrefix(r.Token, silo.RunnerTokenPrefix) {
			t.Fatalf("registered runner = %+v", r)
		}
		tokens[n] = r.Token
	}
	if _, err := mb.RegisterRunner(ctx, silo.RunnerSpec{Name: "hospital-a", Provider: silo.ProviderLocal, StoragePath: "file:///tmp/x"}); silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate name: %v", err)
	}
	// A runner's token is shown once: listings never carry it.
	list, _ := admin.ListRunners(ctx, false)
	if raw, _ := json.Marshal(list); len(list) != 3 || strings.Contains(string(raw), silo.RunnerTokenPrefix) {
		t.Fatalf("listing = %s", raw)
	}

	// hospital-a is run by hand with its token; b and c by the server.
	stopA := ag.Start(ctx, "hospital-a", tokens["hospital-a"], "", 2, 1024)
	for _, n := range names[1:] {
		if _, err := admin.StartRunner(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		eventually(t, n+" online", func() bool { return runnerStatus(t, mb, n) == silo.RunnerOnline })
	}
	// Starting the server's child replaced b's registration token.
	if _, err := client.New(e.ts.URL, tokens["hospital-b"]).Heartbeat(ctx, silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion}); silo.ErrorCode(err) != silo.EUNAUTHORIZED {
		t.Fatalf("old token after start: %v", err)
	}

	// A diagnostics task runs and streams its log; one too big is refused.
	task, err := mb.QueueDiagnostics(ctx, "hospital-b", 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	var done *silo.Task
	eventually(t, "diagnostics done", func() bool {
		ts, _ := mb.RunnerTasks(ctx, "hospital-b")
		done = ts[0]
		return done.ID == task.ID && done.Status != silo.TaskQueued && done.Status != silo.TaskRunning
	})
	var diag runner.Diagnostics
	if err := json.Unmarshal(done.Output, &diag); done.Status != silo.TaskSucceeded || err != nil || !diag.StorageWritable || diag.VCPU != 2 || diag.MemoryMB != 1024 {
		t.Fatalf("diagnostics = %s %s %+v", done.Status, done.Error, diag)
	}
	logs, err := mb.RunnerLogs(ctx, "hospital-b", task.ID, 0)
	if err != nil || len(logs) < 3 || !strings.Contains(logs[1].Message, "storage root checked") {
		t.Fatalf("task logs = %v, %v", logs, err)
	}
	big, _ := mb.QueueDiagnostics(ctx, "hospital-c", 8, 64)
	eventually(t, "big task refused", func() bool {
		ts, _ := mb.RunnerTasks(ctx, "hospital-c")
		done = ts[0]
		return done.ID == big.ID && done.Status == silo.TaskRefused
	})
	if !strings.Contains(done.Error, "needs 8 vCPU but this runner has 2") {
		t.Fatalf("refusal reason = %q", done.Error)
	}

	// hospital-a is killed: after three missed heartbeats it is offline.
	stopA()
	e.clock.Add(time.Second)
	if err := e.srv.CheckRunners(ctx); err != nil {
		t.Fatal(err)
	}
	if st := runnerStatus(t, mb, "hospital-a"); st != silo.RunnerOffline {
		t.Fatalf("killed runner is %s, want offline", st)
	}
	r, _ := mb.GetRunner(ctx, "hospital-a")
	if !strings.Contains(r.StatusReason, "no heartbeat since") {
		t.Fatalf("offline reason = %q", r.StatusReason)
	}
	// Restarted with the same token, it is online again.
	ag.Start(ctx, "hospital-a", tokens["hospital-a"], "", 2, 1024)
	eventually(t, "hospital-a back online", func() bool { return runnerStatus(t, mb, "hospital-a") == silo.RunnerOnline })

	// Deregistered: its token is refused at once and the agent stops.
	if _, err := mb.DeregisterRunner(ctx, "hospital-a"); err != nil {
		t.Fatal(err)
	}
	if err := ag.Ended("hospital-a"); !errors.Is(err, runner.ErrTokenRefused) {
		t.Fatalf("deregistered agent ended with %v, want ErrTokenRefused", err)
	}
	if _, _, err := client.New(e.ts.URL, tokens["hospital-a"]).PollTask(ctx, 0, nil); silo.ErrorCode(err) != silo.EUNAUTHORIZED {
		t.Fatalf("deregistered token: %v", err)
	}
	if _, err := mb.GetRunner(ctx, "hospital-a"); silo.ErrorCode(err) != silo.ENOTFOUND {
		t.Fatalf("deregistered runner still shown: %v", err)
	}
	// Its name is free again.
	if _, err := mb.RegisterRunner(ctx, silo.RunnerSpec{Name: "hospital-a", Provider: silo.ProviderLocal, StoragePath: "file:///srv/a"}); err != nil {
		t.Fatal(err)
	}

	var actions []string
	entries, _ := admin.ListAudit(ctx, client.AuditQuery{Limit: 200})
	for _, a := range entries {
		if strings.HasPrefix(a.Action, "runner.") {
			actions = append(actions, a.Action)
		}
	}
	for _, want := range []string{"runner.register", "runner.start", "runner.status", "runner.deregister"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("audit has no %s: %v", want, actions)
		}
	}
}

func TestRunnerProtocolRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := client.New(e.ts.URL, e.admin)
	r, err := admin.RegisterRunner(ctx, silo.RunnerSpec{Name: "edge-1", Provider: silo.ProviderLocal, StoragePath: "file:///srv/edge"})
	if err != nil {
		t.Fatal(err)
	}
	rc := client.New(e.ts.URL, r.Token)
	// A user token is no runner token, and the other way round.
	if _, err := client.New(e.ts.URL, e.admin).Heartbeat(ctx, silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion}); silo.ErrorCode(err) != silo.EUNAUTHORIZED || !strings.Contains(err.Error(), "runner token") {
		t.Fatalf("user token on runner route: %v", err)
	}
	if _, err := rc.ListRunners(ctx, false); silo.ErrorCode(err) != silo.EUNAUTHORIZED {
		t.Fatalf("runner token on user route: %v", err)
	}
	// A result for a task that is not running is refused.
	if _, _, err := rc.ReportTask(ctx, "task_nope", silo.TaskResult{Status: silo.TaskSucceeded}, nil, nil); silo.ErrorCode(err) != silo.ENOTFOUND {
		t.Fatalf("result for unknown task: %v", err)
	}
	// An agent of another protocol version is refused, and the runner says why.
	_, err = rc.Heartbeat(ctx, silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion + 1, AgentVersion: "9.9.9"})
	if silo.ErrorCode(err) != silo.ECONFLICT || !strings.Contains(err.Error(), "upgrade the server") {
		t.Fatalf("newer protocol: %v", err)
	}
	got, _ := admin.GetRunner(ctx, "edge-1")
	if got.Status != silo.RunnerFailed || !strings.Contains(got.StatusReason, "protocol version mismatch") {
		t.Fatalf("runner after protocol mismatch = %s %q", got.Status, got.StatusReason)
	}
	// Log lines are bounded.
	task, _ := admin.QueueDiagnostics(ctx, "edge-1", 1, 16)
	if _, _, err := rc.PollTask(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	lines := []silo.LogLine{{Level: "INFO", Message: strings.Repeat("x", 10000)}}
	if err := rc.SendTaskLogs(ctx, task.ID, lines); err != nil {
		t.Fatal(err)
	}
	logs, _ := admin.RunnerLogs(ctx, "edge-1", task.ID, 0)
	if len(logs) != 1 || len(logs[0].Message) > silo.MaxLogLineBytes+20 {
		t.Fatalf("long log line stored as %d bytes", len(logs[0].Message))
	}
	if err := rc.SendTaskLogs(ctx, task.ID, make([]silo.LogLine, silo.MaxLogLinesPerPost+1)); silo.ErrorCode(err) != silo.EINVALID {
		t.Fatalf("too many log lines: %v", err)
	}
}

// TestRunnerChangesNeedRegistrant: a Model Builder may read any runner and
// queue diagnostics on it, but only its registrant or an admin may edit it,
// replace its token, deregister or provision it — through the API or the
// UI. (Starting and stopping runners under the server is for admins only.)
func TestRunnerChangesNeedRegistrant(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ownerToken := e.addUser("mb@example.org", "model_builder")
	owner := client.New(e.ts.URL, ownerToken)
	otherToken := e.addUser("mb2@example.org", "model_builder")
	other := client.New(e.ts.URL, otherToken)
	admin := client.New(e.ts.URL, e.admin)
	for _, spec := range []silo.RunnerSpec{
		{Name: "hospital-a", Provider: silo.ProviderLocal, StoragePath: "file://" + t.TempDir(), VCPU: 1, MemoryGB: 1},
		{Name: "bank-aws", Provider: silo.ProviderAWS, Region: "eu-west-1", ProvisionerRoleARN: "arn:aws:iam::123456789012:role/p", RuntimeRoleARN: "arn:aws:iam::123456789012:role/r"},
	} {
		if _, err := owner.RegisterRunner(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}

	refused := func(what string, err error) {
		t.Helper()
		if silo.ErrorCode(err) != silo.EFORBIDDEN || !strings.Contains(err.Error(), "registered by mb@example.org") {
			t.Errorf("another builder could %s: %v", what, err)
		}
	}
	_, err := other.RotateRunnerToken(ctx, "hospital-a")
	refused("replace the token", err)
	_, err = other.DeregisterRunner(ctx, "hospital-a")
	refused("deregister", err)
	_, err = other.EditRunner(ctx, "hospital-a", map[string]any{"vcpu": 2})
	refused("edit", err)
	_, err = other.ProvisionRunner(ctx, "bank-aws")
	refused("provision", err)
	// The UI's forms (a bearer token needs no CSRF token) say why.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	for _, path := range []string{"hospital-a/deregister", "hospital-a/token", "hospital-a/edit", "bank-aws/provision"} {
		req, _ := http.NewRequest("POST", e.ts.URL+"/settings/runners/"+path, strings.NewReader("vcpu=2"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+otherToken)
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "only they or a Workspace Administrator may change it") {
			t.Errorf("UI %s by another builder: %d without the reason", path, resp.StatusCode)
		}
	}
	// Nothing changed: the runner is still the owner's, with its settings.
	if r, err := other.GetRunner(ctx, "hospital-a"); err != nil || r.Status == silo.RunnerDeregistered || r.VCPU != 1 {
		t.Fatalf("after refused changes: %+v, %v", r, err)
	}
	// Reading and diagnostics stay open to every builder.
	if _, err := other.RunnerTasks(ctx, "hospital-a"); err != nil {
		t.Error(err)
	}
	if _, err := other.QueueDiagnostics(ctx, "hospital-a", 1, 16); err != nil {
		t.Error(err)
	}
	// The registrant and an admin may.
	if _, err := owner.EditRunner(ctx, "hospital-a", map[string]any{"vcpu": 2}); err != nil {
		t.Error(err)
	}
	if _, err := admin.RotateRunnerToken(ctx, "hospital-a"); err != nil {
		t.Error(err)
	}
	if _, err := admin.DeregisterRunner(ctx, "bank-aws"); err != nil {
		t.Error(err)
	}
	if _, err := owner.DeregisterRunner(ctx, "hospital-a"); err != nil {
		t.Error(err)
	}
}

// TestRunnerListPages: the runner listing comes a page at a time, by name;
// a full page's Link header names the next; a bad limit says what is
// allowed; the SDK reads every page. 1,001 runners: more than a page.
func TestRunnerListPages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const n = server.MaxRunnersPage + 1
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("r-%04d", i)
		r := &sqlstore.StoredRunner{Runner: silo.Runner{RunnerSpec: silo.RunnerSpec{Name: want[i], Provider: silo.ProviderLocal, StoragePath: "file:///data/" + want[i]},
			Status: silo.RunnerRegistering, CreatedBy: adminEmail}, TokenHash: "h-" + want[i]}
		if err := e.db.CreateRunner(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	get := func(query string) ([]silo.Runner, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.ts.URL+"/api/v1/runners"+query, nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var page []silo.Runner
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil {
			t.Fatalf("GET /api/v1/runners%s: %d", query, resp.StatusCode)
		}
		return page, resp.Header.Get("Link")
	}
	page, link := get("")
	if len(page) != server.MaxRunnersPage || page[0].Name != "r-0000" || link != `</api/v1/runners?after=r-0999&limit=1000>; rel="next"` {
		t.Fatalf("first page: %d runners from %s, Link %q", len(page), page[0].Name, link)
	}
	page, link = get("?after=r-0999")
	if len(page) != 1 || page[0].Name != "r-1000" || link != "" {
		t.Fatalf("last page: %v, Link %q", page, link)
	}
	page, link = get("?limit=3&after=r-0500")
	if len(page) != 3 || page[0].Name != "r-0501" || page[2].Name != "r-0503" || link != `</api/v1/runners?after=r-0503&limit=3>; rel="next"` {
		t.Fatalf("a page of 3: %v, Link %q", page, link)
	}
	for _, bad := range []string{"0", "1001", "x"} {
		e.wantError("GET", "/api/v1/runners?limit="+bad, e.admin, nil, http.StatusBadRequest, silo.EINVALID, "limit \""+bad+"\" must be a number from 1 to 1000")
	}

	api := client.New(e.ts.URL, e.admin)
	all, err := api.ListRunners(ctx, false)
	if err != nil || len(all) != n {
		t.Fatalf("ListRunners: %d runners, %v; want %d", len(all), err, n)
	}
	for i, r := range all {
		if r.Name != want[i] {
			t.Fatalf("ListRunners[%d] = %s, want %s", i, r.Name, want[i])
		}
	}
	some, err := api.ListRunnersPage(ctx, client.RunnerPage{After: "r-0998", Limit: 5})
	if err != nil || len(some) != 2 || some[1].Name != "r-1000" {
		t.Fatalf("ListRunnersPage after r-0998 = %v, %v", some, err)
	}
}
