package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/orchestrator"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/internal/testsvc"
	"github.com/silofl/silo/internal/ui"
)

// The fault tests (TestFault…) break one real component under a running
// federated session — the database, the network between runners and the
// server, a runner, a server replica — and check that the session still
// completes with every round, or fails saying why. CI repeats them with
// -run TestFault -count=N.

func TestMain(m *testing.M) { os.Exit(testsvc.Main(m)) }

// faultHeartbeat is the servers' heartbeat interval in the fault tests: short,
// so a runner that comes back is seen at once. It is also the unit of the
// server's lost-task and offline checks, which run on the fake clock.
const faultHeartbeat = 250 * time.Millisecond

// requeued reports whether the server gave a task up so as to send it again:
// its runner did not report it running (it never received it, or
// restarted).
func requeued(t *silo.Task) bool {
	return t.Status == silo.TaskFailed && t.Error == orchestrator.LostTask
}

// logCapture keeps what servers and agents log: tests count messages and
// print everything when they fail.
type logCapture struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	msgs map[string]int
}

func newLogCapture(t *testing.T) *logCapture {
	c := &logCapture{msgs: map[string]int{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", c.String())
		}
	})
	return c
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// count is how many records with message msg were logged.
func (c *logCapture) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs[msg]
}

// lines is how many logged lines contain every one of substrs.
func (c *logCapture) lines(substrs ...string) int {
	n := 0
	for _, line := range strings.Split(c.String(), "\n") {
		if !slices.ContainsFunc(substrs, func(s string) bool { return !strings.Contains(line, s) }) {
			n++
		}
	}
	return n
}

func (c *logCapture) logger(who string) *slog.Logger {
	h := slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug}).WithAttrs([]slog.Attr{slog.String("who", who)})
	return slog.New(&countingHandler{Handler: h, c: c})
}

type countingHandler struct {
	slog.Handler
	c *logCapture
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.c.mu.Lock()
	h.c.msgs[r.Message]++
	h.c.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithAttrs(as), c: h.c}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithGroup(name), c: h.c}
}

// newStoreEnv starts a server on the store at dsn (an SQLite path or a
// PostgreSQL URL) with its own clock, logging to logs and recording task
// results in results; bootstrap creates the first admin (once per database).
func newStoreEnv(t *testing.T, dsn string, clock *fakeClock, logs *logCapture, results *resultLog, name string, bootstrap bool) *env {
	t.Helper()
	ctx := context.Background()
	db := sqlstore.New(dsn)
	db.Clock = clock.Now
	db.Logger = logs.logger(name)
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := server.New(db)
	srv.Clock = clock.Now
	srv.Logger = logs.logger(name)
	srv.HeartbeatInterval = faultHeartbeat
	srv.AddRoutes(ui.New(srv)...)
	if bootstrap {
		if _, created, err := srv.BootstrapAdmin(ctx, adminEmail, adminPassword); err != nil || !created {
			t.Fatalf("bootstrap admin: created=%v err=%v", created, err)
		}
	}
	ts := httptest.NewServer(results.wrap(srv.Handler()))
	t.Cleanup(ts.Close)
	e := &servertest.Env{T: t, DB: db, Srv: srv, TS: ts, Clock: clock}
	e.Admin = e.Login(adminEmail, adminPassword)
	return envOf(e)
}

// faultFed is a server with three hospitals' runner agents (in-process),
// each reaching the server at its own URL, direct or through a proxy.
type faultFed struct {
	*env
	t       *testing.T
	logs    *logCapture
	api     *client.Client // a Model Builder
	mbToken string         // the Model Builder's access token
	admin   *client.Client
	url     map[string]string // where each hospital's agent reaches the server
	tokens  map[string]string // runner tokens
	roots   map[string]string
	stops   map[string]func()
	results *resultLog
}

var faultHospitals = []string{"a", "b", "c"}

// newFaultFed registers three runners and their datasets on e; runnerURL
// says where each hospital's agent reaches the server (nil: directly).
func newFaultFed(t *testing.T, e *env, logs *logCapture, results *resultLog, runnerURL func(h string) string) *faultFed {
	t.Helper()
	f := &faultFed{env: e, t: t, logs: logs, url: map[string]string{}, tokens: map[string]string{}, roots: map[string]string{},
		stops: map[string]func(){}, results: results}
	f.admin = client.New(e.ts.URL, e.admin)
	dc := client.New(e.ts.URL, e.addUser("dc@example.org", "data_custodian"))
	f.mbToken = e.addUser("mb@example.org", "model_builder")
	f.api = client.New(e.ts.URL, f.mbToken)
	privacy := silo.DefaultPrivacyControls()
	privacy.IdentifierColumns = []string{"patient_id"}
	for _, h := range faultHospitals {
		token, root := registerHospital(t, f.admin, h)
		f.url[h], f.tokens[h], f.roots[h] = e.ts.URL, token, root
		if runnerURL != nil {
			f.url[h] = runnerURL(h)
		}
		f.startAgent(h)
	}
	for _, h := range faultHospitals {
		connectHospital(t, f.admin, dc, h, f.roots[h], &privacy)
	}
	return f
}

// startAgent runs hospital h's agent, with its runner token, until
// f.stops[h] is called.
func (f *faultFed) startAgent(h string) {
	ag, err := runner.New(runner.Config{ServerURL: f.url[h], Token: f.tokens[h], StorageRoot: f.roots[h], VCPU: 2, MemoryMB: 1024,
		PollWait: 2 * time.Second, RequestTimeout: 2 * time.Second, Logger: f.logs.logger("runner-" + h)})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	f.t.Cleanup(stop)
	f.stops[h] = stop
}

// resultLog records the status the server answers each task result with,
// to show a result is applied once.
type resultLog struct {
	mu sync.Mutex
	m  map[string][]int // task id → statuses
}

func newResultLog() *resultLog { return &resultLog{m: map[string][]int{}} }

func (l *resultLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/api/v1/runner/tasks/")
		if id, ok2 := strings.CutSuffix(id, "/result"); ok && ok2 && r.Method == http.MethodPost {
			sw := &resultStatusWriter{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(sw, r)
			if sw.status == http.StatusNoContent {
				sw.status = http.StatusOK // taken, without a next task
			}
			l.mu.Lock()
			l.m[id] = append(l.m[id], sw.status)
			l.mu.Unlock()
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (l *resultLog) statuses(id string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.m[id])
}

// takenTwice lists the tasks whose result the server took more than once.
func (l *resultLog) takenTwice() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id, st := range l.m {
		if countOf(st, http.StatusOK) > 1 {
			out = append(out, id)
		}
	}
	return out
}

type resultStatusWriter struct {
	http.ResponseWriter
	status int
}

// Unwrap lets http.ResponseController flush through the recorder.
func (w *resultStatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *resultStatusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// createSession starts a session over the three hospitals.
func (f *faultFed) createSession(name string, edit func(m map[string]any)) *silo.Session {
	f.t.Helper()
	s, err := f.api.CreateSession(context.Background(), sessionConfig(name, edit))
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// waitSessionEnd polls the session (through api, ignoring errors: the store
// may be failing on purpose) until it ends, calling tick at every poll.
func waitSessionEnd(t *testing.T, api *client.Client, id string, tick func(s *silo.Session)) *silo.Session {
	t.Helper()
	var last *silo.Session
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if s, err := api.GetSession(context.Background(), id); err == nil {
			last = s
			if s.Status.Done() {
				return s
			}
			if tick != nil {
				tick(s)
			}
		}
		eventuallySleep()
	}
	if last == nil {
		t.Fatalf("session %s: never readable", id)
	}
	t.Fatalf("session %s did not end: %s round %d phase %s (%s)", id, last.Status, last.Round, last.Phase, last.StatusReason)
	return nil
}

// checkRounds checks that every round 1..rounds has its federated metrics
// once, and returns each round's datasets with client metrics.
func checkRounds(t *testing.T, api *client.Client, id string, rounds int) map[int][]string {
	t.Helper()
	m, err := api.SessionMetrics(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, r := range m.Federated {
		got = append(got, int(r["round"]))
	}
	want := make([]int, rounds)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(got, want) {
		t.Fatalf("federated metrics of rounds %v, want %v", got, want)
	}
	perRound := map[int][]string{}
	for _, c := range m.Clients {
		perRound[c.Round] = append(perRound[c.Round], c.Dataset)
	}
	for _, list := range perRound {
		slices.Sort(list)
	}
	return perRound
}

// allRoundsComplete checks that every round has every hospital's metrics.
func allRoundsComplete(t *testing.T, api *client.Client, id string, rounds int) {
	t.Helper()
	perRound := checkRounds(t, api, id, rounds)
	for r := 1; r <= rounds; r++ {
		if want := []string{"hospital_a", "hospital_b", "hospital_c"}; !slices.Equal(perRound[r], want) {
			t.Errorf("round %d has client metrics of %v, want %v", r, perRound[r], want)
		}
	}
}

// checkTasksOnce checks that no phase of any round ran a dataset twice:
// each (round, phase, dataset) has at most one succeeded task, and a task
// beside it exists only because the server gave the one before it up as
// lost (it never reached its runner).
func checkTasksOnce(t *testing.T, db *sqlstore.DB, id string, rounds int) {
	t.Helper()
	ctx := context.Background()
	check := func(round int, phase string) {
		tasks, err := db.ListSessionTasks(ctx, id, round, phase)
		if err != nil {
			t.Fatal(err)
		}
		byDataset := map[string][]*silo.Task{}
		for _, task := range tasks {
			byDataset[task.Dataset] = append(byDataset[task.Dataset], task)
		}
		for ds, list := range byDataset {
			succeeded := 0
			for i, task := range list {
				if task.Status == silo.TaskSucceeded {
					succeeded++
				}
				if i < len(list)-1 && !requeued(task) {
					t.Errorf("%s of round %d for %s: task %d of %d is %s (%s), yet another was queued after it", phase, round, ds, i+1, len(list), task.Status, task.Error)
				}
			}
			if succeeded > 1 {
				t.Errorf("%s of round %d ran %d times for %s", phase, round, succeeded, ds)
			}
		}
	}
	check(0, silo.TaskStats)
	for r := 1; r <= rounds; r++ {
		check(r, silo.TaskFit)
		check(r, silo.TaskEvaluate)
	}
}

// TestFaultStoreErrorsRetried: store errors in the middle of a session — its
// PostgreSQL connections killed again and again, the database refusing
// connections for a while, an SQLite write failing — are ridden out: the
// session completes with every round's metrics, none missing or twice.
func TestFaultStoreErrorsRetried(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		dsn := testsvc.Postgres(t)
		logs := newLogCapture(t)
		results := newResultLog()
		e := newStoreEnv(t, dsn, servertest.NewClock(time.Now().UTC()), logs, results, "server", true)
		f := newFaultFed(t, e, logs, results, nil)
		ctx := context.Background()
		admin, err := pgx.Connect(ctx, dsn) // the saboteur's own connection
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(ctx)
		// A database cannot refuse connections to itself: that is done
		// from the maintenance database.
		u, _ := url.Parse(dsn)
		dbName := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
		u.Path = "/postgres"
		maint, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		defer maint.Close(ctx)
		terminate := func() int {
			var n int
			err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n)
			if err != nil {
				t.Fatalf("terminate backends: %v", err)
			}
			return n
		}
		allow := func(yes bool) {
			if _, err := maint.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s ALLOW_CONNECTIONS %t`, dbName, yes)); err != nil {
				t.Fatalf("allow connections %t: %v", yes, err)
			}
		}
		defer allow(true)

		const rounds = 8
		s := f.createSession("pg-faults", func(m map[string]any) { m["rounds"] = rounds; m["min_clients"] = 3; m["round_timeout"] = "10m" })
		kills, killed, outage, nudges := 0, 0, false, 0
		lastKey, progress := "", time.Now()
		s = waitSessionEnd(t, f.api, s.ID, func(s *silo.Session) {
			key := fmt.Sprint(s.Round, s.Phase)
			if key != lastKey {
				lastKey, progress = key, time.Now()
				// Kill every connection of the server once per phase, for
				// the first six phases after the first round.
				if s.Round >= 1 && kills < 6 {
					killed += terminate()
					kills++
				}
				if kills == 3 && !outage {
					// An outage: for a while the database refuses every
					// connection, until the orchestrator has met it.
					outage = true
					allow(false)
					eventually(t, "the orchestrator to meet the outage", func() bool {
						// Again each time: a connection that was starting up
						// as connections were refused can escape one sweep.
						killed += terminate()
						return logs.lines(`msg="session step failed, retrying"`, "is not currently accepting connections") > 0
					})
					allow(true)
				}
			} else if time.Since(progress) > 3*time.Second {
				// A claim whose commit the kill made ambiguous leaves a task
				// running that no runner has: the server gives it up once
				// two heartbeat intervals pass without its runner naming it.
				e.clock.Add(2*faultHeartbeat + time.Second)
				progress = time.Now()
				nudges++
			}
		})
		if s.Status != silo.SessionCompleted || s.Round != rounds {
			t.Fatalf("session ended %s at round %d: %s", s.Status, s.Round, s.StatusReason)
		}
		if !outage || kills < 6 || killed == 0 {
			t.Fatalf("the faults did not all happen: %d kills (%d backends), outage %v", kills, killed, outage)
		}
		retries := logs.count("session step failed, retrying")
		t.Logf("%d kills terminated %d backends; the orchestrator retried %d steps; %d lost-claim nudges", kills, killed, retries, nudges)
		allRoundsComplete(t, f.api, s.ID, rounds)
		checkTasksOnce(t, e.db, s.ID, rounds)
	})

	// SQLite's natural transient error, SQLITE_BUSY, takes its 10 s busy
	// timeout to appear; a failing trigger gives the same error path fast.
	t.Run("sqlite", func(t *testing.T) {
		logs := newLogCapture(t)
		path := filepath.Join(t.TempDir(), "silo.db")
		results := newResultLog()
		e := newStoreEnv(t, path, servertest.NewClock(time.Now().UTC()), logs, results, "server", true)
		f := newFaultFed(t, e, logs, results, nil)
		saboteur := openSQLite(t, path)
		sqlExec(t, saboteur, `CREATE TABLE fault_switch (on_ INTEGER)`,
			`CREATE TRIGGER fault_rounds BEFORE INSERT ON session_rounds WHEN EXISTS (SELECT 1 FROM fault_switch) BEGIN SELECT RAISE(ABORT, 'injected write failure'); END`,
			`INSERT INTO fault_switch VALUES (1)`)
		const rounds = 3
		s := f.createSession("sqlite-faults", func(m map[string]any) { m["rounds"] = rounds; m["min_clients"] = 3; m["round_timeout"] = "10m" })
		eventually(t, "the orchestrator to retry", func() bool { return logs.count("session step failed, retrying") >= 3 })
		if s, _ := f.api.GetSession(context.Background(), s.ID); s.Status != silo.SessionRunning || s.Round != 0 {
			t.Fatalf("during the failure: %s round %d (%s)", s.Status, s.Round, s.StatusReason)
		}
		sqlExec(t, saboteur, `DELETE FROM fault_switch`)
		s = waitSessionEnd(t, f.api, s.ID, nil)
		if s.Status != silo.SessionCompleted || s.Round != rounds {
			t.Fatalf("session ended %s at round %d: %s", s.Status, s.Round, s.StatusReason)
		}
		allRoundsComplete(t, f.api, s.ID, rounds)
		checkTasksOnce(t, e.db, s.ID, rounds)
	})
}

// TestFaultStoreFailureFailsSession: a store error that does not pass is
// retried for 4×LeaseTTL by the server's clock, and then fails the session
// with a reason that says the store kept failing.
func TestFaultStoreFailureFailsSession(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			logs := newLogCapture(t)
			clock := servertest.NewClock(time.Now().UTC())
			results := newResultLog()
			var e *env
			if store == "postgres" {
				dsn := testsvc.Postgres(t)
				e = newStoreEnv(t, dsn, clock, logs, results, "server", true)
				conn, err := pgx.Connect(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
				for _, q := range []string{
					`CREATE FUNCTION fault_rounds() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected write failure'; END $$`,
					`CREATE TRIGGER fault_rounds BEFORE INSERT ON session_rounds FOR EACH ROW EXECUTE FUNCTION fault_rounds()`,
				} {
					if _, err := conn.Exec(context.Background(), q); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				path := filepath.Join(t.TempDir(), "silo.db")
				e = newStoreEnv(t, path, clock, logs, results, "server", true)
				sqlExec(t, openSQLite(t, path), `CREATE TRIGGER fault_rounds BEFORE INSERT ON session_rounds BEGIN SELECT RAISE(ABORT, 'injected write failure'); END`)
			}
			f := newFaultFed(t, e, logs, results, nil)
			s := f.createSession("store-down", func(m map[string]any) { m["rounds"] = 3; m["round_timeout"] = "10m" })
			eventually(t, "the orchestrator to retry", func() bool { return logs.count("session step failed, retrying") >= 3 })
			if s, _ := f.api.GetSession(context.Background(), s.ID); s.Status != silo.SessionRunning {
				t.Fatalf("the session gave up at once: %s (%s)", s.Status, s.StatusReason)
			}
			clock.Add(4*server.LeaseTTL + time.Second)
			s = waitSessionEnd(t, f.api, s.ID, nil)
			if s.Status != silo.SessionFailed || !strings.Contains(s.StatusReason, "the store kept failing for 1m1s") || !strings.Contains(s.StatusReason, "injected write failure") {
				t.Fatalf("session ended %s: %q", s.Status, s.StatusReason)
			}
		})
	}
}

func openSQLite(t *testing.T, path string) *sql.DB {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func sqlExec(t *testing.T, db *sql.DB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// tcpProxy forwards TCP connections to a backend, as a network path or a
// load balancer would, and can cut them: close every connection and refuse
// new ones. A trap cuts the network at the worst moment for a task result:
// before it reaches the server, or after the server took it but before its
// answer reaches the runner.
type tcpProxy struct {
	t  *testing.T
	ln net.Listener

	mu       sync.Mutex
	backend  string
	down     bool
	silent   bool // drop every byte and close nothing, as a black hole does
	refused  int
	conns    map[net.Conn]struct{}
	trap     string // "", "request" or "response"
	trapped  chan string
	closed   bool
	serveEnd chan struct{}
}

func newTCPProxy(t *testing.T, backend string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, ln: ln, backend: backend, conns: map[net.Conn]struct{}{}, serveEnd: make(chan struct{})}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	defer close(p.serveEnd)
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

// track adds c to the connections a cut closes, unless the network is cut.
func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down || p.closed {
		p.refused++
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tcpProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *tcpProxy) handle(c net.Conn) {
	if !p.track(c) {
		return
	}
	p.mu.Lock()
	backend, silent := p.backend, p.silent
	p.mu.Unlock()
	if silent { // the connection opens and then nothing ever comes back
		defer p.untrack(c)
		_, _ = io.Copy(io.Discard, c)
		return
	}
	s, err := net.Dial("tcp", backend)
	if err != nil {
		p.untrack(c)
		return
	}
	if !p.track(s) {
		p.untrack(c)
		return
	}
	defer p.untrack(c, s)
	var mu sync.Mutex
	swallow := "" // the task whose result's answer must not reach the runner
	// A connection that lost a byte to silence stays dead: its ends
	// hear nothing more, and no one closes it but the ends themselves.
	var dead atomic.Bool
	lost := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.silent {
			dead.Store(true)
		}
		return dead.Load()
	}
	go func() {
		defer p.untrack(c, s)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 && lost() {
				n = 0
			}
			if n > 0 {
				if id, mode := p.spring(buf[:n]); mode == "request" {
					p.fire(id)
					return
				} else if mode == "response" {
					mu.Lock()
					swallow = id
					mu.Unlock()
				}
				if _, err := s.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 && lost() {
			n = 0
		}
		if n > 0 {
			mu.Lock()
			id := swallow
			mu.Unlock()
			if id != "" {
				p.fire(id)
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// spring disarms the trap and returns its mode if chunk starts a task
// result.
func (p *tcpProxy) spring(chunk []byte) (string, string) {
	const prefix = "POST /api/v1/runner/tasks/"
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.trap == "" || !bytes.HasPrefix(chunk, []byte(prefix)) {
		return "", ""
	}
	line, _, _ := bytes.Cut(chunk[len(prefix):], []byte(" "))
	id, ok := bytes.CutSuffix(line, []byte("/result"))
	if !ok {
		return "", ""
	}
	mode := p.trap
	p.trap = ""
	return string(id), mode
}

// fire cuts the network and says which task's result the trap caught.
func (p *tcpProxy) fire(id string) {
	p.cut()
	p.trapped <- id
}

// arm sets a trap for the next task result; the channel receives its task.
func (p *tcpProxy) arm(mode string) <-chan string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trap, p.trapped = mode, make(chan string, 1)
	return p.trapped
}

// cut closes every connection and refuses new ones until restore.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// silence drops every byte from now on, on open connections and new ones,
// without closing any: no end gets an error, as when a route vanishes.
func (p *tcpProxy) silence(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.silent = on
}

func (p *tcpProxy) refusals() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// switchTo sends new connections to backend and closes the ones to the old
// backend, as a load balancer does when a server dies.
func (p *tcpProxy) switchTo(backend string) {
	p.mu.Lock()
	p.backend = backend
	p.mu.Unlock()
	p.cut()
	p.restore()
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	<-p.serveEnd
	p.cut()
}

// TestFaultNetworkCut: the network between the runners and the server is cut
// twice mid-session — once as a task result is on its way to the server,
// once as the server's answer to a result is on its way back — and stays
// down until the server has marked the runners offline. Once it is back the
// runners are online again and the session completes with every round;
// the result caught on its way is delivered once, the one the server had
// already taken is not applied a second time.
func TestFaultNetworkCut(t *testing.T) {
	logs, results := newLogCapture(t), newResultLog()
	e := newStoreEnv(t, filepath.Join(t.TempDir(), "silo.db"), servertest.NewClock(time.Now().UTC()), logs, results, "server", true)
	proxy := newTCPProxy(t, e.ts.Listener.Addr().String())
	f := newFaultFed(t, e, logs, results, func(string) string { return proxy.URL() })
	ctx := context.Background()
	const rounds = 6
	s := f.createSession("network-cut", func(m map[string]any) { m["rounds"] = rounds; m["min_clients"] = 3; m["round_timeout"] = "10m" })
	eventually(t, "round 1", func() bool { s, _ = f.api.GetSession(ctx, s.ID); return s.Round >= 1 })

	caught := map[string]string{}
	for _, mode := range []string{"request", "response"} {
		var id string
		select {
		case id = <-proxy.arm(mode):
		case <-time.After(30 * time.Second):
			t.Fatalf("no task result crossed the network (trap %s)", mode)
		}
		caught[mode] = id
		// The network stays down while the runners try to reach the server
		// and until the server, three heartbeats later, marks them offline.
		refused := proxy.refusals()
		eventually(t, "the runners to be refused", func() bool { return proxy.refusals() >= refused+3 })
		eventually(t, "every runner offline during the cut", func() bool {
			e.clock.Add(3*faultHeartbeat + time.Second)
			if err := e.srv.CheckRunners(ctx); err != nil {
				t.Fatal(err)
			}
			for _, h := range faultHospitals {
				if runnerStatus(t, f.admin, "hospital-"+h) != silo.RunnerOffline {
					return false
				}
			}
			return true
		})
		proxy.restore()
		for _, h := range faultHospitals {
			eventually(t, "hospital-"+h+" back online", func() bool { return runnerStatus(t, f.admin, "hospital-"+h) == silo.RunnerOnline })
		}
		eventually(t, "the caught task to end", func() bool {
			task, err := e.db.FindTask(ctx, id)
			return err == nil && task.Status != silo.TaskQueued && task.Status != silo.TaskRunning
		})
		if task, _ := e.db.FindTask(ctx, id); task.Status != silo.TaskSucceeded {
			t.Fatalf("the task whose result the cut caught (%s) ended %s: %s", mode, task.Status, task.Error)
		}
		if mode == "response" {
			// The runner never heard the server took it: it sends it again.
			eventually(t, "the runner to send the result again", func() bool { return len(results.statuses(id)) >= 2 })
		}
	}
	s = waitSessionEnd(t, f.api, s.ID, nil)
	if s.Status != silo.SessionCompleted || s.Round != rounds {
		t.Fatalf("session ended %s at round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	allRoundsComplete(t, f.api, s.ID, rounds)
	checkTasksOnce(t, e.db, s.ID, rounds)

	// The result caught on its way was taken once, at the runner's retry;
	// the one whose answer was lost was taken, and its retry refused.
	if got := results.statuses(caught["request"]); !slices.Equal(got, []int{http.StatusOK}) {
		t.Errorf("result lost on its way to the server: the server answered %v, want [200]", got)
	}
	// (An earlier send of it may have been cut on its way by the first
	// trap, which closes every connection: the server took nothing then.)
	got := results.statuses(caught["response"])
	if taken := slices.Index(got, http.StatusOK); taken < 0 || slices.Contains(got[:taken], http.StatusConflict) || slices.Contains(got[taken+1:], http.StatusOK) || !slices.Contains(got[taken+1:], http.StatusConflict) {
		t.Errorf("result whose answer was lost: the server answered %v, want 200 then 409", got)
	}
	if twice := results.takenTwice(); len(twice) > 0 {
		t.Errorf("results taken twice: %v", twice)
	}
	t.Logf("caught results: %v; the server answered the request-trapped one %v, the response-trapped one %v", caught, results.statuses(caught["request"]), results.statuses(caught["response"]))
}

// TestFaultNetworkSilentDrop: the network between the runners and the
// server starts dropping every packet without closing anything, as when a
// route or a NAT entry vanishes. The agents' requests hang without an error
// until their timeouts; once the route is back they dial again, the server
// sees them online and the session completes with every round.
func TestFaultNetworkSilentDrop(t *testing.T) {
	logs, results := newLogCapture(t), newResultLog()
	e := newStoreEnv(t, filepath.Join(t.TempDir(), "silo.db"), servertest.NewClock(time.Now().UTC()), logs, results, "server", true)
	proxy := newTCPProxy(t, e.ts.Listener.Addr().String())
	f := newFaultFed(t, e, logs, results, func(string) string { return proxy.URL() })
	ctx := context.Background()
	const rounds = 4
	s := f.createSession("silent-drop", func(m map[string]any) { m["rounds"] = rounds; m["min_clients"] = 3; m["round_timeout"] = "10m" })
	eventually(t, "round 1", func() bool { s, _ = f.api.GetSession(ctx, s.ID); return s.Round >= 1 })

	proxy.silence(true)
	// A heartbeat already past the proxy may still land after the clock
	// moved: move it again until every runner is seen offline.
	eventually(t, "every runner offline while packets are dropped", func() bool {
		e.clock.Add(3*faultHeartbeat + time.Second)
		if err := e.srv.CheckRunners(ctx); err != nil {
			t.Fatal(err)
		}
		for _, h := range faultHospitals {
			if runnerStatus(t, f.admin, "hospital-"+h) != silo.RunnerOffline {
				return false
			}
		}
		return true
	})
	// Long enough for every agent to be stuck in a request that will never
	// be answered (a long-poll waits 2 s by design, the timeout is 2 s more).
	eventually(t, "the agents' requests to time out", func() bool { return logs.count("server unreachable, retrying") >= 3 })
	proxy.silence(false)
	for _, h := range faultHospitals {
		eventually(t, "hospital-"+h+" back online", func() bool { return runnerStatus(t, f.admin, "hospital-"+h) == silo.RunnerOnline })
	}
	// A task handed out as the packets stopped never reached its runner;
	// the server notices from heartbeats once it is two heartbeats old,
	// by its clock, and queues it again. Time passes while nothing moves.
	lastKey, progress := "", time.Now()
	s = waitSessionEnd(t, f.api, s.ID, func(s *silo.Session) {
		if key := fmt.Sprint(s.Round, s.Phase); key != lastKey {
			lastKey, progress = key, time.Now()
		} else if time.Since(progress) > time.Second {
			e.clock.Add(3 * faultHeartbeat)
			progress = time.Now()
		}
	})
	if s.Status != silo.SessionCompleted || s.Round != rounds {
		t.Fatalf("session ended %s at round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	allRoundsComplete(t, f.api, s.ID, rounds)
	checkTasksOnce(t, e.db, s.ID, rounds)
}

func countOf[T comparable](list []T, v T) int {
	n := 0
	for _, x := range list {
		if x == v {
			n++
		}
	}
	return n
}

// TestFaultRunnerRejoins: a runner stopped mid-round is left out of the
// rounds that close without it (after round_timeout); started again with
// the same token it is in the next rounds again. The tasks queued for it
// while it was away were cancelled with their rounds and never run.
func TestFaultRunnerRejoins(t *testing.T) {
	logs, results := newLogCapture(t), newResultLog()
	e := newStoreEnv(t, filepath.Join(t.TempDir(), "silo.db"), servertest.NewClock(time.Now().UTC()), logs, results, "server", true)
	f := newFaultFed(t, e, logs, results, nil)
	ctx := context.Background()
	const rounds = 8
	s := f.createSession("rejoin", func(m map[string]any) { m["rounds"] = rounds; m["min_clients"] = 2; m["round_timeout"] = "30s" })
	eventually(t, "round 1", func() bool { s, _ = f.api.GetSession(ctx, s.ID); return s.Round >= 1 })
	f.stops["c"]()
	stoppedAt, stopRound := e.clock.Now(), s.Round+1
	rc, err := e.db.FindRunner(ctx, "hospital-c")
	if err != nil {
		t.Fatal(err)
	}
	// Rounds close without c until one has been recorded without it, and a
	// round has closed while a task for c was still queued (stale now).
	var left int
	waitPast(t, f, s.ID, []string{"hospital-c"}, func(s *silo.Session) bool {
		m, err := f.api.SessionMetrics(ctx, s.ID)
		if err != nil {
			return false
		}
		left = 0
		for _, fed := range m.Federated {
			r := int(fed["round"])
			if !slices.ContainsFunc(m.Clients, func(c silo.ClientMetrics) bool { return c.Round == r && c.Dataset == "hospital_c" }) {
				left = r
			}
		}
		tasks, _ := e.db.ListTasks(ctx, rc.ID, 1000)
		return left > 0 && slices.ContainsFunc(tasks, func(t *silo.Task) bool {
			return t.Session == s.ID && t.Round <= s.Round && (t.Status == silo.TaskCancelled || t.Status == silo.TaskQueued || t.Status == silo.TaskRunning)
		})
	})
	s, _ = f.api.GetSession(ctx, s.ID)
	if s.Status.Done() || s.Round >= rounds-1 {
		t.Fatalf("too late to rejoin: %s round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	back := s.Round
	f.startAgent("c")
	s = waitSessionEnd(t, f.api, s.ID, nil)
	if s.Status != silo.SessionCompleted || s.Round != rounds {
		t.Fatalf("session ended %s at round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	// a and b are in every round; c in the first, not in the one that
	// closed without it, and in every round it could start after it came
	// back (the round in progress then may go either way).
	perRound := checkRounds(t, f.api, s.ID, rounds)
	for r := 1; r <= rounds; r++ {
		in := perRound[r]
		bad := !slices.Contains(in, "hospital_a") || !slices.Contains(in, "hospital_b")
		switch {
		case r == 1 || r >= back+2:
			bad = bad || !slices.Contains(in, "hospital_c")
		case r == left:
			bad = bad || slices.Contains(in, "hospital_c")
		}
		if bad {
			t.Errorf("round %d has client metrics of %v (c stopped in round %d, was left out of round %d, came back in round %d)", r, in, stopRound, left, back+1)
		}
	}
	// What c was given after it came back was live work: every task it
	// claimed since succeeded, and the tasks of rounds that closed without
	// it were never run.
	tasks, err := e.db.ListTasks(ctx, rc.ID, 1000)
	if err != nil {
		t.Fatal(err)
	}
	stale := 0
	for _, task := range tasks {
		if task.Session != s.ID {
			continue
		}
		claimedSince := task.StartedAt != nil && task.StartedAt.After(stoppedAt)
		if claimedSince && task.Round <= back {
			t.Errorf("the returning runner ran task %s of round %d, which had closed before it came back (in round %d)", task.ID, task.Round, back+1)
		}
		if claimedSince && task.Status != silo.TaskSucceeded {
			t.Errorf("task %s (%s of round %d) claimed after c came back ended %s: %s", task.ID, task.Type, task.Round, task.Status, task.Error)
		}
		if task.Status == silo.TaskCancelled {
			stale++
			if claimedSince {
				t.Errorf("the returning runner ran task %s of a closed round (%s of round %d)", task.ID, task.Type, task.Round)
			}
		}
	}
	if stale == 0 {
		t.Fatal("no task of c's was cancelled with its round")
	}
	t.Logf("c stopped in round %d, left out of round %d, back in round %d; %d of its tasks cancelled unrun; clients per round %v", stopRound, left, back+1, stale, perRound)
	checkTasksOnce(t, e.db, s.ID, rounds)
}

// waitPast moves the server's clock past the round timeout whenever the
// session waits on the stopped runners alone (every task of the current
// phase that a live runner holds has ended and nothing moved for a
// moment), until done says so. Jumping while a live runner works would cut
// it off too.
func waitPast(t *testing.T, f *faultFed, id string, stopped []string, done func(s *silo.Session) bool) {
	t.Helper()
	ctx := context.Background()
	last, since := "", time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s, err := f.api.GetSession(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if done(s) {
			return
		}
		if s.Status.Done() || time.Now().After(deadline) {
			t.Fatalf("session %s round %d (%s) before the condition held", s.Status, s.Round, s.StatusReason)
		}
		if key := fmt.Sprint(s.Round, s.Phase, s.StatusReason); key != last {
			last, since = key, time.Now()
		} else if time.Since(since) > 300*time.Millisecond && waitsOnStoppedOnly(f.db, s, stopped) {
			f.clock.Add(31 * time.Second)
			since = time.Now()
		}
		eventuallySleep()
	}
}
