package server

import (
	"context"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"net/url"
	"strings"
	"time"

	"github.com/silofl/silo"
)

// Mailer sends invitation emails through an SMTP relay. Mail is optional:
// without a Mailer the invitation link is shown to the admin to pass on.
type Mailer struct {
	Addr string // host:port
	From string
	Auth smtp.Auth // nil for an open relay
}

// ParseSMTPURL reads smtp://[user:password@]host[:port] (port 587 by
// default). STARTTLS is used whenever the relay offers it; credentials are
// only sent over TLS, or to a relay on this machine.
func ParseSMTPURL(raw, from string) (*Mailer, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "smtp" || u.Hostname() == "" {
		return nil, fmt.Errorf("SMTP URL must look like smtp://user:password@mail.example.org:587")
	}
	if _, err := mail.ParseAddress(from); err != nil {
		return nil, fmt.Errorf("--smtp-from %q is not an email address", from)
	}
	port := u.Port()
	if port == "" {
		port = "587"
	}
	m := &Mailer{Addr: net.JoinHostPort(u.Hostname(), port), From: from}
	if u.User != nil {
		pw, _ := u.User.Password()
		m.Auth = smtp.PlainAuth("", u.User.Username(), pw, u.Hostname())
	}
	return m, nil
}

// Send delivers one plain-text message, giving up after 15 seconds.
func (m *Mailer) Send(ctx context.Context, to, subject, body string) error {
	msg := "From: " + m.From + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		strings.ReplaceAll(body, "\n", "\r\n")
	done := make(chan error, 1)
	go func() { done <- smtp.SendMail(m.Addr, m.Auth, m.From, []string{to}, []byte(msg)) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return fmt.Errorf("the SMTP relay %s did not answer within 15s", m.Addr)
	}
}

// mailInvite emails an invitation link, when mail is configured. A failure
// is reported on the invite, never fatal: the admin still has the link.
func (s *Server) mailInvite(ctx context.Context, inv *silo.Invite) {
	if s.Mailer == nil {
		return
	}
	ws, _ := s.db.Workspace(ctx)
	name := "Silo"
	if ws != nil {
		name = "the " + ws.Name + " workspace on Silo"
	}
	body := fmt.Sprintf("%s invited you to %s as %s.\n\nAccept the invitation and choose a password here (the link works once and expires on %s):\n\n%s\n",
		inv.CreatedBy, name, rolesText(inv.Roles), inv.ExpiresAt.Format("2 January 2006 15:04 MST"), inv.Link)
	if err := s.Mailer.Send(ctx, inv.Email, "Your invitation to "+name, body); err != nil {
		s.Logger.Warn("invitation email not sent", "to", inv.Email, "err", err)
		inv.EmailError = "the invitation email could not be sent (" + err.Error() + "): send the link yourself"
		return
	}
	inv.Emailed = true
}

func rolesText(roles []silo.Role) string {
	var out []string
	for _, r := range roles {
		out = append(out, r.Title())
	}
	return strings.Join(out, " and ")
}
