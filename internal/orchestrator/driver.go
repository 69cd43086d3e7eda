package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

// LeaseTTL is how long a replica's claim on a session lasts unless renewed.
const LeaseTTL = 15 * time.Second

// Store failures the driver rides out. A step that fails with an internal
// error (a dropped database connection, a busy SQLite file) changed nothing
// it cannot redo: every step starts again from the state in the store. So
// the driver waits a little and tries again, and a passing outage only
// delays the session. An error that lasts storeOutage (by the driver's
// clock) fails the session: it is not passing.
const (
	retryBase   = 100 * time.Millisecond
	retryMax    = 5 * time.Second
	storeOutage = 4 * LeaseTTL
)

// recheck is how often an idle driver looks at its session without being
// woken: only a result that reached another replica, or a clock passing a
// timeout, needs it.
const recheck = time.Second

// Driver drives sessions. Set its exported fields, Register the kinds, then
// Start it.
type Driver struct {
	Logger *slog.Logger
	Clock  silo.Clock
	// Replica names this server in session leases: a restarted server with
	// the same name takes its sessions back at once.
	Replica string
	// Notify wakes the long-poll of a runner that has a new task.
	Notify func(runnerID int64)
	// Claim, when set, asks whether a long-poll of the runner waits on this
	// server for a task handed to it: if so the task is queued claimed, and
	// the function it returns hands the task over once written (nil: it was
	// not written), reporting whether the poll took it. A task then costs
	// its runner no claim.
	Claim func(runnerID int64) (give func(*silo.Task) bool)
	// Audit records what the driver does on its own (start, complete, fail).
	Audit func(ctx context.Context, action, target, outcome, detail string)

	db    *sqlstore.DB
	kinds map[string]Kind

	mu      sync.Mutex
	ctx     context.Context // drivers live as long as it does
	running map[string]chan struct{}
}

// New returns a driver on db.
func New(db *sqlstore.DB) *Driver {
	return &Driver{db: db, Logger: slog.Default(), kinds: map[string]Kind{}, running: map[string]chan struct{}{}, ctx: context.Background(),
		Notify: func(int64) {}, Audit: func(context.Context, string, string, string, string) {}}
}

// Register makes a session type available.
func (d *Driver) Register(typ string, k Kind) { d.kinds[typ] = k }

// Kind returns the registered kind of a session type.
func (d *Driver) Kind(typ string) (Kind, bool) {
	k, ok := d.kinds[typ]
	return k, ok
}

// Kinds lists the registered session types, in the order of
// silo.SessionTypes: what this server runs, and so what datasets may allow.
func (d *Driver) Kinds() []string {
	var out []string
	for _, t := range silo.SessionTypes {
		if _, ok := d.kinds[t]; ok {
			out = append(out, t)
		}
	}
	return out
}

// Prepare checks a new session's config with its kind.
func (d *Driver) Prepare(ctx context.Context, cfg *silo.SessionConfig, datasets []*silo.Dataset) error {
	k, ok := d.kinds[cfg.Type]
	if !ok {
		return silo.FieldErrorf("type", "this server does not run %s sessions", cfg.Type)
	}
	return k.Prepare(ctx, cfg, datasets)
}

// Metrics returns a session's metrics: the rounds it recorded, or what its
// kind reports when it is a Reporter.
func (d *Driver) Metrics(ctx context.Context, ss *sqlstore.StoredSession) (any, error) {
	if rep, ok := d.kinds[ss.Config.Type].(Reporter); ok {
		return rep.Metrics(&Session{ID: ss.ID, Config: ss.Config, State: ss.State, db: d.db})
	}
	return d.db.SessionMetrics(ctx, ss.ID)
}

// Start sets the context sessions are driven in (the server's run context)
// and resumes every unfinished session whose lease is free.
func (d *Driver) Start(ctx context.Context) {
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
	d.Resume(ctx)
}

// Resume starts driving every unfinished session whose lease is free (after
// a restart, or when another replica died).
func (d *Driver) Resume(ctx context.Context) {
	list, err := d.db.ListSessions(ctx, true)
	if err != nil {
		d.Logger.Warn("list sessions to resume", "err", err)
		return
	}
	for _, ss := range list {
		if ss.LeaseOwner == "" || ss.LeaseOwner == d.Replica || ss.LeaseUntil.Before(d.now()) {
			d.Drive(ss.ID)
		}
	}
}

// Drive starts driving a session in the background, unless this server
// already does.
func (d *Driver) Drive(id string) {
	d.mu.Lock()
	if _, ok := d.running[id]; ok {
		d.mu.Unlock()
		return
	}
	wake := make(chan struct{}, 1)
	d.running[id] = wake
	ctx := d.ctx
	d.mu.Unlock()
	go func() {
		defer func() {
			d.mu.Lock()
			delete(d.running, id)
			d.mu.Unlock()
		}()
		d.loop(ctx, id, wake)
	}()
}

// Wake makes the driver of a session look at it now: a task of its ended,
// or a user cancelled it.
func (d *Driver) Wake(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.running[id]; ok {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// WakeAll wakes every session this server drives: a runner came online or
// went offline, which any of them may be waiting on.
func (d *Driver) WakeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.running {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Driving reports how many sessions this server drives now.
func (d *Driver) Driving() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.running)
}

func (d *Driver) now() time.Time { return d.Clock.Now() }

// errStop ends a driver without touching its session: another replica
// holds the lease, or the session is over.
var errStop = errors.New("stop driving the session")

// errEnded stops a step whose session ended meanwhile (cancelled by a
// user): the step's result is dropped, not written over it.
var errEnded = errors.New("the session ended")

func (d *Driver) loop(ctx context.Context, id string, wake <-chan struct{}) {
	r := &run{d: d, id: id}
	var failing time.Time // when the current run of store errors began
	failures := 0
	for {
		again, err := r.step(ctx)
		if ctx.Err() != nil || errors.Is(err, errStop) {
			return
		}
		if err != nil && silo.ErrorCode(err) == silo.EINTERNAL {
			if failures == 0 {
				failing = d.now()
			}
			failures++
			r.leaseUntil = time.Time{} // take the lease again before anything else
			if elapsed := d.now().Sub(failing); elapsed >= storeOutage {
				d.fail(ctx, id, fmt.Errorf("the session could not advance: the store kept failing for %s (%w)", elapsed.Round(time.Second), err))
				return
			}
			delay := min(retryMax, retryBase<<min(failures-1, 10))
			delay = delay/2 + rand.N(delay/2+1) // #nosec G404 -- jitter: replicas do not retry in step
			d.Logger.Warn("session step failed, retrying", "session", id, "attempt", failures, "in", delay.Round(time.Millisecond), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		failures = 0
		if err != nil {
			d.fail(ctx, id, err)
			return
		}
		if again {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-time.After(recheck):
		}
	}
}

// fail ends a session with a reason a person can act on, unless another
// replica drives it now.
func (d *Driver) fail(ctx context.Context, id string, cause error) {
	reason := silo.ErrorMessage(cause)
	if silo.ErrorCode(cause) == silo.EINTERNAL {
		reason = cause.Error()
	}
	failed := false
	_, err := d.db.UpdateSession(ctx, id, nil, func(ss *sqlstore.StoredSession) error {
		if ss.LeaseOwner != d.Replica {
			return sqlstore.ErrLeaseLost
		}
		if !ss.Status.Done() {
			ss.Status, ss.StatusReason = silo.SessionFailed, reason
			failed = true
		}
		return nil
	})
	switch {
	case errors.Is(err, sqlstore.ErrLeaseLost):
		d.Logger.Info("session not failed: another replica drives it", "session", id, "err", cause)
		return
	case err != nil:
		// The session stays unfinished; Resume tries it again.
		d.Logger.Error("record session failure", "session", id, "cause", cause, "err", err)
		return
	case !failed:
		return
	}
	if silo.ErrorCode(cause) == silo.EINTERNAL {
		d.Logger.Error("session failed", "session", id, "err", cause)
	}
	d.Ended(ctx, id, "the session failed")
	d.Audit(ctx, "session.fail", id, silo.OutcomeFailed, reason)
}

// Ended cleans up after a session that ended (failed, completed or
// cancelled): its queued and running tasks are cancelled and its blobs
// dropped, but for its models.
func (d *Driver) Ended(ctx context.Context, id, why string) {
	ctx = context.WithoutCancel(ctx)
	if err := d.db.CancelSessionTasks(ctx, id, why); err != nil {
		// Left queued, they run for nothing: results of an ended session are dropped.
		d.Logger.Warn("cancel an ended session's tasks", "session", id, "err", err)
	}
	if err := d.db.DropSessionBlobsExcept(ctx, id, "model/"); err != nil {
		d.Logger.Warn("drop an ended session's blobs", "session", id, "err", err)
	}
	d.Wake(id)
}
