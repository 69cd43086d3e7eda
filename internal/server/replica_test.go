package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/internal/testsvc"
)

// TestFaultReplicaFailover runs two server replicas on one PostgreSQL
// database, each behind its own load-balancer address, with the runners
// split between them. A session is driven by one replica only (its lease);
// when that replica dies mid-session, its address fails over to the other
// one, which takes the session over once the lease expires and completes
// it: every round once, no task run twice.
func TestFaultReplicaFailover(t *testing.T) {
	dsn := testsvc.Postgres(t)
	logs, results := newLogCapture(t), newResultLog()
	start := time.Now().UTC()
	clockA, clockB := servertest.NewClock(start), servertest.NewClock(start)
	a := newStoreEnv(t, dsn, clockA, logs, results, "replica-a", true)
	b := newStoreEnv(t, dsn, clockB, logs, results, "replica-b", false)
	a.srv.Replica, b.srv.Replica = "replica-a", "replica-b"
	run := func(e *env) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { e.srv.Run(ctx); close(done) }()
		stop = func() { cancel(); <-done }
		t.Cleanup(stop)
		return stop
	}
	stopA := run(a)
	run(b)
	lbA, lbB := newTCPProxy(t, a.ts.Listener.Addr().String()), newTCPProxy(t, b.ts.Listener.Addr().String())
	f := newFaultFed(t, a, logs, results, func(h string) string {
		if h == "b" {
			return lbB.URL()
		}
		return lbA.URL()
	})
	ctx := context.Background()
	const rounds = 6
	s := f.createSession("two-replicas", func(m map[string]any) { m["rounds"] = rounds; m["min_clients"] = 3; m["round_timeout"] = "10m" })

	// While A lives, A alone drives the session, however often B looks for
	// sessions to take over.
	owners := map[string]int{}
	eventually(t, "round 1", func() bool {
		ss, err := b.db.FindSession(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		owners[ss.LeaseOwner]++
		return ss.Round >= 1
	})
	delete(owners, "")
	if len(owners) != 1 || owners["replica-a"] == 0 {
		t.Fatalf("lease owners while A lives: %v, want replica-a alone", owners)
	}

	// A dies: its background work stops, its connections drop, and its
	// address now leads to B.
	stopA()
	a.ts.CloseClientConnections()
	a.ts.Close()
	lbA.switchTo(b.ts.Listener.Addr().String())
	ss, _ := b.db.FindSession(ctx, s.ID)
	if ss.Status.Done() || ss.Round >= rounds {
		t.Fatalf("the session ended before A died: %s round %d", ss.Status, ss.Round)
	}
	diedAt := ss.Round
	// B takes over only once A's lease has expired by B's clock.
	clockB.Add(server.LeaseTTL + time.Second)
	eventually(t, "B to take the session over", func() bool {
		ss, err := b.db.FindSession(ctx, s.ID)
		return err == nil && ss.LeaseOwner == "replica-b"
	})
	// Had A only stalled, it could no longer queue work for the session.
	rn, err := a.db.FindRunner(ctx, "hospital-a")
	if err != nil {
		t.Fatal(err)
	}
	stray := &silo.Task{ID: "task_stray", Type: silo.TaskFit, Session: s.ID, Round: 99, Dataset: "hospital_a"}
	if err := a.db.CreateSessionTask(ctx, rn.ID, stray, "replica-a"); !errors.Is(err, sqlstore.ErrLeaseLost) {
		t.Fatalf("a task queued by the replica that lost the lease: %v", err)
	}
	apiB := client.New(b.ts.URL, f.mbToken)
	s = waitSessionEnd(t, apiB, s.ID, nil)
	if s.Status != silo.SessionCompleted || s.Round != rounds {
		t.Fatalf("session ended %s at round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	allRoundsComplete(t, apiB, s.ID, rounds)
	checkTasksOnce(t, b.db, s.ID, rounds)
	if twice := results.takenTwice(); len(twice) > 0 {
		t.Errorf("results taken twice: %v", twice)
	}
	t.Logf("A drove rounds 1–%d (%d lease checks), B took over and drove the rest", diedAt, owners["replica-a"])
}
