package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

func TestSessions(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		r := mustRunner(t, db, "runner-1")
		d := &sqlstore.StoredDataset{Dataset: silo.Dataset{Name: "hospital_a", URI: "file:///a.csv", Owner: "dc@example.org", Privacy: silo.DefaultPrivacyControls()}, RunnerID: r.ID}
		if err := db.CreateDataset(ctx, d); err != nil {
			t.Fatal(err)
		}
		s := &sqlstore.StoredSession{Session: silo.Session{ID: "sess_1", Name: "glm", Status: silo.SessionPending, CreatedBy: "mb@example.org",
			Config: silo.SessionConfig{Name: "glm", Rounds: 3, DifferentialPrivacy: &silo.DPConfig{Epsilon: 4, Delta: 1e-5}}},
			Clients: []sqlstore.SessionClient{{Dataset: "hospital_a", DatasetID: d.ID, Runner: "runner-1"}}}
		if err := db.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindSession(ctx, "sess_1")
		if err != nil || got.Rounds != 3 || got.Status != silo.SessionPending || len(got.Clients) != 1 {
			t.Fatalf("FindSession = %+v, %v", got, err)
		}
		_, err = db.FindSession(ctx, "nope")
		wantCode(t, err, silo.ENOTFOUND)

		// Completing a round writes metrics, state and ledger together.
		for round := 1; round <= 2; round++ {
			_, err = db.UpdateSession(ctx, "sess_1", &sqlstore.SessionRound{Round: round, Federated: silo.RoundMetrics{"loss": 1 / float64(round)},
				Clients: []silo.ClientMetrics{{Round: round, Dataset: "hospital_a", Values: map[string]float64{"n_train": 80, "test_loss": 0.5}}}},
				func(s *sqlstore.StoredSession) error {
					s.Status, s.Round, s.Params = silo.SessionRunning, round, []byte{byte(round)}
					s.Clients[0].Epsilon = float64(round)
					s.Latest = map[string]float64{"loss": 1 / float64(round)}
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
		}
		// A round cannot be recorded twice.
		_, err = db.UpdateSession(ctx, "sess_1", &sqlstore.SessionRound{Round: 2, Federated: silo.RoundMetrics{}}, func(*sqlstore.StoredSession) error { return nil })
		if err == nil {
			t.Fatal("round 2 recorded twice")
		}
		m, err := db.SessionMetrics(ctx, "sess_1")
		if err != nil || len(m.Federated) != 2 || m.Federated[1]["round"] != 2 || m.Federated[1]["loss"] != 0.5 || len(m.Clients) != 2 || m.Clients[0].Values["test_loss"] != 0.5 {
			t.Fatalf("SessionMetrics = %+v, %v", m, err)
		}
		got, _ = db.FindSession(ctx, "sess_1")
		if got.Round != 2 || got.Params[0] != 2 || got.EpsilonSpent["hospital_a"] != 2 {
			t.Fatalf("after rounds = %+v", got)
		}
		if ds, _ := db.FindDataset(ctx, "hospital_a"); ds.EpsilonSpent != 2 {
			t.Fatalf("dataset epsilon spent = %g, want 2 (one ledger entry, updated)", ds.EpsilonSpent)
		}
		if spent, _ := db.LedgerSpent(ctx, d.ID, "other"); len(spent) != 1 || spent[0] != 2 {
			t.Fatalf("LedgerSpent = %v", spent)
		}
		if spent, _ := db.LedgerSpent(ctx, d.ID, "sess_1"); len(spent) != 0 {
			t.Fatalf("LedgerSpent except itself = %v", spent)
		}

		// Leases: one owner at a time, taken over when expired.
		ok, err := db.AcquireSessionLease(ctx, "sess_1", "replica-a", c.now().Add(time.Minute))
		if err != nil || !ok {
			t.Fatalf("first lease: %v %v", ok, err)
		}
		if ok, _ := db.AcquireSessionLease(ctx, "sess_1", "replica-b", c.now().Add(time.Minute)); ok {
			t.Fatal("a second replica took a live lease")
		}
		if ok, _ := db.AcquireSessionLease(ctx, "sess_1", "replica-a", c.now().Add(2*time.Minute)); !ok {
			t.Fatal("the owner could not renew")
		}
		c.add(3 * time.Minute)
		if ok, _ := db.AcquireSessionLease(ctx, "sess_1", "replica-b", c.now().Add(time.Minute)); !ok {
			t.Fatal("an expired lease was not taken over")
		}
		active, _ := db.ListSessions(ctx, true)
		if len(active) != 1 {
			t.Fatalf("active sessions = %d", len(active))
		}
		db.UpdateSession(ctx, "sess_1", nil, func(s *sqlstore.StoredSession) error { s.Status = silo.SessionCompleted; return nil })
		if active, _ := db.ListSessions(ctx, true); len(active) != 0 {
			t.Fatal("a completed session is still active")
		}
		if got, _ := db.FindSession(ctx, "sess_1"); got.FinishedAt == nil {
			t.Fatal("finished_at not set")
		}
	})
}
