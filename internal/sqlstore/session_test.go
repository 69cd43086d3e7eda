package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/dp"
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
		reserve := []sqlstore.Reservation{{Dataset: "hospital_a", DatasetID: d.ID, Shared: []int64{d.ID}, Epsilon: 4, Delta: 1e-5,
			Check: func([]float64) error { return nil }}}
		if err := db.CreateSessionReserving(ctx, s, reserve); err != nil {
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
					s.Status, s.Round, s.State = silo.SessionRunning, round, []byte{byte(round)}
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
		if got.Round != 2 || got.State[0] != 2 || got.EpsilonSpent["hospital_a"] != 2 {
			t.Fatalf("after rounds = %+v", got)
		}
		if ds, _ := db.FindDataset(ctx, "hospital_a"); ds.EpsilonSpent != 2 {
			t.Fatalf("dataset epsilon spent = %g, want 2 (one ledger entry, updated)", ds.EpsilonSpent)
		}
		if r, _ := db.LedgerReserved(ctx, d.ID); r != 2 {
			t.Fatalf("dataset epsilon reserved = %g, want 2 (4 reserved, 2 spent)", r)
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

// TestSessionBlobs: blobs are stored once in chunks, read whole or streamed,
// replaced, dropped by name or prefix, and written with a session's advance
// in one transaction — or not at all.
func TestSessionBlobs(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		r := mustRunner(t, db, "runner-1")
		s := &sqlstore.StoredSession{Session: silo.Session{ID: "sess_b", Name: "b", Status: silo.SessionRunning, CreatedBy: "mb@example.org",
			Config: silo.SessionConfig{Name: "b", Rounds: 1}}, Clients: []sqlstore.SessionClient{{Dataset: "d", Runner: "runner-1"}}}
		if err := db.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		big := make([]byte, sqlstore.BlobChunk*2+123) // three chunks
		for i := range big {
			big[i] = byte(i * 7)
		}
		if err := db.PutSessionBlob(ctx, "sess_b", "model/final", big); err != nil {
			t.Fatal(err)
		}
		got, err := db.SessionBlob(ctx, "sess_b", "model/final")
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("SessionBlob: %d bytes, %v", len(got), err)
		}
		infos, err := db.SessionBlobInfos(ctx, "sess_b", []string{"model/final"})
		if err != nil || infos[0].Size != int64(len(big)) || infos[0].Digest != silo.Digest(big) {
			t.Fatalf("SessionBlobInfos = %+v, %v", infos, err)
		}
		var streamed bytes.Buffer
		if err := db.CopySessionBlob(ctx, "sess_b", "model/final", &streamed); err != nil || !bytes.Equal(streamed.Bytes(), big) {
			t.Fatalf("CopySessionBlob: %d bytes, %v", streamed.Len(), err)
		}
		// Replaced, not appended to.
		if err := db.PutSessionBlob(ctx, "sess_b", "model/final", []byte("small")); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.SessionBlob(ctx, "sess_b", "model/final"); string(got) != "small" {
			t.Fatalf("replaced blob = %q", got)
		}
		// Empty blobs exist.
		if err := db.PutSessionBlob(ctx, "sess_b", "empty", nil); err != nil {
			t.Fatal(err)
		}
		if got, err := db.SessionBlob(ctx, "sess_b", "empty"); err != nil || len(got) != 0 {
			t.Fatalf("empty blob = %q, %v", got, err)
		}
		// Streamed writes: whole, or refused when short of what was announced.
		info, err := db.WriteSessionBlob(ctx, "sess_b", "task/t1/params", bytes.NewReader(big), int64(len(big)))
		if err != nil || info.Digest != silo.Digest(big) {
			t.Fatalf("WriteSessionBlob = %+v, %v", info, err)
		}
		if got, _ := db.SessionBlob(ctx, "sess_b", "task/t1/params"); !bytes.Equal(got, big) {
			t.Fatal("streamed blob differs")
		}
		if _, err := db.WriteSessionBlob(ctx, "sess_b", "task/t2/params", bytes.NewReader(big[:10]), 11); silo.ErrorCode(err) != silo.EINVALID {
			t.Fatalf("short stream: %v", err)
		}
		if _, err := db.SessionBlob(ctx, "sess_b", "task/t2/params"); silo.ErrorCode(err) != silo.ENOTFOUND {
			t.Fatalf("a short stream left a blob: %v", err)
		}
		// A prefix drop takes only its own names ("task/t1/" is not "task/t10/").
		db.PutSessionBlob(ctx, "sess_b", "task/t10/params", []byte("x"))
		if err := db.DropSessionBlobs(ctx, "sess_b", "task/t1/*"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SessionBlob(ctx, "sess_b", "task/t1/params"); silo.ErrorCode(err) != silo.ENOTFOUND {
			t.Fatalf("dropped blob still there: %v", err)
		}
		if _, err := db.SessionBlob(ctx, "sess_b", "task/t10/params"); err != nil {
			t.Fatalf("a prefix drop took another task's blob: %v", err)
		}

		// An advance writes state, blobs and tasks together; a refused one
		// writes none of them.
		task := &silo.Task{ID: "t_adv", Type: silo.TaskFit, Session: "sess_b", Round: 1, Dataset: "d",
			Inputs: []silo.PartBlob{{Part: silo.PartParams, Blob: "model/final"}}, MaxResult: 99}
		_, err = db.AdvanceSession(ctx, "sess_b", &sqlstore.Advance{PutBlobs: map[string][]byte{"params/next": []byte("n")},
			Tasks: []sqlstore.NewTask{{RunnerID: r.ID, Task: task}}}, func(s *sqlstore.StoredSession) error { return errors.New("refused") })
		if err == nil {
			t.Fatal("a refused advance succeeded")
		}
		if _, err := db.SessionBlob(ctx, "sess_b", "params/next"); silo.ErrorCode(err) != silo.ENOTFOUND {
			t.Fatalf("a refused advance wrote its blob: %v", err)
		}
		if _, err := db.FindTask(ctx, "t_adv"); silo.ErrorCode(err) != silo.ENOTFOUND {
			t.Fatalf("a refused advance queued its task: %v", err)
		}
		_, err = db.AdvanceSession(ctx, "sess_b", &sqlstore.Advance{PutBlobs: map[string][]byte{"params/next": []byte("n")},
			Tasks: []sqlstore.NewTask{{RunnerID: r.ID, Task: task}}}, func(s *sqlstore.StoredSession) error { s.Phase = silo.TaskFit; return nil })
		if err != nil {
			t.Fatal(err)
		}
		got2, err := db.FindTask(ctx, "t_adv")
		if err != nil || got2.MaxResult != 99 || len(got2.Inputs) != 1 || got2.Inputs[0].Blob != "model/final" {
			t.Fatalf("queued task = %+v, %v", got2, err)
		}
		// A result's parts are stored with it.
		if _, err := db.ClaimTask(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.FinishTask(ctx, r.ID, "t_adv", silo.TaskResult{Status: silo.TaskSucceeded, Logs: []silo.LogLine{{Time: c.now(), Level: "INFO", Message: "done"}}},
			map[string][]byte{silo.PartParams: []byte("update")}); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.SessionBlob(ctx, "sess_b", sqlstore.ResultBlob("t_adv", silo.PartParams)); string(got) != "update" {
			t.Fatalf("result part = %q", got)
		}
		if lines, _ := db.ListTaskLogs(ctx, []string{"t_adv"}, 0, 10); len(lines) != 1 || lines[0].Message != "done" {
			t.Fatalf("result logs = %+v", lines)
		}
		// An ended session keeps only its models.
		if err := db.DropSessionBlobsExcept(ctx, "sess_b", "model/"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SessionBlob(ctx, "sess_b", "model/final"); err != nil {
			t.Fatalf("the model was dropped: %v", err)
		}
		for _, n := range []string{"params/next", "empty", "task/t10/params", sqlstore.ResultBlob("t_adv", silo.PartParams)} {
			if _, err := db.SessionBlob(ctx, "sess_b", n); silo.ErrorCode(err) != silo.ENOTFOUND {
				t.Fatalf("blob %s outlived the session: %v", n, err)
			}
		}
	})
}

// TestEpsilonReservedAtomically is the budget race: many sessions created at
// once against a small budget. Exactly the affordable number is accepted
// (each reserves its epsilon as it is created), and once they end the
// ledger holds what they spent, the rest of their reservations released.
func TestEpsilonReservedAtomically(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		r := mustRunner(t, db, "runner-1")
		var datasets []*sqlstore.StoredDataset
		for _, name := range []string{"bank_a", "bank_b"} {
			p := silo.DefaultPrivacyControls()
			p.EpsilonBudget, p.MaxEpsilonPerSession = 5, 5
			d := &sqlstore.StoredDataset{Dataset: silo.Dataset{Name: name, URI: "file:///" + name + ".csv", Owner: "dc@example.org", Privacy: p}, RunnerID: r.ID}
			if err := db.CreateDataset(ctx, d); err != nil {
				t.Fatal(err)
			}
			datasets = append(datasets, d)
		}
		session := func(i int) *sqlstore.StoredSession {
			// Half list the datasets the other way round: the locks must
			// not deadlock.
			clients := []sqlstore.SessionClient{{Dataset: "bank_a", DatasetID: datasets[0].ID}, {Dataset: "bank_b", DatasetID: datasets[1].ID}}
			if i%2 == 1 {
				clients[0], clients[1] = clients[1], clients[0]
			}
			return &sqlstore.StoredSession{Session: silo.Session{ID: fmt.Sprintf("sess_%d", i), Name: "dp", Status: silo.SessionPending, CreatedBy: "mb@example.org",
				Config: silo.SessionConfig{Name: "dp", Rounds: 1, DifferentialPrivacy: &silo.DPConfig{Epsilon: 2, Delta: 1e-6}}}, Clients: clients}
		}
		// Each session reserves 2 on each dataset, checked as the server
		// checks it (each dataset is its own data here).
		create := func(s *sqlstore.StoredSession) error {
			var reserve []sqlstore.Reservation
			for _, c := range s.Clients {
				reserve = append(reserve, sqlstore.Reservation{Dataset: c.Dataset, DatasetID: c.DatasetID, Shared: []int64{c.DatasetID}, Epsilon: 2, Delta: 1e-6,
					Check: func(charges []float64) error {
						if err := dp.CheckBudget(5, 5, charges, 2); err != nil {
							return silo.FieldErrorf("differential_privacy.epsilon", "dataset %s: %v", c.Dataset, err)
						}
						return nil
					}})
			}
			return db.CreateSessionReserving(ctx, s, reserve)
		}
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		// On PostgreSQL the race is made certain rather than likely: the
		// ledger is locked until every creation is under way and waiting, so
		// without the store's own locking they would all read it empty.
		release := holdLedger(t, db, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = create(session(i))
			}()
		}
		release()
		wg.Wait()
		var accepted []string
		for i, err := range errs {
			switch {
			case err == nil:
				accepted = append(accepted, fmt.Sprintf("sess_%d", i))
			case silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(silo.ErrorMessage(err), "budget"):
				t.Fatalf("session %d: %v, want accepted or refused over budget", i, err)
			}
		}
		if len(accepted) != 2 {
			t.Fatalf("%d sessions accepted (%v), want 2: each takes 2 of a budget of 5", len(accepted), accepted)
		}
		for _, d := range datasets {
			got, _ := db.FindDataset(ctx, d.Name)
			if r, _ := db.LedgerReserved(ctx, d.ID); got.EpsilonSpent != 0 || r != 4 {
				t.Fatalf("%s: spent %g reserved %g, want 0 and 4", d.Name, got.EpsilonSpent, r)
			}
		}
		// A session cannot be settled while it runs.
		wantCode(t, db.SettleSession(ctx, accepted[0]), silo.ECONFLICT)

		// One completes having spent 1.5 on each dataset; the other is
		// cancelled having spent nothing.
		if _, err := db.UpdateSession(ctx, accepted[0], nil, func(s *sqlstore.StoredSession) error {
			s.Status = silo.SessionCompleted
			for i := range s.Clients {
				s.Clients[i].Epsilon = 1.5
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.UpdateSession(ctx, accepted[1], nil, func(s *sqlstore.StoredSession) error { s.Status = silo.SessionCancelled; return nil }); err != nil {
			t.Fatal(err)
		}
		for _, id := range accepted {
			if err := db.SettleSession(ctx, id); err != nil { // settling again changes nothing
				t.Fatal(err)
			}
		}
		for _, d := range datasets {
			got, _ := db.FindDataset(ctx, d.Name)
			if r, _ := db.LedgerReserved(ctx, d.ID); got.EpsilonSpent != 1.5 || r != 0 {
				t.Fatalf("%s after the sessions ended: spent %g reserved %g, want 1.5 and 0", d.Name, got.EpsilonSpent, r)
			}
		}
		// What was released can be used: 3.5 remain, so 2 fit and then 1.5
		// more, but not 2 again.
		if err := create(session(100)); err != nil {
			t.Fatalf("a session within the released budget: %v", err)
		}
		err := create(session(101))
		wantCode(t, err, silo.EINVALID)
		var fe *silo.Error
		if !errors.As(err, &fe) || fe.Field != "differential_privacy.epsilon" || !strings.Contains(fe.Message, "bank_") {
			t.Fatalf("over-budget error = %#v, want a field error naming the dataset", err)
		}
		if _, err := db.FindSession(ctx, "sess_101"); silo.ErrorCode(err) != silo.ENOTFOUND {
			t.Fatalf("a refused session was stored: %v", err)
		}

		// Datasets on the same data share one budget: a reservation on one
		// is checked against what the others' ledgers hold too (bank_a has
		// 1.5 spent and 2 reserved).
		twin := &sqlstore.StoredDataset{Dataset: silo.Dataset{Name: "bank_a_again", URI: "file:///bank_a.csv", Owner: "dc2@example.org", Privacy: silo.DefaultPrivacyControls()}, RunnerID: r.ID}
		if err := db.CreateDataset(ctx, twin); err != nil {
			t.Fatal(err)
		}
		onTwin := func(id string, eps float64) error {
			s := &sqlstore.StoredSession{Session: silo.Session{ID: id, Name: "dp", Status: silo.SessionPending, CreatedBy: "mb@example.org",
				Config: silo.SessionConfig{Name: "dp", Rounds: 1, DifferentialPrivacy: &silo.DPConfig{Epsilon: eps, Delta: 1e-6}}},
				Clients: []sqlstore.SessionClient{{Dataset: twin.Name, DatasetID: twin.ID}}}
			return db.CreateSessionReserving(ctx, s, []sqlstore.Reservation{{Dataset: twin.Name, DatasetID: twin.ID, Shared: []int64{twin.ID, datasets[0].ID}, Epsilon: eps, Delta: 1e-6,
				Check: func(charges []float64) error { return dp.CheckBudget(5, 5, charges, eps) }}})
		}
		if err := onTwin("sess_twin_1", 1.4); err != nil {
			t.Fatalf("1.4 more on the same data (3.5 of 5 taken): %v", err)
		}
		if err := onTwin("sess_twin_2", 0.2); err == nil {
			t.Fatal("a reservation on the same data went past the shared budget")
		}
	})
}

// holdLedger, on PostgreSQL, locks the privacy ledger from another
// connection; the returned function waits until n transactions are blocked
// on a lock, then lets them go. On SQLite it does nothing: writers there run
// one at a time whatever they do.
func holdLedger(t *testing.T, db *sqlstore.DB, n int) (release func()) {
	t.Helper()
	if db.Dialect() != "postgres" {
		return func() {}
	}
	ctx := context.Background()
	conn, err := sql.Open("pgx", db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `LOCK TABLE privacy_ledger IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			var waiting int
			if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d transactions reached the ledger", waiting, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
	}
}
