package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
)

const adminEmail, adminPassword = "admin@example.org", "correct horse battery"

// fakeClock is a settable clock for expiry tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t      *testing.T
	db     *sqlstore.DB
	dbPath string // the SQLite file
	srv    *server.Server
	ts     *httptest.Server
	clock  *fakeClock
	admin  string     // the admin's access token
	logs   *logBuffer // everything the server logged, at debug level
}

// logBuffer keeps what a server logs, for tests that search it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newEnv starts a server on a fresh SQLite store with a bootstrapped admin.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	clock := &fakeClock{t: time.Now().UTC()}
	dbPath := filepath.Join(t.TempDir(), "silo.db")
	db := sqlstore.New(dbPath)
	db.Clock = clock.Now
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := server.New(db)
	srv.Clock = clock.Now
	logs := &logBuffer{}
	srv.Logger = slog.New(slog.NewMultiHandler(slog.Default().Handler(), slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if _, created, err := srv.BootstrapAdmin(ctx, adminEmail, adminPassword); err != nil || !created {
		t.Fatalf("bootstrap admin: created=%v err=%v", created, err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e := &env{t: t, db: db, dbPath: dbPath, srv: srv, ts: ts, clock: clock, logs: logs}
	e.admin = e.login(adminEmail, adminPassword)
	return e
}

// do sends a JSON request and decodes a JSON response into out (if non-nil).
func (e *env) do(method, path, token string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		rd = bytes.NewReader(buf)
	}
	req, _ := http.NewRequest(method, e.ts.URL+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

type apiError struct {
	Error silo.Error `json:"error"`
}

// wantError checks a request fails with status and a message containing substr.
func (e *env) wantError(method, path, token string, body any, status int, code, substr string) {
	e.t.Helper()
	var got apiError
	if st := e.do(method, path, token, body, &got); st != status || got.Error.Code != code || !strings.Contains(got.Error.Message, substr) {
		e.t.Fatalf("%s %s: got %d %+v, want %d %s containing %q", method, path, st, got.Error, status, code, substr)
	}
}

func (e *env) login(email, password string) string {
	e.t.Helper()
	var out struct{ Token string }
	if st := e.do("POST", "/api/v1/login", "", map[string]string{"email": email, "password": password}, &out); st != 200 || out.Token == "" {
		e.t.Fatalf("login %s: status %d", email, st)
	}
	return out.Token
}

// addUser invites email with roles, accepts the invitation and returns a token.
func (e *env) addUser(email string, roles ...string) string {
	e.t.Helper()
	var inv silo.Invite
	if st := e.do("POST", "/api/v1/invites", e.admin, map[string]any{"email": email, "roles": roles}, &inv); st != 201 {
		e.t.Fatalf("invite %s: %d", email, st)
	}
	secret := inv.Link[strings.LastIndex(inv.Link, "/")+1:]
	if st := e.do("POST", "/api/v1/invites/accept", "", map[string]any{"token": secret, "password": "password-" + email}, nil); st != 201 {
		e.t.Fatalf("accept %s: %d", email, st)
	}
	return e.login(email, "password-"+email)
}
