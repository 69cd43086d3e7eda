package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/silofl/silo"
)

// SessionClient is one dataset taking part in a session: what the driver
// needs whatever the session's kind. A kind keeps anything else about its
// clients in its own state.
type SessionClient struct {
	Dataset   string `json:"dataset"`
	DatasetID int64  `json:"dataset_id"`
	Runner    string `json:"runner"`
	// Epsilon is what the session has spent on the dataset so far: its
	// entry in the dataset's privacy ledger.
	Epsilon float64 `json:"epsilon,omitempty"`
	// Misses counts the steps the client was left out of (offline, failed,
	// late, or its answer refused); LastError says why the last time.
	Misses    int    `json:"misses,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// StoredSession is a session with the state its driver persists: the step
// it is in (Phase, PhaseRound, since PhaseStartedAt, closing with at least
// PhaseQuorum answers), the kind's own State, its clients and its lease.
type StoredSession struct {
	silo.Session
	PhaseRound     int
	PhaseQuorum    int
	PhaseStartedAt time.Time
	State          []byte
	Clients        []SessionClient
	LeaseOwner     string
	LeaseUntil     time.Time
}

const sessionColumns = `id, name, status, status_reason, config, created_by, created_at, updated_at, finished_at, round, phase, phase_round, phase_quorum, phase_started_at,
	state, clients, latest, best_round, lease_owner, lease_until`

func scanSession(s scanner) (*StoredSession, error) {
	var ss StoredSession
	var status, config, clients, latest string
	var created, updated, phaseStarted, leaseUntil int64
	var finished sql.NullInt64
	if err := s.Scan(&ss.ID, &ss.Name, &status, &ss.StatusReason, &config, &ss.CreatedBy, &created, &updated, &finished, &ss.Round, &ss.Phase,
		&ss.PhaseRound, &ss.PhaseQuorum, &phaseStarted, &ss.State, &clients, &latest, &ss.BestRound, &ss.LeaseOwner, &leaseUntil); err != nil {
		return nil, err
	}
	ss.Status = silo.SessionStatus(status)
	if err := json.Unmarshal([]byte(config), &ss.Config); err != nil {
		return nil, fmt.Errorf("session %s config: %w", ss.ID, err)
	}
	if err := json.Unmarshal([]byte(clients), &ss.Clients); err != nil {
		return nil, fmt.Errorf("session %s clients: %w", ss.ID, err)
	}
	if err := json.Unmarshal([]byte(latest), &ss.Latest); err != nil {
		return nil, fmt.Errorf("session %s latest: %w", ss.ID, err)
	}
	ss.Rounds = ss.Config.Rounds
	ss.CreatedAt, ss.UpdatedAt, ss.FinishedAt = fromMicros(created), fromMicros(updated), fromNullMicros(finished)
	ss.PhaseStartedAt, ss.LeaseUntil = fromMicros(phaseStarted), fromMicros(leaseUntil)
	for _, c := range ss.Clients {
		if c.Epsilon > 0 {
			if ss.EpsilonSpent == nil {
				ss.EpsilonSpent = map[string]float64{}
			}
			ss.EpsilonSpent[c.Dataset] = c.Epsilon
		}
	}
	return &ss, nil
}

// CreateSession stores a new session that reserves no epsilon.
func (db *DB) CreateSession(ctx context.Context, s *StoredSession) error {
	return db.CreateSessionReserving(ctx, s, nil)
}

// Reservation is the epsilon a differentially private session reserves on
// one of its datasets: Epsilon (with Delta) entered in DatasetID's ledger,
// if Check accepts it given what the ledger entries of every dataset in
// Shared already take from the budget (the datasets on the same data, which
// share one budget; DatasetID among them). Check sees them read under lock.
type Reservation struct {
	Dataset        string
	DatasetID      int64
	Shared         []int64
	Epsilon, Delta float64
	Check          func(charges []float64) error
}

// CreateSessionReserving stores a new session and enters its reservations
// in one transaction, each checked against the ledger as it stands with
// the datasets' rows locked (PostgreSQL; SQLite's writers run one at a
// time), so sessions created at once can never together take more than a
// budget holds: a check cannot be split from its reservation by another
// session's. A refused check's error is returned and nothing is stored.
// The reservations are settled when the session ends (see SettleSession).
func (db *DB) CreateSessionReserving(ctx context.Context, s *StoredSession, reserve []Reservation) error {
	config, err := json.Marshal(s.Config)
	if err != nil {
		return err
	}
	clients, err := json.Marshal(s.Clients)
	if err != nil {
		return err
	}
	return db.tx(ctx, 0, func(tx *sql.Tx) error {
		now := db.now()
		if err := db.lockDatasets(ctx, tx, reserve); err != nil {
			return err
		}
		for _, r := range reserve {
			charges, err := db.ledgerCharges(ctx, tx, r.Shared)
			if err != nil {
				return err
			}
			if err := r.Check(charges); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO privacy_ledger (dataset_id, session_id, epsilon, reserved, delta, recorded_at) VALUES (?, ?, 0, ?, ?, ?)`),
				r.DatasetID, s.ID, r.Epsilon, r.Delta, micros(now)); err != nil {
				return fmt.Errorf("reserve epsilon on %s: %w", r.Dataset, err)
			}
		}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO sessions (id, name, status, status_reason, config, created_by, created_at, updated_at, clients) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			s.ID, s.Name, string(s.Status), s.StatusReason, string(config), s.CreatedBy, micros(now), micros(now), string(clients)); err != nil {
			return fmt.Errorf("insert session: %w", err)
		}
		s.CreatedAt, s.UpdatedAt = now, now
		return nil
	})
}

// lockDatasets locks, on PostgreSQL, the rows of every dataset whose budget
// the reservations read, in id order so that two sessions cannot deadlock;
// a reservation's own dataset must still be registered.
func (db *DB) lockDatasets(ctx context.Context, tx *sql.Tx, reserve []Reservation) error {
	var ids []int64
	for _, r := range reserve {
		ids = append(ids, r.DatasetID)
		ids = append(ids, r.Shared...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if db.dialect == postgresDialect {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, db.q(`SELECT id FROM datasets WHERE id = ? FOR UPDATE`), id); err != nil {
				return fmt.Errorf("lock dataset %d: %w", id, err)
			}
		}
	}
	for _, r := range reserve {
		var live int
		if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM datasets WHERE id = ? AND deregistered_at IS NULL`), r.DatasetID).Scan(&live); err != nil {
			return err
		}
		if live == 0 {
			return silo.FieldErrorf("datasets", "dataset %s was deregistered: see 'silo datasets list'", r.Dataset)
		}
	}
	return nil
}

// ledgerCharge is what a ledger entry takes from a budget: what its session
// reserved while it runs, or what it spent if that is more (an ended
// session's reservation is zero).
const ledgerCharge = `CASE WHEN reserved > epsilon THEN reserved ELSE epsilon END`

// ledgerCharges returns what each ledger entry of the datasets takes from
// their budget.
func (db *DB) ledgerCharges(ctx context.Context, tx *sql.Tx, datasetIDs []int64) ([]float64, error) {
	var out []float64
	for _, id := range datasetIDs {
		rows, err := tx.QueryContext(ctx, db.q(`SELECT `+ledgerCharge+` FROM privacy_ledger WHERE dataset_id = ? ORDER BY id`), id)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var e float64
			if err := rows.Scan(&e); err != nil {
				_ = rows.Close()
				return nil, err
			}
			out = append(out, e)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// LedgerSpent returns the epsilon each other session has spent on a dataset.
func (db *DB) LedgerSpent(ctx context.Context, datasetID int64, exceptSession string) ([]float64, error) {
	rows, err := db.rdb.QueryContext(ctx, db.q(`SELECT epsilon FROM privacy_ledger WHERE dataset_id = ? AND session_id <> ? ORDER BY id`), datasetID, exceptSession)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []float64
	for rows.Next() {
		var e float64
		if err := rows.Scan(&e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// LedgerReserved returns the epsilon running sessions have reserved on a
// dataset and not spent yet.
func (db *DB) LedgerReserved(ctx context.Context, datasetID int64) (float64, error) {
	var r float64
	err := db.rdb.QueryRowContext(ctx, db.q(`SELECT COALESCE(SUM(CASE WHEN reserved > epsilon THEN reserved - epsilon ELSE 0 END), 0) FROM privacy_ledger WHERE dataset_id = ?`), datasetID).Scan(&r)
	return r, err
}

// SettleSession turns an ended session's reservations into what it spent:
// the epsilon it did not spend goes back to its datasets' budgets, and a
// dataset it spent nothing on keeps no entry. AdvanceSession (UpdateSession)
// settles every session it ends (completed, failed or cancelled) in the same
// transaction, so a crash cannot leave an ended session holding budget;
// anything that ends a session another way must call this. It refuses a
// session that has not ended, and settling twice changes nothing.
func (db *DB) SettleSession(ctx context.Context, id string) error {
	return db.tx(ctx, 0, func(tx *sql.Tx) error {
		var status string
		err := tx.QueryRowContext(ctx, db.q(`SELECT status FROM sessions WHERE id = ?`), id).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "no session %s", id)
		} else if err != nil {
			return err
		}
		if !silo.SessionStatus(status).Done() {
			return silo.Errorf(silo.ECONFLICT, "session %s is %s: its epsilon is settled when it ends", id, status)
		}
		return db.settle(ctx, tx, id)
	})
}

func (db *DB) settle(ctx context.Context, tx *sql.Tx, id string) error {
	if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM privacy_ledger WHERE session_id = ? AND epsilon = 0`), id); err != nil {
		return fmt.Errorf("settle session %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, db.q(`UPDATE privacy_ledger SET reserved = 0 WHERE session_id = ?`), id); err != nil {
		return fmt.Errorf("settle session %s: %w", id, err)
	}
	return nil
}

// FindSession returns the session with id.
func (db *DB) FindSession(ctx context.Context, id string) (*StoredSession, error) {
	s, err := scanSession(db.queryRowR(ctx, sqlSessionByID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no session %s: see 'silo sessions list'", id)
	}
	return s, err
}

var (
	sqlInsertRound   = prepared(`INSERT INTO session_rounds (session_id, round, metrics, recorded_at) VALUES (?, ?, ?, ?)`)
	sqlSessionByID   = prepared(`SELECT ` + sessionColumns + ` FROM sessions WHERE id = ?`)
	sqlSessionStamp  = prepared(`SELECT status, status_reason, phase, phase_round, round, updated_at, lease_owner FROM sessions WHERE id = ?`)
	sqlUpdateSession = prepared(`UPDATE sessions SET status = ?, status_reason = ?, updated_at = ?, finished_at = ?, round = ?, phase = ?, phase_round = ?,
		phase_quorum = ?, phase_started_at = ?, state = ?, clients = ?, latest = ?, best_round = ?, lease_owner = ?, lease_until = ? WHERE id = ?`)
)

// SessionStamp is a few columns that change whenever a session is
// written (but for its lease's renewal): a driver that holds the session as
// it last wrote it reads the stamp to know whether anyone else wrote since
// (a user cancelling, another replica taking over), and reads the whole
// session only then. Its time is in microseconds, as stored.
type SessionStamp struct {
	Status       silo.SessionStatus
	StatusReason string
	Phase        string
	PhaseRound   int
	Round        int
	UpdatedAt    int64
	LeaseOwner   string
}

// Stamp is the session's stamp as this copy of it holds it.
func (s *StoredSession) Stamp() SessionStamp {
	return SessionStamp{Status: s.Status, StatusReason: s.StatusReason, Phase: s.Phase, PhaseRound: s.PhaseRound, Round: s.Round,
		UpdatedAt: micros(s.UpdatedAt), LeaseOwner: s.LeaseOwner}
}

// FindSessionStamp returns the stamp of the session with id.
func (db *DB) FindSessionStamp(ctx context.Context, id string) (SessionStamp, error) {
	var st SessionStamp
	var status string
	err := db.queryRowR(ctx, sqlSessionStamp, id).Scan(&status, &st.StatusReason, &st.Phase, &st.PhaseRound, &st.Round, &st.UpdatedAt, &st.LeaseOwner)
	if errors.Is(err, sql.ErrNoRows) {
		return st, silo.Errorf(silo.ENOTFOUND, "no session %s: see 'silo sessions list'", id)
	}
	st.Status = silo.SessionStatus(status)
	return st, err
}

// ListSessions returns sessions, newest first; with active, only those not
// yet done.
func (db *DB) ListSessions(ctx context.Context, active bool) ([]*StoredSession, error) {
	query := `SELECT ` + sessionColumns + ` FROM sessions`
	if active {
		query += ` WHERE status IN ('pending', 'running')`
	}
	rows, err := db.rdb.QueryContext(ctx, query+` ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*StoredSession
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// SessionRound is what completing a round writes, all at once.
type SessionRound struct {
	Round     int
	Federated silo.RoundMetrics
	Clients   []silo.ClientMetrics
}

// Advance is what one step of a session's driver writes together with the
// session itself, in one transaction: a completed round's metrics, the
// session blobs it creates or drops, and the next step's tasks. A crash so
// never leaves a round's metrics without its state, its ledger entries or
// the tasks that carry it on.
type Advance struct {
	Round *SessionRound
	// PutBlobs replaces or creates session blobs.
	PutBlobs map[string][]byte
	// DropBlobs removes session blobs by name; a name ending in "*" drops
	// every blob whose name starts with the rest.
	DropBlobs []string
	// Tasks are queued for their runners.
	Tasks []NewTask
	// Base, when set, is the session as the caller last read or wrote it.
	// While its stamp is still the stored one, change gets a copy of it and
	// the whole row is not read again.
	Base *StoredSession
}

// NewTask is a task to queue for the runner with RunnerID. A Claimed one
// is written running, claimed already: its runner's long-poll waits on this
// server and takes it from the driver's hands (UnclaimTask puts it back in
// the queue if the poll had gone).
type NewTask struct {
	RunnerID int64
	Task     *silo.Task
	Claimed  bool
}

// UpdateSession loads a session in a transaction, lets change edit it, and
// writes it back together with a completed round's metrics (if round is not
// nil) and the privacy ledger entries of its clients.
func (db *DB) UpdateSession(ctx context.Context, id string, round *SessionRound, change func(s *StoredSession) error) (*StoredSession, error) {
	return db.AdvanceSession(ctx, id, &Advance{Round: round}, change)
}

// AdvanceSession is UpdateSession that also writes adv's blobs and tasks in
// the same transaction. change runs after the session is read and locked,
// so it can refuse a write (a session that ended meanwhile, a lost lease)
// and nothing is written.
func (db *DB) AdvanceSession(ctx context.Context, id string, adv *Advance, change func(s *StoredSession) error) (*StoredSession, error) {
	var out *StoredSession
	if adv == nil {
		adv = &Advance{}
	}
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		s, err := db.lockSession(ctx, tx, id, adv.Base)
		if errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "no session %s", id)
		} else if err != nil {
			return err
		}
		if err := change(s); err != nil {
			return err
		}
		clients, err := json.Marshal(s.Clients)
		if err != nil {
			return err
		}
		latest, err := json.Marshal(s.Latest)
		if err != nil {
			return err
		}
		s.UpdatedAt = db.now()
		if s.Status.Done() && s.FinishedAt == nil {
			t := s.UpdatedAt
			s.FinishedAt = &t
		}
		if _, err := db.execTx(ctx, tx, sqlUpdateSession,
			string(s.Status), s.StatusReason, micros(s.UpdatedAt), nullMicros(s.FinishedAt), s.Round, s.Phase, s.PhaseRound,
			s.PhaseQuorum, micros(s.PhaseStartedAt), s.State, string(clients), string(latest), s.BestRound, s.LeaseOwner, micros(s.LeaseUntil), id); err != nil {
			return fmt.Errorf("update session: %w", err)
		}
		if adv.Round != nil {
			if err := db.recordRound(ctx, tx, id, adv.Round, s.UpdatedAt); err != nil {
				return err
			}
		}
		if err := db.recordLedger(ctx, tx, s); err != nil {
			return err
		}
		if s.Status.Done() {
			if err := db.settle(ctx, tx, id); err != nil {
				return err
			}
		}
		if len(adv.DropBlobs) > 0 {
			if err := db.dropBlobs(ctx, tx, id, adv.DropBlobs); err != nil {
				return err
			}
		}
		for name, data := range adv.PutBlobs {
			if err := db.putBlob(ctx, tx, id, name, data); err != nil {
				return err
			}
		}
		if err := db.insertTasks(ctx, tx, adv.Tasks); err != nil {
			return err
		}
		out = s
		return nil
	})
	return out, err
}

// lockSession reads a session in a write transaction, for a
// read-modify-write: a copy of base when the stored stamp is still base's,
// the stored row otherwise. On PostgreSQL the row is locked: without it a
// concurrent writer (a user cancelling, another replica taking the lease)
// would be overwritten by this transaction's stale copy.
func (db *DB) lockSession(ctx context.Context, tx *sql.Tx, id string, base *StoredSession) (*StoredSession, error) {
	lock := ""
	if db.dialect == postgresDialect {
		lock = ` FOR UPDATE`
	}
	if base != nil {
		var st SessionStamp
		var status string
		err := db.queryRowTx(ctx, tx, sqlSessionStamp+lock, id).Scan(&status, &st.StatusReason, &st.Phase, &st.PhaseRound, &st.Round, &st.UpdatedAt, &st.LeaseOwner)
		if err != nil {
			return nil, err
		}
		st.Status = silo.SessionStatus(status)
		if st == base.Stamp() {
			cp := *base
			cp.Clients = slices.Clone(base.Clients)
			return &cp, nil
		}
	}
	return scanSession(db.queryRowTx(ctx, tx, sqlSessionByID+lock, id))
}

func (db *DB) recordRound(ctx context.Context, tx *sql.Tx, id string, round *SessionRound, at time.Time) error {
	m, err := json.Marshal(round.Federated)
	if err != nil {
		return err
	}
	if _, err := db.execTx(ctx, tx, sqlInsertRound,
		id, round.Round, string(m), micros(at)); err != nil {
		return fmt.Errorf("record round %d: %w", round.Round, err)
	}
	for clients := round.Clients; len(clients) > 0; {
		n := min(len(clients), 200)
		args := make([]any, 0, 4*n)
		for _, c := range clients[:n] {
			cm, err := json.Marshal(c.Values)
			if err != nil {
				return err
			}
			args = append(args, id, round.Round, c.Dataset, string(cm))
		}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO session_client_metrics (session_id, round, dataset, metrics) VALUES `+strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?),", n), ",")), args...); err != nil {
			return fmt.Errorf("record client metrics: %w", err)
		}
		clients = clients[n:]
	}
	return nil
}

// recordLedger writes one privacy ledger entry per dataset the session has
// spent epsilon on, holding what it has spent so far: the ledger never lags
// the rounds that spent it.
func (db *DB) recordLedger(ctx context.Context, tx *sql.Tx, s *StoredSession) error {
	delta := 0.0
	if dpc := s.Config.DifferentialPrivacy; dpc != nil {
		delta = dpc.Delta
	}
	for _, c := range s.Clients {
		if c.Epsilon <= 0 {
			continue
		}
		res, err := tx.ExecContext(ctx, db.q(`UPDATE privacy_ledger SET epsilon = ?, delta = ?, recorded_at = ? WHERE dataset_id = ? AND session_id = ?`),
			c.Epsilon, delta, micros(s.UpdatedAt), c.DatasetID, s.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO privacy_ledger (dataset_id, session_id, epsilon, delta, recorded_at) VALUES (?, ?, ?, ?, ?)`),
				c.DatasetID, s.ID, c.Epsilon, delta, micros(s.UpdatedAt)); err != nil {
				return fmt.Errorf("privacy ledger: %w", err)
			}
		}
	}
	return nil
}

// SessionMetrics returns every recorded round's metrics.
func (db *DB) SessionMetrics(ctx context.Context, id string) (*silo.SessionMetrics, error) {
	out := &silo.SessionMetrics{Federated: []map[string]float64{}, Clients: []silo.ClientMetrics{}}
	rows, err := db.rdb.QueryContext(ctx, db.q(`SELECT round, metrics FROM session_rounds WHERE session_id = ? ORDER BY round`), id)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var round int
		var m string
		if err := rows.Scan(&round, &m); err != nil {
			_ = rows.Close()
			return nil, err
		}
		vals := map[string]float64{}
		if err := json.Unmarshal([]byte(m), &vals); err != nil {
			_ = rows.Close()
			return nil, err
		}
		vals["round"] = float64(round)
		out.Federated = append(out.Federated, vals)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil { // a connection lost mid-way is not the end of the rounds
		return nil, err
	}
	rows, err = db.rdb.QueryContext(ctx, db.q(`SELECT round, dataset, metrics FROM session_client_metrics WHERE session_id = ? ORDER BY round, dataset`), id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c silo.ClientMetrics
		var m string
		if err := rows.Scan(&c.Round, &c.Dataset, &m); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(m), &c.Values); err != nil {
			return nil, err
		}
		out.Clients = append(out.Clients, c)
	}
	return out, rows.Err()
}

// ErrLeaseLost refuses a write for a session whose lease another replica
// holds now.
var ErrLeaseLost = errors.New("another replica holds the session's lease")

// AcquireSessionLease makes owner the driver of session id until until,
// if no other live owner holds it. It reports whether owner holds it now.
func (db *DB) AcquireSessionLease(ctx context.Context, id, owner string, until time.Time) (bool, error) {
	res, err := db.wdb.ExecContext(ctx, db.q(`UPDATE sessions SET lease_owner = ?, lease_until = ? WHERE id = ? AND (lease_owner = ? OR lease_owner = '' OR lease_until < ?)`),
		owner, micros(until), id, owner, micros(db.now()))
	if err != nil {
		return false, fmt.Errorf("session lease: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}
