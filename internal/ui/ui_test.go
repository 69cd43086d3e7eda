package ui_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/internal/testsvc"
)

const uiAdminEmail, uiAdminPassword = servertest.AdminEmail, servertest.AdminPassword

func TestMain(m *testing.M) { os.Exit(testsvc.Main(m)) }

// uiEnv is a running server (servertest.Env) as the UI tests reach it.
type uiEnv struct {
	t     *testing.T
	db    *sqlstore.DB
	srv   *server.Server
	ts    *httptest.Server
	clock *servertest.Clock
}

// newUIEnv starts a server on a fresh SQLite store, with the first admin
// created unless empty is set.
func newUIEnv(t *testing.T, empty bool) *uiEnv {
	t.Helper()
	e := servertest.Start(t, !empty)
	return &uiEnv{t: t, db: e.DB, srv: e.Srv, ts: e.TS, clock: e.Clock}
}

// uiBrowser is a cookie-keeping HTTP client that does not follow redirects,
// so tests see them.
type uiBrowser struct {
	e *uiEnv
	c *http.Client
}

func (e *uiEnv) browser() *uiBrowser {
	jar, _ := cookiejar.New(nil)
	return &uiBrowser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// uiPage is a fetched response with its body.
type uiPage struct {
	*http.Response
	Body string
}

func (b *uiBrowser) do(method, path string, form url.Values) uiPage {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.ts.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return uiPage{resp, string(data)}
}

func (b *uiBrowser) get(path string) uiPage { b.e.t.Helper(); return b.do("GET", path, nil) }

// post submits a form with the sign-in's CSRF token added.
func (b *uiBrowser) post(path string, form url.Values) uiPage {
	b.e.t.Helper()
	form.Set("csrf_token", b.csrf())
	return b.do("POST", path, form)
}

// follow fetches the page a redirect points to.
func (b *uiBrowser) follow(p uiPage) uiPage {
	b.e.t.Helper()
	if p.StatusCode != http.StatusSeeOther {
		b.e.t.Fatalf("status %d, want a redirect; body:\n%s", p.StatusCode, p.Body)
	}
	return b.get(p.Header.Get("Location"))
}

var csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func (b *uiBrowser) csrf() string {
	b.e.t.Helper()
	m := csrfField.FindStringSubmatch(b.get("/settings/tokens").Body)
	if m == nil {
		b.e.t.Fatal("no csrf_token on the tokens page: not signed in?")
	}
	return m[1]
}

func (b *uiBrowser) signIn(email, password string) {
	b.e.t.Helper()
	p := b.do("POST", "/login", url.Values{"email": {email}, "password": {password}})
	if p.StatusCode != http.StatusSeeOther {
		b.e.t.Fatalf("sign in as %s: status %d\n%s", email, p.StatusCode, p.Body)
	}
}

// text returns the page's visible text, roughly: tags removed, entities
// decoded and white space collapsed, for asserting on what a user reads.
func (p uiPage) text() string {
	s := regexp.MustCompile(`(?s)<[^>]*>`).ReplaceAllString(p.Body, " ")
	return strings.Join(strings.Fields(html.UnescapeString(s)), " ")
}

func wantStatus(t *testing.T, p uiPage, status int) {
	t.Helper()
	if p.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d\n%s", p.Request.Method, p.Request.URL.Path, p.StatusCode, status, p.text())
	}
}

func wantText(t *testing.T, p uiPage, substrs ...string) {
	t.Helper()
	text := p.text()
	for _, s := range substrs {
		if !strings.Contains(text, s) {
			t.Errorf("%s %s: page does not say %q; it says:\n%s", p.Request.Method, p.Request.URL.Path, s, text)
		}
	}
}

var inviteLink = regexp.MustCompile(`id="invite-link"[^>]*value="([^"]+)"`)

// invite creates an invitation through the users page and returns its link.
func (b *uiBrowser) invite(email, expires string, roles ...string) string {
	b.e.t.Helper()
	p := b.post("/settings/invites", url.Values{"email": {email}, "roles": roles, "expires_in": {expires}})
	wantStatus(b.e.t, p, http.StatusOK)
	m := inviteLink.FindStringSubmatch(p.Body)
	if m == nil {
		b.e.t.Fatalf("no invitation link on the page:\n%s", p.text())
	}
	return html.UnescapeString(m[1])
}

// join accepts an invitation in a new browser and returns it, signed in.
func (e *uiEnv) join(link, name, password string) *uiBrowser {
	e.t.Helper()
	b := e.browser()
	path := strings.TrimPrefix(link, e.ts.URL)
	p := b.do("POST", path, url.Values{"name": {name}, "password": {password}, "confirm": {password}})
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/" {
		e.t.Fatalf("accept invitation: status %d Location %q\n%s", p.StatusCode, p.Header.Get("Location"), p.text())
	}
	return b
}

func TestUIAnonymousIsSentToSignIn(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	for _, path := range []string{"/settings/users", "/settings/audit?since=24h", "/", "/library"} {
		p := b.get(path)
		want := "/login?next=" + url.QueryEscape(path)
		if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != want {
			t.Errorf("GET %s: %d to %q, want 303 to %q", path, p.StatusCode, p.Header.Get("Location"), want)
		}
	}
	// The sign-in page is served in the site's layout, with no inline code.
	p := b.get("/login?next=%2Fsettings%2Fusers")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Sign in", "to the silo workspace")
	if !strings.Contains(p.Body, `<title>Sign in · Silo</title>`) {
		t.Errorf("sign-in page has no title")
	}
}

func TestUISignIn(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()

	p := b.do("POST", "/login", url.Values{"email": {uiAdminEmail}, "password": {"wrong password!"}, "next": {"/settings/users"}})
	wantStatus(t, p, http.StatusUnauthorized)
	wantText(t, p, "Wrong email or password")
	if !strings.Contains(p.Body, `value="`+uiAdminEmail+`"`) {
		t.Errorf("the email typed is not kept after a failed sign-in")
	}

	p = b.do("POST", "/login", url.Values{"email": {uiAdminEmail}, "password": {uiAdminPassword}, "next": {"/settings/users"}})
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/settings/users" {
		t.Fatalf("sign in: %d to %q, want 303 to the next page", p.StatusCode, p.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range p.Cookies() {
		if c.Name == "silo_session" {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Value == "" {
		t.Fatalf("session cookie = %+v, want HttpOnly SameSite=Lax", session)
	}
	p = b.follow(p)
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Users", uiAdminEmail, "Workspace Administrator", "Sign out")

	// The dashboard greets the admin with a checklist for their roles.
	p = b.get("/")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Welcome, "+uiAdminEmail, "Getting started", "Invite your team", "Register a task runner", "Register a dataset", "Create a training session", "New session")

	// Signing out ends the sign-in.
	p = b.post("/logout", url.Values{})
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/login" {
		t.Fatalf("sign out: %d to %q", p.StatusCode, p.Header.Get("Location"))
	}
	wantText(t, b.follow(p), "You are signed out.")
	if p := b.get("/"); p.StatusCode != http.StatusSeeOther {
		t.Fatalf("after signing out, GET / = %d, want a redirect to sign in", p.StatusCode)
	}
}

func TestUISignInNextMustBeLocal(t *testing.T) {
	e := newUIEnv(t, false)
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", ""} {
		b := e.browser()
		p := b.do("POST", "/login", url.Values{"email": {uiAdminEmail}, "password": {uiAdminPassword}, "next": {next}})
		if loc := p.Header.Get("Location"); p.StatusCode != http.StatusSeeOther || loc != "/" {
			t.Errorf("next=%q: %d to %q, want 303 to /", next, p.StatusCode, loc)
		}
	}
}

func TestUISignInRateLimited(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	var p uiPage
	for range 6 {
		p = b.do("POST", "/login", url.Values{"email": {uiAdminEmail}, "password": {"not the password"}})
	}
	wantStatus(t, p, http.StatusTooManyRequests)
	wantText(t, p, "Too many failed sign-in attempts")
}

func TestUIFormsNeedCSRFToken(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)
	form := url.Values{"email": {"x@example.org"}, "roles": {"model_builder"}}
	p := b.do("POST", "/settings/invites", form)
	wantStatus(t, p, http.StatusForbidden)
	wantText(t, p, "The form has expired or did not come from this site")
	form.Set("csrf_token", "forged")
	wantStatus(t, b.do("POST", "/settings/invites", form), http.StatusForbidden)
	if invites, _ := e.db.ListInvites(context.Background()); len(invites) != 0 {
		t.Fatalf("a refused form still created %d invitations", len(invites))
	}
	wantStatus(t, b.post("/settings/invites", form), http.StatusOK)
}

func TestUIPermissions(t *testing.T) {
	e := newUIEnv(t, false)
	admin := e.browser()
	admin.signIn(uiAdminEmail, uiAdminPassword)
	dc := e.join(admin.invite("dc@example.org", "168h", "data_custodian"), "Dana Custodian", "custodian password")

	p := dc.get("/settings/audit")
	wantStatus(t, p, http.StatusForbidden)
	wantText(t, p, "You can't do this", "audit:read", "Go to the dashboard")
	wantStatus(t, dc.get("/settings/users"), http.StatusForbidden)

	// Settings opens at the first section they may see, and the sub-navigation
	// offers only those.
	p = dc.get("/settings")
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/settings/runners" {
		t.Fatalf("GET /settings as custodian: %d to %q, want /settings/runners", p.StatusCode, p.Header.Get("Location"))
	}
	p = dc.follow(p)
	wantText(t, p, "Task Runners", "Tokens", "Billing", "No task runners yet", "silo runners register")
	if strings.Contains(p.Body, `href="/settings/users"`) || strings.Contains(p.Body, `href="/settings/audit"`) {
		t.Errorf("custodian's settings navigation links to pages they may not see")
	}
	// Billing is read-only for them.
	p = dc.get("/settings/billing")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Only a Workspace Administrator can change them")
	if strings.Contains(p.Body, `action="/settings/billing"`) {
		t.Errorf("custodian sees the billing form")
	}
	wantStatus(t, dc.post("/settings/billing", url.Values{"name": {"hacked"}}), http.StatusForbidden)

	// Their dashboard offers what their role can do.
	p = dc.get("/")
	wantText(t, p, "Welcome, Dana Custodian", "Register a dataset", "Data Custodian")
	if strings.Contains(p.text(), "Invite your team") {
		t.Errorf("custodian's dashboard suggests inviting people")
	}
}

func TestUISetup(t *testing.T) {
	e := newUIEnv(t, true)
	b := e.browser()
	if p := b.get("/login"); p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/setup" {
		t.Fatalf("GET /login with no users: %d to %q, want /setup", p.StatusCode, p.Header.Get("Location"))
	}
	p := b.get("/setup")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Set up Silo", "Create the first Workspace Administrator")

	p = b.do("POST", "/setup", url.Values{"email": {"first@example.org"}, "password": {"long enough password"}, "confirm": {"something else"}})
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "The two passwords differ")
	if !strings.Contains(p.Body, `value="first@example.org"`) {
		t.Errorf("the email typed is not kept")
	}
	p = b.do("POST", "/setup", url.Values{"email": {"first@example.org"}, "password": {"short"}, "confirm": {"short"}})
	wantText(t, p, "Password must be at least 10 characters")

	p = b.do("POST", "/setup", url.Values{"email": {"first@example.org"}, "password": {"long enough password"}, "confirm": {"long enough password"}})
	wantText(t, b.follow(p), "Welcome, first@example.org", "You are the Workspace Administrator")

	// Once a user exists the page is closed, also to other browsers.
	other := e.browser()
	if p := other.get("/setup"); p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/login" {
		t.Fatalf("GET /setup after setup: %d to %q, want /login", p.StatusCode, p.Header.Get("Location"))
	}
	p = other.do("POST", "/setup", url.Values{"email": {"second@example.org"}, "password": {"long enough password"}, "confirm": {"long enough password"}})
	wantText(t, other.follow(p), "Setup is already done")
	if n, _ := e.db.CountUsers(context.Background()); n != 1 {
		t.Fatalf("%d users after a second setup, want 1", n)
	}
	entries, _ := e.db.ListAudit(context.Background(), silo.AuditFilter{})
	if !auditHas(entries, "user.create_first_admin", "first@example.org") {
		t.Errorf("setup is not in the audit log")
	}
}

func TestUIInvitations(t *testing.T) {
	e := newUIEnv(t, false)
	admin := e.browser()
	admin.signIn(uiAdminEmail, uiAdminPassword)

	// Field errors are shown next to the field, keeping what was typed.
	p := admin.post("/settings/invites", url.Values{"email": {"not-an-email"}, "roles": {"model_builder"}})
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, `"not-an-email" is not a valid email address`)
	if !strings.Contains(p.Body, `value="not-an-email"`) || !regexp.MustCompile(`value="model_builder" checked`).MatchString(p.Body) {
		t.Errorf("the invitation form lost what was typed")
	}
	p = admin.post("/settings/invites", url.Values{"email": {"norole@example.org"}})
	wantText(t, p, "At least one role is required")

	link := admin.invite("mb@example.org", "24h", "model_builder")
	if !strings.HasPrefix(link, e.ts.URL+"/invite/") {
		t.Fatalf("invitation link %q", link)
	}
	path := strings.TrimPrefix(link, e.ts.URL)
	p = admin.get("/settings/users")
	wantText(t, p, "mb@example.org", "Pending")
	if strings.Contains(p.Body, path) {
		t.Fatalf("the invitation link is shown again after the page that created it")
	}

	// The link shows who is invited, as what.
	guest := e.browser()
	p = guest.get(path)
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Join silo", "mb@example.org", "Model Builder", uiAdminEmail+" invited you")
	p = guest.do("POST", path, url.Values{"name": {"Mo"}, "password": {"short"}, "confirm": {"short"}})
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "Password must be at least 10 characters")

	// After expiry the link says so and what to do.
	e.clock.Add(25 * time.Hour)
	p = guest.get(path)
	wantStatus(t, p, http.StatusGone)
	wantText(t, p, "This invitation has expired", "Ask your Workspace Administrator to invite you again")
	p = guest.do("POST", path, url.Values{"password": {"long enough password"}, "confirm": {"long enough password"}})
	wantText(t, p, "This invitation has expired")

	p = guest.get("/invite/not-a-real-secret")
	wantStatus(t, p, http.StatusNotFound)
	wantText(t, p, "This invitation link is not valid")

	// A revoked invitation says it was withdrawn; a used one says so.
	admin.signIn(uiAdminEmail, uiAdminPassword) // the clock moved past the sign-in's lifetime
	link = admin.invite("rev@example.org", "", "data_custodian")
	p = admin.get("/settings/users")
	id := regexp.MustCompile(`/settings/invites/(\d+)/revoke`).FindStringSubmatch(p.Body)
	if id == nil {
		t.Fatal("no Revoke button for the pending invitation")
	}
	wantText(t, admin.follow(admin.post("/settings/invites/"+id[1]+"/revoke", url.Values{})), "The invitation for rev@example.org is revoked")
	wantText(t, guest.get(strings.TrimPrefix(link, e.ts.URL)), "This invitation was withdrawn")

	link = admin.invite("used@example.org", "", "data_custodian")
	e.join(link, "", "a long password")
	wantText(t, guest.get(strings.TrimPrefix(link, e.ts.URL)), "This invitation has already been used")
}

func TestUIUserManagement(t *testing.T) {
	e := newUIEnv(t, false)
	admin := e.browser()
	admin.signIn(uiAdminEmail, uiAdminPassword)
	mb := e.join(admin.invite("mb@example.org", "", "model_builder"), "Mo Builder", "builder password")
	wantText(t, mb.get("/"), "Welcome, Mo Builder", "You joined the workspace as Model Builder")

	p := admin.post("/settings/users/mb@example.org/roles", url.Values{"roles": {"model_builder", "data_custodian"}})
	wantText(t, admin.follow(p), "mb@example.org now has the roles: Model Builder, Data Custodian.")

	// The last admin cannot demote, disable or remove themself.
	for _, action := range []string{"roles", "disable", "remove"} {
		p := admin.post("/settings/users/"+uiAdminEmail+"/"+action, url.Values{"roles": {"model_builder"}})
		p = admin.follow(p)
		wantStatus(t, p, http.StatusOK)
		wantText(t, p, "The workspace must keep at least one active admin")
		if !strings.Contains(p.Body, `class="flash flash-error"`) {
			t.Errorf("%s: the refusal is not shown as an error", action)
		}
	}
	// Empty role set.
	wantText(t, admin.follow(admin.post("/settings/users/mb@example.org/roles", url.Values{})), "At least one role is required")

	// Disabling signs the user out; enabling lets them back.
	wantText(t, admin.follow(admin.post("/settings/users/mb@example.org/disable", url.Values{})), "mb@example.org is disabled")
	if p := mb.get("/"); p.StatusCode != http.StatusSeeOther {
		t.Fatalf("disabled user still signed in: %d", p.StatusCode)
	}
	wantText(t, admin.follow(admin.post("/settings/users/mb@example.org/enable", url.Values{})), "mb@example.org is enabled again")
	wantText(t, admin.follow(admin.post("/settings/users/mb@example.org/remove", url.Values{})), "mb@example.org was removed")
	if p := admin.get("/settings/users"); strings.Contains(p.Body, `data-email="mb@example.org"`) {
		t.Fatalf("removed user still listed")
	}

	// Without users:manage there are no controls.
	dc := e.join(admin.invite("dc@example.org", "", "data_custodian"), "", "custodian password")
	wantStatus(t, dc.post("/settings/users/"+uiAdminEmail+"/remove", url.Values{}), http.StatusForbidden)
}

func TestUITokens(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)

	p := b.post("/settings/tokens", url.Values{"name": {"ci"}, "scopes": {"runners:read"}, "expires_in": {"2160h"}})
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "A scoped token lives at most 30 days")
	if !regexp.MustCompile(`value="runners:read" checked`).MatchString(p.Body) {
		t.Errorf("the ticked scope was lost")
	}

	p = b.post("/settings/tokens", url.Values{"name": {"laptop"}, "expires_in": {"720h"}})
	wantStatus(t, p, http.StatusOK)
	m := regexp.MustCompile(`id="token-secret"[^>]*value="(silo_[a-z0-9]+)"`).FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("the new token's secret is not shown:\n%s", p.text())
	}
	wantText(t, p, "shown only once", "laptop")
	if h := p.Header.Get("Cache-Control"); h != "no-store" {
		t.Errorf("page with a secret has Cache-Control %q, want no-store", h)
	}
	// The token works, and is not shown again.
	req, _ := http.NewRequest("GET", e.ts.URL+"/api/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+m[1])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("new token does not work: %v %v", resp, err)
	}
	p = b.get("/settings/tokens")
	if strings.Contains(p.Body, m[1]) {
		t.Fatal("the token secret is shown again")
	}
	id := regexp.MustCompile(`/settings/tokens/(tok_[a-z0-9]+)/revoke`).FindStringSubmatch(p.Body)
	if id == nil {
		t.Fatal("no Revoke button")
	}
	wantText(t, b.follow(b.post("/settings/tokens/"+id[1]+"/revoke", url.Values{})), "Token "+id[1]+" is revoked", "Revoked")
}

func TestUIRunnersListed(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)
	m := regexp.MustCompile(`id="token-secret"[^>]*value="(silo_[a-z0-9]+)"`).FindStringSubmatch(b.post("/settings/tokens", url.Values{"name": {"api"}}).Body)
	if m == nil {
		t.Fatal("no token secret shown")
	}
	body := `{"name": "hospital-a", "provider": "local", "storage_path": "file:///srv/hospital-a", "vcpu": 2, "memory_gb": 1}`
	req, _ := http.NewRequest("POST", e.ts.URL+"/api/v1/runners", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+m[1])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("register runner: %d", resp.StatusCode)
	}
	p := b.get("/settings/runners")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Registered runners", "hospital-a", "Local", "file:///srv/hospital-a", "2 vCPU · 1 GB", "silo runners")
	if strings.Contains(p.text(), "No task runners yet") {
		t.Error("runners page says there are none")
	}
	p = b.get("/")
	if !regexp.MustCompile(`id="stat-runners">1<`).MatchString(p.Body) {
		t.Errorf("dashboard does not count the runner")
	}
	if strings.Contains(p.Body, `id="runners-next"`) {
		t.Errorf("one runner, and a next page")
	}

	// 150 more: the page shows 100 at a time, by name, with the count.
	for i := range 150 {
		name := fmt.Sprintf("lab-%03d", i)
		r := &sqlstore.StoredRunner{Runner: silo.Runner{RunnerSpec: silo.RunnerSpec{Name: name, Provider: silo.ProviderLocal, StoragePath: "file:///srv/" + name},
			Status: silo.RunnerRegistering, CreatedBy: uiAdminEmail}, TokenHash: "h-" + name}
		if err := e.db.CreateRunner(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	p = b.get("/settings/runners")
	wantText(t, p, "151, 0 online", "hospital-a", "lab-098")
	if strings.Contains(p.Body, `data-runner="lab-099"`) || !strings.Contains(p.Body, `href="/settings/runners?after=lab-098" id="runners-next"`) {
		t.Fatalf("first page of 151 runners: not hospital-a … lab-098 with a link to the next")
	}
	p = b.get("/settings/runners?after=lab-098")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "lab-099", "lab-149", "First page")
	if strings.Contains(p.Body, `data-runner="lab-098"`) || strings.Contains(p.Body, `id="runners-next"`) {
		t.Fatalf("second page: holds lab-098, or links to a third")
	}
	if p = b.get("/"); !regexp.MustCompile(`id="stat-runners">151<`).MatchString(p.Body) {
		t.Errorf("dashboard does not count 151 runners")
	}
}

func TestUIBillingAndAudit(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)

	form := url.Values{"name": {"Bad Name"}, "billing_contact": {"Ada"}, "billing_email": {"ada@example.org"}, "billing_address": {"1 Road"}, "plan": {"team"}}
	p := b.post("/settings/billing", form)
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, `Workspace name "Bad Name" must be 3–32 lowercase letters`)
	if !strings.Contains(p.Body, `value="Ada"`) {
		t.Errorf("billing form lost what was typed")
	}
	form.Set("name", "acme-health")
	p = b.follow(b.post("/settings/billing", form))
	wantText(t, p, "Workspace and billing information saved.")
	if !strings.Contains(p.Body, `value="team" selected`) {
		t.Errorf("plan not shown as saved")
	}
	wantText(t, b.get("/"), "acme-health")

	p = b.get("/settings/audit")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "workspace.update", "auth.login", uiAdminEmail, "Success", "Failed")
	p = b.get("/settings/audit?since=yesterday")
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, `Since "yesterday" is neither a duration`)

	// Paging: more than a page of entries offers older ones.
	for range 60 {
		b.post("/settings/tokens/tok_none/revoke", url.Values{})
	}
	p = b.get("/settings/audit?since=1h")
	older := regexp.MustCompile(`href="(/settings/audit\?before=\d+&amp;since=1h)"`).FindStringSubmatch(p.Body)
	if older == nil {
		t.Fatalf("no link to older entries")
	}
	p = b.get(html.UnescapeString(older[1]))
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Newest")
}

// inlineCode matches what the CSP would block: inline scripts, styles and
// event handlers.
var inlineCode = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=|javascript:`)

func wantNoInlineCode(t *testing.T, p uiPage) {
	t.Helper()
	if m := inlineCode.FindString(p.Body); m != "" {
		t.Errorf("%s has inline code the CSP blocks: %q", p.Request.URL.Path, m)
	}
}

func TestUIPagesHaveNoInlineCode(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)
	inline := inlineCode
	for _, path := range []string{"/", "/library", "/sessions", "/settings/users", "/settings/runners", "/settings/tokens", "/settings/billing", "/settings/audit",
		"/settings/register-runner", "/settings/register-runner/aws", "/settings/register-runner/azure", "/settings/register-runner/local", "/library/register-dataset", "/no-such-page"} {
		p := b.get(path)
		if path == "/no-such-page" {
			wantStatus(t, p, http.StatusNotFound)
			wantText(t, p, "Page not found", "Dashboard")
		} else {
			wantStatus(t, p, http.StatusOK)
		}
		if m := inline.FindString(p.Body); m != "" {
			t.Errorf("%s has inline code the CSP blocks: %q", path, m)
		}
		title := regexp.MustCompile(`<title>([^<]+) · Silo</title>`).FindStringSubmatch(p.Body)
		if title == nil {
			t.Errorf("%s has no title", path)
		}
		if strings.Contains(p.Body, "$argon2id$") {
			t.Errorf("%s shows a password hash", path)
		}
	}
	// Static files are served with long cache lifetimes; unknown ones are 404.
	p := b.get("/static/silo.css")
	wantStatus(t, p, http.StatusOK)
	if !strings.Contains(p.Header.Get("Content-Type"), "text/css") || !strings.Contains(p.Header.Get("Cache-Control"), "max-age=31536000") {
		t.Errorf("silo.css: Content-Type %q Cache-Control %q", p.Header.Get("Content-Type"), p.Header.Get("Cache-Control"))
	}
	wantStatus(t, b.get("/static/nope.js"), http.StatusNotFound)
	wantStatus(t, b.get("/static/..%2fui.go"), http.StatusNotFound)
}

func auditHas(entries []*silo.AuditEntry, action, target string) bool {
	for _, e := range entries {
		if e.Action == action && e.Target == target && e.Outcome == silo.OutcomeSuccess {
			return true
		}
	}
	return false
}

// ---- Task runners ----

// fieldError returns the error shown inside the form field named name (the
// element with data-field="name"), or "".
func fieldError(body, name string) string {
	i := strings.Index(body, `data-field="`+name+`"`)
	if i < 0 {
		return ""
	}
	rest := body[i+1:]
	if j := strings.Index(rest, `data-field="`); j >= 0 {
		rest = rest[:j]
	}
	m := regexp.MustCompile(`class="field-error"[^>]*>([^<]*)<`).FindStringSubmatch(rest)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// fakeLauncher records the local runners the server starts, without running
// an agent.
type fakeLauncher struct {
	mu      sync.Mutex
	started []server.LocalLaunch
}

func (l *fakeLauncher) launch(_ context.Context, ll server.LocalLaunch) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.started = append(l.started, ll)
	return func() {}, nil
}

func awsRunnerForm() url.Values {
	return url.Values{
		"name": {"hospital-a"}, "region": {"eu-west-1"},
		"provisioner_role_arn": {"arn:aws:iam::123456789012:role/silo-provisioner"},
		"runtime_role_arn":     {"arn:aws:iam::123456789012:role/silo-runtime"},
	}
}

func azureRunnerForm() url.Values {
	return url.Values{
		"name": {"clinic-b"}, "region": {"westeurope"}, "resource_group": {"silo-runners"},
		"subscription_id":                  {"11111111-2222-3333-4444-555555555555"},
		"tenant_id":                        {"21111111-2222-3333-4444-555555555555"},
		"service_principal_id":             {"31111111-2222-3333-4444-555555555555"},
		"runtime_service_principal_id":     {"41111111-2222-3333-4444-555555555555"},
		"service_principal_secret":         {"provisioner-secret-value"},
		"runtime_service_principal_secret": {"runtime-secret-value"},
	}
}

func TestUIRunnerRegistrationFormErrors(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)

	p := b.get("/settings/runners")
	if !strings.Contains(p.Body, `href="/settings/register-runner"`) {
		t.Fatal("no Register button on the task runners page for an admin")
	}
	p = b.get("/settings/register-runner")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Local or self-managed", "Amazon Web Services", "Microsoft Azure")
	for _, prov := range []string{"local", "aws", "azure"} {
		if !strings.Contains(p.Body, `href="/settings/register-runner/`+prov+`"`) {
			t.Errorf("no card for provider %s", prov)
		}
	}
	p = b.get("/settings/register-runner/aws")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Advanced settings", "Provisioner role ARN", "Create a new VPC", "Egress proxy URL")
	if !strings.Contains(p.Body, `placeholder="s3://silo-&lt;name&gt;.silo"`) {
		t.Errorf("the default bucket is not shown as the placeholder")
	}
	if !strings.Contains(p.Body, `<option value="eu-west-1">eu-west-1</option>`) {
		t.Errorf("the region select does not list AWS regions")
	}
	wantStatus(t, b.get("/settings/register-runner/gcp"), http.StatusNotFound)

	// A bad ARN and a subnet outside the VPC are both shown, each next to
	// its field, and everything typed is kept.
	form := awsRunnerForm()
	form.Set("provisioner_role_arn", "arn:aws:iam::12345:role/silo")
	form.Set("vpc_cidr", "10.0.0.0/16")
	form.Set("private_subnet_cidr", "10.0.0.0/17")
	form.Set("public_subnet_cidr", "10.1.0.0/17")
	form.Set("cidr_newbits", "2")
	form.Set("vcpu", "many")
	p = b.post("/settings/register-runner/aws", form)
	wantStatus(t, p, http.StatusBadRequest)
	if got := fieldError(p.Body, "provisioner_role_arn"); !strings.Contains(got, "is not a valid IAM role ARN") {
		t.Errorf("provisioner_role_arn error = %q", got)
	}
	if got := fieldError(p.Body, "public_subnet_cidr"); !strings.Contains(got, "is not inside vpc_cidr 10.0.0.0/16") {
		t.Errorf("public_subnet_cidr error = %q", got)
	}
	if got := fieldError(p.Body, "vcpu"); !strings.Contains(got, "must be a whole number") {
		t.Errorf("vcpu error = %q", got)
	}
	if got := fieldError(p.Body, "runtime_role_arn"); got != "" {
		t.Errorf("a valid field shows an error: %q", got)
	}
	wantText(t, p, "3 fields need attention")
	for _, v := range []string{`value="hospital-a"`, `value="arn:aws:iam::12345:role/silo"`, `value="10.1.0.0/17"`, `value="many"`, `value="eu-west-1" selected`} {
		if !strings.Contains(p.Body, v) {
			t.Errorf("the form lost what was typed: no %s", v)
		}
	}
	if !regexp.MustCompile(`<details class="disclosure advanced" id="advanced" open>`).MatchString(p.Body) {
		t.Errorf("the advanced settings holding an error are not opened")
	}
	if runners, _ := e.db.ListRunners(context.Background(), sqlstore.RunnerQuery{}); len(runners) != 0 {
		t.Fatalf("a refused form registered %d runners", len(runners))
	}

	// Secrets are never sent back: the form asks to enter them again.
	az := azureRunnerForm()
	az.Set("tenant_id", "not-a-guid")
	p = b.post("/settings/register-runner/azure", az)
	wantStatus(t, p, http.StatusBadRequest)
	if got := fieldError(p.Body, "tenant_id"); !strings.Contains(got, "is not a GUID") {
		t.Errorf("tenant_id error = %q", got)
	}
	if strings.Contains(p.Body, "provisioner-secret-value") || strings.Contains(p.Body, "runtime-secret-value") {
		t.Fatal("a secret typed into the form is rendered back")
	}
	wantText(t, p, "re-enter the secret", "clinicbstorage")
	if !strings.Contains(p.Body, `value="silo-runners"`) {
		t.Errorf("the Azure form lost what was typed")
	}

	// Fixed, it registers and lands on the runner's page.
	form.Set("provisioner_role_arn", "arn:aws:iam::123456789012:role/silo-provisioner")
	form.Set("public_subnet_cidr", "10.0.128.0/17")
	form.Set("vcpu", "4")
	// Its page shows the runner's token this once, for the deployment.
	p = b.post("/settings/register-runner/aws", form)
	wantStatus(t, p, http.StatusCreated)
	wantText(t, p, "Token for hospital-a", "Copy it now: it is shown only once", "RunnerToken")
	if !strings.Contains(p.Body, silo.RunnerTokenPrefix) {
		t.Errorf("registering an AWS runner showed no token")
	}
	if strings.Contains(b.get("/settings/runners/hospital-a").Body, silo.RunnerTokenPrefix) {
		t.Errorf("the token is shown again")
	}
	wantText(t, p, "Task runner hospital-a is registered", "Provisioning", "s3://silo-hospital-a.silo", "10.0.128.0/17", "Deployment bundle", "Retry provisioning", "Issue token")
	wantNoInlineCode(t, p)
	if strings.Contains(p.Body, `http-equiv="refresh"`) {
		t.Error("a provisioning runner's page refreshes itself")
	}
	if !strings.Contains(p.Body, `action="/settings/runners/hospital-a/bundle"`) || !strings.Contains(p.Body, `name="server_url"`) {
		t.Errorf("no form to download the deployment bundle")
	}
	// This test server is on loopback, which a runner in the cloud cannot
	// reach: the page asks for the server's URL, and refuses to build a
	// bundle without one, saying why next to the field, not as a zip.
	if !strings.Contains(p.Body, `id="bundle-server-url" name="server_url" type="url" inputmode="url" autocomplete="off" spellcheck="false" placeholder="https://silo.example.org" value=""`) {
		t.Errorf("the Deploy section offers a loopback server URL")
	}
	wantText(t, p, "which a runner in the cloud cannot reach")
	refused := b.get("/settings/runners/hospital-a/bundle?server_url=")
	wantStatus(t, refused, http.StatusBadRequest)
	wantText(t, refused, "cannot reach this server at http://127.0.0.1:", "--public-url")
	if ct := refused.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("a refused bundle is served as %s", ct)
	}
	// With a URL its network can reach, the bundle is a zip carrying it.
	got := b.get("/settings/runners/hospital-a/bundle?server_url=" + url.QueryEscape("https://silo.example.org"))
	wantStatus(t, got, http.StatusOK)
	if got.Header.Get("Content-Type") != "application/zip" || !strings.Contains(got.Header.Get("Content-Disposition"), "hospital-a-deployment.zip") {
		t.Errorf("bundle download: %v", got.Header)
	}
	wantStatus(t, b.get("/api/v1/runners/hospital-a/bundle?server_url=https://silo.example.org"), http.StatusOK)
	wantText(t, b.get("/settings/runners"), "hospital-a", "Provisioning")
}

func TestUILocalRunnerTokenShownOnce(t *testing.T) {
	e := newUIEnv(t, false)
	launcher := &fakeLauncher{}
	e.srv.Launch, e.srv.InternalURL, e.srv.LocalRunnersRoot = launcher.launch, e.ts.URL, t.TempDir()
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)
	root := filepath.Join(e.srv.LocalRunnersRoot, "lab-1")

	p := b.post("/settings/register-runner/local", url.Values{"name": {"lab-1"}, "storage_path": {"file://" + root}, "vcpu": {"2"}, "memory_gb": {"1"}})
	wantStatus(t, p, http.StatusCreated)
	m := regexp.MustCompile(`id="runner-token-value"[^>]*value="(silor_[a-z0-9]+)"`).FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatalf("the new runner's token is not shown:\n%s", p.text())
	}
	wantText(t, p, "Task runner lab-1 is registered", "shown only once", "silo runner --server "+e.ts.URL+" --token "+m[1]+" --storage-root "+root, "Start it from the server")
	if h := p.Header.Get("Cache-Control"); h != "no-store" {
		t.Errorf("page with a token has Cache-Control %q", h)
	}
	p = b.get("/settings/runners/lab-1")
	wantStatus(t, p, http.StatusOK)
	if strings.Contains(p.Body, m[1]) {
		t.Fatal("the runner token is shown again")
	}
	wantText(t, p, "lab-1", "Registering", "Never: the agent has not connected yet", "No tasks yet")
	wantNoInlineCode(t, p)

	// Start it from the server; then it can be stopped.
	p = b.follow(b.post("/settings/runners/lab-1/start", url.Values{}))
	wantText(t, p, "Runner lab-1 is starting under the server")
	if len(launcher.started) != 1 || launcher.started[0].StorageRoot != root {
		t.Fatalf("launched %+v", launcher.started)
	}
	if !strings.Contains(p.Body, `action="/settings/runners/lab-1/stop"`) {
		t.Errorf("no Stop button for a runner the server started")
	}
	wantText(t, b.follow(b.post("/settings/runners/lab-1/stop", url.Values{})), "Runner lab-1 is stopped")

	// A Model Builder manages runners but starts none on the server's machine.
	mb := e.join(b.invite("mb@example.org", "168h", "model_builder"), "", "builder password")
	p = mb.get("/settings/runners/lab-1")
	wantText(t, p, "lab-1", "None pinned: the server's privacy controls are the floor")
	if strings.Contains(p.Body, `action="/settings/runners/lab-1/start"`) || strings.Contains(p.Body, `action="/settings/runners/lab-1/stop"`) {
		t.Error("a Model Builder sees Start or Stop")
	}
	wantStatus(t, mb.post("/settings/runners/lab-1/start", url.Values{}), http.StatusForbidden)
	if len(launcher.started) != 1 {
		t.Fatalf("launched %d runners, want the admin's one", len(launcher.started))
	}

	// Replacing the token shows the new one once.
	p = b.post("/settings/runners/lab-1/token", url.Values{})
	wantStatus(t, p, http.StatusOK)
	m2 := regexp.MustCompile(`id="runner-token-value"[^>]*value="(silor_[a-z0-9]+)"`).FindStringSubmatch(p.Body)
	if m2 == nil || m2[1] == m[1] {
		t.Fatalf("no new token shown")
	}
	wantText(t, p, "The token of lab-1 is replaced")

	// Diagnostics are queued and listed.
	p = b.follow(b.post("/settings/runners/lab-1/diagnostics", url.Values{}))
	wantText(t, p, "Diagnostics task task_", "is queued", "Diagnostics", "Queued")

	// Deregister.
	p = b.follow(b.post("/settings/runners/lab-1/deregister", url.Values{}))
	wantText(t, p, "Task runner lab-1 is deregistered", "No task runners yet")
}

func TestUIEditRunner(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)
	p := b.post("/settings/register-runner/azure", azureRunnerForm())
	wantStatus(t, p, http.StatusCreated)
	wantText(t, p, "Task runner clinic-b is registered", "clinicbstorage", "Provisioning", "runnerToken")
	if strings.Contains(p.Body, "provisioner-secret-value") {
		t.Fatal("the runner page shows a secret")
	}
	if n := strings.Count(p.text(), "Set"); n < 2 {
		t.Errorf("the runner page does not say the secrets are set")
	}

	p = b.get("/settings/runners/clinic-b/edit")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Edit clinic-b", "Leave empty to keep the stored secret")
	if !strings.Contains(p.Body, `value="16384"`) && !strings.Contains(p.Body, `value="silo-runners"`) {
		t.Errorf("the edit form is not prefilled")
	}
	if strings.Contains(p.Body, "provisioner-secret-value") {
		t.Fatal("the edit form shows a secret")
	}
	edit := azureRunnerForm()
	edit.Del("name")
	edit.Del("service_principal_secret")
	edit.Del("runtime_service_principal_secret")
	edit.Set("memory_mb", "32768")
	p = b.post("/settings/runners/clinic-b/edit", edit)
	wantStatus(t, p, http.StatusBadRequest)
	if got := fieldError(p.Body, "memory_mb"); !strings.Contains(got, "memory_mb can only be decreased after registration") {
		t.Errorf("memory_mb error = %q\n%s", got, p.text())
	}
	edit.Set("memory_mb", "8192")
	p = b.follow(b.post("/settings/runners/clinic-b/edit", edit))
	wantText(t, p, "Settings of clinic-b saved", "8192")
	r, err := e.db.FindRunner(context.Background(), "clinic-b")
	if err != nil || r.MemoryMB != 8192 || len(r.SealedSecrets) == 0 {
		t.Fatalf("after edit: %+v %v", r, err)
	}
}

func TestUIRunnerPermissions(t *testing.T) {
	e := newUIEnv(t, false)
	admin := e.browser()
	admin.signIn(uiAdminEmail, uiAdminPassword)
	wantStatus(t, admin.post("/settings/register-runner/aws", awsRunnerForm()), http.StatusCreated)
	dc := e.join(admin.invite("dc@example.org", "168h", "data_custodian"), "", "custodian password")

	p := dc.get("/settings/runners")
	wantText(t, p, "hospital-a")
	if strings.Contains(p.Body, `href="/settings/register-runner"`) {
		t.Error("a Data Custodian sees the Register runner button")
	}
	p = dc.get("/settings/runners/hospital-a")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "hospital-a", "Provisioning", "Settings")
	for _, action := range []string{"/diagnostics", "/edit", "/deregister", "/token", "/bundle", "/provision"} {
		if strings.Contains(p.Body, "hospital-a"+action) {
			t.Errorf("a Data Custodian sees the %s action", action)
		}
	}
	wantStatus(t, dc.get("/settings/register-runner"), http.StatusForbidden)
	wantStatus(t, dc.post("/settings/runners/hospital-a/deregister", url.Values{}), http.StatusForbidden)

	// No runners: the custodian gets the explanation, not the button.
	admin.post("/settings/runners/hospital-a/deregister", url.Values{})
	p = dc.get("/settings/runners")
	wantText(t, p, "No task runners yet", "A Workspace Administrator or a Model Builder registers task runners")
	if strings.Contains(p.Body, `href="/settings/register-runner"`) {
		t.Error("a Data Custodian sees the Register runner button on the empty page")
	}
}

// ---- Datasets ----

// postMultipart submits a multipart form with files (field name → file name
// → content), CSRF token added.
func (b *uiBrowser) postMultipart(path string, form url.Values, files map[string]map[string]string) uiPage {
	b.e.t.Helper()
	form.Set("csrf_token", b.csrf())
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, vs := range form {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	for field, fs := range files {
		for name, content := range fs {
			w, _ := mw.CreateFormFile(field, name)
			w.Write([]byte(content))
		}
	}
	mw.Close()
	req, _ := http.NewRequest("POST", b.e.ts.URL+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return uiPage{resp, string(data)}
}

// hiddenValues returns the hidden fields of a page's wizard form.
func hiddenValues(body string) url.Values {
	out := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		if m[1] != "csrf_token" {
			out.Add(m[1], html.UnescapeString(m[2]))
		}
	}
	return out
}

func TestUIDatasetWizardNoRunners(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)
	p := b.get("/library")
	wantText(t, p, "No datasets yet", "Register dataset")
	p = b.get("/library/register-dataset")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "No task runners yet: ask a Workspace Administrator or a Model Builder to register one.")
	if strings.Contains(p.Body, `action="/library/register-dataset"`) {
		t.Error("the wizard offers a form with no runner to choose")
	}
}

func TestUIDatasetWizard(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)
	root := t.TempDir()
	wantStatus(t, b.post("/settings/register-runner/local", url.Values{"name": {"lab-1"}, "storage_path": {"file://" + root}}), http.StatusCreated)
	dc := e.join(b.invite("dc@example.org", "168h", "data_custodian"), "Dana", "custodian password")

	// Step 1: a runner must be chosen.
	p := dc.get("/library/register-dataset")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Which task runner holds the data?", "lab-1", "Registering")
	p = dc.post("/library/register-dataset", url.Values{"step": {"1"}})
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "Choose the task runner next to the data")

	// Step 2 starts from the default privacy controls.
	p = dc.post("/library/register-dataset", url.Values{"step": {"1"}, "runner": {"lab-1"}})
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Details and privacy controls", "Allowed session types")
	for _, v := range []string{`name="max_epsilon_per_session" type="text" inputmode="decimal" placeholder="10" value="10"`, `value="hfl" checked`, `value="prl" checked`, `name="allow_predictions" id="p-allow_predictions" value="on" checked`} {
		if !strings.Contains(p.Body, v) {
			t.Errorf("step 2 is not prefilled with the defaults: no %s", v)
		}
	}
	// Only the session types the server runs are offered.
	for _, v := range []string{`value="vfl"`, `value="eda"`} {
		if strings.Contains(p.Body, v) {
			t.Errorf("step 2 offers a session type the server does not run: %s", v)
		}
	}
	vals := hiddenValues(p.Body)
	vals.Set("step", "2")
	vals.Set("name", "Bad Name")
	vals.Set("description", "Readmissions 2023")
	vals["allowed_session_types"] = []string{"hfl", "eda"}
	vals.Set("allowed_users", "")
	vals.Set("max_epsilon_per_session", "10")
	vals.Set("epsilon_budget", "lots")
	vals.Set("delta", "1e-5")
	vals.Set("min_records_per_aggregate", "10")
	vals.Set("identifier_columns", "patient_id")
	vals.Set("excluded_columns", "ssn")
	p = dc.post("/library/register-dataset", vals)
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, `Dataset name "Bad Name" must be 3–64 lowercase letters`, "epsilon_budget must be a number, e.g. 50, not \"lots\"")
	for _, v := range []string{`value="Bad Name"`, `value="lots"`, `value="patient_id"`, "Readmissions 2023", `value="eda" checked`} {
		if !strings.Contains(p.Body, v) {
			t.Errorf("step 2 lost what was typed: no %s", v)
		}
	}
	if strings.Contains(p.Body, `value="vfl" checked`) {
		t.Error("an unticked session type came back ticked")
	}

	vals.Set("name", "readmissions")
	vals.Set("epsilon_budget", "40")
	p = dc.post("/library/register-dataset", vals)
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Where is the data?", "A file or a folder under file://"+root)

	// Step 3: the URI must be under the runner's root.
	vals = hiddenValues(p.Body)
	vals.Set("step", "3")
	vals.Set("uri", "file:///etc/passwd")
	p = dc.post("/library/register-dataset", vals)
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "is outside runner lab-1's storage root")
	if !strings.Contains(p.Body, `value="file:///etc/passwd"`) {
		t.Error("step 3 lost what was typed")
	}
	// Back keeps the values.
	back := hiddenValues(p.Body)
	back.Set("step", "3")
	back.Set("back", "1")
	p = dc.post("/library/register-dataset", back)
	if !strings.Contains(p.Body, `value="readmissions"`) || !strings.Contains(p.Body, `value="40"`) {
		t.Error("going back lost step 2's values")
	}

	vals.Set("uri", "file://"+root+"/readmissions.csv")
	p = dc.post("/library/register-dataset", vals)
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "Attachments", "Review", "readmissions", "hfl, eda", "Every Model Builder", "patient_id", "Connect")
	if !strings.Contains(p.Body, `enctype="multipart/form-data"`) {
		t.Fatal("the attachments step cannot upload files")
	}

	// Step 4: too large an attachment is refused next to the field.
	vals = hiddenValues(p.Body)
	vals.Set("step", "4")
	big := strings.Repeat("x", silo.MaxAttachmentBytes+1)
	p = dc.postMultipart("/library/register-dataset", vals, map[string]map[string]string{"attachments": {"big.txt": big}})
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "big.txt is 10.5 MB, more than 10 MiB", "Choose the files again")
	if _, err := e.db.FindDataset(context.Background(), "readmissions"); err == nil {
		t.Fatal("a refused step registered the dataset")
	}
	// A request larger than the bound is refused before it is read whole.
	huge := strings.Repeat("x", 6*silo.MaxAttachmentBytes)
	p = dc.postMultipart("/library/register-dataset", vals, map[string]map[string]string{"attachments": {"huge.bin": huge}})
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "The upload is larger than 51 MiB in all")

	// Connect: registered with its attachment; the page follows the runner.
	p = dc.postMultipart("/library/register-dataset", vals, map[string]map[string]string{"attachments": {"dictionary.txt": "patient_id: the patient\n"}})
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/library/readmissions" {
		t.Fatalf("connect: %d to %q\n%s", p.StatusCode, p.Header.Get("Location"), p.text())
	}
	p = dc.follow(p)
	wantText(t, p, "Dataset readmissions is registered with 1 attachment", "Connecting: the runner is reading the data…", "dictionary.txt", "40", "patient_id")
	if !strings.Contains(p.Body, `<meta http-equiv="refresh" content="2">`) {
		t.Error("a connecting dataset's page does not refresh itself")
	}
	wantNoInlineCode(t, p)
	id := regexp.MustCompile(`href="(/api/v1/datasets/readmissions/attachments/\d+)"`).FindStringSubmatch(p.Body)
	if id == nil {
		t.Fatal("no download link for the attachment")
	}
	if got := dc.get(id[1]); got.Body != "patient_id: the patient\n" {
		t.Errorf("attachment download = %q", got.Body)
	}
	d, err := e.db.FindDataset(context.Background(), "readmissions")
	if err != nil || d.Owner != "dc@example.org" || d.Privacy.EpsilonBudget != 40 || !slices.Equal(d.Privacy.AllowedSessionTypes, []string{"hfl", "eda"}) ||
		!slices.Equal(d.Privacy.ExcludedColumns, []string{"ssn"}) {
		t.Fatalf("registered dataset = %+v, %v", d, err)
	}
	p = dc.get("/library")
	wantText(t, p, "readmissions", "lab-1", "Connecting", "dc@example.org")

	// The owner edits the privacy controls: errors next to the field, then saved.
	form := privacyForm(d.Privacy)
	form.Set("delta", "2")
	p = dc.post("/library/readmissions/privacy", form)
	wantStatus(t, p, http.StatusBadRequest)
	wantText(t, p, "Delta must be above 0 and below 0.01")
	if !strings.Contains(p.Body, `value="2"`) {
		t.Error("the privacy form lost what was typed")
	}
	form.Set("delta", "1e-6")
	p = dc.follow(dc.post("/library/readmissions/privacy", form))
	wantText(t, p, "saved; the runner is reading the data again.", "1e-06")

	// The same file registered again with stricter controls binds this
	// dataset too: the page shows what is in effect and who set it.
	rn, _ := e.db.FindRunner(context.Background(), "lab-1")
	copyPrivacy := d.Privacy
	copyPrivacy.MinRecordsPerAggregate = 500
	if err := e.db.CreateDataset(context.Background(), &sqlstore.StoredDataset{Dataset: silo.Dataset{Name: "readmissions_copy", URI: d.URI, Owner: "dc2@example.org", Privacy: copyPrivacy}, RunnerID: rn.ID}); err != nil {
		t.Fatal(err)
	}
	p = dc.get("/library/readmissions")
	wantText(t, p, "Controls in effect", "Min. records per aggregate", "500", "dataset readmissions_copy (the same data)", "Delta")
	if !regexp.MustCompile(`Min\. records per aggregate</th><td>500</td><td><strong>dataset readmissions_copy \(the same data\)</strong>`).MatchString(p.Body) {
		t.Errorf("the effective min_records row does not name who set it:\n%s", p.text())
	}
	wantNoInlineCode(t, p)
	if err := e.db.DeregisterDataset(context.Background(), "readmissions_copy"); err != nil {
		t.Fatal(err)
	}

	// Someone else sees the dataset but no controls to change it.
	other := e.join(b.invite("dc2@example.org", "168h", "data_custodian"), "", "custodian password")
	p = other.get("/library/readmissions")
	wantStatus(t, p, http.StatusOK)
	for _, action := range []string{"/privacy", "/connect", "/deregister"} {
		if strings.Contains(p.Body, "/library/readmissions"+action) {
			t.Errorf("another custodian sees the %s action", action)
		}
	}
	wantText(t, other.follow(other.post("/library/readmissions/deregister", url.Values{})), "Only the dataset's owner (dc@example.org) or a Workspace Administrator may change dataset readmissions")

	// The admin may; deregistering leaves the library empty.
	p = b.follow(b.post("/library/readmissions/connect", url.Values{}))
	wantText(t, p, "Connecting readmissions again")
	p = b.follow(b.post("/library/readmissions/deregister", url.Values{}))
	wantText(t, p, "Dataset readmissions is deregistered", "No datasets yet")
}

func privacyForm(p silo.PrivacyControls) url.Values {
	v := url.Values{
		"allowed_session_types":     p.AllowedSessionTypes,
		"allowed_users":             {strings.Join(p.AllowedUsers, ", ")},
		"max_epsilon_per_session":   {fmt.Sprint(p.MaxEpsilonPerSession)},
		"epsilon_budget":            {fmt.Sprint(p.EpsilonBudget)},
		"delta":                     {fmt.Sprint(p.Delta)},
		"min_records_per_aggregate": {fmt.Sprint(p.MinRecordsPerAggregate)},
		"identifier_columns":        {strings.Join(p.IdentifierColumns, ", ")},
		"excluded_columns":          {strings.Join(p.ExcludedColumns, ", ")},
	}
	if p.AllowPredictions {
		v.Set("allow_predictions", "on")
	}
	return v
}

func TestUILibraryPermissions(t *testing.T) {
	e := newUIEnv(t, false)
	admin := e.browser()
	admin.signIn(uiAdminEmail, uiAdminPassword)
	mb := e.join(admin.invite("mb@example.org", "168h", "model_builder"), "", "builder password")
	p := mb.get("/library")
	wantStatus(t, p, http.StatusOK)
	wantText(t, p, "No datasets yet", "Datasets are registered by Data Custodians")
	if strings.Contains(p.Body, `href="/library/register-dataset"`) {
		t.Error("a Model Builder sees the Register dataset button")
	}
	wantStatus(t, mb.get("/library/register-dataset"), http.StatusForbidden)
	wantStatus(t, mb.get("/library/nothing"), http.StatusNotFound)
}
