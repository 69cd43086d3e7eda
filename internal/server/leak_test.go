package server_test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/testsvc"
)

// TestNoSecretLeaks fills a workspace with every kind of secret — passwords,
// a wrong password typed at sign-in, an invitation link, access and runner
// tokens, a sign-in cookie, service-principal secrets — then fetches every
// GET route of the API and the UI (with real ids), provokes errors that
// carry secrets in their input, and searches all of it, the server log, the
// audit log, every byte runners sent and the database files for each
// secret. Only the one response that hands a secret out may hold it.
func TestNoSecretLeaks(t *testing.T) {
	conn := testsvc.Azurite(t)
	f := newFederation(t)
	e := f.env
	e.srv.Cloud.Azure = &blob.AzureConfig{ConnectionString: conn}
	ctx := context.Background()
	admin := client.New(e.ts.URL, e.admin)

	secrets := map[string]string{"admin password": adminPassword, "sp secret": spSecret, "runtime sp secret": runtimeSecret}

	// A user joins through an invitation; its link and their password are secrets.
	const userEmail, userPassword = "leak@example.org", "Leaky-Password-0451"
	inv, err := admin.InviteUser(ctx, client.InviteRequest{Email: userEmail, Roles: []silo.Role{silo.RoleModelBuilder}})
	if err != nil {
		t.Fatal(err)
	}
	inviteSecret := inv.Link[strings.LastIndex(inv.Link, "/")+1:]
	secrets["invitation secret"] = inviteSecret
	if _, err := client.New(e.ts.URL, "").AcceptInvite(ctx, client.AcceptInviteRequest{Token: inviteSecret, Password: userPassword}); err != nil {
		t.Fatal(err)
	}
	secrets["user password"] = userPassword

	// A wrong password typed at sign-in, through the API and the form.
	const wrongPassword = "Typo-Password-9931"
	secrets["wrong password"] = wrongPassword
	if _, err := client.New(e.ts.URL, "").Login(ctx, client.LoginRequest{Email: userEmail, Password: wrongPassword}); silo.ErrorCode(err) != silo.EUNAUTHORIZED {
		t.Fatalf("wrong password: %v", err)
	}
	errorBodies := []string{}
	form := func(c *http.Client, path string, v url.Values) string {
		resp, err := c.PostForm(e.ts.URL+path, v)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	errorBodies = append(errorBodies, form(browser, "/login", url.Values{"email": {userEmail}, "password": {wrongPassword}}))

	// The admin signs in with the form; the cookie's value is a secret.
	form(browser, "/login", url.Values{"email": {adminEmail}, "password": {adminPassword}})
	u, _ := url.Parse(e.ts.URL)
	for _, c := range jar.Cookies(u) {
		if c.Name == "silo_session" {
			secrets["sign-in cookie"] = c.Value
		}
	}
	if secrets["sign-in cookie"] == "" {
		t.Fatal("no sign-in cookie after signing in")
	}

	// An access token, and a runner token used on the runner routes.
	tok, err := admin.CreateToken(ctx, silo.TokenRequest{Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	secrets["access token"] = tok.Secret
	r, err := admin.RegisterRunner(ctx, silo.RunnerSpec{Name: "spare", Provider: silo.ProviderLocal, VCPU: 1, MemoryGB: 1, StoragePath: "file://" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	secrets["runner token"] = r.Token
	if _, err := client.New(e.ts.URL, r.Token).Heartbeat(ctx, silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion, AgentVersion: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RegisterRunner(ctx, azureSpec("azure-eu")); err != nil {
		t.Fatal(err)
	}

	// Errors whose input holds a secret: an invalid registration with secrets
	// in it, a revoked token, a used invitation, a runner token on user routes.
	bad := azureSpec("azure-bad")
	bad.Region = "nowhere"
	if _, err := admin.RegisterRunner(ctx, bad); silo.ErrorCode(err) != silo.EINVALID {
		t.Fatalf("invalid azure runner: %v", err)
	} else {
		errorBodies = append(errorBodies, err.Error())
	}
	if _, err := client.New(e.ts.URL, "").AcceptInvite(ctx, client.AcceptInviteRequest{Token: inviteSecret, Password: userPassword}); err == nil {
		t.Fatal("an invitation was accepted twice")
	} else {
		errorBodies = append(errorBodies, err.Error())
	}
	if _, err := client.New(e.ts.URL, r.Token).ListUsers(ctx); err == nil {
		t.Fatal("a runner token listed users")
	} else {
		errorBodies = append(errorBodies, err.Error())
	}
	if err := admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(e.ts.URL, tok.Secret).Me(ctx); silo.ErrorCode(err) != silo.EUNAUTHORIZED {
		t.Fatalf("revoked token: %v", err)
	} else {
		errorBodies = append(errorBodies, err.Error())
	}

	// A finished session, its model and an attachment give every page content.
	s, err := f.api.CreateSession(ctx, sessionConfig("leaks", func(m map[string]any) { m["rounds"] = 2 }))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session to complete", func() bool { s, _ = f.api.GetSession(ctx, s.ID); return s.Status.Done() })
	att, err := f.dc.AddAttachment(ctx, "hospital_a", "notes.txt", "text/plain", []byte("data dictionary"))
	if err != nil {
		t.Fatal(err)
	}
	invites, _ := admin.ListInvites(ctx)
	fill := strings.NewReplacer("{email}", url.PathEscape(userEmail), "{name}", "hospital_a", "{file}", "silo.css",
		"{secret}", inviteSecret, "{provider}", "azure", "{$}", "")
	ids := map[string]string{"/api/v1/invites/": fmt.Sprint(invites[0].ID), "/api/v1/tokens/": tok.ID,
		"/attachments/": fmt.Sprint(att.ID), "/sessions/": s.ID, "/api/v1/sessions/": s.ID}

	var seen []string
	get := func(path, bearer string, c *http.Client) {
		req, _ := http.NewRequest("GET", e.ts.URL+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 {
			t.Errorf("GET %s: status %d", path, resp.StatusCode)
		}
		// The path is left out: the invitation page's holds its secret.
		seen = append(seen, fmt.Sprintf("%d %v\n%s", resp.StatusCode, resp.Header, b))
	}
	fetched := 0
	for _, rt := range e.srv.Routes() {
		if rt.Method != "GET" {
			continue
		}
		path := rt.Path
		if strings.Contains(path, "{id}") {
			for prefix, id := range ids {
				if strings.Contains(path, prefix+"{id}") {
					path = strings.Replace(path, "{id}", id, 1)
				}
			}
		}
		path = fill.Replace(path)
		switch rt.Access {
		case "runner":
			if rt.Path == "/api/v1/runner/tasks" {
				path += "?wait=0s"
			}
			get(path, r.Token, http.DefaultClient)
		default:
			get(path, e.admin, http.DefaultClient)
			if rt.Page {
				get(path, "", browser)
			}
		}
		fetched++
	}
	for _, p := range []string{"/settings/runners/azure-eu", "/settings/runners/azure-eu/edit", "/api/v1/runners/azure-eu", "/api/v1/runners/azure-eu/bundle?server_url=https://silo.example.org",
		"/settings/runners/azure-eu/bundle?server_url=https://silo.example.org", "/settings/runners/azure-eu/bundle",
		"/api/v1/runners/spare", "/settings/runners/spare", "/api/v1/sessions/" + s.ID + "/model", "/sessions/" + s.ID} {
		get(p, e.admin, http.DefaultClient)
		get(p, "", browser)
	}
	if fetched < 30 {
		t.Fatalf("fetched only %d GET routes", fetched)
	}
	audit, _ := admin.ListAudit(ctx, client.AuditQuery{Limit: 1000})
	seen = append(seen, fmt.Sprint(audit))
	seen = append(seen, errorBodies...)
	seen = append(seen, e.logs.String(), f.wire.String())

	for what, secret := range secrets {
		for _, s := range seen {
			if i := strings.Index(s, secret); i >= 0 {
				t.Errorf("the %s leaked: …%s…", what, s[max(0, i-300):i])
			}
		}
	}

	// At rest: passwords and tokens are stored only as hashes, and
	// service-principal secrets only sealed.
	for where, b := range e.storedBytes() {
		for what, secret := range secrets {
			if strings.Contains(b, secret) {
				t.Errorf("the %s is stored in the clear in %s", what, where)
			}
		}
	}
}

// storedBytes returns what the store holds, by where it holds it: the
// SQLite database files (with the WAL), or every row of every PostgreSQL
// table as text.
func (e *env) storedBytes() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	if e.dbPath != "" {
		files, _ := filepath.Glob(e.dbPath + "*")
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				e.t.Fatal(err)
			}
			out[filepath.Base(name)] = string(b)
		}
	} else {
		conn, err := sql.Open("pgx", e.db.DSN)
		if err != nil {
			e.t.Fatal(err)
		}
		defer conn.Close()
		rows, err := conn.Query(`SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'`)
		if err != nil {
			e.t.Fatal(err)
		}
		type column struct{ table, name, typ string }
		var columns []column
		for rows.Next() {
			var c column
			if err := rows.Scan(&c.table, &c.name, &c.typ); err != nil {
				e.t.Fatal(err)
			}
			columns = append(columns, c)
		}
		rows.Close()
		for _, c := range columns {
			value := `"` + c.name + `"::text`
			if c.typ == "bytea" {
				value = `encode("` + c.name + `", 'escape')` // the bytes, not their hex
			}
			var text sql.NullString
			if err := conn.QueryRow(`SELECT string_agg(` + value + `, E'\n') FROM "` + c.table + `"`).Scan(&text); err != nil {
				e.t.Fatalf("read %s.%s: %v", c.table, c.name, err)
			}
			out[c.table+"."+c.name] += text.String
		}
	}
	if len(out) == 0 {
		e.t.Fatal("found nothing the store holds")
	}
	return out
}

// TestSecurityHeaders: UI pages, errors and API answers carry headers that
// keep the UI out of frames, stop content sniffing, restrict scripts and
// styles to the server's own files, and keep referrers on the site.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	want := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "same-origin",
		"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
	}
	for _, path := range []string{"/login", "/settings/users", "/no-such-page", "/api/v1/me", "/api/v1/users", "/static/silo.css"} {
		req, _ := http.NewRequest("GET", e.ts.URL+path, nil)
		if strings.HasPrefix(path, "/api/") || path == "/settings/users" {
			req.Header.Set("Authorization", "Bearer "+e.admin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
}

// TestSecureCookies: behind HTTPS, or with an https public URL (TLS ended by
// a proxy), the sign-in cookie is Secure as well as HttpOnly and SameSite.
func TestSecureCookies(t *testing.T) {
	e := newEnv(t)
	signIn := func(c *http.Client, base string) *http.Cookie {
		t.Helper()
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.PostForm(base+"/login", url.Values{"email": {adminEmail}, "password": {adminPassword}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == "silo_session" {
				return ck
			}
		}
		t.Fatalf("no sign-in cookie (status %d)", resp.StatusCode)
		return nil
	}
	if ck := signIn(&http.Client{}, e.ts.URL); ck.Secure {
		t.Errorf("plain HTTP without an https public URL: cookie is Secure, browsers would drop it")
	}
	tlsServer := httptest.NewTLSServer(e.srv.Handler())
	defer tlsServer.Close()
	c := tlsServer.Client()
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	if ck := signIn(c, tlsServer.URL); !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("over TLS: cookie %+v, want Secure, HttpOnly, SameSite=Lax", ck)
	}
	// A server started after PublicURL is set, as silo server does.
	e.srv.PublicURL = "https://silo.example.org"
	proxied := httptest.NewServer(e.srv.Handler())
	defer proxied.Close()
	if ck := signIn(&http.Client{}, proxied.URL); !ck.Secure {
		t.Errorf("behind a TLS proxy (https public URL): cookie is not Secure")
	}
}
