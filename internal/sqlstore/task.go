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

const taskColumns = `t.id, r.name, t.type, t.payload, t.vcpu, t.memory_mb, t.status, t.error, t.output, t.created_at, t.started_at, t.finished_at, t.session_id, t.round, t.dataset,
	t.parts, t.max_result`

func scanTask(s scanner) (*silo.Task, error) {
	var t silo.Task
	var payload, output, parts string
	var created int64
	var started, finished sql.NullInt64
	if err := s.Scan(&t.ID, &t.Runner, &t.Type, &payload, &t.VCPU, &t.MemoryMB, &t.Status, &t.Error, &output, &created, &started, &finished, &t.Session, &t.Round, &t.Dataset,
		&parts, &t.MaxResult); err != nil {
		return nil, err
	}
	if parts != "" {
		if err := json.Unmarshal([]byte(parts), &t.Inputs); err != nil {
			return nil, fmt.Errorf("task %s parts: %w", t.ID, err)
		}
	}
	if payload != "" {
		t.Payload = []byte(payload)
	}
	if output != "" {
		t.Output = []byte(output)
	}
	t.CreatedAt, t.StartedAt, t.FinishedAt = fromMicros(created), fromNullMicros(started), fromNullMicros(finished)
	return &t, nil
}

// CreateTask queues t (ID, Type, Payload, VCPU, MemoryMB set by the caller)
// for the runner with id runnerID.
func (db *DB) CreateTask(ctx context.Context, runnerID int64, t *silo.Task) error {
	return db.insertTask(ctx, db.wdb, runnerID, t)
}

// CreateSessionTask queues a task of session t.Session, only while owner
// holds the session's lease (ErrLeaseLost otherwise): a replica that stalled
// past its lease must not queue a second task beside the new owner's.
func (db *DB) CreateSessionTask(ctx context.Context, runnerID int64, t *silo.Task, owner string) error {
	return db.tx(ctx, 0, func(tx *sql.Tx) error {
		query := `SELECT lease_owner FROM sessions WHERE id = ?`
		if db.dialect == postgresDialect {
			query += ` FOR SHARE` // a lease taken meanwhile waits for this insert
		}
		var holder string
		if err := tx.QueryRowContext(ctx, db.q(query), t.Session).Scan(&holder); errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "no session %s", t.Session)
		} else if err != nil {
			return err
		}
		if holder != owner {
			return ErrLeaseLost
		}
		return db.insertTask(ctx, tx, runnerID, t)
	})
}

func (db *DB) insertTask(ctx context.Context, ex interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, runnerID int64, t *silo.Task) error {
	t.Status, t.CreatedAt = silo.TaskQueued, db.now()
	parts := ""
	if len(t.Inputs) > 0 {
		b, err := json.Marshal(t.Inputs)
		if err != nil {
			return err
		}
		parts = string(b)
	}
	_, err := ex.ExecContext(ctx, db.q(`INSERT INTO tasks (id, runner_id, type, payload, vcpu, memory_mb, status, created_at, session_id, round, dataset, parts, max_result)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		t.ID, runnerID, t.Type, string(t.Payload), t.VCPU, t.MemoryMB, t.Status, micros(t.CreatedAt), t.Session, t.Round, t.Dataset, parts, t.MaxResult)
	if err != nil {
		return fmt.Errorf("insert task: %w", err)
	}
	return nil
}

// ClaimTask marks the runner's oldest queued task running and returns it, or
// returns nil when there is none. Concurrent claims never get the same task.
// The task is read in the claiming transaction: a read after it could fail
// (a dropped connection) and leave the task running with no runner knowing
// it until the runner's heartbeats show it lost.
func (db *DB) ClaimTask(ctx context.Context, runnerID int64) (*silo.Task, error) {
	var t *silo.Task
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		query := `SELECT id FROM tasks WHERE runner_id = ? AND status = 'queued' ORDER BY created_at, id LIMIT 1`
		if db.dialect == postgresDialect {
			query += ` FOR UPDATE SKIP LOCKED`
		}
		var id string
		err := tx.QueryRowContext(ctx, db.q(query), runnerID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		} else if err != nil {
			return err
		}
		if _, err = tx.ExecContext(ctx, db.q(`UPDATE tasks SET status = 'running', started_at = ? WHERE id = ?`), micros(db.now()), id); err != nil {
			return err
		}
		t, err = db.readTask(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// readTask reads the task with id through q: the read pool, or a
// transaction that just changed it.
func (db *DB) readTask(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (*silo.Task, error) {
	return scanTask(q.QueryRowContext(ctx, db.q(`SELECT `+taskColumns+` FROM tasks t JOIN runners r ON r.id = t.runner_id WHERE t.id = ?`), id))
}

// FindTask returns the task with id.
func (db *DB) FindTask(ctx context.Context, id string) (*silo.Task, error) {
	t, err := db.readTask(ctx, db.rdb, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no task %s", id)
	}
	return t, err
}

// ListTasks returns a runner's most recent tasks, newest first.
func (db *DB) ListTasks(ctx context.Context, runnerID int64, limit int) ([]*silo.Task, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := db.rdb.QueryContext(ctx, db.q(fmt.Sprintf(`SELECT `+taskColumns+` FROM tasks t JOIN runners r ON r.id = t.runner_id WHERE t.runner_id = ? ORDER BY t.created_at DESC, t.id DESC LIMIT %d`, limit)), runnerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*silo.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// FinishTask records the end of a running task of runnerID: its status,
// output, log lines and result parts (stored as session blobs named
// "task/ID/PART"; large ones may have been streamed there before). A task of
// another runner, or one that is not running (finished, cancelled, replayed
// result), is refused, so a runner cannot overwrite results.
func (db *DB) FinishTask(ctx context.Context, runnerID int64, taskID string, res silo.TaskResult, parts map[string][]byte) (*silo.Task, error) {
	if !slices.Contains([]string{silo.TaskSucceeded, silo.TaskFailed, silo.TaskRefused}, res.Status) {
		return nil, silo.FieldErrorf("status", "task result status %q: use succeeded, failed or refused", res.Status)
	}
	var t *silo.Task
	query := `SELECT runner_id, status, session_id FROM tasks WHERE id = ?`
	if db.dialect == postgresDialect {
		// Two deliveries of one result (a retry after a lost answer) must
		// not both find the task running.
		query += ` FOR UPDATE`
	}
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		var owner int64
		var status, session string
		err := tx.QueryRowContext(ctx, db.q(query), taskID).Scan(&owner, &status, &session)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != runnerID) {
			return silo.Errorf(silo.ENOTFOUND, "no task %s for this runner", taskID)
		} else if err != nil {
			return err
		}
		if status != silo.TaskRunning {
			return silo.Errorf(silo.ECONFLICT, "task %s is %s, not running: its result was not accepted", taskID, status)
		}
		if len(parts) > 0 && session == "" {
			return silo.Errorf(silo.EINVALID, "task %s belongs to no session: its result takes no parts", taskID)
		}
		if _, err = tx.ExecContext(ctx, db.q(`UPDATE tasks SET status = ?, error = ?, output = ?, finished_at = ? WHERE id = ?`),
			res.Status, res.Error, string(res.Output), micros(db.now()), taskID); err != nil {
			return err
		}
		for name, data := range parts {
			if err := db.putBlob(ctx, tx, session, ResultBlob(taskID, name), data); err != nil {
				return err
			}
		}
		if err := db.insertTaskLogs(ctx, tx, taskID, res.Logs); err != nil {
			return err
		}
		// Read in the transaction: a failed read after it would answer an
		// error for a result that was taken.
		t, err = db.readTask(ctx, tx, taskID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ResultBlob names the session blob that holds part of a task's result.
func ResultBlob(taskID, part string) string { return "task/" + taskID + "/" + part }

// FailTask fails a queued or running task with reason, and reports whether
// it did: a result that came in meanwhile stands.
func (db *DB) FailTask(ctx context.Context, taskID, reason string) (bool, error) {
	res, err := db.wdb.ExecContext(ctx, db.q(`UPDATE tasks SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)`),
		silo.TaskFailed, reason, micros(db.now()), taskID, silo.TaskQueued, silo.TaskRunning)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// FailLostTasks fails the runner's running tasks, claimed before
// claimedBefore, that its agent no longer reports (it restarted mid-task),
// and returns their ids. Tasks claimed since are left alone: a heartbeat
// built before the agent received them may arrive after the claim.
func (db *DB) FailLostTasks(ctx context.Context, runnerID int64, running []string, claimedBefore time.Time, reason string) ([]string, error) {
	var lost []string
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, db.q(`SELECT id FROM tasks WHERE runner_id = ? AND status = 'running' AND started_at < ?`), runnerID, micros(claimedBefore))
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				_ = rows.Close()
				return err
			}
			if !slices.Contains(running, id) {
				lost = append(lost, id)
			}
		}
		_ = rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		failed := lost[:0]
		for _, id := range lost {
			// Still running: a result that came in meanwhile stands.
			res, err := tx.ExecContext(ctx, db.q(`UPDATE tasks SET status = 'failed', error = ?, finished_at = ? WHERE id = ? AND status = 'running'`), reason, micros(db.now()), id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				failed = append(failed, id)
			}
		}
		lost = failed
		return nil
	})
	return lost, err
}

// AppendTaskLogs stores log lines a runner sent for one of its tasks.
func (db *DB) AppendTaskLogs(ctx context.Context, runnerID int64, taskID string, lines []silo.LogLine) error {
	return db.tx(ctx, 0, func(tx *sql.Tx) error {
		var owner int64
		err := tx.QueryRowContext(ctx, db.q(`SELECT runner_id FROM tasks WHERE id = ?`), taskID).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != runnerID) {
			return silo.Errorf(silo.ENOTFOUND, "no task %s for this runner", taskID)
		} else if err != nil {
			return err
		}
		return db.insertTaskLogs(ctx, tx, taskID, lines)
	})
}

func (db *DB) insertTaskLogs(ctx context.Context, tx *sql.Tx, taskID string, lines []silo.LogLine) error {
	for _, l := range lines {
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO task_logs (task_id, time, level, message) VALUES (?, ?, ?, ?)`),
			taskID, micros(l.Time), l.Level, l.Message); err != nil {
			return fmt.Errorf("insert task log: %w", err)
		}
	}
	return nil
}

// ListTaskLogs returns log lines of the given tasks with id above after, oldest
// first, at most limit.
func (db *DB) ListTaskLogs(ctx context.Context, taskIDs []string, after int64, limit int) ([]silo.LogLine, error) {
	if len(taskIDs) == 0 {
		return nil, nil
	}
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	args := []any{after}
	for _, id := range taskIDs {
		args = append(args, id)
	}
	query := fmt.Sprintf(`SELECT id, task_id, time, level, message FROM task_logs WHERE id > ? AND task_id IN (%s) ORDER BY id LIMIT %d`,
		strings.TrimSuffix(strings.Repeat("?,", len(taskIDs)), ","), limit)
	rows, err := db.rdb.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []silo.LogLine
	for rows.Next() {
		var l silo.LogLine
		var t int64
		if err := rows.Scan(&l.ID, &l.TaskID, &t, &l.Level, &l.Message); err != nil {
			return nil, err
		}
		l.Time = fromMicros(t)
		out = append(out, l)
	}
	return out, rows.Err()
}

// ListSessionTasks returns a session's tasks of one type in one round.
func (db *DB) ListSessionTasks(ctx context.Context, sessionID string, round int, typ string) ([]*silo.Task, error) {
	rows, err := db.rdb.QueryContext(ctx, db.q(`SELECT `+taskColumns+` FROM tasks t JOIN runners r ON r.id = t.runner_id
		WHERE t.session_id = ? AND t.round = ? AND t.type = ? ORDER BY t.created_at, t.id`), sessionID, round, typ)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*silo.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// CancelTask cancels one queued or running task with reason, and reports
// whether it did: a task that already ended stands.
func (db *DB) CancelTask(ctx context.Context, taskID, reason string) (bool, error) {
	res, err := db.wdb.ExecContext(ctx, db.q(`UPDATE tasks SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)`),
		silo.TaskCancelled, reason, micros(db.now()), taskID, silo.TaskQueued, silo.TaskRunning)
	if err != nil {
		return false, fmt.Errorf("cancel task: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// CancelSessionTasks cancels a session's queued and running tasks.
func (db *DB) CancelSessionTasks(ctx context.Context, sessionID, reason string) error {
	_, err := db.wdb.ExecContext(ctx, db.q(`UPDATE tasks SET status = ?, error = ?, finished_at = ? WHERE session_id = ? AND status IN (?, ?)`),
		silo.TaskCancelled, reason, micros(db.now()), sessionID, silo.TaskQueued, silo.TaskRunning)
	return err
}

// CancelSessionPhaseTasks cancels the queued and running tasks of one phase
// of a session (stragglers when the round closes).
func (db *DB) CancelSessionPhaseTasks(ctx context.Context, sessionID string, round int, typ string) error {
	_, err := db.wdb.ExecContext(ctx, db.q(`UPDATE tasks SET status = ?, error = ?, finished_at = ? WHERE session_id = ? AND round = ? AND type = ? AND status IN (?, ?)`),
		silo.TaskCancelled, "the round closed without this answer", micros(db.now()), sessionID, round, typ, silo.TaskQueued, silo.TaskRunning)
	return err
}

// SetTaskProgress records how far a running task of the runner is.
func (db *DB) SetTaskProgress(ctx context.Context, runnerID int64, taskID string, p silo.TaskProgress) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	res, err := db.wdb.ExecContext(ctx, db.q(`UPDATE tasks SET progress = ? WHERE id = ? AND runner_id = ? AND status = 'running'`), string(b), taskID, runnerID)
	if err != nil {
		return fmt.Errorf("task progress: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return silo.Errorf(silo.ENOTFOUND, "no running task %s for this runner", taskID)
	}
	return nil
}

// StepProgress sums the progress of a session step's tasks, each client's
// latest: a task that succeeded counts as done. It is nil when no task
// reported any.
func (db *DB) StepProgress(ctx context.Context, sessionID string, round int, typ string) (*silo.StepProgress, error) {
	rows, err := db.rdb.QueryContext(ctx, db.q(`SELECT dataset, status, progress FROM tasks WHERE session_id = ? AND round = ? AND type = ? ORDER BY created_at, id`), sessionID, round, typ)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	latest := map[string]silo.TaskProgress{}
	var order []string
	for rows.Next() {
		var ds, status, raw string
		if err := rows.Scan(&ds, &status, &raw); err != nil {
			return nil, err
		}
		var p silo.TaskProgress
		if raw != "" && json.Unmarshal([]byte(raw), &p) != nil {
			p = silo.TaskProgress{}
		}
		if status == silo.TaskSucceeded && p.Total > 0 {
			p.Done = p.Total
		}
		if _, ok := latest[ds]; !ok {
			order = append(order, ds)
		}
		latest[ds] = p
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := &silo.StepProgress{Step: typ}
	for _, ds := range order {
		p := latest[ds]
		if p.Total <= 0 {
			continue
		}
		out.Done += min(max(p.Done, 0), p.Total)
		out.Total += p.Total
		if out.Unit == "" {
			out.Unit = p.Unit
		}
	}
	if out.Total == 0 {
		return nil, nil
	}
	return out, nil
}
