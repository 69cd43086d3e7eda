// Package fed runs a whole Silo federation inside one process for the
// benchmarks: a real server (SQLite store, the production HTTP handler on a
// loopback listener) and real runner agents (the same code as `silo runner`)
// that dial it over HTTP, each with its own storage root. It is what
// internal/server's session tests do, without the testing package.
//
// Every byte of runner traffic (requests and responses under
// /api/v1/runner/) is counted, so a benchmark can report bytes on the wire.
package fed

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
)

const (
	adminEmail    = "bench@silo.example"
	adminPassword = "bench-password-2026"
)

// Federation is a server and its runners in this process.
type Federation struct {
	Dir   string
	DSN   string // the store's
	URL   string
	API   *client.Client // the workspace admin
	Token string         // the admin's API token
	Wire  *Wire
	srv   *server.Server
	db    *sqlstore.DB
	ts    *httptest.Server
	ctx   context.Context
	stop  context.CancelFunc
	mu    sync.Mutex
	ends  []chan error
	roots map[string]string
}

// Start starts a server with an empty workspace on SQLite in a new
// temporary directory.
func Start(ctx context.Context) (*Federation, error) { return StartWith(ctx, "") }

// StartWith is Start on the store dsn names (a postgres:// URL, whose
// database must be empty), or SQLite in the temporary directory when dsn
// is "".
func StartWith(ctx context.Context, dsn string) (*Federation, error) {
	dir, err := os.MkdirTemp("", "silo-bench-fed-")
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	f := &Federation{Dir: dir, Wire: &Wire{}, ctx: ctx, stop: stop, roots: map[string]string{}}
	if dsn == "" {
		dsn = filepath.Join(dir, "silo.db")
	}
	f.DSN = dsn
	f.db = sqlstore.New(dsn)
	f.db.Logger = slog.New(slog.DiscardHandler)
	if err := f.db.Open(ctx); err != nil {
		f.Close()
		return nil, err
	}
	// The web UI's pages are left out: runners and the API do not use
	// them, and the benchmarks build on older commits too (bench/abtest).
	f.srv = server.New(f.db)
	f.srv.Logger = slog.New(slog.DiscardHandler)
	if _, _, err := f.srv.BootstrapAdmin(ctx, adminEmail, adminPassword); err != nil {
		f.Close()
		return nil, err
	}
	f.ts = httptest.NewServer(f.Wire.wrap(f.srv.Handler()))
	f.URL = f.ts.URL
	f.srv.InternalURL = f.ts.URL
	go f.srv.Run(ctx)
	login, err := client.New(f.URL, "").Login(ctx, client.LoginRequest{Email: adminEmail, Password: adminPassword, TokenName: "bench"})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sign in: %w", err)
	}
	f.Token = login.Token
	f.API = client.New(f.URL, login.Token)
	return f, nil
}

// Close stops the agents and the server and removes the directory.
func (f *Federation) Close() {
	f.stop()
	f.mu.Lock()
	ends := f.ends
	f.mu.Unlock()
	for _, end := range ends {
		select {
		case <-end:
		case <-time.After(10 * time.Second):
		}
	}
	if f.ts != nil {
		f.ts.CloseClientConnections()
		f.ts.Close()
	}
	if f.db != nil {
		f.db.Close()
	}
	os.RemoveAll(f.Dir)
}

// Root is the storage root of the named runner.
func (f *Federation) Root(runnerName string) string { return f.roots[runnerName] }

// AddRunners registers local runners and starts their agents in this
// process (each with vcpu and memMB as its allowance), then waits until
// every one is online.
func (f *Federation) AddRunners(names []string, vcpu, memMB int) error {
	for _, name := range names {
		root := filepath.Join(f.Dir, "runners", name)
		if err := os.MkdirAll(root, 0o700); err != nil {
			return err
		}
		r, err := f.API.RegisterRunner(f.ctx, silo.RunnerSpec{Name: name, Provider: silo.ProviderLocal, StoragePath: "file://" + root, VCPU: vcpu, MemoryGB: max(1, memMB/1024)})
		if err != nil {
			return fmt.Errorf("register runner %s: %w", name, err)
		}
		ag, err := runner.New(runner.Config{ServerURL: f.URL, Token: r.Token, StorageRoot: root, VCPU: vcpu, MemoryMB: memMB,
			PollWait: 20 * time.Second, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		end := make(chan error, 1)
		go func() { end <- ag.Run(f.ctx) }()
		f.mu.Lock()
		f.ends = append(f.ends, end)
		f.roots[name] = root
		f.mu.Unlock()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list, err := f.API.ListRunners(f.ctx, false)
		if err != nil {
			return err
		}
		online := map[string]bool{}
		for _, r := range list {
			online[r.Name] = r.Status == silo.RunnerOnline
		}
		missing := 0
		for _, n := range names {
			if !online[n] {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d runners did not come online", missing, len(names))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AddDataset registers a dataset at file path (inside runner's root) with
// the default privacy controls and waits until it is connected.
func (f *Federation) AddDataset(name, runnerName, path string) (*silo.Dataset, error) {
	if _, err := f.API.RegisterDataset(f.ctx, silo.DatasetSpec{Name: name, Runner: runnerName, URI: "file://" + path}); err != nil {
		return nil, fmt.Errorf("register dataset %s: %w", name, err)
	}
	return f.WaitDataset(name)
}

// WaitDataset waits until the dataset is connected (or failed).
func (f *Federation) WaitDataset(name string) (*silo.Dataset, error) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		d, err := f.API.GetDataset(f.ctx, name)
		if err != nil {
			return nil, err
		}
		switch d.Status {
		case silo.DatasetConnected:
			return d, nil
		case silo.DatasetError:
			return nil, fmt.Errorf("dataset %s: %s", name, d.Error)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dataset %s still %s", name, d.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SessionRun is how a session went.
type SessionRun struct {
	Session *silo.Session
	Total   time.Duration
	// RoundAt[k] is when round k+1 was completed, from the session's
	// creation: when the store recorded it (or, on a store this package
	// cannot read, when a poll first saw it).
	RoundAt []time.Duration
	// WireAt[k] is the runner traffic counted by then, and CPUAt[k] the
	// process's CPU time (server and runners) by then.
	WireAt []WireCount
	CPUAt  []time.Duration
	// RoutesAt[k] is the traffic per route counted by then.
	RoutesAt []map[string]WireCount
	Start    WireCount // traffic counted when the session was created
	End      WireCount
}

// RunSession creates a session from config and polls it every poll until it
// ends.
func (f *Federation) RunSession(config any, poll time.Duration) (*SessionRun, error) {
	b, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	run := &SessionRun{Start: f.Wire.Count()}
	start := time.Now()
	s, err := f.API.CreateSession(f.ctx, b)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	var seen []time.Time
	for {
		s, err = f.API.GetSession(f.ctx, s.ID)
		if err != nil {
			return nil, err
		}
		for len(seen) < s.Round {
			seen = append(seen, time.Now())
		}
		if s.Status.Done() {
			break
		}
		time.Sleep(poll)
	}
	run.Total = time.Since(start)
	run.End = f.Wire.Count()
	run.Session = s
	if recorded, err := f.roundTimes(s.ID); err == nil && len(recorded) == len(seen) {
		seen = recorded
	}
	for _, at := range seen {
		w, cpu, routes := f.Wire.At(at)
		run.RoundAt = append(run.RoundAt, at.Sub(start))
		run.WireAt = append(run.WireAt, w)
		run.CPUAt = append(run.CPUAt, cpu)
		run.RoutesAt = append(run.RoutesAt, routes)
	}
	if s.Status != silo.SessionCompleted {
		return run, fmt.Errorf("session %s ended %s at round %d: %s", s.ID, s.Status, s.Round, s.StatusReason)
	}
	return run, nil
}

// roundTimes reads when the store recorded each round of a session.
func (f *Federation) roundTimes(id string) ([]time.Time, error) {
	driver, dsn, query := "sqlite", "file:"+filepath.ToSlash(f.DSN)+"?mode=ro", `SELECT recorded_at FROM session_rounds WHERE session_id = ? ORDER BY round`
	if strings.HasPrefix(f.DSN, "postgres://") || strings.HasPrefix(f.DSN, "postgresql://") {
		driver, dsn, query = "pgx", f.DSN, strings.Replace(query, "?", "$1", 1)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(f.ctx, query, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var us int64
		if err := rows.Scan(&us); err != nil {
			return nil, err
		}
		out = append(out, time.UnixMicro(us))
	}
	return out, rows.Err()
}

// Wire counts runner traffic: bytes of request bodies (runner → server)
// and response bodies (server → runner) under /api/v1/runner/, plus an
// estimate of the HTTP/1.1 headers. It keeps a log of every request's end
// (with the process's CPU time then), so the traffic up to any moment can
// be read afterwards.
type Wire struct {
	requests, up, down, headers atomic.Int64

	mu      sync.Mutex
	byRoute map[string]*WireCount
	log     []wireEvent
}

// wireEvent is one request's traffic, counted when it ended.
type wireEvent struct {
	at    time.Time
	cpu   time.Duration
	route string
	c     WireCount
}

// At returns the traffic counted up to t (requests that ended by then), the
// process's CPU time at the last of them, and the traffic per route.
func (w *Wire) At(t time.Time) (WireCount, time.Duration, map[string]WireCount) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var total WireCount
	var cpu time.Duration
	routes := map[string]WireCount{}
	for _, e := range w.log {
		if e.at.After(t) {
			break
		}
		total = total.Add(e.c)
		routes[e.route] = routes[e.route].Add(e.c)
		cpu = e.cpu
	}
	return total, cpu, routes
}

// CPUTime is the process's user and system CPU time so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// route names a runner request by its route: task IDs are dropped.
func route(r *http.Request) string {
	p := strings.TrimPrefix(r.URL.Path, "/api/v1/runner/")
	if rest, ok := strings.CutPrefix(p, "tasks/"); ok {
		if _, what, ok := strings.Cut(rest, "/"); ok {
			p = "tasks/{id}/" + what
		}
	}
	return r.Method + " " + p
}

// ByRoute returns the traffic so far per route.
func (w *Wire) ByRoute() map[string]WireCount {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]WireCount, len(w.byRoute))
	for k, v := range w.byRoute {
		out[k] = *v
	}
	return out
}

// SubRoutes is the per-route traffic between two ByRoute snapshots.
func SubRoutes(a, b map[string]WireCount) map[string]WireCount {
	out := map[string]WireCount{}
	for k, v := range a {
		if d := v.Sub(b[k]); d.Requests > 0 || d.Total() > 0 {
			out[k] = d
		}
	}
	return out
}

// WireCount is a snapshot of a Wire.
type WireCount struct {
	Requests int64 `json:"requests"`
	Up       int64 `json:"bytes_up"`   // runner → server bodies
	Down     int64 `json:"bytes_down"` // server → runner bodies
	Headers  int64 `json:"bytes_headers"`
}

// Add is the sum of two counts.
func (c WireCount) Add(o WireCount) WireCount {
	return WireCount{c.Requests + o.Requests, c.Up + o.Up, c.Down + o.Down, c.Headers + o.Headers}
}

// Total is every counted byte.
func (c WireCount) Total() int64 { return c.Up + c.Down + c.Headers }

// Sub is the traffic between two snapshots.
func (c WireCount) Sub(o WireCount) WireCount {
	return WireCount{c.Requests - o.Requests, c.Up - o.Up, c.Down - o.Down, c.Headers - o.Headers}
}

// Count returns the traffic so far.
func (w *Wire) Count() WireCount {
	return WireCount{w.requests.Load(), w.up.Load(), w.down.Load(), w.headers.Load()}
}

func (w *Wire) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/v1/runner/") {
			next.ServeHTTP(rw, r)
			return
		}
		w.requests.Add(1)
		// The request line and headers as the client sent them.
		h := int64(len(r.Method) + len(r.URL.RequestURI()) + len(r.Proto) + 4)
		for k, vs := range r.Header {
			for _, v := range vs {
				h += int64(len(k) + len(v) + 4)
			}
		}
		h += int64(len(r.Host) + 8)
		var up, down atomic.Int64
		r.Body = &countReader{r: r.Body, n: &up}
		cw := &countWriter{ResponseWriter: rw, n: &down}
		next.ServeHTTP(cw, r)
		// The status line and response headers.
		h += 17
		for k, vs := range rw.Header() {
			for _, v := range vs {
				h += int64(len(k) + len(v) + 4)
			}
		}
		h += 2
		w.up.Add(up.Load())
		w.down.Add(down.Load())
		w.headers.Add(h)
		w.mu.Lock()
		if w.byRoute == nil {
			w.byRoute = map[string]*WireCount{}
		}
		c := w.byRoute[route(r)]
		if c == nil {
			c = &WireCount{}
			w.byRoute[route(r)] = c
		}
		e := WireCount{Requests: 1, Up: up.Load(), Down: down.Load(), Headers: h}
		*c = c.Add(e)
		w.log = append(w.log, wireEvent{at: time.Now(), cpu: CPUTime(), route: route(r), c: e})
		w.mu.Unlock()
	})
}

type countReader struct {
	r io.ReadCloser
	n *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
func (c *countReader) Close() error { return c.r.Close() }

type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// Flush passes flushes through (long-polls may flush).
func (c *countWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (c *countWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
