package server

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/silofl/silo"
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

func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if silo.ActorFromContext(r.Context()) != nil {
		// #nosec G710 -- safeNext allows only local paths
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if n, err := s.db.CountUsers(r.Context()); err != nil {
		s.renderError(w, r, err)
		return
	} else if n == 0 {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	v := s.newView(r, "Sign in")
	v.Form.Values.Set("next", next)
	s.render(w, r, http.StatusOK, "login", v)
}

func (s *Server) handleLoginSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if n, err := s.db.CountUsers(ctx); err != nil {
		s.renderError(w, r, err)
		return
	} else if n == 0 {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	if !s.parseForm(w, r) {
		return
	}
	email := r.PostForm.Get("email")
	u, err := s.checkCredentials(ctx, r, email, r.PostForm.Get("password"))
	if err != nil {
		s.logInternal(r, err)
		v := s.newView(r, "Sign in")
		v.Form = newForm(url.Values{"email": {email}, "next": {r.PostForm.Get("next")}})
		v.Form.Error = silo.ErrorMessage(err)
		s.render(w, r, ErrorStatus(err), "login", v)
		return
	}
	if err := s.signIn(w, r, u); err != nil {
		s.renderError(w, r, err)
		return
	}
	// #nosec G710 -- safeNext allows only local paths
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

// signIn replaces the browser's sign-in (if any) with a new one for u.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request, u *silo.User) error {
	if loginFromContext(r.Context()) != nil {
		s.endLogin(w, r)
	}
	return s.startLogin(w, r, u)
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	s.endLogin(w, r)
	s.redirectFlash(w, r, "/login", "info", "You are signed out.")
}

func (s *Server) handleSetupPage(w http.ResponseWriter, r *http.Request) {
	if n, err := s.db.CountUsers(r.Context()); err != nil {
		s.renderError(w, r, err)
		return
	} else if n > 0 {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "setup", s.newView(r, "Set up Silo"))
}

// handleSetupSubmit creates the first admin. It works only while there are no
// users; CreateFirstAdmin makes two racing requests safe.
func (s *Server) handleSetupSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if n, err := s.db.CountUsers(ctx); err != nil {
		s.renderError(w, r, err)
		return
	} else if n > 0 {
		s.redirectFlash(w, r, "/login", "info", "Setup is already done: sign in with an existing account.")
		return
	}
	if !s.parseForm(w, r) {
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
		var hash string
		if hash, err = hashPassword(pw); err == nil {
			u = &silo.User{Email: email, Roles: []silo.Role{silo.RoleAdmin}, PasswordHash: hash}
			err = s.db.CreateFirstAdmin(ctx, u)
			s.auditResult(silo.NewContextWithActor(ctx, &silo.Actor{User: u}), "user.create_first_admin", email, err)
		}
		if silo.ErrorCode(err) == silo.ECONFLICT {
			s.redirectFlash(w, r, "/login", "info", silo.ErrorMessage(err))
			return
		} else if err != nil {
			s.logInternal(r, err)
			f.fail(err, "email", "password")
		}
	}
	if len(f.Errors) > 0 || f.Error != "" {
		v := s.newView(r, "Set up Silo")
		v.Form = f
		s.render(w, r, http.StatusBadRequest, "setup", v)
		return
	}
	if err := s.signIn(w, r, u); err != nil {
		s.renderError(w, r, err)
		return
	}
	s.redirectFlash(w, r, "/", "success", "Welcome to Silo. You are the Workspace Administrator: invite your team to get started.")
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
func (s *Server) lookupInvite(r *http.Request, secret string) (*inviteData, error) {
	inv, err := s.db.FindInviteByTokenHash(r.Context(), hashSecret(strings.TrimSpace(secret)))
	if silo.ErrorCode(err) == silo.ENOTFOUND {
		return &inviteData{State: "invalid", Heading: "This invitation link is not valid",
			Message: "Check that you opened the whole link from your invitation. If it still does not work, ask your Workspace Administrator for a new invitation."}, nil
	} else if err != nil {
		return nil, err
	}
	d := &inviteData{State: inv.StatusAt(s.now()), Invite: inv}
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

func (s *Server) renderInvite(w http.ResponseWriter, r *http.Request, d *inviteData, f *form) {
	v := s.newView(r, "Join the workspace")
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
	s.render(w, r, status, "invite", v)
}

func (s *Server) handleInvitePage(w http.ResponseWriter, r *http.Request) {
	d, err := s.lookupInvite(r, r.PathValue("secret"))
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	s.renderInvite(w, r, d, nil)
}

func (s *Server) handleInviteSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	secret := r.PathValue("secret")
	d, err := s.lookupInvite(r, secret)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	if d.State != silo.InvitePending {
		s.renderInvite(w, r, d, nil)
		return
	}
	if !s.parseForm(w, r) {
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
		s.renderInvite(w, r, d, f)
		return
	}
	u, err := s.acceptInvite(ctx, acceptRequest{Token: secret, Name: name, Password: pw})
	if err != nil {
		if silo.ErrorCode(err) == silo.ECONFLICT {
			// Used, revoked or expired since the page was shown.
			if d, err := s.lookupInvite(r, secret); err == nil {
				s.renderInvite(w, r, d, nil)
				return
			}
		}
		s.logInternal(r, err)
		f.fail(err, "name", "password")
		s.renderInvite(w, r, d, f)
		return
	}
	if err := s.signIn(w, r, u); err != nil {
		s.renderError(w, r, err)
		return
	}
	who := u.Name
	if who == "" {
		who = u.Email
	}
	s.redirectFlash(w, r, "/", "success", "Welcome to Silo, "+who+". You joined the workspace as "+roleTitles(u.Roles)+".")
}
