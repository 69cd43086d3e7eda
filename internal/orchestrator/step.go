package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

// LostTask is the error of a task whose runner restarted while running it
// (its heartbeats stopped listing it). Such a task is queued again, when
// the step still needs the answer and its runner is online, up to
// maxAttempts times in one step.
const (
	LostTask    = "the runner restarted while running this task"
	maxAttempts = 3
)

// run is one session's driver goroutine.
type run struct {
	d  *Driver
	id string
	// leaseUntil is when the lease this driver last took runs out: it is
	// renewed once half of it is used, not at every step.
	leaseUntil time.Time
	// ss is the session as this driver last read or wrote it: while its
	// stamp in the store is the same, nobody else wrote it since, and it
	// is not read again.
	ss *sqlstore.StoredSession
	// blobs are the small blobs this driver wrote since it read ss: only
	// the lease's holder writes a session's blobs (but for its tasks'
	// results), so the next step reads them from here.
	blobs map[string][]byte
}

// keptBlob is the largest blob a driver keeps after writing it.
const keptBlob = 1 << 20

// load returns the session as stored: the driver's own copy when its stamp
// shows no one else wrote it since.
func (r *run) load(ctx context.Context) (*sqlstore.StoredSession, error) {
	if r.ss != nil {
		st, err := r.d.db.FindSessionStamp(ctx, r.id)
		if err != nil {
			return nil, err
		}
		if st == r.ss.Stamp() {
			return r.ss, nil
		}
	}
	ss, err := r.d.db.FindSession(ctx, r.id)
	if err != nil {
		return nil, err
	}
	r.ss, r.blobs = ss, nil
	return ss, nil
}

// wrote keeps the session as a write left it (nil: unknown, read it again).
func (r *run) wrote(ss *sqlstore.StoredSession) {
	r.ss = ss
	if ss == nil {
		r.blobs = nil
	}
}

// wroteBlobs keeps the small blobs an advance wrote and forgets those it
// dropped.
func (r *run) wroteBlobs(adv *sqlstore.Advance) {
	for _, name := range adv.DropBlobs {
		if prefix, ok := strings.CutSuffix(name, "*"); ok {
			for n := range r.blobs {
				if strings.HasPrefix(n, prefix) {
					delete(r.blobs, n)
				}
			}
		} else {
			delete(r.blobs, name)
		}
	}
	for name, b := range adv.PutBlobs {
		if len(b) > keptBlob {
			delete(r.blobs, name)
			continue
		}
		if r.blobs == nil {
			r.blobs = map[string][]byte{}
		}
		r.blobs[name] = b
	}
}

// step takes or renews the session's lease and advances the session by at
// most one step. It reports whether to step again at once.
func (r *run) step(ctx context.Context) (bool, error) {
	d := r.d
	if now := d.now(); now.After(r.leaseUntil.Add(-LeaseTTL / 2)) {
		until := now.Add(LeaseTTL)
		ok, err := d.db.AcquireSessionLease(ctx, r.id, d.Replica, until)
		if err != nil {
			return false, err
		}
		if !ok {
			return false, errStop // another replica drives it
		}
		r.leaseUntil = until
	}
	ss, err := r.load(ctx)
	if silo.ErrorCode(err) == silo.ENOTFOUND {
		return false, errStop
	} else if err != nil {
		return false, err
	}
	if ss.Status.Done() || ss.LeaseOwner != d.Replica {
		return false, errStop
	}
	k, ok := d.kinds[ss.Config.Type]
	if !ok {
		return false, silo.Errorf(silo.ECONFLICT, "this server does not run %s sessions: upgrade it", ss.Config.Type)
	}
	// A step of a few clients closes on most of its wakes: the count
	// would only add to the look.
	if ss.Status == silo.SessionRunning && len(ss.Clients) > 2 {
		if out, err := r.stillOut(ctx, ss); err != nil || out {
			return false, err
		}
	}
	names := make([]string, len(ss.Clients))
	for i, c := range ss.Clients {
		names[i] = c.Runner
	}
	states, err := d.db.RunnerStates(ctx, names)
	if err != nil {
		return false, err
	}
	var again bool
	if ss.Status == silo.SessionPending {
		again, err = r.pending(ctx, ss, k, states)
	} else {
		again, err = r.running(ctx, ss, k, states)
	}
	if errors.Is(err, errEnded) || errors.Is(err, sqlstore.ErrLeaseLost) {
		return false, errStop
	}
	if err != nil {
		r.wrote(nil) // a write may have failed half-way: read it again
	}
	return again, err
}

func online(states map[string]sqlstore.RunnerState, runner string) bool {
	return states[runner].Status == silo.RunnerOnline
}

// absent says why a runner cannot answer now.
func absent(states map[string]sqlstore.RunnerState, runner string) string {
	st, ok := states[runner]
	if !ok {
		return runner + " (deregistered)"
	}
	return runner + " (" + string(st.Status) + ")"
}

// pending starts the session once min_clients of its runners are online.
func (r *run) pending(ctx context.Context, ss *sqlstore.StoredSession, k Kind, states map[string]sqlstore.RunnerState) (bool, error) {
	n := 0
	var waiting []string
	for _, c := range ss.Clients {
		if online(states, c.Runner) {
			n++
		} else {
			waiting = append(waiting, absent(states, c.Runner))
		}
	}
	if n < ss.Config.MinClients {
		return false, r.setReason(ctx, ss, fmt.Sprintf("waiting for %d more runner(s) to come online: %s", ss.Config.MinClients-n, strings.Join(waiting, ", ")))
	}
	s, err := r.session(ctx, ss)
	if err != nil {
		return false, err
	}
	o, err := k.Start(ctx, s)
	if err != nil {
		return false, err
	}
	queued, err := r.apply(ctx, ss, s, k, states, o, nil)
	if err != nil {
		return false, err
	}
	r.d.Audit(ctx, "session.start", ss.ID, silo.OutcomeSuccess, fmt.Sprintf("%d of %d runners online", n, len(ss.Clients)))
	return queued == 0, nil
}

// setReason records why the session waits, when that changed.
func (r *run) setReason(ctx context.Context, ss *sqlstore.StoredSession, reason string) error {
	if reason == ss.StatusReason {
		return nil
	}
	out, err := r.d.db.UpdateSession(ctx, ss.ID, nil, func(x *sqlstore.StoredSession) error {
		if err := r.own(x); err != nil {
			return err
		}
		x.StatusReason = reason
		return nil
	})
	if err == nil {
		r.wrote(out)
	}
	return err
}

// own refuses a write to a session that ended or that another replica
// drives now.
func (r *run) own(x *sqlstore.StoredSession) error {
	if x.Status.Done() {
		return errEnded
	}
	if x.LeaseOwner != r.d.Replica {
		return sqlstore.ErrLeaseLost
	}
	return nil
}

// session builds the kind's view of a session: its datasets are read again
// at each step that needs them, so a custodian's edit applies from the next
// step on.
func (r *run) session(ctx context.Context, ss *sqlstore.StoredSession) (*Session, error) {
	s := &Session{ID: ss.ID, Config: ss.Config, State: ss.State, Round: ss.Round, BestRound: ss.BestRound, Latest: ss.Latest, db: r.d.db, blobs: r.blobs}
	var datasets, runners []string
	for _, c := range ss.Clients {
		datasets, runners = append(datasets, c.Dataset), append(runners, c.Runner)
	}
	dss, err := r.d.db.FindDatasets(ctx, datasets)
	if err != nil {
		return nil, err
	}
	rns, err := r.d.db.FindRunners(ctx, runners)
	if err != nil {
		return nil, err
	}
	for _, c := range ss.Clients {
		ds, ok := dss[c.Dataset]
		if !ok {
			return nil, fmt.Errorf("dataset %s of session %s: %w", c.Dataset, ss.ID, silo.Errorf(silo.ENOTFOUND, "no dataset named %q: see 'silo datasets list'", c.Dataset))
		}
		cl := &Client{SessionClient: c, Data: &ds.Dataset}
		if rn, ok := rns[c.Runner]; ok {
			cl.RunnerVCPU, cl.RunnerMemoryMB = rn.VCPU, rn.MemoryBudgetMB()
		}
		s.Clients = append(s.Clients, cl)
	}
	return s, nil
}

// quorum is the number of answers a step needs.
func quorum(step Step, clients int) int {
	if step.Quorum <= 0 || step.Quorum > clients {
		return clients
	}
	return step.Quorum
}

// task builds a client's task for a step; nil when the kind leaves the
// client out.
func (r *run) task(s *Session, k Kind, step Step, c *Client) (*silo.Task, error) {
	spec, err := k.Configure(s, step, c)
	if err != nil || spec == nil {
		return nil, err
	}
	payload, err := json.Marshal(spec.Payload)
	if err != nil {
		return nil, err
	}
	return &silo.Task{ID: "task_" + silo.RandomID(10), Runner: c.Runner, Type: step.Name, Payload: payload, Inputs: spec.Inputs,
		VCPU: max(spec.VCPU, 1), MemoryMB: max(spec.MemoryMB, 16), MaxResult: spec.MaxResult, Session: s.ID, Round: step.Round, Dataset: c.Dataset}, nil
}

// dispatch builds the tasks of a step for the clients whose runners are
// online, or none while fewer than the step's quorum are.
func (r *run) dispatch(s *Session, k Kind, step Step, states map[string]sqlstore.RunnerState) ([]sqlstore.NewTask, error) {
	var up []*Client
	for _, c := range s.Clients {
		if online(states, c.Runner) {
			up = append(up, c)
		}
	}
	if len(up) < quorum(step, len(s.Clients)) {
		return nil, nil
	}
	out := make([]sqlstore.NewTask, 0, len(up))
	for _, c := range up {
		t, err := r.task(s, k, step, c)
		if err != nil {
			return nil, err
		}
		if t != nil {
			out = append(out, sqlstore.NewTask{RunnerID: states[c.Runner].ID, Task: t})
		}
	}
	if len(out) < quorum(step, len(s.Clients)) {
		return nil, nil
	}
	return out, nil
}

// closed is a step that ended, with each client's last task in it.
type closed struct {
	tasks map[string]*silo.Task // by dataset
}

// apply writes an outcome of Start or Aggregate: the kind's state, the
// round's metrics, the ledger, blobs, and the next step with its tasks. It
// returns how many tasks it queued: while some are out, the driver need
// not look again until one ends (which wakes it).
func (r *run) apply(ctx context.Context, ss *sqlstore.StoredSession, s *Session, k Kind, states map[string]sqlstore.RunnerState, o *Outcome, done *closed) (int, error) {
	d := r.d
	adv := &sqlstore.Advance{Round: o.Round, PutBlobs: o.PutBlobs, DropBlobs: o.DropBlobs, Base: r.ss}
	if done != nil && !o.KeepResults {
		for _, t := range done.tasks {
			adv.DropBlobs = append(adv.DropBlobs, sqlstore.ResultBlob(t.ID, "*"))
		}
	}
	if o.Next != nil {
		// The next step's tasks are configured from the state the outcome
		// leaves, not the one it replaces.
		s.State = o.State
		tasks, err := r.dispatch(s, k, *o.Next, states)
		if err != nil {
			return 0, err
		}
		adv.Tasks = tasks
	}
	now := d.now()
	gives := r.claim(adv.Tasks)
	out, err := d.db.AdvanceSession(ctx, ss.ID, adv, func(x *sqlstore.StoredSession) error {
		if err := r.own(x); err != nil {
			return err
		}
		x.State = o.State
		if o.Round != nil {
			x.Round = o.Round.Round
		}
		if o.Latest != nil {
			x.Latest = o.Latest
		}
		if o.BestRound != 0 {
			x.BestRound = o.BestRound
		}
		for i := range x.Clients {
			c := &x.Clients[i]
			if e, ok := o.Epsilon[c.Dataset]; ok {
				c.Epsilon = e
			}
			if done == nil {
				continue
			}
			why := ""
			if t, ok := done.tasks[c.Dataset]; !ok {
				why = "left out: " + absent(states, c.Runner)
			} else if t.Status != silo.TaskSucceeded {
				why = cmpOr(t.Error, t.Status)
			} else if reason, ok := o.Refused[c.Dataset]; ok {
				why = reason
			}
			if why != "" {
				c.Misses++
				c.LastError = why
			}
		}
		if o.Next == nil {
			x.Status, x.StatusReason, x.Phase = silo.SessionCompleted, o.Reason, ""
			return nil
		}
		x.Status, x.StatusReason = silo.SessionRunning, o.Next.Reason
		x.Phase, x.PhaseRound, x.PhaseStartedAt = o.Next.Name, o.Next.Round, now
		x.PhaseQuorum = quorum(*o.Next, len(x.Clients))
		return nil
	})
	r.handOut(ctx, adv.Tasks, gives, err)
	if err != nil {
		return 0, err
	}
	r.wrote(out)
	r.wroteBlobs(adv)
	if o.Next == nil {
		d.Ended(ctx, ss.ID, "the session completed")
		d.Audit(ctx, "session.complete", ss.ID, silo.OutcomeSuccess, "")
	}
	return len(adv.Tasks), nil
}

// stillOut reports whether a running step is sure to wait: some of its
// tasks are still out with runners that are online, none failed, and
// round_timeout has not passed. That is most wakes of a step of many
// clients (each answer wakes the driver), and running would conclude the
// same from the tasks and runners it reads.
func (r *run) stillOut(ctx context.Context, ss *sqlstore.StoredSession) (bool, error) {
	timeout, _ := time.ParseDuration(ss.Config.RoundTimeout)
	if r.d.now().After(ss.PhaseStartedAt.Add(timeout)) {
		return false, nil
	}
	out, failed, err := r.d.db.StepTasksOut(ctx, ss.ID, ss.PhaseRound, ss.Phase)
	return out > 0 && failed == 0, err
}

// running advances a running session's current step: it queues the tasks
// of a step that waited for runners, drops clients whose runners went
// offline, queues again tasks lost with a runner that came back, and closes
// the step when every client that takes part answered, or when
// round_timeout passed with enough answers.
func (r *run) running(ctx context.Context, ss *sqlstore.StoredSession, k Kind, states map[string]sqlstore.RunnerState) (bool, error) {
	d := r.d
	step := Step{Name: ss.Phase, Round: ss.PhaseRound, Quorum: ss.PhaseQuorum, Reason: ss.StatusReason}
	need := quorum(step, len(ss.Clients))
	timeout, _ := time.ParseDuration(ss.Config.RoundTimeout)
	timedOut := d.now().After(ss.PhaseStartedAt.Add(timeout))
	where := fmt.Sprintf("%s of round %d", step.Name, step.Round)
	// Each answer wakes the driver: it looks at the tasks' states only, and
	// reads their outputs once, when the step closes.
	tasks, err := d.db.ListSessionTaskStates(ctx, ss.ID, step.Round, step.Name)
	if err != nil {
		return false, err
	}
	if len(tasks) == 0 {
		return r.waitForRunners(ctx, ss, k, step, states, need, timedOut, where)
	}
	have := map[string]*silo.Task{} // each client's latest task
	attempts := map[string]int{}
	for _, t := range tasks {
		have[t.Dataset] = t
		attempts[t.Dataset]++
	}
	// Tasks still out are waited for only while someone is there to answer:
	// a runner that went offline (missed heartbeats) is not waited for once
	// the step has enough answers without it. Its answer still counts if
	// it comes back in time and the step needs it.
	var done, pending, away int
	var retry []string // clients whose task was lost: it may be sent again
	for _, c := range ss.Clients {
		t, ok := have[c.Dataset]
		if !ok {
			continue
		}
		switch t.Status {
		case silo.TaskSucceeded:
			done++
		case silo.TaskQueued, silo.TaskRunning:
			if online(states, c.Runner) {
				pending++
			} else {
				away++
			}
		default:
			if t.Error == LostTask && attempts[c.Dataset] < maxAttempts {
				retry = append(retry, c.Dataset)
			}
		}
	}
	if done+pending < need && len(retry) > 0 {
		// Too few answers are coming from runners that are there: send
		// again the lost tasks of clients whose runners are back, rather
		// than wait for those that went away.
		var s *Session
		requeued := 0
		for _, ds := range retry {
			c := clientOf(ss, ds)
			if !online(states, c.Runner) {
				continue
			}
			if s == nil {
				if s, err = r.session(ctx, ss); err != nil {
					return false, err
				}
			}
			t, err := r.task(s, k, step, s.client(ds))
			if err != nil {
				return false, err
			}
			if t == nil {
				continue
			}
			if err := d.db.CreateSessionTask(ctx, states[c.Runner].ID, t, d.Replica); err != nil {
				return false, err
			}
			d.Notify(states[c.Runner].ID)
			requeued++
		}
		if requeued > 0 {
			return true, nil
		}
	}
	if done+pending+away < need {
		// Not enough answers can come: wait up to round_timeout for the
		// runners of lost tasks to come back, then fail.
		if len(retry) > 0 && !timedOut {
			return false, r.waitingFor(ctx, ss, where, retry, states, need)
		}
		return false, shortOf(ss, states, where, have, done, need, timedOut)
	}
	switch {
	case done >= need && pending == 0:
		// Every client that can answer has: close without the runners
		// that went away.
	case timedOut:
		if done < need {
			return false, shortOf(ss, states, where, have, done, need, timedOut)
		}
	case pending == 0 && away > 0:
		var gone []string
		for _, c := range ss.Clients {
			if t, ok := have[c.Dataset]; ok && (t.Status == silo.TaskQueued || t.Status == silo.TaskRunning) {
				gone = append(gone, c.Dataset)
			}
		}
		return false, r.waitingFor(ctx, ss, where, gone, states, need)
	default:
		return false, nil
	}
	if pending+away > 0 {
		d.Logger.Info("step closed without some clients", "session", ss.ID, "step", where, "answered", done, "still_out", pending+away, "timed_out", timedOut)
	}
	// Close the step: stragglers are cancelled and recorded.
	if pending+away > 0 {
		if err := d.db.CancelSessionPhaseTasks(ctx, ss.ID, step.Round, step.Name); err != nil {
			return false, err
		}
	}
	s, err := r.session(ctx, ss)
	if err != nil {
		return false, err
	}
	// The tasks' outputs, with each one's state as the step closed on it.
	full, err := d.db.ListSessionTasks(ctx, ss.ID, step.Round, step.Name)
	if err != nil {
		return false, err
	}
	for _, t := range full {
		if seen, ok := have[t.Dataset]; ok && seen.ID == t.ID {
			t.Status, t.Error = seen.Status, seen.Error
			have[t.Dataset] = t
		}
	}
	var results []*Result
	for _, c := range s.Clients {
		t, ok := have[c.Dataset]
		if !ok {
			continue
		}
		if t.Status == silo.TaskQueued || t.Status == silo.TaskRunning {
			t.Status, t.Error = silo.TaskCancelled, "late: the round closed after round_timeout "+ss.Config.RoundTimeout
			if !online(states, c.Runner) && !timedOut {
				t.Error = "dropped: its runner " + absent(states, c.Runner) + " did not answer"
			}
		}
		if t.Status != silo.TaskSucceeded {
			d.Logger.Warn("client left out of a step", "session", ss.ID, "step", where, "dataset", t.Dataset, "reason", cmpOr(t.Error, t.Status))
		}
		results = append(results, &Result{Client: c, Task: t, db: d.db})
	}
	o, err := k.Aggregate(ctx, s, step, results)
	if err != nil {
		return false, err
	}
	queued, err := r.apply(ctx, ss, s, k, states, o, &closed{tasks: have})
	return queued == 0, err
}

// waitingFor records that a step waits for the runners of datasets to come
// back.
func (r *run) waitingFor(ctx context.Context, ss *sqlstore.StoredSession, where string, datasets []string, states map[string]sqlstore.RunnerState, need int) error {
	var who []string
	for _, ds := range datasets {
		who = append(who, absent(states, clientOf(ss, ds).Runner))
	}
	return r.setReason(ctx, ss, fmt.Sprintf("%s: waiting for %s to come back (%d of %d answers needed)", where, strings.Join(who, ", "), need, len(ss.Clients)))
}

// waitForRunners queues the tasks of a step that had too few runners online
// when it began, once enough are; it fails the session after round_timeout.
func (r *run) waitForRunners(ctx context.Context, ss *sqlstore.StoredSession, k Kind, step Step, states map[string]sqlstore.RunnerState, need int, timedOut bool, where string) (bool, error) {
	var up int
	var down []string
	for _, c := range ss.Clients {
		if online(states, c.Runner) {
			up++
		} else {
			down = append(down, absent(states, c.Runner))
		}
	}
	if up < need {
		if timedOut {
			return false, silo.Errorf(silo.ECONFLICT, "%s: only %d of %d runners were online within round_timeout %s, %s (%s)", where, up, len(ss.Clients), ss.Config.RoundTimeout, needed(ss, need), strings.Join(down, ", "))
		}
		return false, r.setReason(ctx, ss, fmt.Sprintf("%s: waiting for %d more runner(s) to come online: %s", where, need-up, strings.Join(down, ", ")))
	}
	s, err := r.session(ctx, ss)
	if err != nil {
		return false, err
	}
	tasks, err := r.dispatch(s, k, step, states)
	if err != nil {
		return false, err
	}
	gives := r.claim(tasks)
	out, err := r.d.db.AdvanceSession(ctx, ss.ID, &sqlstore.Advance{Tasks: tasks, Base: r.ss}, func(x *sqlstore.StoredSession) error {
		if err := r.own(x); err != nil {
			return err
		}
		if x.Phase != ss.Phase || x.PhaseRound != ss.PhaseRound {
			return errEnded // moved on meanwhile: nothing to queue
		}
		x.StatusReason = step.Reason
		return nil
	})
	r.handOut(ctx, tasks, gives, err)
	if err != nil {
		return false, err
	}
	r.wrote(out)
	return len(tasks) == 0, nil
}

// claim marks the tasks whose runners' long-polls wait on this server
// for one handed to them, and returns how to hand each over.
func (r *run) claim(tasks []sqlstore.NewTask) []func(*silo.Task) bool {
	if r.d.Claim == nil {
		return nil
	}
	gives := make([]func(*silo.Task) bool, len(tasks))
	for i := range tasks {
		if gives[i] = r.d.Claim(tasks[i].RunnerID); gives[i] != nil {
			tasks[i].Claimed = true
		}
	}
	return gives
}

// handOut hands each claimed task to its long-poll once written (err nil),
// puts back in the queue those whose polls had gone, and wakes the
// runners of the others. After a failed write it lets the polls go.
func (r *run) handOut(ctx context.Context, tasks []sqlstore.NewTask, gives []func(*silo.Task) bool, err error) {
	d := r.d
	for i, nt := range tasks {
		var give func(*silo.Task) bool
		if gives != nil {
			give = gives[i]
		}
		switch {
		case give == nil:
			if err == nil {
				d.Notify(nt.RunnerID)
			}
		case err != nil:
			give(nil)
		default:
			t := *nt.Task
			if give(&t) {
				continue
			}
			// The poll had gone: the task waits in the queue for the next.
			if _, uerr := d.db.UnclaimTask(context.WithoutCancel(ctx), t.ID); uerr != nil {
				d.Logger.Warn("put a task back in the queue", "task", t.ID, "err", uerr)
			}
			d.Notify(nt.RunnerID)
		}
	}
}

// shortOf is the error of a step that cannot get enough answers: it names
// each client that did not answer, and why.
func shortOf(ss *sqlstore.StoredSession, states map[string]sqlstore.RunnerState, where string, have map[string]*silo.Task, done, need int, timedOut bool) error {
	var reasons []string
	for _, c := range ss.Clients {
		t, ok := have[c.Dataset]
		switch {
		case !ok || t.Status == silo.TaskSucceeded:
		case t.Status != silo.TaskQueued && t.Status != silo.TaskRunning:
			reasons = append(reasons, t.Dataset+": "+cmpOr(t.Error, t.Status))
		case !online(states, c.Runner):
			reasons = append(reasons, fmt.Sprintf("%s: did not answer within round_timeout %s, its runner %s", t.Dataset, ss.Config.RoundTimeout, absent(states, c.Runner)))
		case timedOut:
			reasons = append(reasons, fmt.Sprintf("%s: did not answer within round_timeout %s", t.Dataset, ss.Config.RoundTimeout))
		default:
			reasons = append(reasons, t.Dataset+": still working")
		}
	}
	return silo.Errorf(silo.ECONFLICT, "%s: only %d of %d clients answered, %s (%s)", where, done, len(ss.Clients), needed(ss, need), strings.Join(reasons, "; "))
}

// needed says how many answers a step needs, in the config's own terms.
func needed(ss *sqlstore.StoredSession, need int) string {
	if need == ss.Config.MinClients {
		return fmt.Sprintf("min_clients is %d", need)
	}
	return fmt.Sprintf("%d are needed", need)
}

func clientOf(ss *sqlstore.StoredSession, dataset string) *sqlstore.SessionClient {
	i := slices.IndexFunc(ss.Clients, func(c sqlstore.SessionClient) bool { return c.Dataset == dataset })
	return &ss.Clients[i]
}

// client returns the session's client of a dataset.
func (s *Session) client(dataset string) *Client {
	for _, c := range s.Clients {
		if c.Dataset == dataset {
			return c
		}
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
