package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

// The runner protocol: routes the agents call with their runner token. They
// dial out only: the server never connects to a runner.

// agentRoutes declares the routes agents call.
func (s *Server) agentRoutes() []Route {
	return []Route{
		{Method: "POST", Path: "/api/v1/runner/heartbeat", Access: AccessRunner, Summary: "Agent heartbeat: resources and version; marks the runner online", In: silo.Heartbeat{}, Out: silo.HeartbeatReply{}, Handler: s.handleHeartbeat},
		{Method: "GET", Path: "/api/v1/runner/tasks", Access: AccessRunner, Summary: "Long-poll for the next task (?wait=25s); 204 when none", Out: silo.Task{}, Handler: s.handlePollTask},
		{Method: "POST", Path: "/api/v1/runner/tasks/{id}/result", Access: AccessRunner, Summary: "Report a task's result", In: silo.TaskResult{}, Out: silo.Task{}, Handler: s.handleTaskResult},
		{Method: "POST", Path: "/api/v1/runner/tasks/{id}/logs", Access: AccessRunner, Summary: "Append task log lines", In: []silo.LogLine{}, Handler: s.handleTaskLogs},
	}
}

type runnerKey struct{}

func runnerFromContext(ctx context.Context) *sqlstore.StoredRunner {
	r, _ := ctx.Value(runnerKey{}).(*sqlstore.StoredRunner)
	return r
}

// authenticateRunner resolves a runner token.
func (s *Server) authenticateRunner(r *http.Request) (*sqlstore.StoredRunner, error) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !strings.HasPrefix(secret, silo.RunnerTokenPrefix) {
		return nil, silo.Errorf(silo.EUNAUTHORIZED, "runner routes take a runner token (%s…): see 'silo runners token NAME'", silo.RunnerTokenPrefix)
	}
	return s.db.FindRunnerByTokenHash(r.Context(), hashSecret(strings.TrimSpace(secret)))
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	var hb silo.Heartbeat
	if err := decodeJSON(w, r, &hb); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	if hb.ProtocolVersion != silo.ProtocolVersion {
		side := "the runner"
		if hb.ProtocolVersion > silo.ProtocolVersion {
			side = "the server"
		}
		err := silo.Errorf(silo.ECONFLICT, "protocol version mismatch: the agent speaks %d, the server %d; upgrade %s to the same Silo release", hb.ProtocolVersion, silo.ProtocolVersion, side)
		s.markRunnerFailed(ctx, rn.Name, err.Message)
		writeError(w, r, s.Logger, err)
		return
	}
	if len(hb.AgentVersion) > 64 || len(hb.Hostname) > 255 || len(hb.RunningTasks) > 1024 || hb.VCPU < 0 || hb.MemoryMB < 0 {
		writeError(w, r, s.Logger, silo.Errorf(silo.EINVALID, "heartbeat fields out of range"))
		return
	}
	was := rn.Status
	updated, err := s.db.RecordHeartbeat(ctx, rn.ID, hb)
	if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	if was != updated.Status {
		s.auditAs(ctx, "runner:"+rn.Name, "runner.status", rn.Name+": "+string(was)+" → "+string(updated.Status), silo.OutcomeSuccess, "agent "+hb.AgentVersion)
		s.Logger.Info("runner status", "runner", rn.Name, "from", was, "to", updated.Status)
	}
	// Tasks the server thinks are running but the agent does not know
	// were lost in a restart: fail them now rather than wait forever.
	if lost, err := s.db.FailLostTasks(ctx, rn.ID, hb.RunningTasks, s.now().Add(-2*s.HeartbeatInterval), lostTask); err != nil {
		s.Logger.Warn("fail lost tasks", "runner", rn.Name, "err", err)
	} else if len(lost) > 0 {
		s.Logger.Warn("tasks lost in a runner restart", "runner", rn.Name, "tasks", lost)
		for _, id := range lost {
			if t, err := s.db.FindTask(ctx, id); err == nil && t.Session != "" {
				s.sessions.wake(t.Session)
			}
		}
	}
	reply := silo.HeartbeatReply{Runner: rn.Name, Status: updated.Status, ProtocolVersion: silo.ProtocolVersion, HeartbeatInterval: s.HeartbeatInterval.String()}
	for _, id := range hb.RunningTasks {
		if t, err := s.db.FindTask(ctx, id); err != nil || t.Status != silo.TaskRunning {
			reply.CancelTasks = append(reply.CancelTasks, id)
		}
	}
	writeJSON(w, http.StatusOK, reply)
}

// markRunnerFailed records a reason a person must act on.
func (s *Server) markRunnerFailed(ctx context.Context, name, reason string) {
	_, err := s.db.UpdateRunner(ctx, name, func(r *sqlstore.StoredRunner) error {
		r.Status, r.StatusReason = silo.RunnerFailed, reason
		return nil
	})
	if err != nil {
		s.Logger.Warn("mark runner failed", "runner", name, "err", err)
	}
}

// MaxPollWait bounds a long-poll, below common proxy idle timeouts.
const MaxPollWait = 60 * time.Second

func (s *Server) handlePollTask(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	wait := 25 * time.Second
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxPollWait {
			writeError(w, r, s.Logger, silo.FieldErrorf("wait", "wait %q must be a duration from 0s to %s", v, MaxPollWait))
			return
		}
		wait = d
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		// Take the wake channel before looking, so a task queued between
		// the look and the wait is not missed.
		woken := s.wake.channel(rn.ID)
		t, err := s.db.ClaimTask(ctx, rn.ID)
		if err != nil && ctx.Err() != nil {
			return // the agent hung up (stopping, or its network cut)
		} else if err != nil {
			writeError(w, r, s.Logger, err)
			return
		}
		if t != nil {
			writeJSON(w, http.StatusOK, t)
			return
		}
		select {
		case <-woken:
		case <-time.After(2 * time.Second): // another replica may have queued it
		case <-deadline.C:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) handleTaskResult(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	var res silo.TaskResult
	if err := decodeJSONLimit(w, r, &res, MaxResultBytes); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	if len(res.Error) > 4096 {
		res.Error = res.Error[:4096]
	}
	t, err := s.db.FinishTask(ctx, rn.ID, r.PathValue("id"), res)
	if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	s.Logger.Info("task finished", "runner", rn.Name, "task", t.ID, "type", t.Type, "status", t.Status)
	if t.Session != "" {
		s.sessions.wake(t.Session)
	}
	if t.Type == silo.TaskConnect {
		if err := s.datasetConnected(ctx, t); err != nil {
			writeError(w, r, s.Logger, err)
			return
		}
	}
	// The runner already has the payload and the output: echo only the
	// task's state, not its (possibly large) model parameters.
	t.Payload, t.Output = nil, nil
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) handleTaskLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	var lines []silo.LogLine
	if err := decodeJSON(w, r, &lines); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	if len(lines) > silo.MaxLogLinesPerPost {
		writeError(w, r, s.Logger, silo.Errorf(silo.EINVALID, "at most %d log lines per request", silo.MaxLogLinesPerPost))
		return
	}
	now := s.now()
	for i := range lines {
		l := &lines[i]
		if len(l.Message) > silo.MaxLogLineBytes {
			l.Message = strings.ToValidUTF8(l.Message[:silo.MaxLogLineBytes], "") + " …(truncated)"
		}
		if !utf8.ValidString(l.Message) {
			l.Message = strings.ToValidUTF8(l.Message, "?")
		}
		switch l.Level {
		case "DEBUG", "INFO", "WARN", "ERROR":
		default:
			l.Level = "INFO"
		}
		if l.Time.IsZero() || l.Time.After(now.Add(time.Minute)) {
			l.Time = now
		}
	}
	if err := s.db.AppendTaskLogs(ctx, rn.ID, r.PathValue("id"), lines); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// waker wakes long-polls when a task is queued for their runner.
type waker struct {
	mu sync.Mutex
	ch map[int64]chan struct{}
}

func (k *waker) channel(runnerID int64) <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ch == nil {
		k.ch = map[int64]chan struct{}{}
	}
	c, ok := k.ch[runnerID]
	if !ok {
		c = make(chan struct{})
		k.ch[runnerID] = c
	}
	return c
}

func (k *waker) notify(runnerID int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.ch[runnerID]; ok {
		close(c)
		delete(k.ch, runnerID)
	}
}

// CheckRunners marks online runners that missed three heartbeats offline.
func (s *Server) CheckRunners(ctx context.Context) error {
	cutoff := s.now().Add(-3 * s.HeartbeatInterval)
	names, err := s.db.MarkStaleRunnersOffline(ctx, cutoff.UnixMicro(), fmt.Sprintf("no heartbeat since %s (3 intervals of %s)", cutoff.Format(time.RFC3339), s.HeartbeatInterval))
	for _, n := range names {
		s.Logger.Warn("runner offline", "runner", n)
		s.auditAs(ctx, "system", "runner.status", n+": online → offline", silo.OutcomeSuccess, "missed heartbeats")
	}
	return err
}

// Run does the server's background work until ctx ends: watching runner
// heartbeats and removing expired sign-ins.
func (s *Server) Run(ctx context.Context) {
	s.runMu.Lock()
	s.runCtx = ctx
	s.runMu.Unlock()
	s.resumeSessions(ctx)
	tick := time.NewTicker(s.HeartbeatInterval)
	defer tick.Stop()
	sweep := time.NewTicker(time.Hour)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			s.local.stopAll()
			return
		case <-tick.C:
			if err := s.CheckRunners(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.Logger.Warn("check runners", "err", err)
			}
			s.resumeSessions(ctx) // sessions whose driver (another replica) died
		case <-sweep.C:
			if _, err := s.db.DeleteExpiredLogins(ctx); err != nil {
				s.Logger.Warn("remove expired sign-ins", "err", err)
			}
		}
	}
}
