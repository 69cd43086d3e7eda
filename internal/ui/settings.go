package ui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/server"
)

// ---- Users and invitations ----

type usersData struct {
	Users   []*silo.User
	Invites []*silo.Invite
	// NewInvite is the invitation just created: its link is shown once.
	NewInvite *silo.Invite
	MeID      int64
	Expiries  []option
}

// inviteExpiries are the choices of the invitation form, default first.
var inviteExpiries = []option{{"168h", "7 days"}, {"24h", "1 day"}, {"72h", "3 days"}, {"336h", "14 days"}, {"720h", "30 days"}}

type option struct{ Value, Label string }

func (ui *UI) renderUsers(w http.ResponseWriter, r *http.Request, status int, f *form, newInvite *silo.Invite) {
	ctx := r.Context()
	users, err := ui.db.ListUsers(ctx)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	invites, err := ui.srv.ListInvites(ctx)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	v := ui.settingsView(r, "Users", "users")
	if f == nil {
		f = newForm(url.Values{"expires_in": {inviteExpiries[0].Value}})
	}
	v.Form = f
	v.Data = usersData{Users: users, Invites: invites, NewInvite: newInvite, MeID: v.User.ID, Expiries: inviteExpiries}
	ui.render(w, r, status, "users", v)
}

func (ui *UI) handleUsersPage(w http.ResponseWriter, r *http.Request) {
	ui.renderUsers(w, r, http.StatusOK, nil, nil)
}

func (ui *UI) handleInviteCreate(w http.ResponseWriter, r *http.Request) {
	if !ui.parseForm(w, r) {
		return
	}
	req := server.InviteRequest{Email: r.PostForm.Get("email"), Roles: r.PostForm["roles"], ExpiresIn: r.PostForm.Get("expires_in")}
	inv, err := ui.srv.CreateInvite(r.Context(), r, req)
	if err != nil {
		ui.logInternal(r, err)
		f := newForm(url.Values{"email": {req.Email}, "roles": req.Roles, "expires_in": {req.ExpiresIn}})
		f.fail(err, "email", "roles", "expires_in")
		ui.renderUsers(w, r, httpjson.Status(err), f, nil)
		return
	}
	// The link exists only now: show it in this response, not after a redirect.
	ui.renderUsers(w, r, http.StatusOK, nil, inv)
}

func (ui *UI) handleInviteRevoke(w http.ResponseWriter, r *http.Request) {
	inv, err := ui.srv.RevokeInvite(r.Context(), r.PathValue("id"))
	msg := ""
	if err == nil {
		msg = "The invitation for " + inv.Email + " is revoked: its link no longer works."
	}
	ui.redirectResult(w, r, "/settings/users", msg, err)
}

func (ui *UI) handleUserRoles(w http.ResponseWriter, r *http.Request) {
	if !ui.parseForm(w, r) {
		return
	}
	roles := r.PostForm["roles"]
	if roles == nil {
		roles = []string{} // none ticked: let validation say a role is needed
	}
	u, err := ui.srv.UpdateUser(r.Context(), r, server.UserPatch{Roles: roles})
	msg := ""
	if err == nil {
		msg = u.Email + " now has the roles: " + roleTitles(u.Roles) + "."
	}
	ui.redirectResult(w, r, "/settings/users", msg, err)
}

func (ui *UI) handleUserDisable(w http.ResponseWriter, r *http.Request) {
	yes := true
	u, err := ui.srv.UpdateUser(r.Context(), r, server.UserPatch{Disabled: &yes})
	msg := ""
	if err == nil {
		msg = u.Email + " is disabled: they are signed out and their access tokens stop working until you enable them again."
	}
	ui.redirectResult(w, r, "/settings/users", msg, err)
}

func (ui *UI) handleUserEnable(w http.ResponseWriter, r *http.Request) {
	no := false
	u, err := ui.srv.UpdateUser(r.Context(), r, server.UserPatch{Disabled: &no})
	msg := ""
	if err == nil {
		msg = u.Email + " is enabled again and can sign in."
	}
	ui.redirectResult(w, r, "/settings/users", msg, err)
}

func (ui *UI) handleUserRemove(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, err := ui.srv.RemoveUser(ctx, r)
	if err == nil && u.ID == silo.ActorFromContext(ctx).User.ID {
		// Their sign-in went with the account.
		ui.redirectFlash(w, r, "/login", "info", "Your account "+u.Email+" was removed.")
		return
	}
	msg := ""
	if err == nil {
		msg = u.Email + " was removed, with their access tokens."
	}
	ui.redirectResult(w, r, "/settings/users", msg, err)
}

func roleTitles(roles []silo.Role) string {
	t := make([]string, len(roles))
	for i, r := range roles {
		t[i] = r.Title()
	}
	return strings.Join(t, ", ")
}

// ---- Access tokens ----

type tokenRow struct {
	*silo.Token
	Status string // active, expired, revoked
}

type tokensData struct {
	Mine   []tokenRow
	Others []tokenRow // everyone else's, for admins
	Scopes []silo.Permission
	// New is the token just created: its secret is shown once.
	New      *silo.Token
	Expiries []option
}

var tokenExpiries = []option{{"", "Never"}, {"24h", "1 day"}, {"168h", "7 days"}, {"720h", "30 days"}, {"2160h", "90 days"}, {"8760h", "1 year"}}

func (ui *UI) renderTokens(w http.ResponseWriter, r *http.Request, status int, f *form, created *silo.Token) {
	ctx := r.Context()
	a := silo.ActorFromContext(ctx)
	userID := a.User.ID
	if a.Can(silo.PermTokensManageAny) {
		userID = 0
	}
	tokens, err := ui.db.ListTokens(ctx, userID)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	d := tokensData{New: created, Expiries: tokenExpiries}
	now := ui.now()
	for _, t := range tokens {
		row := tokenRow{Token: t, Status: "active"}
		if t.RevokedAt != nil {
			row.Status = "revoked"
		} else if !t.Active(now) {
			row.Status = "expired"
		}
		if t.UserID == a.User.ID {
			d.Mine = append(d.Mine, row)
		} else {
			d.Others = append(d.Others, row)
		}
	}
	for _, p := range silo.AllPermissions() {
		if a.Can(p) {
			d.Scopes = append(d.Scopes, p)
		}
	}
	v := ui.settingsView(r, "Access tokens", "tokens")
	if f != nil {
		v.Form = f
	}
	v.Data = d
	ui.render(w, r, status, "tokens", v)
}

func (ui *UI) handleTokensPage(w http.ResponseWriter, r *http.Request) {
	ui.renderTokens(w, r, http.StatusOK, nil, nil)
}

func (ui *UI) handleTokenCreate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !ui.parseForm(w, r) {
		return
	}
	req := silo.TokenRequest{Name: r.PostForm.Get("name"), ExpiresIn: r.PostForm.Get("expires_in")}
	for _, sc := range r.PostForm["scopes"] {
		req.Scopes = append(req.Scopes, silo.Permission(sc))
	}
	t, err := ui.srv.CreateToken(ctx, silo.ActorFromContext(ctx).User, req)
	if err != nil {
		ui.logInternal(r, err)
		f := newForm(url.Values{"name": {r.PostForm.Get("name")}, "scopes": r.PostForm["scopes"], "expires_in": {req.ExpiresIn}})
		f.fail(err, "name", "scopes", "expires_in")
		ui.renderTokens(w, r, httpjson.Status(err), f, nil)
		return
	}
	// The secret exists only now: show it in this response.
	ui.renderTokens(w, r, http.StatusOK, nil, t)
}

func (ui *UI) handleTokenRevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := ui.srv.RevokeToken(r.Context(), id)
	ui.redirectResult(w, r, "/settings/tokens", "Token "+id+" is revoked: it stops working at once.", err)
}

// ---- Workspace and billing ----

func (ui *UI) handleBillingPage(w http.ResponseWriter, r *http.Request) {
	ws, err := ui.db.Workspace(r.Context())
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	v := ui.settingsView(r, "Billing", "billing")
	v.Form = newForm(workspaceValues(ws))
	v.Data = ws
	ui.render(w, r, http.StatusOK, "billing", v)
}

func workspaceValues(ws *silo.Workspace) url.Values {
	return url.Values{"name": {ws.Name}, "billing_contact": {ws.BillingContact}, "billing_email": {ws.BillingEmail},
		"billing_address": {ws.BillingAddress}, "plan": {ws.Plan}}
}

var workspaceFields = []string{"name", "billing_contact", "billing_email", "billing_address", "plan"}

func (ui *UI) handleBillingSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !ui.parseForm(w, r) {
		return
	}
	vals := url.Values{}
	for _, k := range workspaceFields {
		vals.Set(k, r.PostForm.Get(k))
	}
	str := func(k string) *string { v := vals.Get(k); return &v }
	_, err := ui.srv.UpdateWorkspace(ctx, server.WorkspacePatch{Name: str("name"), BillingContact: str("billing_contact"),
		BillingEmail: str("billing_email"), BillingAddress: str("billing_address"), Plan: str("plan")})
	if err != nil {
		ui.logInternal(r, err)
		ws, werr := ui.db.Workspace(ctx)
		if werr != nil {
			ui.renderError(w, r, werr)
			return
		}
		v := ui.settingsView(r, "Billing", "billing")
		v.Form = newForm(vals)
		v.Form.fail(err, workspaceFields...)
		v.Data = ws
		ui.render(w, r, httpjson.Status(err), "billing", v)
		return
	}
	ui.redirectFlash(w, r, "/settings/billing", "success", "Workspace and billing information saved.")
}

// ---- Audit log ----

const auditPageSize = 50

type auditData struct {
	Entries []*silo.AuditEntry
	Since   string
	// The narrowing filters as typed, carried by the pager's links.
	Actor, Action, Target, Outcome string
	Filtered                       bool
	Options                        []option
	Older                          string // link to the next (older) page, "" when there is none
	Paged                          bool   // this is not the newest page
}

// query is the page's filters as a query string, without paging.
func (d *auditData) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"since": d.Since, "actor": d.Actor, "action": d.Action, "target": d.Target, "outcome": d.Outcome} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// Newest links to the first page with the same filters.
func (d *auditData) Newest() string {
	if q := d.query().Encode(); q != "" {
		return "/settings/audit?" + q
	}
	return "/settings/audit"
}

var auditSince = []option{{"", "All time"}, {"1h", "Last hour"}, {"24h", "Last 24 hours"}, {"168h", "Last 7 days"}, {"720h", "Last 30 days"}}

func (ui *UI) handleAuditPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	q.Del("limit")
	v := ui.settingsView(r, "Audit log", "audit")
	since := q.Get("since")
	d := auditData{Since: since, Options: auditSince, Paged: q.Get("before") != "",
		Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target"), Outcome: q.Get("outcome")}
	d.Filtered = d.Actor != "" || d.Action != "" || d.Target != "" || d.Outcome != ""
	known := false
	for _, o := range auditSince {
		known = known || o.Value == since
	}
	if !known {
		d.Options = append(append([]option{}, auditSince...), option{since, "Since " + since})
	}
	v.Form = newForm(url.Values{"since": {since}, "actor": {d.Actor}, "action": {d.Action}, "target": {d.Target}, "outcome": {d.Outcome}})
	v.Data = &d
	f, err := ui.srv.AuditFilter(q)
	if err != nil {
		v.Form.fail(err, "since", "before")
		ui.render(w, r, httpjson.Status(err), "audit", v)
		return
	}
	f.Limit = auditPageSize + 1
	entries, err := ui.db.ListAudit(r.Context(), f)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	if len(entries) > auditPageSize {
		entries = entries[:auditPageSize]
		next := d.query()
		next.Set("before", strconv.FormatInt(entries[len(entries)-1].ID, 10))
		d.Older = "/settings/audit?" + next.Encode()
	}
	d.Entries = entries
	ui.render(w, r, http.StatusOK, "audit", v)
}
