// Package servertest starts real Silo servers for tests: a fresh SQLite
// store, the JSON API with the web UI on an httptest server, a settable
// clock, and (federation.go) runner agents in-process with the breast-cancer
// sample data. The server's, the UI's and the command's tests share it, so
// the environment is written once.
package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/internal/testsvc"
	"github.com/silofl/silo/internal/ui"
)

// The first admin of every environment.
const AdminEmail, AdminPassword = "admin@example.org", "correct horse battery"

// Clock is a settable clock for expiry tests.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// LogBuffer keeps what a server logs, for tests that search it.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Env is a running server and what tests reach it with.
type Env struct {
	T      *testing.T
	DB     *sqlstore.DB
	DBPath string // the SQLite file; empty on PostgreSQL
	Srv    *server.Server
	TS     *httptest.Server
	Clock  *Clock
	Admin  string     // the admin's access token (New only)
	Logs   *LogBuffer // everything the server logged, at debug level
}

// New starts a server on a fresh store with a bootstrapped admin,
// signed in through the API (Admin is their token). Each configure sets the
// server's fields (its heartbeat interval, say) before it serves.
func New(t *testing.T, configure ...func(*server.Server)) *Env {
	t.Helper()
	e := Start(t, true, configure...)
	e.Admin = e.Login(AdminEmail, AdminPassword)
	return e
}

// StoreEnv names the environment variable that chooses every Env's store:
// unset or "sqlite" (a file in the test's temporary directory), or
// "postgres" (a fresh database on the tests' PostgreSQL server, see
// testsvc.Postgres). internal/server's TestAPIOnPostgres sets it to run the
// API tests again; set it by hand to run any of them on PostgreSQL:
//
//	SILO_TEST_STORE=postgres go test ./internal/server -run TestTokens
const StoreEnv = "SILO_TEST_STORE"

// Store returns the store tests run on: "sqlite" or "postgres".
func Store() string {
	if s := os.Getenv(StoreEnv); s != "" {
		return s
	}
	return "sqlite"
}

// Start starts a server on a fresh store (see StoreEnv); with bootstrap the
// first admin exists (not signed in), else the workspace has no users, as
// on a first start. Each configure sets the server's fields before it
// serves.
func Start(t *testing.T, bootstrap bool, configure ...func(*server.Server)) *Env {
	t.Helper()
	ctx := context.Background()
	clock := NewClock(time.Now().UTC())
	var dsn, dbPath string
	switch Store() {
	case "sqlite":
		dbPath = filepath.Join(t.TempDir(), "silo.db")
		dsn = dbPath
	case "postgres":
		dsn = testsvc.Postgres(t)
	default:
		t.Fatalf("%s=%s: use sqlite or postgres", StoreEnv, Store())
	}
	db := sqlstore.New(dsn)
	db.Clock = clock.Now
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := server.New(db)
	srv.Clock = clock.Now
	logs := &LogBuffer{}
	srv.Logger = slog.New(slog.NewMultiHandler(slog.Default().Handler(), slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	srv.AddRoutes(ui.New(srv)...)
	for _, c := range configure {
		c(srv)
	}
	if bootstrap {
		if _, created, err := srv.BootstrapAdmin(ctx, AdminEmail, AdminPassword); err != nil || !created {
			t.Fatalf("bootstrap admin: created=%v err=%v", created, err)
		}
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &Env{T: t, DB: db, DBPath: dbPath, Srv: srv, TS: ts, Clock: clock, Logs: logs}
}

// Do sends a JSON request and decodes a JSON response into out (if non-nil).
func (e *Env) Do(method, path, token string, body any, out any) int {
	e.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		rd = bytes.NewReader(buf)
	}
	req, _ := http.NewRequest(method, e.TS.URL+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			e.T.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

// APIError is the API's error body.
type APIError struct {
	Error silo.Error `json:"error"`
}

// WantError checks a request fails with status and a message containing substr.
func (e *Env) WantError(method, path, token string, body any, status int, code, substr string) {
	e.T.Helper()
	var got APIError
	if st := e.Do(method, path, token, body, &got); st != status || got.Error.Code != code || !strings.Contains(got.Error.Message, substr) {
		e.T.Fatalf("%s %s: got %d %+v, want %d %s containing %q", method, path, st, got.Error, status, code, substr)
	}
}

// Login signs in through the API and returns the access token.
func (e *Env) Login(email, password string) string {
	e.T.Helper()
	var out struct{ Token string }
	if st := e.Do("POST", "/api/v1/login", "", map[string]string{"email": email, "password": password}, &out); st != 200 || out.Token == "" {
		e.T.Fatalf("login %s: status %d", email, st)
	}
	return out.Token
}

// AddUser invites email with roles, accepts the invitation and returns a token.
func (e *Env) AddUser(email string, roles ...string) string {
	e.T.Helper()
	var inv silo.Invite
	if st := e.Do("POST", "/api/v1/invites", e.Admin, map[string]any{"email": email, "roles": roles}, &inv); st != 201 {
		e.T.Fatalf("invite %s: %d", email, st)
	}
	secret := inv.Link[strings.LastIndex(inv.Link, "/")+1:]
	if st := e.Do("POST", "/api/v1/invites/accept", "", map[string]any{"token": secret, "password": "password-" + email}, nil); st != 201 {
		e.T.Fatalf("accept %s: %d", email, st)
	}
	return e.Login(email, "password-"+email)
}
