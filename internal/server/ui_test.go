package server_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
)

const uiAdminEmail, uiAdminPassword = "admin@example.org", "correct horse battery"

// uiClock is a settable clock, shared by the server and the store.
type uiClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *uiClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *uiClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type uiEnv struct {
	t     *testing.T
	db    *sqlstore.DB
	srv   *server.Server
	ts    *httptest.Server
	clock *uiClock
}

// newUIEnv starts a server on a fresh SQLite store, with the first admin
// created unless empty is set.
func newUIEnv(t *testing.T, empty bool) *uiEnv {
	t.Helper()
	ctx := context.Background()
	clock := &uiClock{t: time.Now().UTC()}
	db := sqlstore.New(filepath.Join(t.TempDir(), "silo.db"))
	db.Clock = clock.now
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := server.New(db)
	srv.Clock = clock.now
	if !empty {
		if _, _, err := srv.BootstrapAdmin(ctx, uiAdminEmail, uiAdminPassword); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &uiEnv{t: t, db: db, srv: srv, ts: ts, clock: clock}
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
	wantText(t, p, "Welcome, "+uiAdminEmail, "Getting started", "Invite your team", "Register a task runner", "Register a dataset", "Create a training session", "Coming soon")

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
	e.clock.add(25 * time.Hour)
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

func TestUIPagesHaveNoInlineCode(t *testing.T) {
	e := newUIEnv(t, false)
	b := e.browser()
	b.signIn(uiAdminEmail, uiAdminPassword)
	inline := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=|javascript:`)
	for _, path := range []string{"/", "/library", "/sessions", "/settings/users", "/settings/runners", "/settings/tokens", "/settings/billing", "/settings/audit", "/no-such-page"} {
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
