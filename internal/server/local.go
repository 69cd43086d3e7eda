package server

import (
	"context"
	"net/http"
	"sync"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

// LocalLaunch is what the server passes when it starts a local runner.
type LocalLaunch struct {
	Name        string
	ServerURL   string
	Token       string
	StorageRoot string
	VCPU        int
	MemoryMB    int
}

// Launcher starts a local runner's agent and returns a function that stops
// it. cmd/silo starts `silo runner` as a child process; tests run the agent
// in-process. The agent must stop by itself when ctx ends.
type Launcher func(ctx context.Context, l LocalLaunch) (stop func(), err error)

// localRunners tracks the local runners this server started.
type localRunners struct {
	mu    sync.Mutex
	stops map[string]func()
}

func (l *localRunners) add(name string, stop func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stops == nil {
		l.stops = map[string]func(){}
	}
	l.stops[name] = stop
}

func (l *localRunners) running(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.stops[name]
	return ok
}

func (l *localRunners) stop(name string) bool {
	l.mu.Lock()
	stop, ok := l.stops[name]
	delete(l.stops, name)
	l.mu.Unlock()
	if ok {
		stop()
	}
	return ok
}

func (l *localRunners) stopAll() {
	l.mu.Lock()
	names := make([]string, 0, len(l.stops))
	for n := range l.stops {
		names = append(names, n)
	}
	l.mu.Unlock()
	for _, n := range names {
		l.stop(n)
	}
}

func (s *Server) handleStartRunner(w http.ResponseWriter, r *http.Request) {
	rn, err := s.StartLocalRunner(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	writeJSON(w, http.StatusOK, rn)
}

// StartLocalRunner starts a local runner's agent under this server with a
// fresh token (the previous one stops working). It runs until Stop, until
// the runner is deregistered, or until the server's Run context ends.
func (s *Server) StartLocalRunner(ctx context.Context, name string) (*silo.Runner, error) {
	if !s.CanStartRunners() {
		return nil, silo.Errorf(silo.ECONFLICT, "this server cannot start runners itself: run 'silo runner --server URL --token TOKEN' on the runner's machine")
	}
	rn, err := s.db.FindRunner(ctx, name)
	if err != nil {
		return nil, err
	}
	if rn.Provider != silo.ProviderLocal {
		return nil, silo.Errorf(silo.EINVALID, "runner %s is a %s runner: only local runners can be started by the server; apply its deployment bundle instead", name, rn.Provider)
	}
	if s.local.running(name) {
		return nil, silo.Errorf(silo.ECONFLICT, "runner %s is already running under this server", name)
	}
	token := newRunnerToken()
	updated, err := s.db.UpdateRunner(ctx, name, func(r *sqlstore.StoredRunner) error {
		r.TokenHash = hashSecret(token)
		clearAgentFailure(r)
		if r.Status != silo.RunnerOnline {
			r.StatusReason = "starting under the server"
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	stop, err := s.Launch(s.backgroundContext(), LocalLaunch{Name: name, ServerURL: s.InternalURL, Token: token, StorageRoot: LocalRoot(rn.StoragePath),
		VCPU: rn.VCPU, MemoryMB: rn.MemoryGB * 1024})
	s.auditResult(ctx, "runner.start", name, err)
	if err != nil {
		s.markRunnerFailed(ctx, name, "could not start: "+err.Error())
		return nil, silo.Errorf(silo.EINTERNAL, "start runner %s: %v", name, err)
	}
	s.local.add(name, stop)
	return s.RunnerView(updated), nil
}

func (s *Server) handleStopRunner(w http.ResponseWriter, r *http.Request) {
	rn, err := s.StopLocalRunner(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	writeJSON(w, http.StatusOK, rn)
}

// StopLocalRunner stops a local runner this server started. Its agent's
// heartbeats stop, so it turns offline after three missed ones.
func (s *Server) StopLocalRunner(ctx context.Context, name string) (*silo.Runner, error) {
	rn, err := s.db.FindRunner(ctx, name)
	if err == nil && !s.local.stop(name) {
		err = silo.Errorf(silo.ECONFLICT, "runner %s is not running under this server", name)
	}
	s.auditResult(ctx, "runner.stop", name, err)
	if err != nil {
		return nil, err
	}
	return s.RunnerView(rn), nil
}

// CanStartRunners reports whether this server can start local runners
// itself (StartLocalRunner).
func (s *Server) CanStartRunners() bool { return s.Launch != nil && s.InternalURL != "" }

// LocalRunnerRunning reports whether the named runner was started by this
// server and has not been stopped.
func (s *Server) LocalRunnerRunning(name string) bool { return s.local.running(name) }
