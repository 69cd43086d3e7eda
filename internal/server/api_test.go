package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	var h struct{ Status, Database, Version string }
	if st := e.do("GET", "/healthz", "", nil, &h); st != 200 || h.Status != "ok" || h.Database != e.db.Dialect() || h.Version == "" {
		t.Fatalf("healthz = %d %+v", st, h)
	}
	resp, err := http.Get(e.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `silo_http_requests_total{route="GET /healthz",code="200"} 1`) {
		t.Fatalf("metrics do not count the health check:\n%s", body)
	}
	// Every sample line is "name{labels} value" or "name value".
	sample := regexp.MustCompile(`^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$`)
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		if !strings.HasPrefix(line, "#") && !sample.MatchString(line) {
			t.Errorf("not Prometheus text format: %q", line)
		}
	}
}

// TestOpenAPIMatchesRoutes checks the served document lists exactly the API
// routes the server registers, each with a summary and responses.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if st := e.do("GET", "/api/v1/openapi.json", "", nil, &doc); st != 200 || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi: %d %q", st, doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
			var op struct {
				Summary   string
				Responses map[string]any
			}
			json.Unmarshal(raw, &op)
			if op.Summary == "" || op.Responses["200"] == nil {
				t.Errorf("%s %s: missing summary or 200 response", method, path)
			}
		}
	}
	for _, rt := range e.srv.Routes() {
		key := rt.Method + " " + rt.Path
		if rt.Page {
			if documented[key] {
				t.Errorf("UI page %s is in the API document", key)
			}
			continue
		}
		if !documented[key] {
			t.Errorf("route %s is not in the OpenAPI document", key)
		}
		delete(documented, key)
	}
	for key := range documented {
		t.Errorf("OpenAPI documents %s, which the server does not serve", key)
	}
}

func TestLoginErrorsAndRateLimit(t *testing.T) {
	e := newEnv(t)
	e.wantError("POST", "/api/v1/login", "", map[string]string{"email": adminEmail, "password": "wrong password"}, 401, "unauthorized", "wrong email or password")
	e.wantError("POST", "/api/v1/login", "", map[string]string{"email": "ghost@example.org", "password": "whatever1234"}, 401, "unauthorized", "wrong email or password")
	for i := 0; i < 4; i++ {
		e.do("POST", "/api/v1/login", "", map[string]string{"email": adminEmail, "password": "wrong password"}, nil)
	}
	// After five failures the next attempt must wait, but the right
	// password from an address that signed in before is not refused
	// (TestSignInThrottle tries the rest).
	e.wantError("POST", "/api/v1/login", "", map[string]string{"email": adminEmail, "password": "wrong password"}, 429, "too_many_requests", "try again in")
	e.login(adminEmail, adminPassword)
	// An unknown account is throttled like a real one.
	for i := 0; i < 4; i++ {
		e.do("POST", "/api/v1/login", "", map[string]string{"email": "ghost@example.org", "password": "whatever1234"}, nil)
	}
	e.wantError("POST", "/api/v1/login", "", map[string]string{"email": "ghost@example.org", "password": "whatever1234"}, 429, "too_many_requests", "try again in 1s")

	var entries []silo.AuditEntry
	e.do("GET", "/api/v1/audit?limit=50", e.admin, nil, &entries)
	var failed, denied int
	for _, a := range entries {
		if a.Action == "auth.login" && a.Outcome == silo.OutcomeFailed {
			failed++
		}
		if a.Action == "auth.login" && a.Outcome == silo.OutcomeDenied {
			denied++
		}
	}
	if failed != 11 || denied != 1 {
		t.Fatalf("audit has %d failed and %d throttled sign-ins, want 11 and 1", failed, denied)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	e.wantError("POST", "/api/v1/invites", e.admin, `{"email": "a@example.org", "roles": ["admin"], "colour": "blue"}`, 400, "invalid", `unknown field "colour"`)
	e.wantError("POST", "/api/v1/invites", e.admin, `{"email": "a@example.org", "roles": "admin"}`, 400, "invalid", `field "roles" must be a list`)
	e.wantError("POST", "/api/v1/invites", e.admin, `{"email": `, 400, "invalid", "not valid JSON")
	e.wantError("POST", "/api/v1/invites", e.admin, ``, 400, "invalid", "empty")
	e.wantError("POST", "/api/v1/invites", e.admin, `{"email": "a@example.org", "roles": ["admin"]} {}`, 400, "invalid", "after the JSON object")
	big := `{"email": "` + strings.Repeat("a", 2<<20) + `@example.org", "roles": ["admin"]}`
	e.wantError("POST", "/api/v1/invites", e.admin, big, 413, "invalid", "larger than 1 MiB")
	// Streamed without a length (chunked), the body is cut off at the limit.
	req, _ := http.NewRequest("POST", e.ts.URL+"/api/v1/invites", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != 413 || !strings.Contains(string(body), "larger than 1 MiB") {
		t.Fatalf("a chunked 2 MiB body: length %d, %d %s", req.ContentLength, resp.StatusCode, body)
	}
	e.wantError("POST", "/api/v1/invites", e.admin, map[string]any{"email": "not-an-email", "roles": []string{"admin"}}, 400, "invalid", "not a valid email address")
	e.wantError("POST", "/api/v1/invites", e.admin, map[string]any{"email": "a@example.org", "roles": []string{"superuser"}}, 400, "invalid", `unknown role "superuser"`)
	e.wantError("POST", "/api/v1/invites", e.admin, map[string]any{"email": "a@example.org", "roles": []string{}}, 400, "invalid", "at least one role")
	e.wantError("POST", "/api/v1/invites", e.admin, map[string]any{"email": "a@example.org", "roles": []string{"admin"}, "expires_in": "forever"}, 400, "invalid", "must be a duration")
	e.wantError("POST", "/api/v1/invites", e.admin, map[string]any{"email": "ADMIN@example.org", "roles": []string{"admin"}}, 400, "invalid", "already has an account")
	e.wantError("GET", "/api/v1/nope", e.admin, nil, 404, "not_found", "no API route")
	e.wantError("GET", "/api/v1/users", "", nil, 401, "unauthorized", "sign in first")
	e.wantError("GET", "/api/v1/users", "silo_garbage", nil, 401, "unauthorized", "not valid")
	// Nothing was half-written by the refused requests.
	var invites []silo.Invite
	if e.do("GET", "/api/v1/invites", e.admin, nil, &invites); len(invites) != 0 {
		t.Fatalf("refused invites were stored: %+v", invites)
	}
}

func TestInviteLifecycle(t *testing.T) {
	e := newEnv(t)
	var inv silo.Invite
	if st := e.do("POST", "/api/v1/invites", e.admin, map[string]any{"email": "Mia@Example.org", "roles": []string{"model_builder", "data_custodian"}, "expires_in": "1h"}, &inv); st != 201 {
		t.Fatalf("invite: %d", st)
	}
	if inv.Email != "mia@example.org" || inv.Status != "pending" || !strings.HasPrefix(inv.Link, e.ts.URL+"/invite/") {
		t.Fatalf("invite = %+v", inv)
	}
	e.wantError("POST", "/api/v1/invites", e.admin, map[string]any{"email": "mia@example.org", "roles": []string{"admin"}}, 400, "invalid", "pending invitation")
	secret := inv.Link[strings.LastIndex(inv.Link, "/")+1:]
	e.wantError("POST", "/api/v1/invites/accept", "", map[string]any{"token": secret, "password": "short"}, 400, "invalid", "at least 10 characters")
	e.wantError("POST", "/api/v1/invites/accept", "", map[string]any{"token": "wrong", "password": "long enough pw"}, 404, "not_found", "not valid")
	var u silo.User
	if st := e.do("POST", "/api/v1/invites/accept", "", map[string]any{"token": secret, "name": "Mia", "password": "long enough pw"}, &u); st != 201 || u.Email != "mia@example.org" || len(u.Roles) != 2 {
		t.Fatalf("accept: %d %+v", st, u)
	}
	e.wantError("POST", "/api/v1/invites/accept", "", map[string]any{"token": secret, "password": "long enough pw"}, 409, "conflict", "already been used")
	mia := e.login("mia@example.org", "long enough pw")
	var me struct {
		User        silo.User
		Permissions []string
	}
	e.do("GET", "/api/v1/me", mia, nil, &me)
	if me.User.Name != "Mia" || !strings.Contains(strings.Join(me.Permissions, ","), "sessions:manage") {
		t.Fatalf("me = %+v", me)
	}

	// Expired and revoked invitations.
	var late, gone silo.Invite
	e.do("POST", "/api/v1/invites", e.admin, map[string]any{"email": "late@example.org", "roles": []string{"model_builder"}, "expires_in": "1h"}, &late)
	e.do("POST", "/api/v1/invites", e.admin, map[string]any{"email": "gone@example.org", "roles": []string{"model_builder"}}, &gone)
	var revoked silo.Invite
	if st := e.do("DELETE", "/api/v1/invites/"+itoa(gone.ID), e.admin, nil, &revoked); st != 200 || revoked.Status != "revoked" {
		t.Fatalf("revoke: %d %+v", st, revoked)
	}
	e.wantError("DELETE", "/api/v1/invites/"+itoa(gone.ID), e.admin, nil, 409, "conflict", "not pending")
	e.wantError("POST", "/api/v1/invites/accept", "", map[string]any{"token": secretOf(gone), "password": "long enough pw"}, 409, "conflict", "revoked")
	e.clock.Add(2 * time.Hour)
	e.wantError("POST", "/api/v1/invites/accept", "", map[string]any{"token": secretOf(late), "password": "long enough pw"}, 409, "conflict", "expired")

	var list []silo.Invite
	e.do("GET", "/api/v1/invites", e.admin, nil, &list)
	var states []string
	for _, i := range list {
		states = append(states, i.Email+"="+i.Status)
		if i.Link != "" {
			t.Errorf("listing shows the invite link of %s", i.Email)
		}
	}
	if got := strings.Join(states, " "); got != "gone@example.org=revoked late@example.org=expired mia@example.org=accepted" {
		t.Fatalf("invites = %s", got)
	}
}

func secretOf(i silo.Invite) string { return i.Link[strings.LastIndex(i.Link, "/")+1:] }

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestUserManagementAndLastAdmin(t *testing.T) {
	e := newEnv(t)
	mb := e.addUser("mb@example.org", "model_builder")
	var u silo.User
	if st := e.do("PATCH", "/api/v1/users/mb@example.org", e.admin, map[string]any{"roles": []string{"model_builder", "data_custodian"}}, &u); st != 200 || len(u.Roles) != 2 {
		t.Fatalf("set roles: %d %+v", st, u)
	}
	e.wantError("PATCH", "/api/v1/users/"+adminEmail, e.admin, map[string]any{"roles": []string{"model_builder"}}, 409, "conflict", "at least one active admin")
	e.wantError("PATCH", "/api/v1/users/"+adminEmail, e.admin, map[string]any{"disabled": true}, 409, "conflict", "at least one active admin")
	e.wantError("DELETE", "/api/v1/users/"+adminEmail, e.admin, nil, 409, "conflict", "at least one active admin")
	e.wantError("PATCH", "/api/v1/users/ghost@example.org", e.admin, map[string]any{"roles": []string{"admin"}}, 404, "not_found", "no user")

	// Disabling a user stops their tokens at once.
	if st := e.do("PATCH", "/api/v1/users/mb@example.org", e.admin, map[string]any{"disabled": true}, &u); st != 200 || !u.Disabled {
		t.Fatalf("disable: %d %+v", st, u)
	}
	e.wantError("GET", "/api/v1/me", mb, nil, 401, "unauthorized", "disabled")
	e.wantError("POST", "/api/v1/login", "", map[string]string{"email": "mb@example.org", "password": "password-mb@example.org"}, 401, "unauthorized", "wrong email or password")

	// With a second admin, the first may step down.
	e.do("PATCH", "/api/v1/users/mb@example.org", e.admin, map[string]any{"disabled": false, "roles": []string{"admin"}}, &u)
	if st := e.do("PATCH", "/api/v1/users/"+adminEmail, e.admin, map[string]any{"roles": []string{"model_builder"}}, &u); st != 200 {
		t.Fatalf("step down with another admin present: %d", st)
	}
	if st := e.do("DELETE", "/api/v1/users/"+adminEmail, mb, nil, nil); st != 204 {
		t.Fatalf("remove: %d", st)
	}
	e.wantError("GET", "/api/v1/me", e.admin, nil, 401, "unauthorized", "not valid")

	var entries []silo.AuditEntry
	e.do("GET", "/api/v1/audit", mb, nil, &entries)
	var actions []string
	for _, a := range entries {
		if strings.HasPrefix(a.Action, "user.") {
			actions = append(actions, a.Action+":"+a.Outcome)
		}
	}
	want := "user.remove:success user.set_roles:success user.enable:success user.set_roles:success user.disable:success " +
		"user.remove:failed user.disable:failed user.set_roles:failed user.set_roles:success user.invite:success user.create_first_admin:success"
	if got := strings.Join(actions, " "); got != want {
		t.Fatalf("audit actions:\n got %s\nwant %s", got, want)
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	mb := e.addUser("mb@example.org", "model_builder")
	var tok silo.Token
	if st := e.do("POST", "/api/v1/tokens", mb, map[string]any{"name": "laptop", "expires_in": "24h"}, &tok); st != 201 || !strings.HasPrefix(tok.Secret, "silo_") || tok.ExpiresAt == nil {
		t.Fatalf("create token: %d %+v", st, tok)
	}
	e.wantError("POST", "/api/v1/tokens", mb, map[string]any{"scopes": []string{"users:manage"}}, 400, "invalid", "not one of your own permissions")
	e.wantError("POST", "/api/v1/tokens", mb, map[string]any{"scopes": []string{"sessions:read"}, "expires_in": "800h"}, 400, "invalid", "at most 30 days")
	e.wantError("POST", "/api/v1/tokens", mb, map[string]any{"scopes": []string{"fly"}}, 400, "invalid", "unknown scope")
	var scoped silo.Token
	e.do("POST", "/api/v1/tokens", mb, map[string]any{"scopes": []string{"sessions:read"}}, &scoped)
	if scoped.ExpiresAt == nil || scoped.ExpiresAt.Sub(e.clock.Now()) != silo.MaxScopedTokenTTL {
		t.Fatalf("scoped token expiry = %v, want 30 days", scoped.ExpiresAt)
	}
	// A scoped token cannot mint a broader one.
	e.wantError("POST", "/api/v1/tokens", scoped.Secret, map[string]any{"name": "wider"}, 403, "forbidden", "tokens:own")
	var minter silo.Token
	e.do("POST", "/api/v1/tokens", mb, map[string]any{"scopes": []string{"tokens:own", "sessions:read"}}, &minter)
	e.wantError("POST", "/api/v1/tokens", minter.Secret, map[string]any{"name": "wider"}, 400, "invalid", "only create tokens with scopes")
	e.wantError("POST", "/api/v1/tokens", minter.Secret, map[string]any{"scopes": []string{"runners:manage"}}, 400, "invalid", "not one of your own permissions")

	var list []silo.Token
	e.do("GET", "/api/v1/tokens", mb, nil, &list)
	raw := mustJSON(t, list)
	if len(list) != 4 || strings.Contains(raw, tok.Secret) || strings.Contains(raw, `"hash"`) {
		t.Fatalf("token listing: %s", raw)
	}
	e.wantError("GET", "/api/v1/tokens?all=true", mb, nil, 403, "forbidden", "only admins")
	var all []silo.Token
	if e.do("GET", "/api/v1/tokens?all=true", e.admin, nil, &all); len(all) != 5 {
		t.Fatalf("admin sees %d tokens, want 5", len(all))
	}
	// Another user's token looks like no token to a non-admin.
	for _, other := range all {
		if other.UserEmail == adminEmail {
			e.wantError("DELETE", "/api/v1/tokens/"+other.ID, mb, nil, 404, "not_found", "no token")
		}
	}

	if st := e.do("DELETE", "/api/v1/tokens/"+tok.ID, mb, nil, nil); st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	e.wantError("GET", "/api/v1/me", tok.Secret, nil, 401, "unauthorized", "revoked, expired")
	e.clock.Add(31 * 24 * time.Hour)
	e.wantError("GET", "/api/v1/me", scoped.Secret, nil, 401, "unauthorized", "revoked, expired")
}

// TestScopedTokenChildren: a scoped token that may create tokens cannot
// mint one that outlives it or survives its revocation. A child's expiry is
// capped at its parent's, whatever it asks for; revoking the parent revokes
// its children and theirs; a revoked parent mints nothing.
func TestScopedTokenChildren(t *testing.T) {
	e := newEnv(t)
	mb := e.addUser("mb@example.org", "model_builder")
	var parent, child, grandchild silo.Token
	if st := e.do("POST", "/api/v1/tokens", mb, map[string]any{"name": "ci", "scopes": []string{"tokens:own", "sessions:read"}, "expires_in": "48h"}, &parent); st != 201 {
		t.Fatalf("create the parent: %d", st)
	}
	if st := e.do("POST", "/api/v1/tokens", parent.Secret, map[string]any{"name": "escape", "scopes": []string{"tokens:own", "sessions:read"}, "expires_in": "700h"}, &child); st != 201 {
		t.Fatalf("create a child: %d", st)
	}
	capped := parent.ExpiresAt.Truncate(time.Microsecond) // as stored
	if child.ParentID != parent.ID || child.ExpiresAt == nil || !child.ExpiresAt.Equal(capped) {
		t.Fatalf("child = parent %q, expires %v; want parent %s, expiry capped at %v", child.ParentID, child.ExpiresAt, parent.ID, parent.ExpiresAt)
	}
	if st := e.do("POST", "/api/v1/tokens", child.Secret, map[string]any{"name": "deeper", "scopes": []string{"sessions:read"}}, &grandchild); st != 201 || !grandchild.ExpiresAt.Equal(capped) {
		t.Fatalf("create a grandchild: %d, expires %v", st, grandchild.ExpiresAt)
	}
	// Expiry: all three end together.
	e.clock.Add(48*time.Hour + time.Second)
	for _, tok := range []silo.Token{parent, child, grandchild} {
		e.wantError("GET", "/api/v1/sessions", tok.Secret, nil, 401, "unauthorized", "revoked, expired")
	}
	e.clock.Add(-48*time.Hour - time.Second)
	// Revocation: revoking the parent revokes the lot.
	if st := e.do("DELETE", "/api/v1/tokens/"+parent.ID, mb, nil, nil); st != 204 {
		t.Fatalf("revoke the parent: %d", st)
	}
	for _, tok := range []silo.Token{parent, child, grandchild} {
		e.wantError("GET", "/api/v1/sessions", tok.Secret, nil, 401, "unauthorized", "revoked, expired")
	}
	var list []silo.Token
	e.do("GET", "/api/v1/tokens", mb, nil, &list)
	for _, tok := range list {
		if tok.ID != parent.ID && tok.ID != child.ID && tok.ID != grandchild.ID {
			continue
		}
		if tok.RevokedAt == nil {
			t.Errorf("token %s (%s) is not revoked with its parent", tok.ID, tok.Name)
		}
	}
	// A token made with an unscoped token (or a browser) stands on its own.
	var free silo.Token
	if e.do("POST", "/api/v1/tokens", mb, map[string]any{"name": "laptop"}, &free); free.ParentID != "" || free.ExpiresAt != nil {
		t.Fatalf("a token of an unscoped token: %+v", free)
	}
}

func TestWorkspace(t *testing.T) {
	e := newEnv(t)
	dc := e.addUser("dc@example.org", "data_custodian")
	var w silo.Workspace
	if st := e.do("PATCH", "/api/v1/workspace", e.admin, map[string]any{"name": "acme-health", "billing_email": "Billing@Acme.example", "plan": "team"}, &w); st != 200 || w.BillingEmail != "billing@acme.example" {
		t.Fatalf("patch workspace: %d %+v", st, w)
	}
	e.wantError("PATCH", "/api/v1/workspace", e.admin, map[string]any{"billing_email": "nope"}, 400, "invalid", "billing email")
	e.wantError("PATCH", "/api/v1/workspace", e.admin, map[string]any{"name": "Acme Health!"}, 400, "invalid", "lowercase")
	e.wantError("PATCH", "/api/v1/workspace", e.admin, map[string]any{"plan": "platinum"}, 400, "invalid", "unknown plan")
	e.wantError("PATCH", "/api/v1/workspace", dc, map[string]any{"plan": "team"}, 403, "forbidden", "workspace:manage")
	if e.do("GET", "/api/v1/workspace", dc, nil, &w); w.Name != "acme-health" || w.Plan != "team" {
		t.Fatalf("workspace after refused edits = %+v", w)
	}
	var entries []silo.AuditEntry
	e.do("GET", "/api/v1/audit?since=1h", e.admin, nil, &entries)
	if entries[0].Action != "access.denied" || entries[0].Actor != "dc@example.org" || entries[0].Outcome != "denied" {
		t.Fatalf("newest audit entry = %+v", entries[0])
	}
	e.wantError("GET", "/api/v1/audit?since=yesterday", e.admin, nil, 400, "invalid", "neither a duration")
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestControlCharactersRefused: names, labels and descriptions with a NUL,
// an escape sequence or a bidirectional override are refused with a field
// error that says so, on every route that takes them; line breaks stay
// allowed where text may span lines.
func TestControlCharactersRefused(t *testing.T) {
	e := newEnv(t)
	dc := e.addUser("dc@example.org", "data_custodian")
	mb := e.addUser("mb@example.org", "model_builder")
	root := "file://" + t.TempDir()
	if st := e.do("POST", "/api/v1/runners", e.admin, map[string]any{"name": "clinic-a", "provider": "local", "storage_path": root, "vcpu": 1, "memory_gb": 1}, nil); st != 201 {
		t.Fatalf("register a runner: %d", st)
	}
	if st := e.do("POST", "/api/v1/datasets", dc, map[string]any{"name": "visits", "runner": "clinic-a", "uri": root + "/visits.csv"}, nil); st != 201 {
		t.Fatalf("register a dataset: %d", st)
	}
	var inv silo.Invite
	e.do("POST", "/api/v1/invites", e.admin, map[string]any{"email": "new@example.org", "roles": []string{"model_builder"}}, &inv)
	secret := inv.Link[strings.LastIndex(inv.Link, "/")+1:]

	for _, bad := range []string{"nul\x00byte", "esc\x1b[31mred", "bidi\u202etxt.exe", "bell\a", "c1\u0085nel"} {
		for _, c := range []struct {
			method, path, token string
			body                map[string]any
			field               string
		}{
			{"POST", "/api/v1/tokens", mb, map[string]any{"name": bad}, "name"},
			{"PATCH", "/api/v1/workspace", e.admin, map[string]any{"billing_contact": bad}, "billing_contact"},
			{"PATCH", "/api/v1/workspace", e.admin, map[string]any{"billing_address": bad}, "billing_address"},
			{"PATCH", "/api/v1/users/mb@example.org", e.admin, map[string]any{"name": bad}, "name"},
			{"POST", "/api/v1/invites/accept", "", map[string]any{"token": secret, "name": bad, "password": "a long enough password"}, "name"},
			{"POST", "/api/v1/runners", mb, map[string]any{"name": bad, "provider": "local", "storage_path": "file:///srv/x"}, "name"},
			{"POST", "/api/v1/datasets", dc, map[string]any{"name": bad, "runner": "clinic-a", "uri": root + "/v.csv"}, "name"},
			{"POST", "/api/v1/datasets", dc, map[string]any{"name": "visits_b", "runner": "clinic-a", "uri": root + "/v.csv", "description": bad}, "description"},
			{"POST", "/api/v1/datasets", dc, map[string]any{"name": "visits_b", "runner": "clinic-a", "uri": root + "/" + bad}, "uri"},
			{"POST", "/api/v1/datasets", dc, map[string]any{"name": "visits_b", "runner": bad, "uri": root + "/v.csv"}, "runner"},
			{"PATCH", "/api/v1/datasets/visits", dc, map[string]any{"description": bad}, "description"},
			{"POST", "/api/v1/sessions", mb, map[string]any{"name": bad, "type": "hfl", "datasets": []string{"visits"}}, "name"},
		} {
			var got apiError
			st := e.do(c.method, c.path, c.token, c.body, &got)
			if st != 400 || got.Error.Field != c.field {
				t.Errorf("%s %s with %q in %s: %d %+v, want 400 on field %s", c.method, c.path, bad, c.field, st, got.Error, c.field)
			}
		}
	}
	// An attachment's file name.
	req, _ := http.NewRequest("POST", e.ts.URL+"/api/v1/datasets/visits/attachments?name="+url.QueryEscape("dict\x00.pdf"), strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+dc)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("attachment named with a NUL: %d", resp.StatusCode)
	}
	// A runner's log lines keep their text, not their control characters
	// (PostgreSQL could not even store a NUL).
	var rn silo.Runner
	e.do("POST", "/api/v1/runners/clinic-a/token", e.admin, nil, &rn)
	var task silo.Task
	e.do("POST", "/api/v1/runners/clinic-a/tasks", e.admin, map[string]any{"type": "diagnostics"}, nil)
	if st := e.do("GET", "/api/v1/runner/tasks?wait=0s", rn.Token, nil, &task); st != 200 {
		t.Fatalf("claim a task: %d", st)
	}
	if st := e.do("POST", "/api/v1/runner/tasks/"+task.ID+"/logs", rn.Token, []map[string]any{{"level": "INFO", "message": "disk\x00 \x1b[2Jfull\tnow"}}, nil); st != 204 {
		t.Fatalf("log lines with control characters: %d", st)
	}
	var lines []silo.LogLine
	if e.do("GET", "/api/v1/runners/clinic-a/logs?task="+task.ID, e.admin, nil, &lines); len(lines) != 1 || lines[0].Message != "disk? ?[2Jfull\tnow" {
		t.Fatalf("stored log lines = %+v", lines)
	}
	// A progress report's unit must be printable text.
	e.wantError("POST", "/api/v1/runner/tasks/"+task.ID+"/progress", rn.Token, map[string]any{"done": 1, "total": 2, "unit": "rec\x00ords"}, 400, "invalid", "must not contain control characters (found U+0000")
	if st := e.do("POST", "/api/v1/runner/tasks/"+task.ID+"/progress", rn.Token, map[string]any{"done": 1, "total": 2, "unit": "records"}, nil); st != 204 {
		t.Fatalf("a printable progress report: %d", st)
	}
	// So does a task's error, line breaks aside.
	e.do("POST", "/api/v1/runners/clinic-a/tasks", e.admin, map[string]any{"type": "diagnostics"}, nil)
	if st := e.do("GET", "/api/v1/runner/tasks?wait=0s", rn.Token, nil, &task); st != 200 {
		t.Fatalf("claim a task: %d", st)
	}
	if _, _, err := client.New(e.ts.URL, rn.Token).ReportTask(context.Background(), task.ID, silo.TaskResult{Status: silo.TaskFailed, Error: "no\x00 disk\nleft \x1b[2J\xff"}, nil, nil); err != nil {
		t.Fatalf("a task error with control characters: %v", err)
	}
	var listed []silo.Task
	e.do("GET", "/api/v1/runners/clinic-a/tasks", e.admin, nil, &listed)
	if i := slices.IndexFunc(listed, func(l silo.Task) bool { return l.ID == task.ID }); i < 0 || listed[i].Error != "no? disk\nleft ?[2J\uFFFD" {
		t.Fatalf("stored task error, in %+v", listed)
	}
	// Multi-line text keeps its line breaks; a message names the problem.
	if st := e.do("PATCH", "/api/v1/workspace", e.admin, map[string]any{"billing_address": "1 Main St\nSpringfield"}, nil); st != 200 {
		t.Errorf("a two-line billing address: %d", st)
	}
	e.wantError("POST", "/api/v1/tokens", mb, map[string]any{"name": "ci\x00"}, 400, "invalid", "must not contain control characters (found U+0000")
	// Nothing was stored.
	var w silo.Workspace
	e.do("GET", "/api/v1/workspace", e.admin, nil, &w)
	var users []silo.User
	e.do("GET", "/api/v1/users", e.admin, nil, &users)
	if raw := mustJSON(t, []any{w, users}); strings.ContainsAny(raw, "\x00\x1b\u202e") || strings.Contains(raw, `\u0000`) {
		t.Fatalf("control characters were stored: %s", raw)
	}
}
