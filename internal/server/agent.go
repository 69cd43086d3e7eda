package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/runnerapi"
	"github.com/silofl/silo/internal/sqlstore"
)

// The runner protocol: routes the agents call with their runner token,
// answered by internal/runnerapi. They dial out only: the server never
// connects to a runner.

// agentRoutes declares the routes agents call.
func (s *Server) agentRoutes() []Route {
	return []Route{
		{Method: "POST", Path: "/api/v1/runner/heartbeat", Access: AccessRunner, Summary: "Agent heartbeat: resources and version; marks the runner online", In: silo.Heartbeat{}, Out: silo.HeartbeatReply{}, Handler: s.agents.Heartbeat},
		{Method: "GET", Path: "/api/v1/runner/tasks", Access: AccessRunner, Summary: "Long-poll for the next task (?wait=25s): a frames body (the task as a JSON line, then its binary parts), or 204 when none came; the X-Silo-Have header lists part digests the runner holds", Handler: s.agents.PollTask},
		{Method: "POST", Path: "/api/v1/runner/tasks/{id}/result", Access: AccessRunner, Summary: "Report a task's result as a frames body (the result as a JSON line with its log lines, then its binary parts); with ?next=25s the answer (200 once the result is taken) goes on with the runner's next task, if one comes", Handler: s.agents.TaskResult},
		{Method: "GET", Path: "/api/v1/runner/tasks/{id}/parts/{part}", Access: AccessRunner, Summary: "One binary part of a task the runner is running", Handler: s.agents.TaskPart},
		{Method: "POST", Path: "/api/v1/runner/tasks/{id}/logs", Access: AccessRunner, Summary: "Append task log lines", In: []silo.LogLine{}, Handler: s.agents.TaskLogs},
		{Method: "POST", Path: "/api/v1/runner/tasks/{id}/progress", Access: AccessRunner, Summary: "Report how far a running task is (done of total units); the session shows its step's progress", In: silo.TaskProgress{}, Handler: s.agents.TaskProgress},
	}
}

// authenticateRunner resolves a runner token.
func (s *Server) authenticateRunner(r *http.Request) (*sqlstore.StoredRunner, error) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !strings.HasPrefix(secret, silo.RunnerTokenPrefix) {
		return nil, silo.Errorf(silo.EUNAUTHORIZED, "runner routes take a runner token (%s…): see 'silo runners token NAME'", silo.RunnerTokenPrefix)
	}
	return s.db.FindRunnerByTokenHash(r.Context(), hashSecret(strings.TrimSpace(secret)))
}

// CheckRunners marks online runners that missed three heartbeats offline.
// Heartbeats kept in memory are written first.
func (s *Server) CheckRunners(ctx context.Context) error {
	s.configureAgents()
	return s.agents.CheckRunners(ctx)
}

// Run does the server's background work until ctx ends: watching runner
// heartbeats and removing expired sign-ins.
func (s *Server) Run(ctx context.Context) {
	s.runMu.Lock()
	s.runCtx = ctx
	s.runMu.Unlock()
	s.configureEngine()
	// Other replicas' tasks and results wake this one's long-polls and
	// drivers at once.
	s.db.Listen(ctx, sqlstore.Listener{Task: s.agents.Notify, Session: s.engine.Wake, Connected: func() {
		s.agents.NotifyAll()
		s.engine.WakeAll()
	}})
	s.engine.Start(ctx)
	tick := time.NewTicker(s.HeartbeatInterval)
	defer tick.Stop()
	sweep := time.NewTicker(time.Hour)
	defer sweep.Stop()
	flush := time.NewTicker(runnerapi.HeartbeatFlush)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			s.local.stopAll()
			if err := s.agents.FlushHeartbeats(context.WithoutCancel(ctx)); err != nil {
				s.Logger.Warn("record heartbeats", "err", err)
			}
			return
		case <-flush.C:
			if err := s.agents.FlushHeartbeats(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.Logger.Warn("record heartbeats", "err", err)
			}
		case <-tick.C:
			if err := s.agents.CheckRunners(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.Logger.Warn("check runners", "err", err)
			}
			s.engine.Resume(ctx) // sessions whose driver (another replica) died
		case <-sweep.C:
			if _, err := s.db.DeleteExpiredLogins(ctx); err != nil {
				s.Logger.Warn("remove expired sign-ins", "err", err)
			}
		}
	}
}
