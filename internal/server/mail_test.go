package server_test

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server"
)

// smtpSink is a minimal SMTP server on loopback that keeps what it is sent:
// enough of the protocol (RFC 5321) for net/smtp's client.
type smtpSink struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
	rcpt []string
}

func newSMTPSink(t *testing.T) *smtpSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpSink) serve(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	reply := func(line string) { w.WriteString(line + "\r\n"); w.Flush() }
	reply("220 sink ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			reply("250 sink")
		case strings.HasPrefix(cmd, "MAIL FROM"):
			reply("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO"):
			s.mu.Lock()
			s.rcpt = append(s.rcpt, strings.TrimSpace(line[8:]))
			s.mu.Unlock()
			reply("250 ok")
		case cmd == "DATA":
			reply("354 go on")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, b.String())
			s.mu.Unlock()
			reply("250 queued")
		case cmd == "QUIT":
			reply("221 bye")
			return
		default:
			reply("250 ok")
		}
	}
}

func TestInviteEmail(t *testing.T) {
	sink := newSMTPSink(t)
	e := newEnv(t)
	m, err := server.ParseSMTPURL("smtp://"+sink.ln.Addr().String(), "silo@example.org")
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Mailer = m
	var inv silo.Invite
	if st := e.do("POST", "/api/v1/invites", e.admin, map[string]any{"email": "new@example.org", "roles": []string{"model_builder"}}, &inv); st != 201 || !inv.Emailed {
		t.Fatalf("invite: %d %+v", st, inv)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.msgs) != 1 || !strings.Contains(sink.msgs[0], inv.Link) || !strings.Contains(sink.msgs[0], "To: new@example.org") || !strings.Contains(sink.msgs[0], "Model Builder") {
		t.Fatalf("mail = %q", sink.msgs)
	}
	// A relay that is down leaves the invitation valid and says so.
	sink.ln.Close()
	var second silo.Invite
	if st := e.do("POST", "/api/v1/invites", e.admin, map[string]any{"email": "other@example.org", "roles": []string{"model_builder"}}, &second); st != 201 || second.Emailed || !strings.Contains(second.EmailError, "send the link yourself") || second.Link == "" {
		t.Fatalf("invite with mail down: %d %+v", st, second)
	}
	if _, err := server.ParseSMTPURL("http://x", "silo@example.org"); err == nil {
		t.Fatal("accepted a non-smtp URL")
	}
}
