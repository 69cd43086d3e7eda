package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/dp"
	"github.com/silofl/silo/internal/fl"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/model"
)

// The orchestrator drives each session through its state machine, persisted
// in the store after every step: pending → running (stats, then fit and
// evaluate for each round) → completed | failed | cancelled. A server that
// restarts resumes every unfinished session from its last completed phase.
// With several replicas on one PostgreSQL, a lease in the store makes sure
// one replica drives a session at a time.

// LeaseTTL is how long a replica's claim on a session lasts unless renewed.
const LeaseTTL = 15 * time.Second

// sessionDrivers tracks the sessions this server drives and wakes them when
// a task of theirs finishes.
type sessionDrivers struct {
	mu      sync.Mutex
	running map[string]chan struct{}
}

func (d *sessionDrivers) start(id string) (chan struct{}, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running == nil {
		d.running = map[string]chan struct{}{}
	}
	if _, ok := d.running[id]; ok {
		return nil, false
	}
	c := make(chan struct{}, 1)
	d.running[id] = c
	return c, true
}

func (d *sessionDrivers) stop(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.running, id)
}

func (d *sessionDrivers) wake(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.running[id]; ok {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// drive starts driving a session in the background, unless this server
// already does.
func (s *Server) drive(id string) {
	wake, ok := s.sessions.start(id)
	if !ok {
		return
	}
	go func() {
		defer s.sessions.stop(id)
		s.driveSession(s.backgroundContext(), id, wake)
	}()
}

// resumeSessions starts driving every unfinished session whose lease is free
// (after a restart, or when another replica died).
func (s *Server) resumeSessions(ctx context.Context) {
	list, err := s.db.ListSessions(ctx, true)
	if err != nil {
		s.Logger.Warn("list sessions to resume", "err", err)
		return
	}
	for _, ss := range list {
		if ss.LeaseOwner == "" || ss.LeaseOwner == s.Replica || ss.LeaseUntil.Before(s.now()) {
			s.drive(ss.ID)
		}
	}
}

// Store failures the orchestrator rides out. A step that fails with an
// internal error (a dropped database connection, a busy SQLite file) changed
// nothing it cannot redo: every step starts again from the state in the
// store. So the driver waits a little and tries again, renewing its lease
// first, and a passing outage only delays the session. An error that lasts
// storeOutage (by the server's clock) fails the session: it is not passing.
const (
	retryBase   = 100 * time.Millisecond
	retryMax    = 5 * time.Second
	storeOutage = 4 * LeaseTTL
)

// errStopDriving ends a driver without touching its session: another
// replica holds the lease, or the session is over.
var errStopDriving = errors.New("stop driving the session")

func (s *Server) driveSession(ctx context.Context, id string, wake <-chan struct{}) {
	var failing time.Time // when the current run of store errors began
	failures := 0
	for {
		again, err := s.driveStep(ctx, id)
		if ctx.Err() != nil || errors.Is(err, errStopDriving) {
			return
		}
		if err != nil && silo.ErrorCode(err) == silo.EINTERNAL {
			if failures == 0 {
				failing = s.now()
			}
			failures++
			if d := s.now().Sub(failing); d >= storeOutage {
				s.failSession(ctx, id, fmt.Errorf("the session could not advance: the store kept failing for %s (%w)", d.Round(time.Second), err))
				return
			}
			delay := min(retryMax, retryBase<<min(failures-1, 10))
			delay = delay/2 + rand.N(delay/2+1) // #nosec G404 -- jitter: replicas do not retry in step
			s.Logger.Warn("session step failed, retrying", "session", id, "attempt", failures, "in", delay.Round(time.Millisecond), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		failures = 0
		if err != nil {
			s.failSession(ctx, id, err)
			return
		}
		if again {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-time.After(time.Second):
		}
	}
}

// driveStep takes or renews the session's lease and advances the session by
// one step. It reports whether to step again at once.
func (s *Server) driveStep(ctx context.Context, id string) (bool, error) {
	ok, err := s.db.AcquireSessionLease(ctx, id, s.Replica, s.now().Add(LeaseTTL))
	if err != nil {
		return false, err
	}
	if !ok {
		return false, errStopDriving // another replica drives it
	}
	ss, err := s.db.FindSession(ctx, id)
	if silo.ErrorCode(err) == silo.ENOTFOUND {
		return false, errStopDriving
	} else if err != nil {
		return false, err
	}
	if ss.Status.Done() {
		return false, errStopDriving
	}
	again, err := s.step(ctx, ss)
	if errors.Is(err, errSessionEnded) || errors.Is(err, errLeaseLost) {
		return false, errStopDriving
	}
	return again, err
}

// errSessionEnded stops an orchestrator step whose session ended meanwhile
// (cancelled by a user): the step's result is dropped, not written over it.
var errSessionEnded = errors.New("the session ended")

// errLeaseLost stops an orchestrator step whose replica lost the session's
// lease meanwhile (it stalled past LeaseTTL and another replica took over):
// the other replica's writes stand.
var errLeaseLost = sqlstore.ErrLeaseLost

// advance writes an orchestrator step, unless the session ended since the
// step read it, or another replica drives it now.
func (s *Server) advance(ctx context.Context, id string, round *sqlstore.SessionRound, change func(*sqlstore.StoredSession) error) (*sqlstore.StoredSession, error) {
	return s.db.UpdateSession(ctx, id, round, func(x *sqlstore.StoredSession) error {
		if x.Status.Done() {
			return errSessionEnded
		}
		if x.LeaseOwner != s.Replica {
			return errLeaseLost
		}
		return change(x)
	})
}

// failSession ends a session with a reason a person can act on, unless
// another replica drives it now.
func (s *Server) failSession(ctx context.Context, id string, cause error) {
	reason := silo.ErrorMessage(cause)
	if silo.ErrorCode(cause) == silo.EINTERNAL {
		reason = cause.Error()
	}
	failed := false
	_, err := s.db.UpdateSession(ctx, id, nil, func(ss *sqlstore.StoredSession) error {
		if ss.LeaseOwner != s.Replica {
			return errLeaseLost
		}
		if !ss.Status.Done() {
			ss.Status, ss.StatusReason = silo.SessionFailed, reason
			failed = true
		}
		return nil
	})
	switch {
	case errors.Is(err, errLeaseLost):
		s.Logger.Info("session not failed: another replica drives it", "session", id, "err", cause)
		return
	case err != nil:
		// The session stays unfinished; resumeSessions tries it again.
		s.Logger.Error("record session failure", "session", id, "cause", cause, "err", err)
		return
	case !failed:
		return
	}
	if silo.ErrorCode(cause) == silo.EINTERNAL {
		s.Logger.Error("session failed", "session", id, "err", cause)
	}
	if err := s.db.CancelSessionTasks(ctx, id, "the session failed"); err != nil {
		// Left queued, they run for nothing: results of an ended session are dropped.
		s.Logger.Warn("cancel a failed session's tasks", "session", id, "err", err)
	}
	s.auditAs(ctx, "system", "session.fail", id, silo.OutcomeFailed, reason)
}

// step advances a session by at most one phase. It reports whether to step
// again at once (something changed) rather than wait.
func (s *Server) step(ctx context.Context, ss *sqlstore.StoredSession) (bool, error) {
	if ss.Status == silo.SessionPending {
		return s.stepPending(ctx, ss)
	}
	switch ss.Phase {
	case silo.TaskStats:
		return s.stepPhase(ctx, ss, silo.TaskStats, 0, s.finishStats)
	case silo.TaskFit:
		return s.stepPhase(ctx, ss, silo.TaskFit, ss.PhaseRound, s.finishFit)
	case silo.TaskEvaluate:
		return s.stepPhase(ctx, ss, silo.TaskEvaluate, ss.PhaseRound, s.finishEvaluate)
	}
	return false, fmt.Errorf("session %s is in an unknown phase %q", ss.ID, ss.Phase)
}

// stepPending starts the session once min_clients of its runners are online.
func (s *Server) stepPending(ctx context.Context, ss *sqlstore.StoredSession) (bool, error) {
	var online int
	var waiting []string
	for _, c := range ss.Clients {
		rn, err := s.db.FindRunner(ctx, c.Runner)
		if err == nil && rn.Status == silo.RunnerOnline {
			online++
		} else {
			st := "deregistered"
			if err == nil {
				st = string(rn.Status)
			}
			waiting = append(waiting, c.Runner+" ("+st+")")
		}
	}
	if online < ss.Config.MinClients {
		reason := fmt.Sprintf("waiting for %d more runner(s) to come online: %s", ss.Config.MinClients-online, strings.Join(waiting, ", "))
		if reason != ss.StatusReason {
			_, err := s.advance(ctx, ss.ID, nil, func(x *sqlstore.StoredSession) error { x.StatusReason = reason; return nil })
			return false, err
		}
		return false, nil
	}
	_, err := s.advance(ctx, ss.ID, nil, func(x *sqlstore.StoredSession) error {
		x.Status, x.StatusReason = silo.SessionRunning, "computing federated statistics"
		x.Phase, x.PhaseRound, x.PhaseStartedAt = silo.TaskStats, 0, s.now()
		return nil
	})
	s.auditAs(ctx, "system", "session.start", ss.ID, silo.OutcomeSuccess, fmt.Sprintf("%d of %d runners online", online, len(ss.Clients)))
	return true, err
}

// lostTask is the error of a task whose runner restarted while running it;
// such a task is queued again, up to maxAttempts times in one phase.
const (
	lostTask    = "the runner restarted while running this task"
	maxAttempts = 3
)

// finisher completes a phase from its successful tasks.
type finisher func(ctx context.Context, ss *sqlstore.StoredSession, done []*silo.Task, failed []*silo.Task) error

// stepPhase makes sure every client has its task for the phase, and closes
// the phase when all answered, or when the round timeout passed with at
// least min_clients answers. Late or failed clients are recorded; fewer than
// min_clients answers fails the session with their reasons.
func (s *Server) stepPhase(ctx context.Context, ss *sqlstore.StoredSession, phase string, round int, finish finisher) (bool, error) {
	tasks, err := s.db.ListSessionTasks(ctx, ss.ID, round, phase)
	if err != nil {
		return false, err
	}
	have := map[string]*silo.Task{} // each client's latest task
	attempts := map[string]int{}
	for _, t := range tasks {
		have[t.Dataset] = t
		attempts[t.Dataset]++
	}
	for _, c := range ss.Clients {
		if t, ok := have[c.Dataset]; ok && !(t.Status == silo.TaskFailed && t.Error == lostTask && attempts[c.Dataset] < maxAttempts) {
			continue
		}
		t, err := s.sessionTask(ctx, ss, c, phase, round)
		if err != nil {
			return false, err
		}
		have[c.Dataset] = t
	}
	var done, failed []*silo.Task
	pending := 0
	for _, c := range ss.Clients {
		switch t := have[c.Dataset]; t.Status {
		case silo.TaskSucceeded:
			done = append(done, t)
		case silo.TaskQueued, silo.TaskRunning:
			pending++
		default:
			failed = append(failed, t)
		}
	}
	timeout, _ := time.ParseDuration(ss.Config.RoundTimeout)
	timedOut := s.now().After(ss.PhaseStartedAt.Add(timeout))
	min := ss.Config.MinClients
	switch {
	case pending > 0 && !timedOut && len(done)+pending >= min:
		return false, nil
	case len(done) < min:
		var reasons []string
		for _, t := range failed {
			reasons = append(reasons, t.Dataset+": "+cmpOr(t.Error, t.Status))
		}
		if pending > 0 && !timedOut {
			reasons = append(reasons, fmt.Sprintf("%d still working", pending))
		} else if pending > 0 {
			reasons = append(reasons, fmt.Sprintf("%d did not answer within round_timeout %s", pending, ss.Config.RoundTimeout))
		}
		return false, silo.Errorf(silo.ECONFLICT, "%s of round %d: only %d of %d clients answered, min_clients is %d (%s)", phase, round, len(done), len(ss.Clients), min, strings.Join(reasons, "; "))
	}
	// Close the phase: stragglers' tasks are cancelled and recorded.
	for _, t := range append(slices.Clone(failed), pendingTasks(have)...) {
		if t.Status == silo.TaskQueued || t.Status == silo.TaskRunning {
			t.Error = "late: the round closed after round_timeout " + ss.Config.RoundTimeout
		}
		s.Logger.Warn("client left out of a round", "session", ss.ID, "phase", phase, "round", round, "dataset", t.Dataset, "reason", cmpOr(t.Error, t.Status))
	}
	if err := s.db.CancelSessionPhaseTasks(ctx, ss.ID, round, phase); err != nil {
		return false, err
	}
	return true, finish(ctx, ss, done, append(failed, pendingTasks(have)...))
}

func pendingTasks(have map[string]*silo.Task) []*silo.Task {
	var out []*silo.Task
	for _, t := range have {
		if t.Status == silo.TaskQueued || t.Status == silo.TaskRunning {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dataset < out[j].Dataset })
	return out
}

// trainingData is what every training task of a client carries.
func (s *Server) trainingData(ctx context.Context, ss *sqlstore.StoredSession, c sqlstore.SessionClient) (silo.TrainingData, error) {
	d, err := s.db.FindDataset(ctx, c.Dataset)
	if err != nil {
		return silo.TrainingData{}, err
	}
	return silo.TrainingData{Session: ss.ID, Dataset: d.Name, URI: d.URI, Schema: datasetSchema(d), Privacy: d.Privacy,
		Fraction: ss.Config.Validation.Fraction, Seed: ss.Config.Seed}, nil
}

// sessionTask queues one client's task for a phase.
func (s *Server) sessionTask(ctx context.Context, ss *sqlstore.StoredSession, c sqlstore.SessionClient, phase string, round int) (*silo.Task, error) {
	td, err := s.trainingData(ctx, ss, c)
	if err != nil {
		return nil, err
	}
	var payload any
	switch phase {
	case silo.TaskStats:
		payload = silo.StatsPayload{TrainingData: td, TaskType: ss.Config.Task.Type, Target: ss.Config.Task.Target,
			Features: ss.Config.Task.Features, Categorical: ss.Config.Task.Categorical}
	case silo.TaskFit:
		mp, err := s.modelPayload(ss)
		if err != nil {
			return nil, err
		}
		fp := silo.FitPayload{TrainingData: td, ModelPayload: mp, Round: round, Optimizer: ss.Config.Optimizer}
		if ss.Config.Strategy.Name == "fedprox" {
			fp.ProximalMu = ss.Config.Strategy.Params["mu"]
		}
		if dpc := ss.Config.DifferentialPrivacy; dpc != nil {
			fp.ClipNorm, fp.NoiseMultiplier = dpc.MaxGradNorm, c.Sigma
		}
		payload = fp
	case silo.TaskEvaluate:
		mp, err := s.modelPayload(ss)
		if err != nil {
			return nil, err
		}
		payload = silo.EvaluatePayload{TrainingData: td, ModelPayload: mp, Round: round}
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	rn, err := s.db.FindRunner(ctx, c.Runner)
	if err != nil {
		return nil, fmt.Errorf("runner %s of dataset %s: %w", c.Runner, c.Dataset, err)
	}
	t := &silo.Task{ID: "task_" + randomSecret(10), Runner: rn.Name, Type: phase, Payload: b, VCPU: 1, MemoryMB: 256, Session: ss.ID, Round: round, Dataset: c.Dataset}
	if err := s.db.CreateSessionTask(ctx, rn.ID, t, s.Replica); err != nil {
		return nil, err
	}
	s.wake.notify(rn.ID)
	return t, nil
}

// spec is the session's model spec (its preprocessing must be known).
func (s *Server) spec(ss *sqlstore.StoredSession, prep *model.Preprocessing) ml.Spec {
	m := ss.Config.Model
	sp := ml.Spec{Package: m.Package, Task: ml.Task(ss.Config.Task.Type), NumFeatures: prep.Width(), Classes: prep.Classes,
		L1: m.L1, L2: m.L2, HiddenLayers: m.HiddenLayers, Activation: m.Activation, Dropout: m.Dropout}
	if ss.Config.Task.Type == "regression" {
		sp.Family, sp.TweediePower = m.Family, m.TweediePower
	}
	return sp
}

func (s *Server) modelPayload(ss *sqlstore.StoredSession) (silo.ModelPayload, error) {
	var prep model.Preprocessing
	if err := json.Unmarshal(ss.Preprocessing, &prep); err != nil {
		return silo.ModelPayload{}, fmt.Errorf("session preprocessing: %w", err)
	}
	spec, err := json.Marshal(s.spec(ss, &prep))
	if err != nil {
		return silo.ModelPayload{}, err
	}
	return silo.ModelPayload{Spec: spec, Preprocessing: ss.Preprocessing, Params: ss.Params}, nil
}

// finishStats merges the clients' statistics into the preprocessing,
// initialises the model and calibrates each client's DP noise.
func (s *Server) finishStats(ctx context.Context, ss *sqlstore.StoredSession, done, failed []*silo.Task) error {
	stats := map[string]silo.StatsOutput{}
	var all []fl.ClientStats
	usable := 0
	for _, t := range done {
		var out silo.StatsOutput
		if err := checkStats(t, &out); err != nil {
			s.Logger.Warn("statistics refused", "session", ss.ID, "dataset", t.Dataset, "err", err)
			continue
		}
		usable++
		stats[t.Dataset] = out
		cs := fl.ClientStats{Rows: out.NTrain, Numeric: map[string]fl.ColumnStats{}, Categories: out.Categories, Classes: out.Classes}
		for k, v := range out.Numeric {
			cs.Numeric[k] = fl.ColumnStats{Count: v.Count, Sum: v.Sum, SumSq: v.SumSq}
		}
		all = append(all, cs)
	}
	if usable < ss.Config.MinClients {
		return silo.Errorf(silo.ECONFLICT, "statistics: only %d usable answers, min_clients is %d", usable, ss.Config.MinClients)
	}
	merged := fl.MergeStats(all)
	prep, err := s.preprocessing(ctx, ss, merged)
	if err != nil {
		return err
	}
	spec := s.spec(ss, prep)
	m, err := ml.NewModel(spec, ss.Config.Seed)
	if err != nil {
		return silo.Errorf(silo.EINVALID, "model: %v", err)
	}
	prepJSON, err := json.Marshal(prep)
	if err != nil {
		return err
	}
	clients := slices.Clone(ss.Clients)
	for i := range clients {
		c := &clients[i]
		out, ok := stats[c.Dataset]
		if !ok {
			continue
		}
		c.NTrain, c.NTest = out.NTrain, out.NTest
		if dpc := ss.Config.DifferentialPrivacy; dpc != nil {
			o := ss.Config.Optimizer
			c.SampleRate = ml.PoissonSampleRate(int(c.NTrain), o.BatchSize)
			steps := ss.Config.Rounds * o.LocalEpochs * ml.StepsPerEpoch(int(c.NTrain), o.BatchSize)
			if c.Sigma, err = dp.Calibrate(dpc.Epsilon, dpc.Delta, c.SampleRate, steps); err != nil {
				return silo.Errorf(silo.EINVALID, "differential privacy for %s: %v", c.Dataset, err)
			}
		}
	}
	_, err = s.advance(ctx, ss.ID, nil, func(x *sqlstore.StoredSession) error {
		x.Preprocessing, x.Params, x.Clients = prepJSON, m.MarshalBinaryParams(), clients
		x.Phase, x.PhaseRound, x.PhaseStartedAt = silo.TaskFit, 1, s.now()
		x.StatusReason = fmt.Sprintf("round 1 of %d: training", x.Config.Rounds)
		return nil
	})
	return err
}

// preprocessing builds the encoding from the merged statistics.
func (s *Server) preprocessing(ctx context.Context, ss *sqlstore.StoredSession, merged fl.ClientStats) (*model.Preprocessing, error) {
	cfg := ss.Config
	first, err := s.db.FindDataset(ctx, ss.Clients[0].Dataset)
	if err != nil {
		return nil, err
	}
	types := map[string]string{}
	for _, c := range first.Columns {
		types[c.Name] = c.Type
	}
	prep := &model.Preprocessing{Task: cfg.Task.Type, Target: cfg.Task.Target, TargetType: types[cfg.Task.Target], Identifiers: first.Privacy.IdentifierColumns}
	var skipped []string
	for _, f := range cfg.Task.Features {
		if cats, ok := merged.Categories[f]; ok {
			var list []string
			for c := range cats {
				list = append(list, c)
			}
			sort.Strings(list)
			if len(list) == 0 {
				skipped = append(skipped, f)
				continue
			}
			prep.Features = append(prep.Features, model.Feature{Name: f, Type: types[f], Kind: model.Categorical, Categories: list})
			continue
		}
		st, ok := merged.Numeric[f]
		if !ok || st.Count == 0 {
			skipped = append(skipped, f)
			continue
		}
		mean, std := st.MeanStd()
		prep.Features = append(prep.Features, model.Feature{Name: f, Type: types[f], Kind: model.Numeric, Mean: mean, Std: std})
	}
	if len(prep.Features) == 0 {
		return nil, silo.Errorf(silo.EINVALID, "no feature has enough values to train on (each statistic must cover min_records_per_aggregate rows): %s", strings.Join(skipped, ", "))
	}
	if len(skipped) > 0 {
		s.Logger.Warn("features left out for too few values", "session", ss.ID, "features", skipped)
	}
	if cfg.Task.Type == "classification" {
		var classes []string
		for c := range merged.Classes {
			classes = append(classes, c)
		}
		if len(classes) < 2 {
			return nil, silo.Errorf(silo.EINVALID, "the target %s has %d class(es) with enough rows across the datasets; classification needs two or more", cfg.Task.Target, len(classes))
		}
		if prep.Classes, err = model.OrderClasses(classes, cfg.Task.PositiveClass); err != nil {
			return nil, silo.FieldErrorf("task.positive_class", "%v", err)
		}
	}
	return prep, nil
}

// finishFit aggregates the clients' updates with the session's strategy and
// charges each client's DP steps.
func (s *Server) finishFit(ctx context.Context, ss *sqlstore.StoredSession, done, failed []*silo.Task) error {
	global, err := ml.ParseParams(ss.Params)
	if err != nil {
		return err
	}
	params, err := fl.ParamsFromConfig(ss.Config.Strategy.Name, ss.Config.Strategy.Params)
	if err != nil {
		return silo.FieldErrorf("strategy.params", "%v", err)
	}
	strategy, err := fl.NewStrategy(ss.Config.Strategy.Name, params)
	if err != nil {
		return err
	}
	if len(ss.StrategyState) > 0 { // none before the first aggregation
		if err := strategy.Restore(ss.StrategyState); err != nil {
			return err
		}
	}
	var updates []fl.Update
	outs := map[string]silo.FitOutput{}
	for _, t := range done {
		out, p, err := checkUpdate(t, len(global))
		if err != nil {
			// A malformed update is that client's failure, not the
			// session's: it is left out of the round and recorded.
			s.Logger.Warn("update refused", "session", ss.ID, "round", ss.PhaseRound, "dataset", t.Dataset, "err", err)
			t.Status, t.Error = silo.TaskFailed, err.Error()
			failed = append(failed, t)
			continue
		}
		updates = append(updates, fl.Update{Params: p, NumExamples: int(out.NTrain)})
		outs[t.Dataset] = out
	}
	if len(updates) < ss.Config.MinClients {
		var reasons []string
		for _, t := range failed {
			reasons = append(reasons, t.Dataset+": "+cmpOr(t.Error, t.Status))
		}
		return silo.Errorf(silo.ECONFLICT, "round %d: only %d usable updates, min_clients is %d (%s)", ss.PhaseRound, len(updates), ss.Config.MinClients, strings.Join(reasons, "; "))
	}
	next, err := strategy.Aggregate(global, updates)
	if err != nil {
		return silo.Errorf(silo.EINVALID, "round %d: %v", ss.PhaseRound, err)
	}
	clients := slices.Clone(ss.Clients)
	for i := range clients {
		c := &clients[i]
		out, ok := outs[c.Dataset]
		if !ok {
			c.Misses++
			continue
		}
		c.NTrain = out.NTrain
		if dpc := ss.Config.DifferentialPrivacy; dpc != nil && c.Sigma > 0 {
			c.Steps += out.Steps
			c.Epsilon, _ = dp.Epsilon(c.SampleRate, c.Sigma, c.Steps, dpc.Delta)
		}
	}
	for _, t := range failed {
		for i := range clients {
			if clients[i].Dataset == t.Dataset {
				clients[i].LastError = cmpOr(t.Error, t.Status)
			}
		}
	}
	_, err = s.advance(ctx, ss.ID, nil, func(x *sqlstore.StoredSession) error {
		x.Params, x.StrategyState, x.Clients = ml.MarshalParams(next), strategy.State(), clients
		x.Phase, x.PhaseStartedAt = silo.TaskEvaluate, s.now()
		x.StatusReason = fmt.Sprintf("round %d of %d: evaluating", x.PhaseRound, x.Config.Rounds)
		return nil
	})
	return err
}

// checkStats decodes a client's statistics and refuses impossible ones
// (negative or inconsistent counts, non-finite sums), which would corrupt
// every client's standardisation.
func checkStats(t *silo.Task, out *silo.StatsOutput) error {
	if err := json.Unmarshal(t.Output, out); err != nil {
		return fmt.Errorf("unreadable statistics: %v", err)
	}
	if out.NTrain <= 0 || out.NTest < 0 {
		return fmt.Errorf("statistics claim %d training and %d test rows", out.NTrain, out.NTest)
	}
	for col, st := range out.Numeric {
		if st.Count < 0 || st.Count > out.NTrain || math.IsNaN(st.Sum+st.SumSq) || math.IsInf(st.Sum+st.SumSq, 0) || st.SumSq < 0 {
			return fmt.Errorf("impossible statistics for column %s", col)
		}
	}
	for _, counts := range append([]map[string]int64{out.Classes}, mapValues(out.Categories)...) {
		for _, n := range counts {
			if n < 0 || n > out.NTrain {
				return fmt.Errorf("impossible category count %d for %d rows", n, out.NTrain)
			}
		}
	}
	return nil
}

func mapValues(m map[string]map[string]int64) []map[string]int64 {
	out := make([]map[string]int64, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// maxParam bounds every parameter of an update: a model whose weights
// reach it has diverged, or the update is hostile.
const maxParam = 1e6

// checkUpdate decodes a client's update and refuses one that could corrupt
// the global model: unreadable, the wrong shape, non-finite or absurd
// values, or no training rows behind it.
func checkUpdate(t *silo.Task, n int) (silo.FitOutput, []float64, error) {
	var out silo.FitOutput
	if err := json.Unmarshal(t.Output, &out); err != nil {
		return out, nil, fmt.Errorf("unreadable update: %v", err)
	}
	p, err := ml.ParseParams(out.Params)
	if err != nil {
		return out, nil, fmt.Errorf("unreadable parameters: %v", err)
	}
	if len(p) != n {
		return out, nil, fmt.Errorf("update has %d parameters, the model has %d", len(p), n)
	}
	if out.NTrain <= 0 || out.Steps < 0 {
		return out, nil, fmt.Errorf("update claims %d training rows and %d steps", out.NTrain, out.Steps)
	}
	for i, v := range p {
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > maxParam {
			return out, nil, fmt.Errorf("parameter %d is %g: the local model diverged (lower the learning rate) or the update is corrupt", i, v)
		}
	}
	return out, p, nil
}

// finishEvaluate combines the clients' test metrics into the round's
// federated metrics and records the round; the last one completes the
// session.
func (s *Server) finishEvaluate(ctx context.Context, ss *sqlstore.StoredSession, done, failed []*silo.Task) error {
	round := ss.PhaseRound
	fed := silo.RoundMetrics{}
	var clientMetrics []silo.ClientMetrics
	var total float64
	pos, neg := make([]int64, silo.ScoreBins), make([]int64, silo.ScoreBins)
	hist := true
	ntrain := map[string]int64{}
	for _, c := range ss.Clients {
		ntrain[c.Dataset] = c.NTrain
	}
	for _, t := range done {
		var out silo.EvaluateOutput
		if err := json.Unmarshal(t.Output, &out); err != nil || out.NTest <= 0 || out.NTest > maxTestRows {
			s.Logger.Warn("metrics refused", "session", ss.ID, "round", round, "dataset", t.Dataset, "n_test", out.NTest, "err", err)
			continue
		}
		cm := silo.ClientMetrics{Round: round, Dataset: t.Dataset, Values: map[string]float64{"n_train": float64(ntrain[t.Dataset]), "n_test": float64(out.NTest)}}
		w := float64(out.NTest)
		for k, v := range out.Metrics {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			cm.Values["test_"+k] = v
			fed[k] += w * v
		}
		total += w
		clientMetrics = append(clientMetrics, cm)
		if len(out.PosHist) == silo.ScoreBins && len(out.NegHist) == silo.ScoreBins && histTotal(out.PosHist, out.NegHist) == out.NTest {
			for i := range pos {
				pos[i] += out.PosHist[i]
				neg[i] += out.NegHist[i]
			}
		} else {
			hist = false
		}
	}
	if total == 0 {
		return silo.Errorf(silo.ECONFLICT, "round %d: no usable evaluation from any client", round)
	}
	for k := range fed {
		fed[k] /= total
	}
	if hist && ss.Config.Task.Type == "classification" {
		if auc, ok := histogramAUC(pos, neg); ok {
			fed["roc_auc"] = auc // pooled over every client's test rows, not averaged
		}
	}
	best := ss.BestRound == 0
	if v, ok := fed[ss.Config.SaveBestModel.Metric]; ok && !best {
		best = (ss.Config.SaveBestModel.Mode == "min" && v < ss.BestValue) || (ss.Config.SaveBestModel.Mode == "max" && v > ss.BestValue)
	}
	_, err := s.advance(ctx, ss.ID, &sqlstore.SessionRound{Round: round, Federated: fed, Clients: clientMetrics}, func(x *sqlstore.StoredSession) error {
		x.Round, x.Latest = round, fed
		if best {
			x.BestRound, x.BestValue, x.BestParams = round, fed[x.Config.SaveBestModel.Metric], x.Params
		}
		if round >= x.Config.Rounds {
			x.Status, x.Phase = silo.SessionCompleted, ""
			x.StatusReason = fmt.Sprintf("completed %d rounds; best round %d (%s %.4g)", round, x.BestRound, x.Config.SaveBestModel.Metric, x.BestValue)
			return nil
		}
		x.Phase, x.PhaseRound, x.PhaseStartedAt = silo.TaskFit, round+1, s.now()
		x.StatusReason = fmt.Sprintf("round %d of %d: training", round+1, x.Config.Rounds)
		return nil
	})
	if err == nil && round >= ss.Config.Rounds {
		s.auditAs(ctx, "system", "session.complete", ss.ID, silo.OutcomeSuccess, "")
	}
	return err
}

// maxTestRows bounds a client's claimed test rows: more is a lie.
const maxTestRows = 1 << 40

// histTotal counts the rows of a pair of histograms; negative bins make it
// disagree with any real row count.
func histTotal(pos, neg []int64) int64 {
	var n int64
	for i := range pos {
		if pos[i] < 0 || neg[i] < 0 || pos[i] > maxTestRows || neg[i] > maxTestRows {
			return -1 // also keeps the sum from wrapping round to a plausible count
		}
		n += pos[i] + neg[i]
	}
	return n
}

// histogramAUC is the ROC AUC of scores binned by class (ties within a bin
// count half), the Mann–Whitney statistic over the pooled test rows.
func histogramAUC(pos, neg []int64) (float64, bool) {
	var np, nn int64
	for i := range pos {
		np += pos[i]
		nn += neg[i]
	}
	if np == 0 || nn == 0 {
		return 0, false
	}
	var below, sum float64
	for i := range pos {
		sum += float64(pos[i]) * (below + float64(neg[i])/2)
		below += float64(neg[i])
	}
	return sum / (float64(np) * float64(nn)), true
}

// modelDocument builds the downloadable model of a session.
func (s *Server) modelDocument(ss *sqlstore.StoredSession, best bool) ([]byte, error) {
	params, round := ss.Params, ss.Round
	if best {
		params, round = ss.BestParams, ss.BestRound
	}
	if round == 0 || len(params) == 0 {
		return nil, errNoModel
	}
	var prep model.Preprocessing
	if err := json.Unmarshal(ss.Preprocessing, &prep); err != nil {
		return nil, err
	}
	p, err := ml.ParseParams(params)
	if err != nil {
		return nil, err
	}
	metrics := ss.Latest
	doc, err := model.New(s.spec(ss, &prep), prep, p, model.Metadata{Session: ss.ID, SessionName: ss.Name, Round: round, Best: best,
		Metrics: metrics, Datasets: ss.Config.Datasets, EpsilonSpent: ss.EpsilonSpent, CreatedAt: ss.UpdatedAt})
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(doc, "", " ")
}
