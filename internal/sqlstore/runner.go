package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/silofl/silo"
)

// StoredRunner is a runner as stored: the API view plus what never leaves the
// server (the sealed secrets and the token hash).
type StoredRunner struct {
	silo.Runner
	SealedSecrets []byte
	TokenHash     string
}

const runnerColumns = `id, name, provider, spec, sealed_secrets, status, status_reason, token_hash, created_by, created_at, updated_at, last_heartbeat, agent_version, agent_vcpu, agent_memory_mb, policy`

func scanRunner(s scanner) (*StoredRunner, error) {
	var r StoredRunner
	var spec string
	var created, updated int64
	var hb sql.NullInt64
	var provider, status, policy string
	if err := s.Scan(&r.ID, &r.Name, &provider, &spec, &r.SealedSecrets, &status, &r.StatusReason, &r.TokenHash, &r.CreatedBy,
		&created, &updated, &hb, &r.AgentVersion, &r.AgentVCPU, &r.AgentMemoryMB, &policy); err != nil {
		return nil, err
	}
	if policy != "" {
		r.Policy = &silo.RunnerPolicy{}
		if err := json.Unmarshal([]byte(policy), r.Policy); err != nil {
			return nil, fmt.Errorf("runner %d: decode policy: %w", r.ID, err)
		}
	}
	if err := json.Unmarshal([]byte(spec), &r.RunnerSpec); err != nil {
		return nil, fmt.Errorf("runner %d: decode spec: %w", r.ID, err)
	}
	r.Provider, r.Status = silo.Provider(provider), silo.RunnerStatus(status)
	r.CreatedAt, r.UpdatedAt, r.LastHeartbeat = fromMicros(created), fromMicros(updated), fromNullMicros(hb)
	return &r, nil
}

// specJSON encodes a spec without its secrets.
func specJSON(spec silo.RunnerSpec) (string, error) {
	for _, p := range spec.Secrets() {
		*p = ""
	}
	b, err := json.Marshal(spec)
	return string(b), err
}

// CreateRunner stores a new runner (spec, status, token hash and sealed
// secrets set by the caller). A live runner with the same name is refused.
func (db *DB) CreateRunner(ctx context.Context, r *StoredRunner) error {
	spec, err := specJSON(r.RunnerSpec)
	if err != nil {
		return err
	}
	now := db.now()
	r.CreatedAt, r.UpdatedAt = now, now
	err = db.wdb.QueryRowContext(ctx, db.q(`INSERT INTO runners (name, provider, spec, sealed_secrets, status, status_reason, token_hash, created_by, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		r.Name, string(r.Provider), spec, r.SealedSecrets, string(r.Status), r.StatusReason, r.TokenHash, r.CreatedBy, micros(now), micros(now)).Scan(&r.ID)
	if isUniqueViolation(err) {
		return silo.FieldErrorf("name", "a task runner named %q already exists: choose another name", r.Name)
	} else if err != nil {
		return fmt.Errorf("insert runner: %w", err)
	}
	return nil
}

// FindRunner returns the live (not deregistered) runner called name.
func (db *DB) FindRunner(ctx context.Context, name string) (*StoredRunner, error) {
	r, err := scanRunner(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+runnerColumns+` FROM runners WHERE name = ? AND status <> 'deregistered'`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no task runner named %q: see 'silo runners list'", name)
	}
	return r, err
}

// FindRunnerByTokenHash returns the live runner whose token hashes to hash.
//
// Every request of a runner asks, so on SQLite — one server, which makes
// every change to a runner through this store — the answer comes from a
// cache that UpdateRunner empties of the runner it changes before it
// returns: a replaced or deregistered token is refused at once. A cached
// runner's status, heartbeat and agent fields are as they were when it was
// cached; read the runner for those. On PostgreSQL, where another replica
// may replace the token, the runner is read every time.
func (db *DB) FindRunnerByTokenHash(ctx context.Context, hash string) (*StoredRunner, error) {
	cache := db.dialect == sqliteDialect && hash != ""
	var gen uint64
	if cache {
		if r, ok := db.auth.get(hash); ok {
			return r, nil
		}
		gen = db.auth.generation()
	}
	r, err := scanRunner(db.queryRowR(ctx, sqlRunnerByToken, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.EUNAUTHORIZED, "runner token refused: the runner was deregistered or its token was replaced; get a new token with 'silo runners token NAME'")
	} else if err != nil {
		return nil, err
	}
	if cache {
		db.auth.put(hash, r, gen)
	}
	return r, nil
}

var sqlRunnerByToken = prepared(`SELECT ` + runnerColumns + ` FROM runners WHERE token_hash = ? AND token_hash <> '' AND status <> 'deregistered'`)

// authCache holds runners by token hash. A runner read before a change
// and put after it could bring a replaced token back, so each change
// moves the generation on, and a put of a runner read under an older
// generation is dropped.
type authCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]*StoredRunner
}

// maxAuthCache bounds the cache; when full it starts again empty.
const maxAuthCache = 1 << 17

func (c *authCache) get(hash string) (*StoredRunner, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[hash]
	if !ok {
		return nil, false
	}
	cp := *r
	return &cp, true
}

func (c *authCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *authCache) put(hash string, r *StoredRunner, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= maxAuthCache {
		c.m = map[string]*StoredRunner{}
	}
	cp := *r
	c.m[hash] = &cp
}

// forget drops the runner with id.
func (c *authCache) forget(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for h, r := range c.m {
		if r.ID == id {
			delete(c.m, h)
		}
	}
}

// FindRunners returns the live runners called names, by name, in one
// query; a name with no live runner is missing from the map.
func (db *DB) FindRunners(ctx context.Context, names []string) (map[string]*StoredRunner, error) {
	out := make(map[string]*StoredRunner, len(names))
	rows, err := db.queryR(ctx, sqlRunnersByName, db.listArg(names))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRunner(rows)
		if err != nil {
			return nil, err
		}
		out[r.Name] = r
	}
	return out, rows.Err()
}

var sqlRunnersByName = prepared(`SELECT ` + runnerColumns + ` FROM runners WHERE IN_LIST(name) AND status <> 'deregistered'`)

// CountRunners counts the live runners, and those of them online.
func (db *DB) CountRunners(ctx context.Context) (total, online int, err error) {
	err = db.rdb.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'online' THEN 1 ELSE 0 END), 0) FROM runners WHERE status <> 'deregistered'`).Scan(&total, &online)
	return total, online, err
}

// RunnerQuery selects runners for ListRunners.
type RunnerQuery struct {
	// Deregistered includes the deregistered runners.
	Deregistered bool
	// After skips the runners whose name sorts before or equal to it: a
	// page's last name, for the next page.
	After string
	// Limit bounds the page (0: no bound). Runners sharing the last name
	// (deregistered ones) all come on the same page, which may then hold a
	// few more: a page never ends between two of them.
	Limit int
}

// ListRunners returns runners by name (then registration) as q selects.
func (db *DB) ListRunners(ctx context.Context, q RunnerQuery) ([]*StoredRunner, error) {
	query := `SELECT ` + runnerColumns + ` FROM runners WHERE name > ?`
	if !q.Deregistered {
		query += ` AND status <> 'deregistered'`
	}
	query += ` ORDER BY name, id`
	args := []any{q.After}
	if q.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	out, err := db.queryRunners(ctx, query, args...)
	if err != nil || q.Limit == 0 || len(out) < q.Limit || !q.Deregistered {
		return out, err
	}
	last := out[len(out)-1]
	more, err := db.queryRunners(ctx, `SELECT `+runnerColumns+` FROM runners WHERE name = ? AND id > ? ORDER BY id`, last.Name, last.ID)
	return append(out, more...), err
}

func (db *DB) queryRunners(ctx context.Context, query string, args ...any) ([]*StoredRunner, error) {
	rows, err := db.rdb.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*StoredRunner
	for rows.Next() {
		r, err := scanRunner(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// UpdateRunner loads the live runner called name in a transaction, lets
// change edit it, and writes spec, secrets, status and token back.
func (db *DB) UpdateRunner(ctx context.Context, name string, change func(r *StoredRunner) error) (*StoredRunner, error) {
	var out *StoredRunner
	defer func() {
		if out != nil {
			db.auth.forget(out.ID) // its token may have changed
		}
	}()
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		r, err := scanRunner(tx.QueryRowContext(ctx, db.q(`SELECT `+runnerColumns+` FROM runners WHERE name = ? AND status <> 'deregistered'`), name))
		if errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "no task runner named %q: see 'silo runners list'", name)
		} else if err != nil {
			return err
		}
		if err := change(r); err != nil {
			return err
		}
		spec, err := specJSON(r.RunnerSpec)
		if err != nil {
			return err
		}
		r.UpdatedAt = db.now()
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE runners SET spec = ?, sealed_secrets = ?, status = ?, status_reason = ?, token_hash = ?, updated_at = ? WHERE id = ?`),
			spec, r.SealedSecrets, string(r.Status), r.StatusReason, r.TokenHash, micros(r.UpdatedAt), r.ID); err != nil {
			return fmt.Errorf("update runner: %w", err)
		}
		if r.Status == silo.RunnerDeregistered {
			// Its queued and running work will never be done.
			if _, err := tx.ExecContext(ctx, db.q(`UPDATE tasks SET status = ?, error = ?, finished_at = ? WHERE runner_id = ? AND status IN (?, ?)`),
				silo.TaskCancelled, "the runner was deregistered", micros(r.UpdatedAt), r.ID, silo.TaskQueued, silo.TaskRunning); err != nil {
				return err
			}
		}
		out = r
		return nil
	})
	if err != nil {
		out = nil
	}
	return out, err
}

// RecordHeartbeat stores what an agent reported and marks its runner online.
// A runner that failed stays failed until its token is replaced, so a
// reason a person must act on is not hidden by a reconnecting agent.
func (db *DB) RecordHeartbeat(ctx context.Context, id int64, hb silo.Heartbeat) (*StoredRunner, error) {
	r, _, err := db.Heartbeat(ctx, id, hb)
	return r, err
}

// Heartbeat is RecordHeartbeat that also returns the status the runner had
// before.
func (db *DB) Heartbeat(ctx context.Context, id int64, hb silo.Heartbeat) (*StoredRunner, silo.RunnerStatus, error) {
	now := micros(db.now())
	policy := ""
	if hb.Policy != nil {
		b, err := json.Marshal(hb.Policy)
		if err != nil {
			return nil, "", err
		}
		policy = string(b)
	}
	var r *StoredRunner
	var was string
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		err := db.queryRowTx(ctx, tx, sqlRunnerStatus, id).Scan(&was)
		if errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "no runner %d", id)
		} else if err != nil {
			return err
		}
		if _, err := db.execTx(ctx, tx, sqlRecordHeartbeat, now, hb.AgentVersion, hb.VCPU, hb.MemoryMB, policy, now, id); err != nil {
			return fmt.Errorf("record heartbeat: %w", err)
		}
		r, err = scanRunner(db.queryRowTx(ctx, tx, sqlRunnerByID, id))
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return r, silo.RunnerStatus(was), nil
}

var (
	sqlRecordHeartbeat = prepared(`UPDATE runners SET last_heartbeat = ?, agent_version = ?, agent_vcpu = ?, agent_memory_mb = ?, policy = ?,
		status = CASE WHEN status IN ('registering', 'provisioning', 'offline', 'online') THEN 'online' ELSE status END,
		status_reason = CASE WHEN status IN ('registering', 'provisioning', 'offline', 'online') THEN '' ELSE status_reason END,
		updated_at = CASE WHEN status = 'online' THEN updated_at ELSE ? END
		WHERE id = ? AND status <> 'deregistered'`)
	sqlRunnerStatus = prepared(`SELECT status FROM runners WHERE id = ?`)
	sqlRunnerByID   = prepared(`SELECT ` + runnerColumns + ` FROM runners WHERE id = ?`)
)

// TouchRunners records when online runners last sent a heartbeat that
// changed nothing else — their status, agent and resources as stored — all
// in one transaction: heartbeats are most of a large control plane's
// writes, and a server coalesces them. It returns the runners among seen
// that are no longer online (another replica marked them offline, a user
// deregistered them): their next heartbeat must be recorded in full.
func (db *DB) TouchRunners(ctx context.Context, seen map[int64]time.Time) ([]int64, error) {
	if len(seen) == 0 {
		return nil, nil
	}
	ids := make([]int64, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	touched := map[int64]bool{}
	// One statement per touchBatch runners, all in one transaction.
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		clear(touched)
		for rest := ids; len(rest) > 0; {
			n := min(len(rest), touchBatch)
			var rows *sql.Rows
			var err error
			if db.dialect == postgresDialect {
				times := make([]int64, n)
				for i, id := range rest[:n] {
					times[i] = micros(seen[id])
				}
				rows, err = tx.QueryContext(ctx, sqlTouchPostgres, rest[:n], times)
			} else {
				pairs := make([][2]int64, n)
				for i, id := range rest[:n] {
					pairs[i] = [2]int64{id, micros(seen[id])}
				}
				b, _ := json.Marshal(pairs) // numbers: never fails
				rows, err = db.queryTx(ctx, tx, sqlTouchSQLite, string(b))
			}
			if err != nil {
				return fmt.Errorf("record heartbeats: %w", err)
			}
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					_ = rows.Close()
					return err
				}
				touched[id] = true
			}
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				return fmt.Errorf("record heartbeats: %w", err)
			}
			rest = rest[n:]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var gone []int64
	for _, id := range ids {
		if !touched[id] {
			gone = append(gone, id)
		}
	}
	return gone, nil
}

// touchBatch is how many runners' heartbeats one statement records.
const touchBatch = 1000

var (
	// A heartbeat never moves a runner's last one back (another replica may
	// have written a later one).
	sqlTouchSQLite = prepared(`UPDATE runners SET last_heartbeat = max(COALESCE(runners.last_heartbeat, 0), v.t)
		FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS t FROM json_each(?)) AS v
		WHERE runners.id = v.id AND runners.status = 'online' RETURNING runners.id`)
	sqlTouchPostgres = `UPDATE runners r SET last_heartbeat = GREATEST(COALESCE(r.last_heartbeat, 0), v.t)
		FROM unnest($1::bigint[], $2::bigint[]) AS v(id, t)
		WHERE r.id = v.id AND r.status = 'online' RETURNING r.id`
)

// MarkStaleRunnersOffline turns online runners whose last heartbeat is older
// than cutoff offline, and returns their names.
func (db *DB) MarkStaleRunnersOffline(ctx context.Context, cutoffMicros int64, reason string) ([]string, error) {
	rows, err := db.wdb.QueryContext(ctx, db.q(`UPDATE runners SET status = 'offline', status_reason = ?, updated_at = ?
		WHERE status = 'online' AND (last_heartbeat IS NULL OR last_heartbeat < ?) RETURNING name`), reason, micros(db.now()), cutoffMicros)
	if err != nil {
		return nil, fmt.Errorf("mark stale runners offline: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// RunnerState is what a session's driver checks of a runner before it sends
// a task or waits for one: whether anyone is there to answer.
type RunnerState struct {
	ID     int64
	Status silo.RunnerStatus
	Reason string
}

// RunnerStates returns the state of the named live runners, in one query; a
// name that is not registered (or was deregistered) is missing from the map.
func (db *DB) RunnerStates(ctx context.Context, names []string) (map[string]RunnerState, error) {
	out := make(map[string]RunnerState, len(names))
	if len(names) == 0 {
		return out, nil
	}
	rows, err := db.queryR(ctx, sqlRunnerStates, db.listArg(names))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var st RunnerState
		var name, status string
		if err := rows.Scan(&st.ID, &name, &status, &st.Reason); err != nil {
			return nil, err
		}
		st.Status = silo.RunnerStatus(status)
		out[name] = st
	}
	return out, rows.Err()
}

// A deregistered runner is missing from the map, as one never registered.
var sqlRunnerStates = prepared(`SELECT id, name, status, status_reason FROM runners WHERE IN_LIST(name) AND status <> 'deregistered'`)

// placeholders returns n comma-separated question marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}
