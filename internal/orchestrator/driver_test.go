package orchestrator

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

// echo is a kind with one step, "echo", that needs every client (or
// quorum of them) and completes the session with the datasets that
// answered.
type echo struct{ quorum int }

func (echo) Prepare(context.Context, *silo.SessionConfig, []*silo.Dataset) error { return nil }

func (k echo) Start(ctx context.Context, s *Session) (*Outcome, error) {
	return &Outcome{State: []byte(`{}`), Next: &Step{Name: "echo", Round: 1, Quorum: k.quorum, Reason: "echoing"}}, nil
}

func (echo) Configure(s *Session, step Step, c *Client) (*Task, error) {
	return &Task{Payload: map[string]string{"dataset": c.Dataset}, MaxResult: 100}, nil
}

func (echo) Aggregate(ctx context.Context, s *Session, step Step, results []*Result) (*Outcome, error) {
	var answered []string
	for _, r := range results {
		if r.OK() {
			answered = append(answered, r.Client.Dataset)
		}
	}
	return &Outcome{State: []byte(`{}`), Reason: "answered: " + strings.Join(answered, ",")}, nil
}

// testEngine is a driver on an SQLite store with two online runners, each
// with a dataset, and a session over both; its steps are taken by hand.
type testEngine struct {
	t       *testing.T
	db      *sqlstore.DB
	d       *Driver
	now     time.Time
	runners map[string]int64
	run     *run
}

func newTestEngine(t *testing.T, k Kind, runners ...string) *testEngine {
	if len(runners) == 0 {
		runners = []string{"r1", "r2"}
	}
	ctx := context.Background()
	e := &testEngine{t: t, now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), runners: map[string]int64{}}
	e.db = sqlstore.New(filepath.Join(t.TempDir(), "silo.db"))
	e.db.Clock = func() time.Time { return e.now }
	if err := e.db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	e.d = New(e.db)
	e.d.Clock, e.d.Replica = e.db.Clock, "replica-test"
	e.d.Register("echo", k)
	var datasets []string
	var sc []sqlstore.SessionClient
	for _, n := range runners {
		r := &sqlstore.StoredRunner{Runner: silo.Runner{RunnerSpec: silo.RunnerSpec{Name: n, Provider: silo.ProviderLocal, StoragePath: "file:///srv/" + n, VCPU: 1, MemoryGB: 1},
			Status: silo.RunnerRegistering, CreatedBy: "a@example.org"}, TokenHash: "tok-" + n}
		if err := e.db.CreateRunner(ctx, r); err != nil {
			t.Fatal(err)
		}
		e.runners[n] = r.ID
		e.heartbeat(n)
		ds := &sqlstore.StoredDataset{Dataset: silo.Dataset{Name: "d_" + n, URI: "file:///srv/" + n + "/d.csv", Owner: "dc@example.org",
			Privacy: silo.DefaultPrivacyControls(), Status: silo.DatasetConnected}, RunnerID: r.ID}
		if err := e.db.CreateDataset(ctx, ds); err != nil {
			t.Fatal(err)
		}
		sc = append(sc, sqlstore.SessionClient{Dataset: ds.Name, DatasetID: ds.ID, Runner: n})
		datasets = append(datasets, ds.Name)
	}
	ss := &sqlstore.StoredSession{Session: silo.Session{ID: "sess_t", Name: "t", Status: silo.SessionPending, CreatedBy: "mb@example.org",
		Config: silo.SessionConfig{Name: "t", Type: "echo", Datasets: datasets, MinClients: 2, RoundTimeout: "1m"}}, Clients: sc}
	if err := e.db.CreateSession(ctx, ss); err != nil {
		t.Fatal(err)
	}
	e.run = &run{d: e.d, id: ss.ID}
	return e
}

func (e *testEngine) heartbeat(runner string) {
	if _, err := e.db.RecordHeartbeat(context.Background(), e.runners[runner], silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion}); err != nil {
		e.t.Fatal(err)
	}
}

// step takes one step of the session and returns it as stored after.
func (e *testEngine) step() *sqlstore.StoredSession {
	e.t.Helper()
	if _, err := e.run.step(context.Background()); err != nil && err != errStop {
		e.d.fail(context.Background(), e.run.id, err)
	}
	ss, err := e.db.FindSession(context.Background(), e.run.id)
	if err != nil {
		e.t.Fatal(err)
	}
	return ss
}

// tasksOf lists the echo step's tasks of a dataset, oldest first.
func (e *testEngine) tasksOf(dataset string) []*silo.Task {
	tasks, err := e.db.ListSessionTasks(context.Background(), e.run.id, 1, "echo")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*silo.Task
	for _, t := range tasks {
		if t.Dataset == dataset {
			out = append(out, t)
		}
	}
	return out
}

// claim has a runner take its next task and returns it.
func (e *testEngine) claim(runner string) *silo.Task {
	e.t.Helper()
	t, err := e.db.ClaimTask(context.Background(), e.runners[runner])
	if err != nil || t == nil {
		e.t.Fatalf("claim for %s: %v, %v", runner, t, err)
	}
	return t
}

// lose makes a runner's running task lost, as a heartbeat from an agent
// that restarted does.
func (e *testEngine) lose(runner string) {
	e.t.Helper()
	e.now = e.now.Add(time.Second)
	lost, err := e.db.FailLostTasks(context.Background(), e.runners[runner], nil, e.now, LostTask)
	if err != nil || len(lost) != 1 {
		e.t.Fatalf("lost tasks of %s: %v, %v", runner, lost, err)
	}
}

func (e *testEngine) succeed(runner string, t *silo.Task) {
	e.t.Helper()
	out, _ := json.Marshal(map[string]bool{"ok": true})
	if _, err := e.db.FinishTask(context.Background(), e.runners[runner], t.ID, silo.TaskResult{Status: silo.TaskSucceeded, Output: out}, nil); err != nil {
		e.t.Fatal(err)
	}
}

// TestLostTaskRequeuedUpToLimit: a task lost with its runner is queued again
// while the step needs it, once per loss, up to maxAttempts tasks in the
// step; a loss past that fails the session with the reason.
func TestLostTaskRequeuedUpToLimit(t *testing.T) {
	e := newTestEngine(t, echo{})
	if ss := e.step(); ss.Status != silo.SessionRunning || ss.Phase != "echo" || ss.PhaseQuorum != 2 {
		t.Fatalf("after start: %s %s quorum %d", ss.Status, ss.Phase, ss.PhaseQuorum)
	}
	e.succeed("r1", e.claim("r1"))
	for attempt := 1; attempt < maxAttempts; attempt++ {
		e.claim("r2")
		e.lose("r2")
		ss := e.step()
		tasks := e.tasksOf("d_r2")
		if ss.Status != silo.SessionRunning || len(tasks) != attempt+1 || tasks[attempt].Status != silo.TaskQueued {
			t.Fatalf("after loss %d: session %s, %d tasks for d_r2 (last %s)", attempt, ss.Status, len(tasks), tasks[len(tasks)-1].Status)
		}
		// Stepping again queues nothing more.
		if e.step(); len(e.tasksOf("d_r2")) != attempt+1 {
			t.Fatalf("a second step after loss %d queued another task", attempt)
		}
	}
	e.claim("r2")
	e.lose("r2")
	ss := e.step()
	if ss.Status != silo.SessionFailed || !strings.Contains(ss.StatusReason, LostTask) || len(e.tasksOf("d_r2")) != maxAttempts {
		t.Fatalf("after %d losses: %s %q, %d tasks", maxAttempts, ss.Status, ss.StatusReason, len(e.tasksOf("d_r2")))
	}
}

// TestLostTaskThenAnswered: a task lost once and queued again completes
// the step when its second attempt answers; only one attempt succeeded.
func TestLostTaskThenAnswered(t *testing.T) {
	e := newTestEngine(t, echo{})
	e.step()
	e.succeed("r1", e.claim("r1"))
	e.claim("r2")
	e.lose("r2")
	e.step()
	e.succeed("r2", e.claim("r2"))
	ss := e.step()
	if ss.Status != silo.SessionCompleted || ss.StatusReason != "answered: d_r1,d_r2" {
		t.Fatalf("session %s %q", ss.Status, ss.StatusReason)
	}
}

// TestOfflineRunnerNotWaitedFor: with a quorum of one, a step whose other
// runner went offline closes as soon as the online one answered, without
// waiting for round_timeout; with both needed, it waits for the runner to
// come back, and fails after round_timeout naming it.
func TestOfflineRunnerNotWaitedFor(t *testing.T) {
	e := newTestEngine(t, echo{quorum: 1})
	e.step()
	e.succeed("r1", e.claim("r1"))
	if ss := e.step(); ss.Status != silo.SessionRunning {
		t.Fatalf("closed while r2, online, still works: %s %q", ss.Status, ss.StatusReason)
	}
	e.now = e.now.Add(time.Minute - time.Second) // not timed out yet
	e.heartbeat("r1")
	if _, err := e.db.MarkStaleRunnersOffline(context.Background(), e.now.Add(-30*time.Second).UnixMicro(), "missed heartbeats"); err != nil {
		t.Fatal(err)
	}
	ss := e.step()
	if ss.Status != silo.SessionCompleted || ss.StatusReason != "answered: d_r1" {
		t.Fatalf("with r2 offline: %s %q", ss.Status, ss.StatusReason)
	}
	if tasks := e.tasksOf("d_r2"); len(tasks) != 1 || tasks[0].Status != silo.TaskCancelled {
		t.Fatalf("r2's task: %+v", tasks[0])
	}

	e = newTestEngine(t, echo{})
	e.step()
	e.succeed("r1", e.claim("r1"))
	e.claim("r2")
	if _, err := e.db.MarkStaleRunnersOffline(context.Background(), e.now.Add(time.Second).UnixMicro(), "missed heartbeats"); err != nil {
		t.Fatal(err)
	}
	if ss := e.step(); ss.Status != silo.SessionRunning || !strings.Contains(ss.StatusReason, "waiting for r2 (offline) to come back") {
		t.Fatalf("both needed, r2 offline: %s %q", ss.Status, ss.StatusReason)
	}
	e.now = e.now.Add(time.Minute + time.Second)
	if ss := e.step(); ss.Status != silo.SessionFailed || !strings.Contains(ss.StatusReason, "d_r2: did not answer within round_timeout 1m, its runner r2 (offline)") {
		t.Fatalf("after round_timeout: %s %q", ss.Status, ss.StatusReason)
	}
}

// TestLostTaskRequeuedWhileAnotherIsAway: with two answers needed of three,
// one runner gone offline and another's task lost in its restart, the lost
// task is sent again at once rather than the step waiting for the runner
// that went away.
func TestLostTaskRequeuedWhileAnotherIsAway(t *testing.T) {
	e := newTestEngine(t, echo{quorum: 2}, "r1", "r2", "r3")
	e.step()
	e.succeed("r1", e.claim("r1"))
	e.claim("r3")
	e.claim("r2")
	e.now = e.now.Add(time.Second)
	e.heartbeat("r1")
	e.heartbeat("r2")
	if _, err := e.db.MarkStaleRunnersOffline(context.Background(), e.now.Add(-time.Millisecond).UnixMicro(), "missed heartbeats"); err != nil {
		t.Fatal(err)
	}
	e.lose("r2")
	if ss := e.step(); ss.Status != silo.SessionRunning || len(e.tasksOf("d_r2")) != 2 {
		t.Fatalf("after r2's loss with r3 away: %s %q, %d tasks for d_r2", ss.Status, ss.StatusReason, len(e.tasksOf("d_r2")))
	}
	e.succeed("r2", e.claim("r2"))
	if ss := e.step(); ss.Status != silo.SessionCompleted || ss.StatusReason != "answered: d_r1,d_r2" {
		t.Fatalf("session %s %q", ss.Status, ss.StatusReason)
	}
}
