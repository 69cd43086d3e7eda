package ui

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/server"
)

// safeNext returns next if it is a path on this site, else "/": a sign-in
// link must not be usable to send people to another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

func (ui *UI) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if silo.ActorFromContext(r.Context()) != nil {
		// #nosec G710 -- safeNext allows only local paths
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if n, err := ui.db.CountUsers(r.Context()); err != nil {
		ui.renderError(w, r, err)
		return
	} else if n == 0 {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	v := ui.newView(r, "Sign in")
	v.Form.Values.Set("next", next)
	ui.render(w, r, http.StatusOK, "login", v)
}

func (ui *UI) handleLoginSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if n, err := ui.db.CountUsers(ctx); err != nil {
		ui.renderError(w, r, err)
		return
	} else if n == 0 {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	if !ui.parseForm(w, r) {
		return
	}
	email := r.PostForm.Get("email")
	u, err := ui.srv.CheckCredentials(ctx, r, email, r.PostForm.Get("password"))
	if err != nil {
		ui.logInternal(r, err)
		v := ui.newView(r, "Sign in")
		v.Form = newForm(url.Values{"email": {email}, "next": {r.PostForm.Get("next")}})
		v.Form.Error = silo.ErrorMessage(err)
		ui.render(w, r, httpjson.Status(err), "login", v)
		return
	}
	if err := ui.signIn(w, r, u); err != nil {
		ui.renderError(w, r, err)
		return
	}
	// #nosec G710 -- safeNext allows only local paths
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

// signIn replaces the browser's sign-in (if any) with a new one for u.
func (ui *UI) signIn(w http.ResponseWriter, r *http.Request, u *silo.User) error {
	if server.LoginFromContext(r.Context()) != nil {
		ui.srv.EndLogin(w, r)
	}
	return ui.srv.StartLogin(w, r, u)
}

func (ui *UI) handleLogout(w http.ResponseWriter, r *http.Request) {
	ui.srv.EndLogin(w, r)
	ui.redirectFlash(w, r, "/login", "info", "You are signed out.")
}

func (ui *UI) handleSetupPage(w http.ResponseWriter, r *http.Request) {
	if n, err := ui.db.CountUsers(r.Context()); err != nil {
		ui.renderError(w, r, err)
		return
	} else if n > 0 {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	ui.render(w, r, http.StatusOK, "setup", ui.newView(r, "Set up Silo"))
}

// handleSetupSubmit creates the first admin. It works only while there are no
// users; CreateFirstAdmin makes two racing requests safe.
func (ui *UI) handleSetupSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if n, err := ui.db.CountUsers(ctx); err != nil {
		ui.renderError(w, r, err)
		return
	} else if n > 0 {
		ui.redirectFlash(w, r, "/login", "info", "Setup is already done: sign in with an existing account.")
		return
	}
	if !ui.parseForm(w, r) {
		return
	}
	f := newForm(url.Values{"email": {r.PostForm.Get("email")}})
	email, err := silo.NormalizeEmail(r.PostForm.Get("email"))
	if err != nil {
		f.fail(err, "email")
	}
	pw := r.PostForm.Get("password")
	if err := silo.ValidatePassword(pw); err != nil {
		f.fail(err, "password")
	} else if pw != r.PostForm.Get("confirm") {
		f.Errors["confirm"] = "the two passwords differ: type the same password twice"
	}
	var u *silo.User
	if len(f.Errors) == 0 {
		u, err = ui.srv.CreateFirstAdmin(ctx, email, pw)
		if silo.ErrorCode(err) == silo.ECONFLICT {
			ui.redirectFlash(w, r, "/login", "info", silo.ErrorMessage(err))
			return
		} else if err != nil {
			ui.logInternal(r, err)
			f.fail(err, "email", "password")
		}
	}
	if len(f.Errors) > 0 || f.Error != "" {
		v := ui.newView(r, "Set up Silo")
		v.Form = f
		ui.render(w, r, http.StatusBadRequest, "setup", v)
		return
	}
	if err := ui.signIn(w, r, u); err != nil {
		ui.renderError(w, r, err)
		return
	}
	ui.redirectFlash(w, r, "/", "success", "Welcome to Silo. You are the Workspace Administrator: invite your team to get started.")
}

// inviteData is what the invitation page shows: the invitation when its link
// works, or why it does not.
type inviteData struct {
	State   string // pending, accepted, revoked, expired, invalid
	Invite  *silo.Invite
	Heading string
	Message string
}

// lookupInvite finds the invitation of a link secret and describes its state.
func (ui *UI) lookupInvite(r *http.Request, secret string) (*inviteData, error) {
	inv, err := ui.srv.InviteBySecret(r.Context(), secret)
	if silo.ErrorCode(err) == silo.ENOTFOUND {
		return &inviteData{State: "invalid", Heading: "This invitation link is not valid",
			Message: "Check that you opened the whole link from your invitation. If it still does not work, ask your Workspace Administrator for a new invitation."}, nil
	} else if err != nil {
		return nil, err
	}
	d := &inviteData{State: inv.StatusAt(ui.now()), Invite: inv}
	switch d.State {
	case silo.InviteExpired:
		d.Heading = "This invitation has expired"
		d.Message = "It expired on " + inv.ExpiresAt.UTC().Format("2 Jan 2006 at 15:04 UTC") + ". Ask your Workspace Administrator to invite you again."
	case silo.InviteAccepted:
		d.Heading = "This invitation has already been used"
		d.Message = "An account for " + inv.Email + " exists: sign in with the password chosen when the invitation was accepted. If you forgot it, ask your Workspace Administrator."
	case silo.InviteRevoked:
		d.Heading = "This invitation was withdrawn"
		d.Message = "Your Workspace Administrator revoked it. If you should have access, ask them for a new invitation."
	}
	return d, nil
}

func (ui *UI) renderInvite(w http.ResponseWriter, r *http.Request, d *inviteData, f *form) {
	v := ui.newView(r, "Join the workspace")
	v.Data = d
	status := http.StatusOK
	switch {
	case d.State == "invalid":
		status = http.StatusNotFound
		v.Title = "Invalid invitation"
	case d.State != silo.InvitePending:
		status = http.StatusGone
		v.Title = d.Heading
	case f != nil:
		v.Form = f
		status = http.StatusBadRequest
	}
	ui.render(w, r, status, "invite", v)
}

func (ui *UI) handleInvitePage(w http.ResponseWriter, r *http.Request) {
	d, err := ui.lookupInvite(r, r.PathValue("secret"))
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	ui.renderInvite(w, r, d, nil)
}

func (ui *UI) handleInviteSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	secret := r.PathValue("secret")
	d, err := ui.lookupInvite(r, secret)
	if err != nil {
		ui.renderError(w, r, err)
		return
	}
	if d.State != silo.InvitePending {
		ui.renderInvite(w, r, d, nil)
		return
	}
	if !ui.parseForm(w, r) {
		return
	}
	name, pw := r.PostForm.Get("name"), r.PostForm.Get("password")
	f := newForm(url.Values{"name": {name}})
	if err := silo.ValidatePassword(pw); err != nil {
		f.fail(err, "password")
	} else if pw != r.PostForm.Get("confirm") {
		f.Errors["confirm"] = "the two passwords differ: type the same password twice"
	}
	if len(f.Errors) > 0 {
		ui.renderInvite(w, r, d, f)
		return
	}
	u, err := ui.srv.AcceptInvite(ctx, server.AcceptRequest{Token: secret, Name: name, Password: pw})
	if err != nil {
		if silo.ErrorCode(err) == silo.ECONFLICT {
			// Used, revoked or expired since the page was shown.
			if d, err := ui.lookupInvite(r, secret); err == nil {
				ui.renderInvite(w, r, d, nil)
				return
			}
		}
		ui.logInternal(r, err)
		f.fail(err, "name", "password")
		ui.renderInvite(w, r, d, f)
		return
	}
	if err := ui.signIn(w, r, u); err != nil {
		ui.renderError(w, r, err)
		return
	}
	who := u.Name
	if who == "" {
		who = u.Email
	}
	ui.redirectFlash(w, r, "/", "success", "Welcome to Silo, "+who+". You joined the workspace as "+roleTitles(u.Roles)+".")
}
