package server

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/silofl/silo"
)

// beats coalesces heartbeats. Ten thousand runners beating every ten
// seconds are a thousand writes a second, nearly all of which only move a
// runner's last heartbeat on. So a heartbeat that changes nothing else — a
// runner this server knows online, with the same agent and resources — is
// kept in memory, and every second (flushHeartbeats) the last of each
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

// flushHeartbeats writes the heartbeats kept in memory, in one
// transaction. A runner that is no longer online in the store (another
// replica marked it offline, a user deregistered it) gets its heartbeat
// written in full, as if it had come now.
func (s *Server) flushHeartbeats(ctx context.Context) error {
	seen := s.beats.take()
	gone, err := s.db.TouchRunners(ctx, seen)
	if err != nil {
		s.beats.keep(seen)
		return err
	}
	for _, id := range gone {
		known, ok := s.beats.forget(id)
		if !ok {
			continue
		}
		if _, err := s.recordHeartbeat(ctx, id, known.name, known.heartbeat()); err != nil {
			s.Logger.Warn("record heartbeat", "runner", known.name, "err", err)
		}
	}
	return nil
}

// recordHeartbeat writes a heartbeat at once, and the status change it
// makes, and returns the runner's status.
func (s *Server) recordHeartbeat(ctx context.Context, id int64, name string, hb silo.Heartbeat) (silo.RunnerStatus, error) {
	updated, was, err := s.db.Heartbeat(ctx, id, hb)
	if err != nil {
		return "", err
	}
	if updated.Status == silo.RunnerOnline {
		s.beats.online(id, name, hb)
	} else {
		s.beats.forget(id)
	}
	if was != updated.Status {
		s.auditAs(ctx, "runner:"+name, "runner.status", name+": "+string(was)+" → "+string(updated.Status), silo.OutcomeSuccess, "agent "+hb.AgentVersion)
		s.Logger.Info("runner status", "runner", name, "from", was, "to", updated.Status)
		s.engine.WakeAll() // sessions waiting for runners
	}
	return updated.Status, nil
}
