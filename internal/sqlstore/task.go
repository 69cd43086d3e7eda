package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
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
	return db.insertTask(ctx, nil, runnerID, t)
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
		if err := db.queryRowTx(ctx, tx, query, t.Session).Scan(&holder); errors.Is(err, sql.ErrNoRows) {
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

func (db *DB) insertTask(ctx context.Context, tx *sql.Tx, runnerID int64, t *silo.Task) error {
	return db.insertTasks(ctx, tx, []NewTask{{RunnerID: runnerID, Task: t}})
}

// insertTasks queues tasks, up to taskBatch per statement; with tx nil,
// on their own.
func (db *DB) insertTasks(ctx context.Context, tx *sql.Tx, tasks []NewTask) error {
	for len(tasks) > 0 {
		n := min(len(tasks), taskBatch)
		args := make([]any, 0, 13*n)
		for _, nt := range tasks[:n] {
			t := nt.Task
			t.Status, t.CreatedAt, t.StartedAt = silo.TaskQueued, db.now(), nil
			if nt.Claimed {
				db.idle.busy(nt.RunnerID) // before it runs: RunningTasks must look
				started := t.CreatedAt
				t.Status, t.StartedAt = silo.TaskRunning, &started
			}
			parts := ""
			if len(t.Inputs) > 0 {
				b, err := json.Marshal(t.Inputs)
				if err != nil {
					return err
				}
				parts = string(b)
			}
			args = append(args, t.ID, nt.RunnerID, t.Type, string(t.Payload), t.VCPU, t.MemoryMB, t.Status, micros(t.CreatedAt), nullMicros(t.StartedAt), t.Session, t.Round, t.Dataset, parts, t.MaxResult)
		}
		query := sqlInsertTask
		if n > 1 {
			query += strings.Repeat(", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", n-1)
		}
		var err error
		if tx == nil {
			_, err = db.execW(ctx, query, args...)
		} else {
			_, err = db.execTx(ctx, tx, query, args...)
		}
		if err != nil {
			return fmt.Errorf("insert task: %w", err)
		}
		var ex interface {
			ExecContext(context.Context, string, ...any) (sql.Result, error)
		} = db.wdb
		if tx != nil {
			ex = tx
		}
		var queued []NewTask
		for _, nt := range tasks[:n] {
			if !nt.Claimed {
				queued = append(queued, nt)
			}
		}
		if err := db.notifyTasksQueued(ctx, ex, queued); err != nil {
			return fmt.Errorf("tell other replicas of a task: %w", err)
		}
		tasks = tasks[n:]
	}
	return nil
}

// taskBatch is the most tasks one statement queues: 14 values each, well
// within both databases' limits on parameters.
const taskBatch = 200

var sqlInsertTask = prepared(`INSERT INTO tasks (id, runner_id, type, payload, vcpu, memory_mb, status, created_at, started_at, session_id, round, dataset, parts, max_result)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)

// ClaimTask marks the runner's oldest queued task running and returns it, or
// returns nil when there is none. A task starts running only so, or queued
// claimed already (NewTask.Claimed). Concurrent claims never get the same task.
// It looks on the read pool first, so a long-poll that finds nothing (the
// common case) takes no write transaction. The task is read in the
// claiming transaction: a read after it could fail (a dropped connection)
// and leave the task running with no runner knowing it until the runner's
// heartbeats show it lost.
func (db *DB) ClaimTask(ctx context.Context, runnerID int64) (*silo.Task, error) {
	var id string
	if err := db.queryRowR(ctx, sqlOldestQueued, runnerID).Scan(&id); errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	claim := sqlClaim
	if db.dialect == postgresDialect {
		claim = sqlClaimPostgres
	}
	db.idle.busy(runnerID) // before the claim: RunningTasks must look
	var t *silo.Task
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		var err error
		t, err = scanTask(db.queryRowTx(ctx, tx, claim, micros(db.now()), runnerID))
		if errors.Is(err, sql.ErrNoRows) {
			t = nil
			return nil // another claim took it
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// returningTask is taskColumns for a RETURNING clause, which names no other
// table: the runner's name comes from a subquery.
var returningTask = strings.NewReplacer("t.", "", "r.name", "(SELECT name FROM runners WHERE id = runner_id)").Replace(taskColumns)

// UnclaimTask puts a task queued claimed back in the queue, unless it ended
// meanwhile: the long-poll it was handed to had gone. It reports whether it
// did.
func (db *DB) UnclaimTask(ctx context.Context, id string) (bool, error) {
	res, err := db.execW(ctx, `UPDATE tasks SET status = 'queued', started_at = NULL WHERE id = ? AND status = 'running'`, id)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

var (
	sqlOldestQueued = prepared(`SELECT id FROM tasks WHERE runner_id = ? AND status = 'queued' ORDER BY created_at, id LIMIT 1`)
	sqlClaim        = prepared(`UPDATE tasks SET status = 'running', started_at = ?
		WHERE id = (SELECT id FROM tasks WHERE runner_id = ? AND status = 'queued' ORDER BY created_at, id LIMIT 1) RETURNING ` + returningTask)
	// On PostgreSQL a claim skips rows another claim has locked.
	sqlClaimPostgres = `UPDATE tasks SET status = 'running', started_at = ?
		WHERE id = (SELECT id FROM tasks WHERE runner_id = ? AND status = 'queued' ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ` + returningTask
	sqlReadTask = prepared(`SELECT ` + taskColumns + ` FROM tasks t JOIN runners r ON r.id = t.runner_id WHERE t.id = ?`)
)

// FindTask returns the task with id.
func (db *DB) FindTask(ctx context.Context, id string) (*silo.Task, error) {
	t, err := scanTask(db.queryRowR(ctx, sqlReadTask, id))
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

// TaskHead is what the server checks of a task before it reads a byte of
// its result: whose it is, whether it still wants one, and how large it
// may be.
type TaskHead struct {
	ID        string
	RunnerID  int64
	Type      string
	Status    string
	Session   string
	MaxResult int64
}

// FindTaskHead returns the head of the task with id.
func (db *DB) FindTaskHead(ctx context.Context, id string) (*TaskHead, error) {
	h := TaskHead{ID: id}
	err := db.queryRowR(ctx, sqlTaskHead, id).Scan(&h.RunnerID, &h.Type, &h.Status, &h.Session, &h.MaxResult)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no task %s", id)
	} else if err != nil {
		return nil, err
	}
	return &h, nil
}

var sqlTaskHead = prepared(`SELECT runner_id, type, status, session_id, max_result FROM tasks WHERE id = ?`)

// FinishTask records the end of a running task of runnerID: its status,
// output, log lines and result parts (stored as session blobs named
// "task/ID/PART"; large ones may have been streamed there before). A task of
// another runner, or one that is not running (finished, cancelled, replayed
// result), is refused, so a runner cannot overwrite results.
func (db *DB) FinishTask(ctx context.Context, runnerID int64, taskID string, res silo.TaskResult, parts map[string][]byte) (*silo.Task, error) {
	t, _, err := db.FinishTaskNext(ctx, runnerID, taskID, res, parts)
	return t, err
}

// FinishTaskNext is FinishTask that also reports whether the runner has a
// task queued once the result is taken, which a runner asking for its
// next task with the result would otherwise look for at once.
//
// On SQLite, whose one writer takes transactions one at a time, results
// that arrive together are taken in one transaction (each in a savepoint of
// its own, so one refused leaves the others): a step of a hundred clients
// costs a few commits, not a hundred.
func (db *DB) FinishTaskNext(ctx context.Context, runnerID int64, taskID string, res silo.TaskResult, parts map[string][]byte) (*silo.Task, bool, error) {
	if !slices.Contains([]string{silo.TaskSucceeded, silo.TaskFailed, silo.TaskRefused}, res.Status) {
		return nil, false, silo.FieldErrorf("status", "task result status %q: use succeeded, failed or refused", res.Status)
	}
	f := &finish{ctx: ctx, runnerID: runnerID, taskID: taskID, res: res, parts: parts, done: make(chan struct{}), lead: make(chan struct{})}
	if db.dialect == sqliteDialect {
		db.finishes.run(db, f)
		return f.t, f.queued, f.err
	}
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		f.finishIn(tx, db)
		return f.err
	})
	if err != nil {
		return nil, false, err
	}
	return f.t, f.queued, nil
}

// finish is one result to take, and how it went.
type finish struct {
	ctx      context.Context
	runnerID int64
	taskID   string
	res      silo.TaskResult
	parts    map[string][]byte
	t        *silo.Task
	queued   bool
	err      error
	done     chan struct{} // closed once taken or refused
	lead     chan struct{} // closed when it is its turn to write a batch
}

// finishIn takes the result within tx.
func (f *finish) finishIn(tx *sql.Tx, db *DB) {
	f.t, f.queued = nil, false
	if f.err = f.take(tx, db); f.err != nil {
		f.t, f.queued = nil, false
	}
}

func (f *finish) take(tx *sql.Tx, db *DB) error {
	ctx := f.ctx
	// One statement takes the result only from the task's own runner
	// while the task runs; on PostgreSQL a second delivery of the same
	// result waits for the row and then finds it finished.
	var err error
	f.t, err = scanTask(db.queryRowTx(ctx, tx, sqlFinishTask, f.res.Status, f.res.Error, string(f.res.Output), micros(db.now()), f.taskID, f.runnerID))
	if errors.Is(err, sql.ErrNoRows) {
		return db.whyNotRunning(ctx, tx, f.runnerID, f.taskID)
	} else if err != nil {
		return err
	}
	if len(f.parts) > 0 && f.t.Session == "" {
		return silo.Errorf(silo.EINVALID, "task %s belongs to no session: its result takes no parts", f.taskID)
	}
	if err := db.notify(ctx, tx, notifySessions, f.t.Session); err != nil {
		return fmt.Errorf("tell other replicas of a result: %w", err)
	}
	for name, data := range f.parts {
		// A running task has no result parts yet (large ones are streamed
		// under other names until they are complete).
		if err := db.insertBlob(ctx, tx, f.t.Session, ResultBlob(f.taskID, name), data); err != nil {
			return err
		}
	}
	if err := db.insertTaskLogs(ctx, tx, f.taskID, f.res.Logs); err != nil {
		return err
	}
	return db.queryRowTx(ctx, tx, sqlHasQueued, f.runnerID).Scan(&f.queued)
}

// finishBatch gathers results that arrive while one transaction is being
// written; the first to arrive writes them all, then hands the turn to the
// first of those that came meanwhile.
type finishBatch struct {
	mu      sync.Mutex
	pending []*finish
	writing bool
}

func (b *finishBatch) run(db *DB, f *finish) {
	b.mu.Lock()
	b.pending = append(b.pending, f)
	if b.writing {
		b.mu.Unlock()
		select {
		case <-f.done:
			return
		case <-f.lead:
		}
		b.mu.Lock()
	}
	b.writing = true
	batch := b.pending
	b.pending = nil
	b.mu.Unlock()

	db.finishAll(batch)

	b.mu.Lock()
	if len(b.pending) > 0 {
		close(b.pending[0].lead)
	} else {
		b.writing = false
	}
	b.mu.Unlock()
}

// finishAll takes a batch of results in one transaction, each in its own
// savepoint. A result whose request ended meanwhile is not taken.
func (db *DB) finishAll(batch []*finish) {
	defer func() {
		for _, f := range batch {
			close(f.done)
		}
	}()
	if len(batch) == 1 {
		f := batch[0]
		err := db.tx(f.ctx, 0, func(tx *sql.Tx) error {
			f.finishIn(tx, db)
			return f.err
		})
		if f.err == nil && err != nil {
			f.t, f.err = nil, err
		}
		return
	}
	ctx := context.Background() // the batch's, not any one request's
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		for _, f := range batch {
			if f.err = f.ctx.Err(); f.err != nil {
				continue
			}
			if _, err := db.execTx(ctx, tx, sqlSavepoint); err != nil {
				return err
			}
			if f.finishIn(tx, db); f.err != nil {
				if _, err := db.execTx(ctx, tx, sqlRollbackSavepoint); err != nil {
					return err
				}
			}
			if _, err := db.execTx(ctx, tx, sqlReleaseSavepoint); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, f := range batch {
			if f.err == nil {
				f.t, f.queued, f.err = nil, false, err
			}
		}
	}
}

var (
	sqlHasQueued         = prepared(`SELECT EXISTS (SELECT 1 FROM tasks WHERE runner_id = ? AND status = 'queued')`)
	sqlSavepoint         = prepared(`SAVEPOINT finish`)
	sqlRollbackSavepoint = prepared(`ROLLBACK TO finish`)
	sqlReleaseSavepoint  = prepared(`RELEASE finish`)
)

var sqlTaskOwner = prepared(`SELECT runner_id, status FROM tasks WHERE id = ?`)

var sqlFinishTask = prepared(`UPDATE tasks SET status = ?, error = ?, output = ?, finished_at = ? WHERE id = ? AND runner_id = ? AND status = 'running'
	RETURNING ` + returningTask)

// whyNotRunning is the error of a result for a task that is not the
// runner's, or not running.
func (db *DB) whyNotRunning(ctx context.Context, tx *sql.Tx, runnerID int64, taskID string) error {
	var owner int64
	var status string
	err := db.queryRowTx(ctx, tx, sqlTaskOwner, taskID).Scan(&owner, &status)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != runnerID) {
		return silo.Errorf(silo.ENOTFOUND, "no task %s for this runner", taskID)
	} else if err != nil {
		return err
	}
	return silo.Errorf(silo.ECONFLICT, "task %s is %s, not running: its result was not accepted", taskID, status)
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
// It reads first, so a heartbeat of a runner that lost nothing (the common
// case) writes nothing.
func (db *DB) FailLostTasks(ctx context.Context, runnerID int64, running []string, claimedBefore time.Time, reason string) ([]string, error) {
	tasks, err := db.RunningTasks(ctx, runnerID)
	if err != nil {
		return nil, err
	}
	var lost []string
	for _, t := range tasks {
		if t.StartedAt.Before(claimedBefore) && !slices.Contains(running, t.ID) {
			lost = append(lost, t.ID)
		}
	}
	if len(lost) == 0 {
		return nil, nil
	}
	var failed []string
	err = db.tx(ctx, 0, func(tx *sql.Tx) error {
		failed = nil
		for _, id := range lost {
			// Still running: a result that came in meanwhile stands.
			res, err := db.execTx(ctx, tx, sqlFailLost, reason, micros(db.now()), id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				failed = append(failed, id)
			}
		}
		return nil
	})
	return failed, err
}

var sqlFailLost = prepared(`UPDATE tasks SET status = 'failed', error = ?, finished_at = ? WHERE id = ? AND status = 'running'`)

// RunningTask is a task a runner is running, as the server sees it.
type RunningTask struct {
	ID        string
	StartedAt time.Time
}

// RunningTasks returns the tasks the runner with id is running. Each
// heartbeat asks; on SQLite, where every claim is this store's, a runner
// found running nothing is known to stay so until its next claim, and is
// not read again.
func (db *DB) RunningTasks(ctx context.Context, runnerID int64) ([]RunningTask, error) {
	sqlite := db.dialect == sqliteDialect
	var gen uint64
	if sqlite {
		var idle bool
		if idle, gen = db.idle.check(runnerID); idle {
			return nil, nil
		}
	}
	rows, err := db.queryR(ctx, sqlRunningTasks, runnerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RunningTask
	for rows.Next() {
		var t RunningTask
		var started sql.NullInt64
		if err := rows.Scan(&t.ID, &started); err != nil {
			return nil, err
		}
		t.StartedAt = fromMicros(started.Int64)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if sqlite && len(out) == 0 {
		db.idle.found(runnerID, gen)
	}
	return out, nil
}

// idleRunners holds the runners known to run no task. A claim made while
// a look was under way moves the runner's generation on, so the look
// cannot mark it idle afterwards.
type idleRunners struct {
	mu   sync.Mutex
	gen  map[int64]uint64
	idle map[int64]bool
}

func (r *idleRunners) check(id int64) (bool, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.idle[id], r.gen[id]
}

func (r *idleRunners) found(id int64, gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen[id] != gen {
		return
	}
	if r.idle == nil {
		r.idle = map[int64]bool{}
	}
	r.idle[id] = true
}

func (r *idleRunners) busy(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == nil {
		r.gen = map[int64]uint64{}
	}
	r.gen[id]++
	delete(r.idle, id)
}

var sqlRunningTasks = prepared(`SELECT id, started_at FROM tasks WHERE runner_id = ? AND status = 'running'`)

// AppendTaskLogs stores log lines a runner sent for one of its tasks.
func (db *DB) AppendTaskLogs(ctx context.Context, runnerID int64, taskID string, lines []silo.LogLine) error {
	return db.tx(ctx, 0, func(tx *sql.Tx) error {
		var owner int64
		var status string
		err := db.queryRowTx(ctx, tx, sqlTaskOwner, taskID).Scan(&owner, &status)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != runnerID) {
			return silo.Errorf(silo.ENOTFOUND, "no task %s for this runner", taskID)
		} else if err != nil {
			return err
		}
		return db.insertTaskLogs(ctx, tx, taskID, lines)
	})
}

// insertTaskLogs stores log lines, up to logBatch of them per statement.
func (db *DB) insertTaskLogs(ctx context.Context, tx *sql.Tx, taskID string, lines []silo.LogLine) error {
	for len(lines) > 0 {
		n := min(len(lines), logBatch)
		args := make([]any, 0, 4*n)
		for _, l := range lines[:n] {
			args = append(args, taskID, micros(l.Time), l.Level, l.Message)
		}
		if _, err := db.execTx(ctx, tx, sqlInsertLogs[n], args...); err != nil {
			return fmt.Errorf("insert task log: %w", err)
		}
		lines = lines[n:]
	}
	return nil
}

// logBatch is the most log lines one statement inserts: a result's lines
// go in one statement, a full batch in a few.
const logBatch = 100

// sqlInsertLogs[n] inserts n log lines; those of a short task's result
// (a handful) are prepared.
var sqlInsertLogs = func() []string {
	out := make([]string, logBatch+1)
	for n := 1; n <= logBatch; n++ {
		out[n] = `INSERT INTO task_logs (task_id, time, level, message) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?),", n), ",")
		if n <= 8 {
			out[n] = prepared(out[n])
		}
	}
	return out
}()

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
	rows, err := db.queryR(ctx, sqlSessionTasks, sessionID, round, typ)
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

var sqlSessionTasks = prepared(`SELECT ` + taskColumns + ` FROM tasks t JOIN runners r ON r.id = t.runner_id
	WHERE t.session_id = ? AND t.round = ? AND t.type = ? ORDER BY t.created_at, t.id`)

// ListSessionTaskStates is ListSessionTasks with only each task's ID,
// Dataset, Status and Error: what a session's driver looks at each time
// an answer comes in, without the payloads and outputs it reads only when
// the step closes.
func (db *DB) ListSessionTaskStates(ctx context.Context, sessionID string, round int, typ string) ([]*silo.Task, error) {
	rows, err := db.queryR(ctx, sqlSessionTaskStates, sessionID, round, typ)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*silo.Task
	for rows.Next() {
		var t silo.Task
		if err := rows.Scan(&t.ID, &t.Dataset, &t.Status, &t.Error); err != nil {
			return nil, err
		}
		out = append(out, &t)
	}
	return out, rows.Err()
}

// StepTasksOut counts a step's tasks that are still out with runners that
// are online, and those that ended without succeeding: a session's driver
// woken by an answer while others are still coming, and none failed, has
// nothing to do, and learns it from one aggregate.
func (db *DB) StepTasksOut(ctx context.Context, sessionID string, round int, typ string) (out, failed int, err error) {
	err = db.queryRowR(ctx, sqlStepTasksOut, sessionID, round, typ).Scan(&out, &failed)
	return out, failed, err
}

var sqlStepTasksOut = prepared(`SELECT COALESCE(SUM(CASE WHEN t.status IN ('queued', 'running') AND r.status = 'online' THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN t.status NOT IN ('queued', 'running', 'succeeded') THEN 1 ELSE 0 END), 0)
	FROM tasks t JOIN runners r ON r.id = t.runner_id WHERE t.session_id = ? AND t.round = ? AND t.type = ?`)

var sqlSessionTaskStates = prepared(`SELECT id, dataset, status, error FROM tasks WHERE session_id = ? AND round = ? AND type = ? ORDER BY created_at, id`)

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
