package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
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
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, rn)
}

// StartLocalRunner starts a local runner's agent under this server with a
// fresh token (the previous one stops working). It runs until Stop, until
// the runner is deregistered, or until the server's Run context ends.
func (s *Server) StartLocalRunner(ctx context.Context, name string) (*silo.Runner, error) {
	if s.Launch == nil || s.InternalURL == "" {
		return nil, silo.Errorf(silo.ECONFLICT, "this server cannot start runners itself: run 'silo runner --server URL --token TOKEN' on the runner's machine")
	}
	if s.LocalRunnersRoot == "" {
		err := silo.Errorf(silo.ECONFLICT, "this server starts no runners: its operator has not given it a folder for their storage (silo server --local-runners-root DIR); run 'silo runner --server URL --token TOKEN --storage-root DIR' on the data's machine instead")
		s.auditResult(ctx, "runner.start", name, err)
		return nil, err
	}
	rn, err := s.findRunnerToChange(ctx, name)
	if err != nil {
		s.auditResult(ctx, "runner.start", name, err)
		return nil, err
	}
	if rn.Provider != silo.ProviderLocal {
		return nil, silo.Errorf(silo.EINVALID, "runner %s is a %s runner: only local runners can be started by the server; apply its deployment bundle instead", name, rn.Provider)
	}
	if err := s.checkLocalStorage(ctx, rn); err != nil {
		s.auditResult(ctx, "runner.start", name, err)
		return nil, err
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
		s.agents.MarkFailed(ctx, name, "could not start: "+err.Error())
		return nil, silo.Errorf(silo.EINTERNAL, "start runner %s: %v", name, err)
	}
	s.local.add(name, stop)
	return s.RunnerView(updated), nil
}

func (s *Server) handleStopRunner(w http.ResponseWriter, r *http.Request) {
	rn, err := s.StopLocalRunner(r.Context(), r.PathValue("name"))
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, rn)
}

// StopLocalRunner stops a local runner this server started. Its agent's
// heartbeats stop, so it turns offline after three missed ones.
func (s *Server) StopLocalRunner(ctx context.Context, name string) (*silo.Runner, error) {
	rn, err := s.findRunnerToChange(ctx, name)
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
// itself (StartLocalRunner): it has a launcher and a folder for their
// storage.
func (s *Server) CanStartRunners() bool {
	return s.Launch != nil && s.InternalURL != "" && s.LocalRunnersRoot != ""
}

// LocalRunnerRunning reports whether the named runner was started by this
// server and has not been stopped.
func (s *Server) LocalRunnerRunning(name string) bool { return s.local.running(name) }

// A runner the server starts reads files on the server's own machine, as
// the server's user. So its storage must be a folder the operator set aside
// for runners (--local-runners-root), which holds nothing of the server's:
// not its data directory, its key, its configuration or its database, nor
// anything else the server did not create for runners.

// localRootMarker marks a folder the server set aside for runners' storage.
const localRootMarker = ".silo-local-runners-root"

// CheckLocalRunnersRoot prepares the folder for runners' storage at server
// start: it must not be, hold or lie inside any of protected (the server's
// data directory, key file, configuration, database…), links resolved; a
// missing or empty folder is created and marked as the server's, and a
// folder that already holds anything unmarked is refused. It returns the
// folder's real path.
func CheckLocalRunnersRoot(root string, protected []string) (string, error) {
	if strings.TrimSpace(root) == "" {
		return "", errors.New("--local-runners-root is empty: give a folder for the storage of the runners the server starts, e.g. /var/lib/silo-runners")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("--local-runners-root %s: %w", root, err)
	}
	real := resolveExisting(abs)
	for _, p := range protected {
		if p == "" {
			continue
		}
		pa, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		if rp := resolveExisting(pa); pathWithin(real, rp) || pathWithin(rp, real) {
			return "", fmt.Errorf("--local-runners-root %s overlaps %s, which is the server's own: runners started by the server read files under their folder, so it must share nothing with the server's data, key or configuration; give a separate folder, e.g. %s", abs, pa, filepath.Join(filepath.Dir(real), "silo-runners"))
		}
	}
	entries, err := os.ReadDir(real)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(real, 0o700); err != nil {
			return "", fmt.Errorf("create --local-runners-root %s: %w", abs, err)
		}
	case err != nil:
		return "", fmt.Errorf("--local-runners-root %s: %w", abs, err)
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(real, localRootMarker)); err != nil {
			return "", fmt.Errorf("--local-runners-root %s already holds files the server did not create for runners: give a new or empty folder set aside for runners' storage (the server marks it as its own)", abs)
		}
		return real, nil
	}
	if err := os.WriteFile(filepath.Join(real, localRootMarker), []byte("This folder holds the storage of the runners a Silo server starts (silo server --local-runners-root).\n"), 0o600); err != nil {
		return "", fmt.Errorf("mark --local-runners-root %s: %w", abs, err)
	}
	return real, nil
}

// checkLocalStorage refuses to start a runner whose storage is not a
// folder strictly inside LocalRunnersRoot, links resolved, or overlaps
// another local runner's storage.
func (s *Server) checkLocalStorage(ctx context.Context, rn *sqlstore.StoredRunner) error {
	base := resolveExisting(s.LocalRunnersRoot)
	root := resolveExisting(filepath.Clean(LocalRoot(rn.StoragePath)))
	if root == base || !pathWithin(base, root) {
		return silo.Errorf(silo.EFORBIDDEN, "runner %s's storage %s is not a folder inside this server's folder for runners (%s): the server starts only runners whose storage is there; register the runner with --storage-path file://%s/%s, or run 'silo runner' on the data's machine",
			rn.Name, LocalRoot(rn.StoragePath), s.LocalRunnersRoot, s.LocalRunnersRoot, rn.Name)
	}
	others, err := s.db.ListRunners(ctx, sqlstore.RunnerQuery{})
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.ID == rn.ID || o.Provider != silo.ProviderLocal {
			continue
		}
		// Only runners the server could start count: their storage is a
		// folder inside the folder for runners.
		if or := resolveExisting(filepath.Clean(LocalRoot(o.StoragePath))); or != base && pathWithin(base, or) && (pathWithin(or, root) || pathWithin(root, or)) {
			return silo.Errorf(silo.ECONFLICT, "runner %s's storage %s overlaps runner %s's (%s): each runner the server starts needs a folder of its own", rn.Name, LocalRoot(rn.StoragePath), o.Name, LocalRoot(o.StoragePath))
		}
	}
	return nil
}

// resolveExisting resolves the links of the longest existing part of an
// absolute path and appends the rest.
func resolveExisting(p string) string {
	p = filepath.Clean(p)
	var rest []string
	for d := p; ; d = filepath.Dir(d) {
		if real, err := filepath.EvalSymlinks(d); err == nil {
			for i := len(rest) - 1; i >= 0; i-- {
				real = filepath.Join(real, rest[i])
			}
			return real
		}
		if d == filepath.Dir(d) {
			return p
		}
		rest = append(rest, filepath.Base(d))
	}
}

// pathWithin reports whether p is root or below it (clean absolute paths).
func pathWithin(root, p string) bool {
	return p == root || strings.HasPrefix(p, strings.TrimSuffix(root, string(filepath.Separator))+string(filepath.Separator))
}
