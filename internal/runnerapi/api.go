// Package runnerapi serves the runner protocol: the routes task runners
// call with their runner token (heartbeat, long-poll for tasks, results
// with their binary parts, logs, progress). Runners dial out only: the
// server never connects to one. The server (internal/server) declares the
// routes with the rest of its table and authenticates the token; this
// package answers them, hands the tasks a session's driver queues to the
// long-polls waiting for them, and coalesces heartbeats.
package runnerapi

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/orchestrator"
	"github.com/silofl/silo/internal/sqlstore"
)

// Prefix is where the runner protocol's routes live.
const Prefix = "/api/v1/runner/"

// API answers the runner protocol. Set its exported fields before serving.
type API struct {
	Logger *slog.Logger
	Clock  silo.Clock
	// HeartbeatInterval is how often agents report; three missed make a
	// runner offline.
	HeartbeatInterval time.Duration
	// Audit records a change the protocol makes (a runner's status) in the
	// workspace's audit log.
	Audit func(ctx context.Context, actor, action, target, outcome, detail string)
	// Connected records a finished connect task on its dataset.
	Connected func(ctx context.Context, t *silo.Task) error

	db     *sqlstore.DB
	engine *orchestrator.Driver
	wake   waker
	beats  beats
}

// New returns the runner protocol over db, waking engine's sessions as
// results come. The caller wires engine's Notify and Claim to the API's.
func New(db *sqlstore.DB, engine *orchestrator.Driver) *API {
	return &API{Logger: slog.Default(), HeartbeatInterval: silo.DefaultHeartbeatInterval, db: db, engine: engine,
		Audit:     func(context.Context, string, string, string, string, string) {},
		Connected: func(context.Context, *silo.Task) error { return nil }}
}

type runnerKey struct{}

// WithRunner is ctx of a request the runner rn (its token checked) made.
func WithRunner(ctx context.Context, rn *sqlstore.StoredRunner) context.Context {
	return context.WithValue(ctx, runnerKey{}, rn)
}

func runnerFrom(ctx context.Context) *sqlstore.StoredRunner {
	r, _ := ctx.Value(runnerKey{}).(*sqlstore.StoredRunner)
	return r
}

// Notify wakes the runner's long-polls: a task was queued for it.
func (a *API) Notify(runnerID int64) { a.wake.notify(runnerID) }

// NotifyAll wakes every long-poll: notices may have been missed (the
// store's listener reconnected).
func (a *API) NotifyAll() { a.wake.notifyAll() }

// Claim takes the runner's longest-waiting long-poll, if any, to hand it a
// task its driver queues claimed (orchestrator.Driver.Claim).
func (a *API) Claim(runnerID int64) func(*silo.Task) bool { return a.wake.claim(runnerID) }

// HeartbeatFlush is how often heartbeats kept in memory are written
// (FlushHeartbeats).
const HeartbeatFlush = time.Second

// CheckRunners marks online runners that missed three heartbeats offline.
// Heartbeats kept in memory are written first.
func (a *API) CheckRunners(ctx context.Context) error {
	if err := a.FlushHeartbeats(ctx); err != nil {
		return err
	}
	cutoff := a.Clock.Now().Add(-3 * a.HeartbeatInterval)
	names, err := a.db.MarkStaleRunnersOffline(ctx, cutoff.UnixMicro(), fmt.Sprintf("no heartbeat since %s (3 intervals of %s)", cutoff.Format(time.RFC3339), a.HeartbeatInterval))
	a.beats.forgetNames(names)
	for _, n := range names {
		a.Logger.Warn("runner offline", "runner", n)
		a.Audit(ctx, "system", "runner.status", n+": online → offline", silo.OutcomeSuccess, "missed heartbeats")
	}
	if len(names) > 0 {
		a.engine.WakeAll() // their sessions drop them from the current step
	}
	return err
}
