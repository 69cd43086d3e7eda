package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/testsvc"
)

// storedHeartbeat is a runner's last heartbeat as the store holds it.
func storedHeartbeat(t *testing.T, e *env, name string) time.Time {
	t.Helper()
	r, err := e.db.FindRunner(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if r.LastHeartbeat == nil {
		return time.Time{}
	}
	return *r.LastHeartbeat
}

// TestHeartbeatsCoalesced: a heartbeat that changes nothing but the time is
// kept in memory and written with others; one that changes the runner (it
// comes online, its agent changed) is written at once. Offline detection
// writes what is kept before it looks, so a runner that keeps beating is
// never marked offline, and one that stops is.
func TestHeartbeatsCoalesced(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := client.New(e.ts.URL, e.admin)
	r, err := admin.RegisterRunner(ctx, silo.RunnerSpec{Name: "edge-1", Provider: silo.ProviderLocal, StoragePath: "file:///srv/edge"})
	if err != nil {
		t.Fatal(err)
	}
	rc := client.New(e.ts.URL, r.Token)
	hb := silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion, AgentVersion: "1.0.0", VCPU: 2, MemoryMB: 1024}
	beat := func(hb silo.Heartbeat) {
		t.Helper()
		reply, err := rc.Heartbeat(ctx, hb)
		if err != nil || reply.Status != silo.RunnerOnline {
			t.Fatalf("heartbeat = %+v, %v", reply, err)
		}
	}

	// Coming online is written at once.
	t0 := e.clock.Now()
	beat(hb)
	if got := storedHeartbeat(t, e, "edge-1"); !got.Equal(t0.Truncate(time.Microsecond)) {
		t.Fatalf("first heartbeat stored at %v, want %v", got, t0)
	}
	// A heartbeat that changes nothing else waits in memory.
	e.clock.Add(25 * time.Second)
	t1 := e.clock.Now()
	beat(hb)
	if got := storedHeartbeat(t, e, "edge-1"); !got.Equal(t0.Truncate(time.Microsecond)) {
		t.Fatalf("an unchanged heartbeat was written at once (%v)", got)
	}
	// 35 s after the stored heartbeat but 10 s after the kept one: the
	// check writes the kept one first, and the runner stays online.
	e.clock.Add(10 * time.Second)
	if err := e.srv.CheckRunners(ctx); err != nil {
		t.Fatal(err)
	}
	if st := runnerStatus(t, admin, "edge-1"); st != silo.RunnerOnline {
		t.Fatalf("a beating runner is %s", st)
	}
	if got := storedHeartbeat(t, e, "edge-1"); !got.Equal(t1.Truncate(time.Microsecond)) {
		t.Fatalf("kept heartbeat stored at %v, want %v", got, t1)
	}
	// A new agent is written at once.
	hb.AgentVersion, hb.MemoryMB = "1.1.0", 2048
	beat(hb)
	if got, _ := admin.GetRunner(ctx, "edge-1"); got.AgentVersion != "1.1.0" || got.AgentMemoryMB != 2048 {
		t.Fatalf("new agent stored as %q, %d MB", got.AgentVersion, got.AgentMemoryMB)
	}
	// A runner that stops beating goes offline, and its next heartbeat
	// brings it back at once.
	e.clock.Add(31 * time.Second)
	if err := e.srv.CheckRunners(ctx); err != nil {
		t.Fatal(err)
	}
	if st := runnerStatus(t, admin, "edge-1"); st != silo.RunnerOffline {
		t.Fatalf("a silent runner is %s, want offline", st)
	}
	beat(hb)
	if st := runnerStatus(t, admin, "edge-1"); st != silo.RunnerOnline {
		t.Fatalf("after a heartbeat the runner is %s", st)
	}

	// Marked offline behind this server's back (as another replica does),
	// a runner whose heartbeats were being kept is brought back online when
	// they are written.
	beat(hb)
	if _, err := e.db.MarkStaleRunnersOffline(ctx, e.clock.Now().Add(time.Hour).UnixMicro(), "marked by another replica"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Second)
	beat(hb) // kept: this server still knows the runner online
	if err := e.srv.CheckRunners(ctx); err != nil {
		t.Fatal(err)
	}
	if st := runnerStatus(t, admin, "edge-1"); st != silo.RunnerOnline {
		t.Fatalf("a beating runner marked offline elsewhere is %s", st)
	}
	var changes []string
	entries, _ := admin.ListAudit(ctx, client.AuditQuery{Limit: 100})
	for _, a := range entries {
		if a.Action == "runner.status" {
			changes = append(changes, a.Target)
		}
	}
	// The mark behind this server's back is that replica's to audit.
	want := []string{"edge-1: offline → online", "edge-1: offline → online", "edge-1: online → offline", "edge-1: registering → online"}
	if strings.Join(changes, "; ") != strings.Join(want, "; ") {
		t.Fatalf("status changes audited (newest first): %q, want %q", changes, want)
	}
}

// TestRunnerTokenRefusedAtOnce: a runner's token is refused on the very
// next request after it is replaced or its runner deregistered, though the
// server has just accepted it (and keeps accepted tokens in memory).
func TestRunnerTokenRefusedAtOnce(t *testing.T) {
	e := newEnv(t)
	checkTokenRefusedAtOnce(t, e, e)
}

// TestReplicasRunnerTokenRefusedAtOnce is the same across two replicas on
// PostgreSQL: a token replaced through one replica is refused by the other
// on its next request.
func TestReplicasRunnerTokenRefusedAtOnce(t *testing.T) {
	dsn := testsvc.Postgres(t)
	logs, results := newLogCapture(t), newResultLog()
	clock := servertest.NewClock(time.Now().UTC())
	a := newStoreEnv(t, dsn, clock, logs, results, "replica-a", true)
	b := newStoreEnv(t, dsn, clock, logs, results, "replica-b", false)
	checkTokenRefusedAtOnce(t, a, b)
}

// checkTokenRefusedAtOnce changes runners through replica a and checks
// their old tokens on replica b (which may be a).
func checkTokenRefusedAtOnce(t *testing.T, a, b *env) {
	ctx := context.Background()
	admin := client.New(a.ts.URL, a.admin)
	hb := silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion, AgentVersion: "1.0.0"}
	accepted := func(token string) error {
		_, err := client.New(b.ts.URL, token).Heartbeat(ctx, hb)
		return err
	}
	for _, name := range []string{"rotated", "deregistered"} {
		r, err := admin.RegisterRunner(ctx, silo.RunnerSpec{Name: name, Provider: silo.ProviderLocal, StoragePath: "file:///srv/" + name})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 { // accepted, and accepted again
			if err := accepted(r.Token); err != nil {
				t.Fatalf("%s: token refused before any change: %v", name, err)
			}
		}
		var fresh string
		if name == "rotated" {
			n, err := admin.RotateRunnerToken(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			fresh = n.Token
		} else if _, err := admin.DeregisterRunner(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := accepted(r.Token); silo.ErrorCode(err) != silo.EUNAUTHORIZED {
			t.Fatalf("%s: the old token's next heartbeat: %v, want it refused", name, err)
		}
		if _, _, err := client.New(b.ts.URL, r.Token).PollTask(ctx, 0, nil); silo.ErrorCode(err) != silo.EUNAUTHORIZED {
			t.Fatalf("%s: the old token's next poll: %v, want it refused", name, err)
		}
		if fresh != "" {
			if err := accepted(fresh); err != nil {
				t.Fatalf("%s: the new token: %v", name, err)
			}
		}
	}
}

// TestReplicasTaskWakesPoll: on PostgreSQL a task queued through one
// replica reaches a runner's long-poll held by another at once, by a
// notice through the database: while it hears notices, a replica does not
// look for other replicas' tasks on a timer, so without the notice the
// poll would end empty.
func TestReplicasTaskWakesPoll(t *testing.T) {
	dsn := testsvc.Postgres(t)
	logs, results := newLogCapture(t), newResultLog()
	clock := servertest.NewClock(time.Now().UTC())
	a := newStoreEnv(t, dsn, clock, logs, results, "replica-a", true)
	b := newStoreEnv(t, dsn, clock, logs, results, "replica-b", false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.srv.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "replica B listening", b.db.Listening)

	admin := client.New(a.ts.URL, a.admin)
	r, err := admin.RegisterRunner(ctx, silo.RunnerSpec{Name: "edge-1", Provider: silo.ProviderLocal, StoragePath: "file:///srv/edge"})
	if err != nil {
		t.Fatal(err)
	}
	rc := client.New(b.ts.URL, r.Token)
	if _, err := rc.Heartbeat(ctx, silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion}); err != nil {
		t.Fatal(err)
	}
	type polled struct {
		task *silo.Task
		err  error
	}
	got := make(chan polled, 1)
	go func() {
		task, _, err := rc.PollTask(ctx, 20*time.Second, nil)
		got <- polled{task, err}
	}()
	servertest.Pause() // let the poll start waiting
	queued, err := admin.QueueDiagnostics(ctx, "edge-1", 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	p := <-got
	if p.err != nil || p.task == nil || p.task.ID != queued.ID {
		t.Fatalf("the poll on replica B got %+v, %v; want task %s", p.task, p.err, queued.ID)
	}
}
