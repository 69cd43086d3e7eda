package runnerapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/orchestrator"
	"github.com/silofl/silo/internal/sqlstore"
)

// Heartbeat answers POST /api/v1/runner/heartbeat: it marks the runner
// online, fails tasks its agent lost in a restart, and tells it which
// tasks to cancel and which sessions' local state it may remove.
func (a *API) Heartbeat(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFrom(ctx)
	var hb silo.Heartbeat
	if err := httpjson.Decode(w, r, &hb); err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	if hb.ProtocolVersion != silo.ProtocolVersion {
		side := "the runner"
		if hb.ProtocolVersion > silo.ProtocolVersion {
			side = "the server"
		}
		err := silo.Errorf(silo.ECONFLICT, "protocol version mismatch: the agent speaks %d, the server %d; upgrade %s to the same Silo release", hb.ProtocolVersion, silo.ProtocolVersion, side)
		a.beats.forget(rn.ID)
		a.MarkFailed(ctx, rn.Name, err.Message)
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	if len(hb.AgentVersion) > 64 || len(hb.Hostname) > 255 || len(hb.RunningTasks) > 1024 || len(hb.Sessions) > 1024 || hb.VCPU < 0 || hb.MemoryMB < 0 || hb.Policy != nil && len(hb.Policy.Rules) > maxPolicyRules {
		httpjson.Error(w, r, a.Logger, silo.Errorf(silo.EINVALID, "heartbeat fields out of range"))
		return
	}
	status := silo.RunnerOnline
	if !a.beats.touch(rn.ID, rn.Name, hb, a.Clock.Now()) {
		var err error
		if status, err = a.recordHeartbeat(ctx, rn.ID, rn.Name, hb); err != nil {
			httpjson.Error(w, r, a.Logger, err)
			return
		}
	}
	reply := silo.HeartbeatReply{Runner: rn.Name, Status: status, ProtocolVersion: silo.ProtocolVersion, HeartbeatInterval: a.HeartbeatInterval.String()}
	// Tasks the server thinks are running but the agent does not know
	// were lost in a restart: fail them now rather than wait forever. Tasks
	// the agent runs that the server no longer wants are cancelled. One
	// read tells both; nothing is written unless a task was lost.
	running, err := a.db.RunningTasks(ctx, rn.ID)
	if err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	claimedBefore := a.Clock.Now().Add(-2 * a.HeartbeatInterval)
	wanted := map[string]bool{}
	lost := false
	for _, t := range running {
		wanted[t.ID] = true
		lost = lost || (t.StartedAt.Before(claimedBefore) && !slices.Contains(hb.RunningTasks, t.ID))
	}
	if lost {
		a.failLostTasks(ctx, rn, hb.RunningTasks, claimedBefore)
	}
	for _, id := range hb.RunningTasks {
		if !wanted[id] {
			reply.CancelTasks = append(reply.CancelTasks, id)
		}
	}
	reply.EndedSessions = a.endedSessions(ctx, rn.Name, hb.Sessions)
	httpjson.Write(w, http.StatusOK, reply)
}

// maxPolicyRules bounds the rules of a runner's policy the server keeps.
const maxPolicyRules = 1000

// endedSessions returns the sessions among ids whose local state the
// runner may remove: those that ended, and any it has no part in (it learns
// nothing of other runners' sessions). A store error keeps the state.
func (a *API) endedSessions(ctx context.Context, runner string, ids []string) []string {
	var out []string
	for _, id := range ids {
		ss, err := a.db.FindSession(ctx, id)
		if silo.ErrorCode(err) == silo.ENOTFOUND {
			out = append(out, id)
			continue
		} else if err != nil {
			a.Logger.Warn("sessions of a heartbeat", "session", id, "err", err)
			continue
		}
		if ss.Status.Done() || !slices.ContainsFunc(ss.Clients, func(c sqlstore.SessionClient) bool { return c.Runner == runner }) {
			out = append(out, id)
		}
	}
	return out
}

// failLostTasks fails the runner's tasks its agent no longer runs and
// wakes their sessions.
func (a *API) failLostTasks(ctx context.Context, rn *sqlstore.StoredRunner, running []string, claimedBefore time.Time) {
	lost, err := a.db.FailLostTasks(ctx, rn.ID, running, claimedBefore, orchestrator.LostTask)
	if err != nil {
		a.Logger.Warn("fail lost tasks", "runner", rn.Name, "err", err)
		return
	}
	if len(lost) == 0 {
		return
	}
	a.Logger.Warn("tasks lost in a runner restart", "runner", rn.Name, "tasks", lost)
	for _, id := range lost {
		if t, err := a.db.FindTaskHead(ctx, id); err == nil && t.Session != "" {
			a.engine.Wake(t.Session)
		}
	}
}

// markRunnerFailed records a reason a person must act on.
func (a *API) MarkFailed(ctx context.Context, name, reason string) {
	_, err := a.db.UpdateRunner(ctx, name, func(r *sqlstore.StoredRunner) error {
		r.Status, r.StatusReason = silo.RunnerFailed, reason
		return nil
	})
	if err != nil {
		a.Logger.Warn("mark runner failed", "runner", name, "err", err)
	}
}

// beats coalesces heartbeats. Ten thousand runners beating every ten
// seconds are a thousand writes a second, nearly all of which only move a
// runner's last heartbeat on. So a heartbeat that changes nothing else — a
// runner this server knows online, with the same agent and resources — is
// kept in memory, and every second (FlushHeartbeats) the last of each
// runner's are written in one transaction. A heartbeat that changes
// anything (a runner coming online, a new agent) is written at once, as is
// the status change it makes. CheckRunners writes what is kept before it
// looks for runners that missed theirs, so nobody is marked offline for a
// heartbeat still in memory.
type beats struct {
	mu   sync.Mutex
	live map[int64]beat      // runners known online, with their agent as stored
	seen map[int64]time.Time // heartbeats not yet written
}

// beat is what a heartbeat writes besides its time.
type beat struct {
	name           string
	agent          string
	vcpu, memoryMB int
	policy         string // the runner's policy, as JSON: a new one is written at once
}

func beatOf(name string, hb silo.Heartbeat) beat {
	b := beat{name: name, agent: hb.AgentVersion, vcpu: hb.VCPU, memoryMB: hb.MemoryMB}
	if hb.Policy != nil {
		p, _ := json.Marshal(hb.Policy) // plain data: never fails
		b.policy = string(p)
	}
	return b
}

// heartbeat is the heartbeat that wrote b.
func (b beat) heartbeat() silo.Heartbeat {
	hb := silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion, AgentVersion: b.agent, VCPU: b.vcpu, MemoryMB: b.memoryMB}
	if b.policy != "" {
		hb.Policy = new(silo.RunnerPolicy)
		_ = json.Unmarshal([]byte(b.policy), hb.Policy) // written by beatOf
	}
	return hb
}

// touch keeps a heartbeat of a runner known online whose agent did not
// change, and reports whether it did; otherwise the heartbeat must be
// written at once.
func (b *beats) touch(id int64, name string, hb silo.Heartbeat, at time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if known, ok := b.live[id]; !ok || known != beatOf(name, hb) {
		return false
	}
	if b.seen == nil {
		b.seen = map[int64]time.Time{}
	}
	b.seen[id] = at
	return true
}

// online records a runner whose heartbeat was written and left it online.
func (b *beats) online(id int64, name string, hb silo.Heartbeat) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.live == nil {
		b.live = map[int64]beat{}
	}
	b.live[id] = beatOf(name, hb)
	delete(b.seen, id) // written
}

// forget drops a runner whose status changed: its next heartbeat is
// written at once. It returns what was known of it.
func (b *beats) forget(id int64) (beat, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	known, ok := b.live[id]
	delete(b.live, id)
	delete(b.seen, id)
	return known, ok
}

// forgetNames drops runners by name (those marked offline).
func (b *beats) forgetNames(names []string) {
	if len(names) == 0 {
		return
	}
	gone := map[string]bool{}
	for _, n := range names {
		gone[n] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, known := range b.live {
		if gone[known.name] {
			delete(b.live, id)
			delete(b.seen, id)
		}
	}
}

// take returns the heartbeats not yet written.
func (b *beats) take() map[int64]time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := b.seen
	b.seen = nil
	return seen
}

// keep puts back heartbeats whose write failed, unless newer ones came.
func (b *beats) keep(seen map[int64]time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen == nil {
		b.seen = map[int64]time.Time{}
	}
	for id, at := range seen {
		if _, ok := b.live[id]; !ok {
			continue
		}
		if cur, ok := b.seen[id]; !ok || cur.Before(at) {
			b.seen[id] = at
		}
	}
}

// FlushHeartbeats writes the heartbeats kept in memory, in one
// transaction. A runner that is no longer online in the store (another
// replica marked it offline, a user deregistered it) gets its heartbeat
// written in full, as if it had come now.
func (a *API) FlushHeartbeats(ctx context.Context) error {
	seen := a.beats.take()
	gone, err := a.db.TouchRunners(ctx, seen)
	if err != nil {
		a.beats.keep(seen)
		return err
	}
	for _, id := range gone {
		known, ok := a.beats.forget(id)
		if !ok {
			continue
		}
		if _, err := a.recordHeartbeat(ctx, id, known.name, known.heartbeat()); err != nil {
			a.Logger.Warn("record heartbeat", "runner", known.name, "err", err)
		}
	}
	return nil
}

// recordHeartbeat writes a heartbeat at once, and the status change it
// makes, and returns the runner's status.
func (a *API) recordHeartbeat(ctx context.Context, id int64, name string, hb silo.Heartbeat) (silo.RunnerStatus, error) {
	updated, was, err := a.db.Heartbeat(ctx, id, hb)
	if err != nil {
		return "", err
	}
	if updated.Status == silo.RunnerOnline {
		a.beats.online(id, name, hb)
	} else {
		a.beats.forget(id)
	}
	if was != updated.Status {
		a.Audit(ctx, "runner:"+name, "runner.status", name+": "+string(was)+" → "+string(updated.Status), silo.OutcomeSuccess, "agent "+hb.AgentVersion)
		a.Logger.Info("runner status", "runner", name, "from", was, "to", updated.Status)
		a.engine.WakeAll() // sessions waiting for runners
	}
	return updated.Status, nil
}
