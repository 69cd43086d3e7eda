package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/sqlstore"
)

// TestAddRoutes checks the contract the web UI relies on: a route added with
// AddRoutes is listed by Routes and passes the same guard as the API's
// (sign-in, permission, a page's redirect to /login), a server without the
// UI serves no pages and answers unknown paths as the API does, and routes
// without a rule or added after Handler are refused.
func TestAddRoutes(t *testing.T) {
	ctx := context.Background()
	db := sqlstore.New(filepath.Join(t.TempDir(), "silo.db"))
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := server.New(db)
	for _, rt := range srv.Routes() {
		if rt.Page {
			t.Errorf("a server without the UI serves page %s %s", rt.Method, rt.Path)
		}
	}
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }
	srv.AddRoutes(
		server.Route{Method: "GET", Path: "/x/audit", Access: server.Perm(silo.PermAuditRead), Summary: "test", Handler: ok},
		server.Route{Method: "GET", Path: "/x/page", Access: server.AccessSignedIn, Page: true, Summary: "test", Handler: ok},
	)
	var listed int
	for _, rt := range srv.Routes() {
		if strings.HasPrefix(rt.Path, "/x/") {
			listed++
		}
	}
	if listed != 2 {
		t.Errorf("Routes lists %d of the 2 added routes", listed)
	}
	if _, _, err := srv.BootstrapAdmin(ctx, adminEmail, adminPassword); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e := &servertest.Env{T: t, DB: db, Srv: srv, TS: ts}
	admin := e.Login(adminEmail, adminPassword)
	var scoped silo.Token
	if st := e.Do("POST", "/api/v1/tokens", admin, map[string]any{"name": "ro", "scopes": []string{"runners:read"}}, &scoped); st != 201 {
		t.Fatalf("create scoped token: %d", st)
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		path, token string
		status      int
	}{
		{"/x/audit", "", http.StatusUnauthorized},
		{"/x/audit", scoped.Secret, http.StatusForbidden},
		{"/x/audit", admin, http.StatusTeapot},
		{"/x/page", "", http.StatusSeeOther}, // to /login
		{"/x/page", scoped.Secret, http.StatusTeapot},
		{"/no-such-page", admin, http.StatusNotFound},
	} {
		req, _ := http.NewRequest("GET", ts.URL+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("GET %s (token %v): status %d, want %d", c.path, c.token != "", resp.StatusCode, c.status)
		}
		if c.status == http.StatusSeeOther && !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
			t.Errorf("GET %s anonymous: redirected to %q, want the sign-in page", c.path, resp.Header.Get("Location"))
		}
		if c.path == "/no-such-page" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET %s without the UI: Content-Type %q, want the API's JSON error", c.path, resp.Header.Get("Content-Type"))
		}
	}

	wantPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", what)
			}
		}()
		f()
	}
	wantPanic("a route without an access rule", func() {
		server.New(db).AddRoutes(server.Route{Method: "GET", Path: "/x/norule", Handler: ok})
	})
	wantPanic("AddRoutes after Handler", func() {
		srv.AddRoutes(server.Route{Method: "GET", Path: "/x/late", Access: server.AccessPublic, Handler: ok})
	})
}
