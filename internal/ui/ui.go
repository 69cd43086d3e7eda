// Package ui is Silo's web UI: server-rendered pages (html/template + embed)
// that work without JavaScript. Its pages are server.Routes added to the
// server's one route table (see New), so the server's guard authenticates,
// redirects anonymous visitors to /login, enforces permissions and checks
// CSRF tokens on every form, and Server.Routes lists pages with the API. The
// UI imports internal/server and does what it changes through the same
// exported methods the JSON API uses; the server never imports the UI.
//
// Conventions:
//   - A form that fails validation is rendered again in the POST response with
//     the error next to its field and what the user typed kept.
//   - A change that succeeds answers with a redirect (POST-redirect-GET) and a
//     flash message carried by a short-lived cookie. Row actions (change
//     roles, disable, remove, revoke) report errors the same way.
//   - Secrets shown once (an invitation link, a new token) are rendered
//     directly in the POST response, never put in a URL or a cookie.
//   - No inline scripts or styles (the CSP forbids them): /static/silo.css and
//     /static/silo.js, the latter only for niceties such as confirm().
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// UI serves the web pages of one server.
type UI struct {
	srv *server.Server
	db  *sqlstore.DB
}

// New returns the web UI's routes on srv, to add with srv.AddRoutes before
// srv.Handler, and makes srv show the errors of its pages, and paths no
// route matches, as pages in the UI's layout.
func New(srv *server.Server) []server.Route {
	ui := &UI{srv: srv, db: srv.DB()}
	srv.PageError, srv.PageNotFound = ui.renderError, ui.renderNotFound
	return ui.routes()
}

// routes declares the web UI's pages.
func (ui *UI) routes() []server.Route {
	manageUsers := server.Perm(silo.PermUsersManage)
	manageRunners := server.Perm(silo.PermRunnersManage)
	manageDatasets := server.Perm(silo.PermDatasetsManage)
	return []server.Route{
		{Method: "GET", Path: "/static/{file}", Access: server.AccessPublic, Page: true, Summary: "Stylesheet, script and images of the web UI", Handler: ui.handleStatic},

		{Method: "GET", Path: "/login", Access: server.AccessPublic, Page: true, Summary: "Sign-in page", Handler: ui.handleLoginPage},
		{Method: "POST", Path: "/login", Access: server.AccessPublic, Page: true, Summary: "Sign in with email and password", Handler: ui.handleLoginSubmit},
		{Method: "POST", Path: "/logout", Access: server.AccessPublic, Page: true, Summary: "Sign out", Handler: ui.handleLogout},
		{Method: "GET", Path: "/setup", Access: server.AccessPublic, Page: true, Summary: "One-time setup of the first admin", Handler: ui.handleSetupPage},
		{Method: "POST", Path: "/setup", Access: server.AccessPublic, Page: true, Summary: "Create the first admin", Handler: ui.handleSetupSubmit},
		{Method: "GET", Path: "/invite/{secret}", Access: server.AccessPublic, Page: true, Summary: "Invitation page", Handler: ui.handleInvitePage},
		{Method: "POST", Path: "/invite/{secret}", Access: server.AccessPublic, Page: true, Summary: "Accept an invitation", Handler: ui.handleInviteSubmit},

		{Method: "GET", Path: "/{$}", Access: server.AccessSignedIn, Page: true, Summary: "Dashboard", Handler: ui.handleDashboard},
		{Method: "GET", Path: "/library", Access: server.Perm(silo.PermDatasetsRead), Page: true, Summary: "Dataset library", Handler: ui.handleLibrary},
		{Method: "GET", Path: "/library/register-dataset", Access: manageDatasets, Page: true, Summary: "Register a dataset: the wizard's first step (choose a task runner)", Handler: ui.handleDatasetWizardStart},
		{Method: "POST", Path: "/library/register-dataset", Access: manageDatasets, Page: true, MaxBody: wizardMaxBody, Summary: "Register a dataset: the wizard's next step; the last one registers it with its attachments and connects", Handler: ui.handleDatasetWizard},
		{Method: "GET", Path: "/library/{name}", Access: server.Perm(silo.PermDatasetsRead), Page: true, Summary: "A dataset: status, schema, privacy controls, attachments", Handler: ui.handleDatasetPage},
		{Method: "POST", Path: "/library/{name}/privacy", Access: manageDatasets, Page: true, Summary: "Edit a dataset's description and privacy controls (its owner or an admin)", Handler: ui.handleDatasetPrivacy},
		{Method: "POST", Path: "/library/{name}/connect", Access: manageDatasets, Page: true, Summary: "Connect a dataset again (its owner or an admin)", Handler: ui.handleDatasetConnect},
		{Method: "POST", Path: "/library/{name}/deregister", Access: manageDatasets, Page: true, Summary: "Deregister a dataset (its owner or an admin)", Handler: ui.handleDatasetDeregister},
		{Method: "GET", Path: "/sessions", Access: server.Perm(silo.PermSessionsRead), Page: true, Summary: "Training and analysis sessions (a Data Custodian sees those using their datasets)", Handler: ui.handleSessionsPage},
		{Method: "GET", Path: "/sessions/new", Access: server.Perm(silo.PermSessionsManage), Page: true, Summary: "New session: a JSON editor prefilled from the connected datasets", Handler: ui.handleSessionNew},
		{Method: "POST", Path: "/sessions/new", Access: server.Perm(silo.PermSessionsManage), Page: true, Summary: "Create a session from the editor's JSON config", Handler: ui.handleSessionCreate},
		{Method: "GET", Path: "/sessions/{id}", Access: server.Perm(silo.PermSessionsRead), Page: true, Summary: "A session: progress, configuration, metrics charts and tables, downloads", Handler: ui.handleSessionPage},
		{Method: "POST", Path: "/sessions/{id}/cancel", Access: server.Perm(silo.PermSessionsManage), Page: true, Summary: "Cancel a pending or running session", Handler: ui.handleSessionCancel},
		{Method: "POST", Path: "/sessions/{id}/predict", Access: server.Perm(silo.PermPredictionsRun), Page: true, Summary: "Predict a dataset with a session's final or best model on the dataset's runner", Handler: ui.handleSessionPredict},

		{Method: "GET", Path: "/settings", Access: server.AccessSignedIn, Page: true, Summary: "Settings (redirects to the first section you may see)", Handler: ui.handleSettings},
		{Method: "GET", Path: "/settings/users", Access: server.Perm(silo.PermUsersRead), Page: true, Summary: "Users and invitations", Handler: ui.handleUsersPage},
		{Method: "POST", Path: "/settings/invites", Access: manageUsers, Page: true, Summary: "Invite a user", Handler: ui.handleInviteCreate},
		{Method: "POST", Path: "/settings/invites/{id}/revoke", Access: manageUsers, Page: true, Summary: "Revoke an invitation", Handler: ui.handleInviteRevoke},
		{Method: "POST", Path: "/settings/users/{email}/roles", Access: manageUsers, Page: true, Summary: "Change a user's roles", Handler: ui.handleUserRoles},
		{Method: "POST", Path: "/settings/users/{email}/disable", Access: manageUsers, Page: true, Summary: "Disable a user", Handler: ui.handleUserDisable},
		{Method: "POST", Path: "/settings/users/{email}/enable", Access: manageUsers, Page: true, Summary: "Enable a user", Handler: ui.handleUserEnable},
		{Method: "POST", Path: "/settings/users/{email}/remove", Access: manageUsers, Page: true, Summary: "Remove a user", Handler: ui.handleUserRemove},
		{Method: "GET", Path: "/settings/runners", Access: server.Perm(silo.PermRunnersRead), Page: true, Summary: "Task runners", Handler: ui.handleRunnersPage},
		{Method: "GET", Path: "/settings/register-runner", Access: manageRunners, Page: true, Summary: "Register a task runner: choose the provider", Handler: ui.handleRunnerProviders},
		{Method: "GET", Path: "/settings/register-runner/{provider}", Access: manageRunners, Page: true, Summary: "Register a task runner: the provider's form", Handler: ui.handleRunnerNew},
		{Method: "POST", Path: "/settings/register-runner/{provider}", Access: manageRunners, Page: true, Summary: "Register a task runner; a local runner's token is shown in this response only", Handler: ui.handleRunnerCreate},
		{Method: "GET", Path: "/settings/runners/{name}", Access: server.Perm(silo.PermRunnersRead), Page: true, Summary: "A task runner: settings, status, recent tasks and logs", Handler: ui.handleRunnerPage},
		{Method: "GET", Path: "/settings/runners/{name}/edit", Access: manageRunners, Page: true, Summary: "Edit a task runner", Handler: ui.handleRunnerEdit},
		{Method: "POST", Path: "/settings/runners/{name}/edit", Access: manageRunners, Page: true, Summary: "Save a task runner's settings", Handler: ui.handleRunnerUpdate},
		{Method: "GET", Path: "/settings/runners/{name}/bundle", Access: manageRunners, Page: true, Summary: "Download a runner's deployment bundle for the server URL given (?server_url=); a URL its network cannot reach is refused on the runner's page", Handler: ui.handleRunnerBundle},
		{Method: "POST", Path: "/settings/runners/{name}/diagnostics", Access: manageRunners, Page: true, Summary: "Queue a diagnostics task on a runner", Handler: ui.handleRunnerDiagnostics},
		{Method: "POST", Path: "/settings/runners/{name}/start", Access: server.Perm(silo.PermRunnersLaunch), Page: true, Summary: "Start a local runner under the server", Handler: ui.handleRunnerStart},
		{Method: "POST", Path: "/settings/runners/{name}/stop", Access: server.Perm(silo.PermRunnersLaunch), Page: true, Summary: "Stop a local runner the server started", Handler: ui.handleRunnerStop},
		{Method: "POST", Path: "/settings/runners/{name}/token", Access: manageRunners, Page: true, Summary: "Replace a runner's token; the new one is shown in this response only", Handler: ui.handleRunnerToken},
		{Method: "POST", Path: "/settings/runners/{name}/provision", Access: manageRunners, Page: true, Summary: "Retry provisioning a cloud runner's storage", Handler: ui.handleRunnerProvision},
		{Method: "POST", Path: "/settings/runners/{name}/deregister", Access: manageRunners, Page: true, Summary: "Deregister a task runner", Handler: ui.handleRunnerDeregister},
		{Method: "GET", Path: "/settings/tokens", Access: server.Perm(silo.PermTokensOwn), Page: true, Summary: "Access tokens", Handler: ui.handleTokensPage},
		{Method: "POST", Path: "/settings/tokens", Access: server.Perm(silo.PermTokensOwn), Page: true, Summary: "Create an access token", Handler: ui.handleTokenCreate},
		{Method: "POST", Path: "/settings/tokens/{id}/revoke", Access: server.Perm(silo.PermTokensOwn), Page: true, Summary: "Revoke an access token", Handler: ui.handleTokenRevoke},
		{Method: "GET", Path: "/settings/billing", Access: server.Perm(silo.PermWorkspaceRead), Page: true, Summary: "Workspace and billing information", Handler: ui.handleBillingPage},
		{Method: "POST", Path: "/settings/billing", Access: server.Perm(silo.PermWorkspaceManage), Page: true, Summary: "Edit workspace and billing information", Handler: ui.handleBillingSubmit},
		{Method: "GET", Path: "/settings/audit", Access: server.Perm(silo.PermAuditRead), Page: true, Summary: "Audit log", Handler: ui.handleAuditPage},
	}
}

// settingsTabs is the settings sub-navigation, in order, with what each needs.
var settingsTabs = []struct {
	ID, Title, Path string
	Perm            silo.Permission
}{
	{"users", "Users", "/settings/users", silo.PermUsersRead},
	{"runners", "Task Runners", "/settings/runners", silo.PermRunnersRead},
	{"tokens", "Tokens", "/settings/tokens", silo.PermTokensOwn},
	{"billing", "Billing", "/settings/billing", silo.PermWorkspaceRead},
	{"audit", "Audit log", "/settings/audit", silo.PermAuditRead},
}

type navTab struct{ ID, Title, Path string }

// view is what every template gets: the layout's data plus the page's own.
type view struct {
	Title     string // shown as "<Title> · Silo"
	Bare      bool   // sign-in style page: no navigation
	Section   string // left navigation: dashboard, library, sessions, settings
	Tab       string // settings sub-navigation
	User      *silo.User
	Workspace string
	CSRF      string
	Flash     *flash
	Tabs      []navTab
	Form      *form
	Data      any
	Assets    map[string]string // static file name → versioned URL
	// Refresh reloads the page after that many seconds while something is
	// under way (a dataset connecting); 0 for never.
	Refresh int

	actor *silo.Actor
	now   time.Time
	kinds []string // the session types this server runs
	// flashTaken says the page showed the flash itself, in place.
	flashTaken bool
}

// SessionTypeOptions are the session types a privacy form offers: those the
// server runs, plus any the controls shown already allow (so saving the
// form never drops them).
func (v *view) SessionTypeOptions() []option {
	var out []option
	for _, o := range sessionTypeOptions {
		if slices.Contains(v.kinds, o.Value) || v.Form.Has("allowed_session_types", o.Value) {
			out = append(out, o)
		}
	}
	return out
}

// Can reports whether the signed-in user may do p, for hiding controls.
func (v *view) Can(p string) bool { return v.actor.Can(silo.Permission(p)) }

// Rel describes t relative to now: "3 hours ago", "in 6 days".
func (v *view) Rel(t time.Time) string {
	d := t.Sub(v.now)
	future := d > 0
	if !future {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		s = plural(round(d, time.Minute), "minute")
	case d < 48*time.Hour:
		s = plural(round(d, time.Hour), "hour")
	case d < 60*24*time.Hour:
		s = plural(round(d, 24*time.Hour), "day")
	default:
		return t.Format("2 Jan 2006")
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// round returns d in units, to the nearest: a link that expires in 6 days
// and 23 hours expires "in 7 days".
func round(d, unit time.Duration) int { return int((d + unit/2) / unit) }

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// form is a submitted form: its values, to show again, and its errors.
type form struct {
	Values url.Values
	Errors map[string]string
	Error  string // about the form as a whole
}

func newForm(v url.Values) *form {
	if v == nil {
		v = url.Values{}
	}
	return &form{Values: v, Errors: map[string]string{}}
}

// Get returns the submitted value of field k.
func (f *form) Get(k string) string {
	if f == nil {
		return ""
	}
	return f.Values.Get(k)
}

// Has reports whether a checkbox or option k with value val was submitted.
func (f *form) Has(k, val string) bool {
	if f == nil {
		return false
	}
	for _, x := range f.Values[k] {
		if x == val {
			return true
		}
	}
	return false
}

// Err returns the error message about field k.
func (f *form) Err(k string) string {
	if f == nil {
		return ""
	}
	return f.Errors[k]
}

// fail records err against its field when the form has that field (given in
// fields), else against the form as a whole.
func (f *form) fail(err error, fields ...string) {
	var field string
	var e *silo.Error
	if errors.As(err, &e) {
		field = e.Field
	}
	for _, k := range fields {
		if k == field {
			f.Errors[k] = forWeb(silo.ErrorMessage(err))
			return
		}
	}
	f.Error = forWeb(silo.ErrorMessage(err))
}

// flash is a one-time message shown on the next page.
type flash struct{ Kind, Message string }

const flashCookie = "silo_flash"

// setFlash stores a message for the next page in a short-lived cookie. Only
// plain messages go there, never secrets.
func (ui *UI) setFlash(w http.ResponseWriter, r *http.Request, kind, msg string) {
	if len(msg) > 1500 {
		msg = msg[:1500]
	}
	v := base64.RawURLEncoding.EncodeToString([]byte(kind + "\n" + msg))
	// #nosec G124 -- Secure whenever TLS is in front (TestSecureCookies)
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: v, Path: "/", MaxAge: 60, HttpOnly: true,
		Secure: ui.srv.SecureCookies(r), SameSite: http.SameSiteLaxMode})
}

// takeFlash returns the pending flash message, if any, and clears it.
func (ui *UI) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	// #nosec G124 -- as above
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: ui.srv.SecureCookies(r), SameSite: http.SameSiteLaxMode})
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return nil
	}
	kind, msg, ok := strings.Cut(string(b), "\n")
	if !ok || (kind != "success" && kind != "error" && kind != "info") || msg == "" {
		return nil
	}
	return &flash{Kind: kind, Message: msg}
}

// redirectFlash answers a successful (or refused) action: flash, then
// POST-redirect-GET to the page to show.
func (ui *UI) redirectFlash(w http.ResponseWriter, r *http.Request, to, kind, msg string) {
	ui.setFlash(w, r, kind, msg)
	// #nosec G710 -- to is a page of this site the UI names: a fixed path, or one with a path-escaped name or id
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// redirectResult redirects to the page with a success message, or with the
// error's message when err is not nil.
func (ui *UI) redirectResult(w http.ResponseWriter, r *http.Request, to, success string, err error) {
	if err != nil {
		ui.logInternal(r, err)
		ui.redirectFlash(w, r, to, "error", forWeb(silo.ErrorMessage(err)))
		return
	}
	ui.redirectFlash(w, r, to, "success", success)
}

func (ui *UI) logInternal(r *http.Request, err error) {
	if silo.ErrorCode(err) == silo.EINTERNAL {
		ui.srv.Logger.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
}

var funcs = template.FuncMap{
	"roleTitle":     func(r silo.Role) string { return r.Title() },
	"roleClass":     func(r silo.Role) string { return "role-" + strings.ReplaceAll(string(r), "_", "-") },
	"roles":         func() []silo.Role { return silo.Roles },
	"plans":         func() []string { return silo.Plans },
	"providerTitle": providerTitle,
	"permTitle":     permTitle,
	"bytes":         humanBytes,
	"formatTitle":   formatTitle,
	"add1":          func(i int) int { return i + 1 },
	"mul":           func(a, b float64) float64 { return a * b },
	"join":          func(l []string) string { return strings.Join(l, ", ") },
	"percent":       percent,
	// num writes a summary statistic: 4 significant digits, "—" for none.
	"num": func(x any) string {
		switch x := x.(type) {
		case *float64:
			if x == nil {
				return "—"
			}
			return strconv.FormatFloat(*x, 'g', 4, 64)
		case *int64:
			if x == nil {
				return "—"
			}
			return strconv.FormatInt(*x, 10)
		case int64:
			return strconv.FormatInt(x, 10)
		case int:
			return strconv.Itoa(x)
		case float64:
			return strconv.FormatFloat(x, 'g', 4, 64)
		}
		return fmt.Sprint(x)
	},
	// thousands writes a count with thin separators: 12 345.
	"thousands": func(n int64) string {
		s := strconv.FormatInt(n, 10)
		for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	},
	"path": url.PathEscape,
	"time": func(t time.Time) string {
		return t.UTC().Format("2 Jan 2006, 15:04 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"roleList": roleTitles,
	"sentence": sentence,
	// splitAt splits an email address at its @, so a template can offer a
	// line break there.
	"splitAt": func(s string) []string {
		if i := strings.LastIndexByte(s, '@'); i > 0 {
			return []string{s[:i], s[i+1:]}
		}
		return []string{s}
	},
	// dict builds a map from key, value pairs, to pass several values to a
	// sub-template.
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
}

// sentence starts a message with a capital letter: error messages are
// written to follow a colon ("sign in: wrong email or password"), but on a
// page they stand alone.
// Messages that start with a name ("mb@example.org is disabled",
// "tok_… is revoked") are left as they are.
func sentence(s string) string {
	word, _, _ := strings.Cut(s, " ")
	word = strings.TrimRight(word, ":,;.")
	for _, r := range word {
		if !unicode.IsLetter(r) {
			return s
		}
	}
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || !unicode.IsLower(r) {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// permDescriptions explain permissions where users pick token scopes.
var permDescriptions = map[silo.Permission]string{
	silo.PermUsersRead:       "See users and invitations",
	silo.PermUsersManage:     "Invite and remove users, change roles",
	silo.PermWorkspaceRead:   "See workspace and billing information",
	silo.PermWorkspaceManage: "Edit workspace and billing information",
	silo.PermAuditRead:       "Read the audit log",
	silo.PermTokensOwn:       "Create and revoke your own tokens",
	silo.PermTokensManageAny: "Revoke anyone's tokens",
	silo.PermRunnersRead:     "See task runners",
	silo.PermRunnersManage:   "Register, edit and deregister task runners",
	silo.PermRunnersLaunch:   "Start and stop local runners on the server's own machine",
	silo.PermDatasetsRead:    "See dataset metadata (never data)",
	silo.PermDatasetsManage:  "Register datasets and edit privacy controls",
	silo.PermSessionsRead:    "See sessions and their metrics",
	silo.PermSessionsManage:  "Create and cancel sessions",
	silo.PermModelsDownload:  "Download trained models",
	silo.PermPredictionsRun:  "Run predictions",
}

func permTitle(p silo.Permission) string {
	if d, ok := permDescriptions[p]; ok {
		return d
	}
	return string(p)
}

// pages holds one template set per page: the shared layout plus the page.
var pages = parsePages()

func parsePages() map[string]*template.Template {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	// Files named _*.html hold pieces several pages share (the privacy
	// controls' fields); every page gets them with the layout.
	shared := []string{"templates/layout.html"}
	for _, n := range names {
		if strings.HasPrefix(path.Base(n), "_") {
			shared = append(shared, n)
		}
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || strings.HasPrefix(name, "_") {
			continue
		}
		out[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, append(shared, n)...))
	}
	return out
}

// assets maps each static file to a URL carrying its content hash, so the
// files can be cached for a year and still change with a new release.
var assets = func() map[string]string {
	out := map[string]string{}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		b, _ := fs.ReadFile(staticFS, "static/"+e.Name())
		sum := sha256.Sum256(b)
		out[e.Name()] = "/static/" + e.Name() + "?v=" + hex.EncodeToString(sum[:6])
	}
	return out
}()

func (ui *UI) handleStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if _, ok := assets[name]; !ok {
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	// #nosec G703 -- name is one of the embedded files listed in assets, checked above
	http.ServeFileFS(w, r, staticFS, "static/"+name)
}

// now is the server's clock.
func (ui *UI) now() time.Time { return ui.srv.Clock.Now() }

// newView returns a view for the request's signed-in user (if any).
func (ui *UI) newView(r *http.Request, title string) *view {
	v := &view{Title: title, Form: newForm(nil), Assets: assets, now: ui.now(), Workspace: "silo", kinds: ui.srv.SessionKinds()}
	v.actor = silo.ActorFromContext(r.Context())
	if v.actor != nil && v.actor.User != nil {
		v.User = v.actor.User
		for _, t := range settingsTabs {
			if v.actor.Can(t.Perm) {
				v.Tabs = append(v.Tabs, navTab{t.ID, t.Title, t.Path})
			}
		}
	}
	if l := server.LoginFromContext(r.Context()); l != nil {
		v.CSRF = l.CSRF
	}
	return v
}

// render writes page name with v and status. Pages are never cached: some
// show secrets once.
func (ui *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	t, ok := pages[name]
	if !ok {
		panic("server: no template " + name)
	}
	if ws, err := ui.db.Workspace(r.Context()); err == nil {
		v.Workspace = ws.Name
	}
	if v.Flash == nil && !v.flashTaken {
		v.Flash = ui.takeFlash(w, r)
	}
	switch name {
	case "login", "setup", "invite":
		v.Bare = true
	default:
		v.Bare = v.User == nil
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		ui.srv.Logger.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorData struct {
	Status  int
	Heading string
	Message string
	// Back links to the list the missing page belongs to.
	Back *navTab
}

// listPages are the pages that list what a URL names, for an error page's
// way back.
var listPages = []navTab{
	{"library", "Go to the Library", "/library"},
	{"sessions", "Go to Sessions", "/sessions"},
	{"runners", "Go to Task Runners", "/settings/runners"},
	{"users", "Go to Users", "/settings/users"},
	{"tokens", "Go to Tokens", "/settings/tokens"},
}

// cliHints are the command-line pointers in messages the API and the UI
// share, and webHints what a web page says in their place.
var (
	cliHints = regexp.MustCompile(`(: see|\(see|from) 'silo (runners|datasets|sessions) list'`)
	webHints = map[string]string{"runners": "Settings → Task Runners", "datasets": "the Library", "sessions": "Sessions"}
)

// forWeb rewrites a message for a web page: where it tells the reader to
// run a listing command, it names the page that lists the same instead.
func forWeb(msg string) string {
	return cliHints.ReplaceAllStringFunc(msg, func(m string) string {
		sub := cliHints.FindStringSubmatch(m)
		return sub[1] + " " + webHints[sub[2]]
	})
}

// renderError shows err as a page in the site's layout. An anonymous visitor
// who must sign in is sent to the sign-in page instead.
func (ui *UI) renderError(w http.ResponseWriter, r *http.Request, err error) {
	code := silo.ErrorCode(err)
	if code == silo.EUNAUTHORIZED && silo.ActorFromContext(r.Context()) == nil {
		next := r.URL.RequestURI()
		if r.Method != http.MethodGet {
			next = "/"
		}
		http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	ui.logInternal(r, err)
	status := httpjson.Status(err)
	d := errorData{Status: status, Message: forWeb(silo.ErrorMessage(err))}
	for _, l := range listPages {
		if strings.HasPrefix(r.URL.Path, l.Path) && r.URL.Path != l.Path {
			d.Back = &l
		}
	}
	switch code {
	case silo.EFORBIDDEN:
		d.Heading = "You can't do this"
	case silo.ENOTFOUND:
		d.Heading = "Not found"
	case silo.EINTERNAL:
		d.Heading = "Something went wrong"
		d.Message = "The server hit an internal error. It has been logged; try again, and if it keeps happening tell your Workspace Administrator."
	default:
		d.Heading = "That didn't work"
	}
	v := ui.newView(r, d.Heading)
	v.Data = d
	ui.render(w, r, status, "error", v)
}

// renderNotFound shows the 404 page, in the signed-in layout when the
// visitor is signed in (the server authenticates them before it calls this).
func (ui *UI) renderNotFound(w http.ResponseWriter, r *http.Request) {
	v := ui.newView(r, "Page not found")
	v.Data = errorData{Status: http.StatusNotFound, Heading: "Page not found",
		Message: fmt.Sprintf("There is no page at %s. It may have moved, or the link may be mistyped.", r.URL.Path)}
	ui.render(w, r, http.StatusNotFound, "error", v)
}

// parseForm reads a posted form; a body that is not one gets an error page
// that says so, rather than a form that looks empty.
func (ui *UI) parseForm(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		ui.renderError(w, r, silo.Errorf(silo.EINVALID, "the form could not be read (%v): send it again from the page", err))
		return false
	}
	return true
}
