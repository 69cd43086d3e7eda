package sqlstore

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Replicas tell each other what must not wait: on PostgreSQL a task queued
// by one replica wakes a runner's long-poll held by another, and a task's
// result taken by one wakes the driver of its session on another, through
// LISTEN/NOTIFY. Each notice is sent in the transaction that made it true,
// so it arrives once that transaction has committed. On SQLite there is one
// server, which wakes its own long-polls and drivers, and Listen does
// nothing.
const (
	notifyTasks    = "silo_tasks"    // a comma-separated list of runner ids
	notifySessions = "silo_sessions" // a session id
)

// Listener is what Listen passes notices to.
type Listener struct {
	// Task is called with the id of a runner a task was queued for.
	Task func(runnerID int64)
	// Session is called with the id of a session one of whose tasks ended.
	Session func(id string)
	// Connected is called each time the listener (re)connects: notices
	// sent while it was away are lost, so whatever waits for one should
	// look again.
	Connected func()
}

// Listen passes other replicas' notices to l until ctx ends, reconnecting
// with backoff when the connection drops. It returns at once; on SQLite it
// does nothing.
func (db *DB) Listen(ctx context.Context, l Listener) {
	if db.dialect != postgresDialect {
		return
	}
	go db.listen(ctx, l)
}

// Listening reports whether this store hears other replicas' notices now:
// always false on SQLite, which has no other replicas.
func (db *DB) Listening() bool { return db.listening.Load() }

func (db *DB) listen(ctx context.Context, l Listener) {
	failures := 0
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, l)
		db.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		failures++
		delay := min(30*time.Second, 250*time.Millisecond<<min(failures-1, 7))
		delay = delay/2 + rand.N(delay/2+1) // #nosec G404 -- jitter
		db.Logger.Warn("listen for other replicas' notices", "err", err, "retry_in", delay.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func (db *DB) listenOnce(ctx context.Context, l Listener) error {
	conn, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range []string{notifyTasks, notifySessions} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	db.listening.Store(true)
	if l.Connected != nil {
		l.Connected()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case notifyTasks:
			for _, s := range strings.Split(n.Payload, ",") {
				if id, err := strconv.ParseInt(s, 10, 64); err == nil && l.Task != nil {
					l.Task(id)
				}
			}
		case notifySessions:
			if l.Session != nil && n.Payload != "" {
				l.Session(n.Payload)
			}
		}
	}
}

// notify sends a notice on PostgreSQL within ex (a transaction: sent when
// it commits); on SQLite it does nothing.
func (db *DB) notify(ctx context.Context, ex interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, channel, payload string) error {
	if db.dialect != postgresDialect || payload == "" {
		return nil
	}
	_, err := ex.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, payload)
	return err
}

// notifyTasksQueued tells other replicas which runners have new tasks.
func (db *DB) notifyTasksQueued(ctx context.Context, ex interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, tasks []NewTask) error {
	if db.dialect != postgresDialect || len(tasks) == 0 {
		return nil
	}
	seen := map[int64]bool{}
	var b strings.Builder
	for _, nt := range tasks {
		if seen[nt.RunnerID] {
			continue
		}
		seen[nt.RunnerID] = true
		// A notice's payload is under 8000 bytes.
		if b.Len() > 7000 {
			if err := db.notify(ctx, ex, notifyTasks, b.String()); err != nil {
				return err
			}
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(nt.RunnerID, 10))
	}
	return db.notify(ctx, ex, notifyTasks, b.String())
}
