package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

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
func (db *DB) FindRunnerByTokenHash(ctx context.Context, hash string) (*StoredRunner, error) {
	r, err := scanRunner(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+runnerColumns+` FROM runners WHERE token_hash = ? AND token_hash <> '' AND status <> 'deregistered'`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.EUNAUTHORIZED, "runner token refused: the runner was deregistered or its token was replaced; get a new token with 'silo runners token NAME'")
	}
	return r, err
}

// ListRunners returns the live runners by name; with deregistered true, the
// deregistered ones too.
func (db *DB) ListRunners(ctx context.Context, deregistered bool) ([]*StoredRunner, error) {
	query := `SELECT ` + runnerColumns + ` FROM runners`
	if !deregistered {
		query += ` WHERE status <> 'deregistered'`
	}
	rows, err := db.rdb.QueryContext(ctx, query+` ORDER BY name, id`)
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
	return out, err
}

// RecordHeartbeat stores what an agent reported and marks its runner online.
// A runner that failed stays failed until its token is replaced, so a
// reason a person must act on is not hidden by a reconnecting agent.
func (db *DB) RecordHeartbeat(ctx context.Context, id int64, hb silo.Heartbeat) (*StoredRunner, error) {
	now := micros(db.now())
	policy := ""
	if hb.Policy != nil {
		b, err := json.Marshal(hb.Policy)
		if err != nil {
			return nil, err
		}
		policy = string(b)
	}
	_, err := db.wdb.ExecContext(ctx, db.q(`UPDATE runners SET last_heartbeat = ?, agent_version = ?, agent_vcpu = ?, agent_memory_mb = ?, policy = ?,
		status = CASE WHEN status IN ('registering', 'provisioning', 'offline', 'online') THEN 'online' ELSE status END,
		status_reason = CASE WHEN status IN ('registering', 'provisioning', 'offline', 'online') THEN '' ELSE status_reason END,
		updated_at = CASE WHEN status = 'online' THEN updated_at ELSE ? END
		WHERE id = ? AND status <> 'deregistered'`),
		now, hb.AgentVersion, hb.VCPU, hb.MemoryMB, policy, now, id)
	if err != nil {
		return nil, fmt.Errorf("record heartbeat: %w", err)
	}
	r, err := scanRunner(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+runnerColumns+` FROM runners WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no runner %d", id)
	}
	return r, err
}

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

// RunnerStates returns the state of the named runners, in one query; a name
// that is not registered is missing from the map.
func (db *DB) RunnerStates(ctx context.Context, names []string) (map[string]RunnerState, error) {
	out := make(map[string]RunnerState, len(names))
	if len(names) == 0 {
		return out, nil
	}
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	rows, err := db.rdb.QueryContext(ctx, db.q(`SELECT id, name, status, status_reason FROM runners WHERE name IN (`+placeholders(len(names))+`)`), args...)
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

// placeholders returns n comma-separated question marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}
