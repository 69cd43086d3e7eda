package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/internal/ui"
)

const adminEmail, adminPassword = "admin@example.org", "correct horse battery"

// newServer starts a real server on a fresh SQLite store with a bootstrapped
// admin and returns its URL.
func newServer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	db := sqlstore.New(filepath.Join(t.TempDir(), "silo.db"))
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := server.New(db)
	srv.AddRoutes(ui.New(srv)...)
	if _, _, err := srv.BootstrapAdmin(ctx, adminEmail, adminPassword); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// signIn returns a client acting as email.
func signIn(t *testing.T, base, email, password string) *client.Client {
	t.Helper()
	res, err := client.New(base, "").Login(context.Background(), client.LoginRequest{Email: email, Password: password, TokenName: "test"})
	if err != nil {
		t.Fatalf("login %s: %v", email, err)
	}
	if !strings.HasPrefix(res.Token, silo.TokenPrefix) || res.TokenID == "" || res.User == nil || res.User.Email != email {
		t.Fatalf("login %s = %+v", email, res)
	}
	return client.New(base, res.Token)
}

// wantError checks that err is a *silo.Error with code and a message
// containing substr.
func wantError(t *testing.T, err error, code, substr string) *silo.Error {
	t.Helper()
	var e *silo.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *silo.Error %s", err, err, code)
	}
	if e.Code != code || !strings.Contains(e.Message, substr) {
		t.Fatalf("error = %s %q, want %s containing %q", e.Code, e.Message, code, substr)
	}
	return e
}

func TestHealth(t *testing.T) {
	h, err := client.New(newServer(t), "").Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Database != "sqlite" || h.Version != silo.Version {
		t.Fatalf("health = %+v", h)
	}
}

func TestUsersAndInvites(t *testing.T) {
	ctx := context.Background()
	base := newServer(t)
	admin := signIn(t, base, adminEmail, adminPassword)

	me, err := admin.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if me.User.Email != adminEmail || me.TokenID == "" || !slices.Contains(me.Permissions, silo.PermUsersManage) {
		t.Fatalf("me = %+v", me)
	}

	invites, err := admin.ListInvites(ctx)
	if err != nil || invites == nil || len(invites) != 0 {
		t.Fatalf("ListInvites on a new server = %#v, %v; want an empty non-nil slice", invites, err)
	}

	// A plus sign must survive the trip through the URL path.
	const email = "ana+silo@example.org"
	inv, err := admin.InviteUser(ctx, client.InviteRequest{Email: email, Roles: []silo.Role{silo.RoleModelBuilder}, ExpiresIn: "48h"})
	if err != nil {
		t.Fatal(err)
	}
	if inv.ID == 0 || inv.Status != silo.InvitePending || !strings.Contains(inv.Link, "/invite/") {
		t.Fatalf("invite = %+v", inv)
	}
	invites, err = admin.ListInvites(ctx)
	if err != nil || len(invites) != 1 || invites[0].Email != email || invites[0].Link != "" {
		t.Fatalf("ListInvites = %+v, %v (the link must not be listed)", invites, err)
	}

	// Accepting takes the whole link as well as the bare secret.
	_, err = client.New(base, "").AcceptInvite(ctx, client.AcceptInviteRequest{Token: inv.Link, Name: "Ana", Password: "short"})
	wantError(t, err, silo.EINVALID, "at least 10 characters")
	u, err := client.New(base, "").AcceptInvite(ctx, client.AcceptInviteRequest{Token: inv.Link, Name: "Ana", Password: "ana's long password"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Email != email || u.Name != "Ana" || !u.HasRole(silo.RoleModelBuilder) {
		t.Fatalf("accepted user = %+v", u)
	}
	_, err = client.New(base, "").AcceptInvite(ctx, client.AcceptInviteRequest{Token: inv.Link, Password: "ana's long password"})
	if silo.ErrorCode(err) == "" {
		t.Fatal("an invite link worked twice")
	}
	ana := signIn(t, base, email, "ana's long password")

	// A model builder may not manage users.
	_, err = ana.ListUsers(ctx)
	wantError(t, err, silo.EFORBIDDEN, "users:read")

	got, err := admin.GetUser(ctx, email)
	if err != nil || got.ID != u.ID {
		t.Fatalf("GetUser = %+v, %v", got, err)
	}
	got, err = admin.SetUserRoles(ctx, email, silo.RoleAdmin, silo.RoleDataCustodian)
	if err != nil || !got.HasRole(silo.RoleAdmin) || !got.HasRole(silo.RoleDataCustodian) || got.HasRole(silo.RoleModelBuilder) {
		t.Fatalf("SetUserRoles = %+v, %v", got, err)
	}
	_, err = admin.SetUserRoles(ctx, email)
	wantError(t, err, silo.EINVALID, "at least one role")
	name := "Ana Silva"
	if got, err = admin.UpdateUser(ctx, email, client.UserUpdate{Name: &name}); err != nil || got.Name != name {
		t.Fatalf("rename = %+v, %v", got, err)
	}

	disabled := true
	if got, err = admin.UpdateUser(ctx, email, client.UserUpdate{Disabled: &disabled}); err != nil || !got.Disabled {
		t.Fatalf("disable = %+v, %v", got, err)
	}
	_, err = ana.Me(ctx)
	wantError(t, err, silo.EUNAUTHORIZED, "disabled")

	if err := admin.RemoveUser(ctx, email); err != nil {
		t.Fatal(err)
	}
	_, err = admin.GetUser(ctx, email)
	wantError(t, err, silo.ENOTFOUND, "")

	// The last admin can be neither demoted, disabled nor removed.
	_, err = admin.SetUserRoles(ctx, adminEmail, silo.RoleModelBuilder)
	wantError(t, err, silo.ECONFLICT, "at least one active admin")
	_, err = admin.UpdateUser(ctx, adminEmail, client.UserUpdate{Disabled: &disabled})
	wantError(t, err, silo.ECONFLICT, "at least one active admin")
	err = admin.RemoveUser(ctx, adminEmail)
	wantError(t, err, silo.ECONFLICT, "at least one active admin")

	inv, err = admin.InviteUser(ctx, client.InviteRequest{Email: "bo@example.org", Roles: []silo.Role{silo.RoleDataCustodian}})
	if err != nil {
		t.Fatal(err)
	}
	if inv, err = admin.RevokeInvite(ctx, inv.ID); err != nil || inv.Status != silo.InviteRevoked {
		t.Fatalf("RevokeInvite = %+v, %v", inv, err)
	}
	_, err = client.New(base, "").AcceptInvite(ctx, client.AcceptInviteRequest{Token: inv.Link, Password: "bo's long password"})
	if silo.ErrorCode(err) == "" {
		t.Fatal("a revoked invite worked")
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	base := newServer(t)
	admin := signIn(t, base, adminEmail, adminPassword)

	tok, err := admin.CreateToken(ctx, silo.TokenRequest{Name: "read runners", Scopes: []silo.Permission{silo.PermRunnersRead}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Secret, silo.TokenPrefix) || tok.ID == "" || tok.ExpiresAt == nil {
		t.Fatalf("scoped token = %+v (scoped tokens expire)", tok)
	}
	scoped := client.New(base, tok.Secret)
	me, err := scoped.Me(ctx)
	if err != nil || me.TokenID != tok.ID || slices.Contains(me.Permissions, silo.PermUsersRead) || !slices.Contains(me.Permissions, silo.PermRunnersRead) {
		t.Fatalf("scoped me = %+v, %v", me, err)
	}
	_, err = scoped.ListUsers(ctx)
	wantError(t, err, silo.EFORBIDDEN, "scopes")

	_, err = admin.CreateToken(ctx, silo.TokenRequest{Scopes: []silo.Permission{"runners:fly"}})
	if e := wantError(t, err, silo.EINVALID, "unknown scope"); e.Field != "scopes" {
		t.Fatalf("field = %q, want scopes", e.Field)
	}

	list, err := admin.ListTokens(ctx, false)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListTokens = %d tokens, %v; want the sign-in's and the scoped one", len(list), err)
	}
	for _, l := range list {
		if l.Secret != "" {
			t.Fatalf("listing shows a secret: %+v", l)
		}
	}
	if all, err := admin.ListTokens(ctx, true); err != nil || len(all) != 2 {
		t.Fatalf("ListTokens(all) = %d, %v", len(all), err)
	}
	_, err = scoped.ListTokens(ctx, false)
	wantError(t, err, silo.EFORBIDDEN, "tokens:own")

	if err := admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = scoped.Me(ctx)
	wantError(t, err, silo.EUNAUTHORIZED, "revoked")
	err = admin.RevokeToken(ctx, "tok_nosuch")
	wantError(t, err, silo.ENOTFOUND, "tok_nosuch")
}

func TestWorkspaceAndAudit(t *testing.T) {
	ctx := context.Background()
	base := newServer(t)
	admin := signIn(t, base, adminEmail, adminPassword)

	w, err := admin.Workspace(ctx)
	if err != nil || w.Plan == "" {
		t.Fatalf("Workspace = %+v, %v", w, err)
	}
	name, plan, bad := "acme-health", "team", "not-an-email"
	if w, err = admin.UpdateWorkspace(ctx, client.WorkspaceUpdate{Name: &name, Plan: &plan}); err != nil || w.Name != name || w.Plan != plan {
		t.Fatalf("UpdateWorkspace = %+v, %v", w, err)
	}
	_, err = admin.UpdateWorkspace(ctx, client.WorkspaceUpdate{BillingEmail: &bad})
	if e := wantError(t, err, silo.EINVALID, "billing email"); e.Field != "billing_email" {
		t.Fatalf("field = %q", e.Field)
	}

	entries, err := admin.ListAudit(ctx, client.AuditQuery{Since: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]string{}
	for _, e := range entries {
		actions[e.Action] = e.Outcome
	}
	if actions["workspace.update"] == "" || actions["auth.login"] != silo.OutcomeSuccess || actions["token.create"] != silo.OutcomeSuccess {
		t.Fatalf("audit actions = %v", actions)
	}
	if entries[0].ID < entries[len(entries)-1].ID {
		t.Fatal("audit is not newest first")
	}
	page, err := admin.ListAudit(ctx, client.AuditQuery{Limit: 2, Before: entries[0].ID})
	if err != nil || len(page) != 2 || page[0].ID >= entries[0].ID {
		t.Fatalf("paged audit = %+v, %v", page, err)
	}
	none, err := admin.ListAudit(ctx, client.AuditQuery{Since: "2999-01-01T00:00:00Z"})
	if err != nil || none == nil || len(none) != 0 {
		t.Fatalf("future audit = %#v, %v; want an empty non-nil slice", none, err)
	}
	_, err = admin.ListAudit(ctx, client.AuditQuery{Since: "yesterday"})
	wantError(t, err, silo.EINVALID, "yesterday")
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	base := newServer(t)

	_, err := client.New(base, "").Login(ctx, client.LoginRequest{Email: adminEmail, Password: "wrong password"})
	wantError(t, err, silo.EUNAUTHORIZED, "wrong email or password")
	_, err = client.New(base, "").Me(ctx)
	wantError(t, err, silo.EUNAUTHORIZED, "sign in")
	_, err = client.New(base, "silo_notatoken").Me(ctx)
	wantError(t, err, silo.EUNAUTHORIZED, "not valid")

	// A server that is not listening: the error names it and keeps the cause.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	_, err = client.New(closed.URL, "").Health(ctx)
	if err == nil || !strings.Contains(err.Error(), "could not reach the Silo server at "+closed.URL) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("unreachable server: %v", err)
	}

	// A reverse proxy whose backend is down answers 502 in its own format.
	backend, _ := url.Parse(closed.URL)
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(backend))
	defer proxy.Close()
	_, err = client.New(proxy.URL, "").Health(ctx)
	wantError(t, err, silo.EINTERNAL, "server returned 502 Bad Gateway")

	// A registration with several mistakes: every field's problem in one
	// *silo.Error, as the API's "fields" list.
	admin := signIn(t, base, adminEmail, adminPassword)
	_, err = admin.RegisterRunner(ctx, silo.RunnerSpec{Name: "X", Provider: silo.ProviderLocal, StoragePath: "/srv/data", VCPU: 999})
	e := wantError(t, err, silo.EINVALID, "runner name")
	var fields []string
	for _, f := range e.Fields {
		fields = append(fields, f.Field)
	}
	if strings.Join(fields, ",") != "name,storage_path,vcpu" || e.Field != "name" {
		t.Errorf("fields = %v (field %q), want name, storage_path and vcpu", fields, e.Field)
	}

	// A cancelled context is reported as such.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err = client.New(base, "").Health(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestInviteSecret(t *testing.T) {
	for in, want := range map[string]string{
		"abc":                                  "abc",
		"https://silo.example.org/invite/abc":  "abc",
		"https://silo.example.org/invite/abc/": "abc",
		"http://h/invite/abc?utm=x":            "abc",
		" abc\n":                               "abc",
	} {
		if got := client.InviteSecret(in); got != want {
			t.Errorf("InviteSecret(%q) = %q, want %q", in, got, want)
		}
	}
}
