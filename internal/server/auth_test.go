package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server"
)

// signIn posts a password sign-in as if from addr (the server trusts the
// test's loopback proxy, see trustLoopbackProxy) and returns the status.
func (e *env) signIn(email, password, addr string) int {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, _ := http.NewRequest("POST", e.ts.URL+"/api/v1/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if addr != "" {
		req.Header.Set("X-Forwarded-For", addr)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// trustLoopbackProxy makes the server believe X-Forwarded-For from the test
// client, as it would from a reverse proxy listed in --trusted-proxies.
func (e *env) trustLoopbackProxy() {
	e.srv.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

// TestSignInThrottle: failed sign-ins slow guessing down per account and
// address, and never lock the right password out. Tried as an attacker
// guessing from one address, from many (a botnet), across many accounts
// from one address (spraying), and from behind the victim's own address
// (one NAT), with the server's clock moved by hand.
func TestSignInThrottle(t *testing.T) {
	e := newEnv(t)
	e.trustLoopbackProxy()
	const home, attacker = "198.51.100.7", "203.0.113.9"
	if st := e.signIn(adminEmail, adminPassword, home); st != 200 {
		t.Fatalf("sign in from home: %d", st)
	}

	// Five wrong passwords from one address: each is checked and refused.
	for i := range 5 {
		if st := e.signIn(adminEmail, "guess "+fmt.Sprint(i), attacker); st != 401 {
			t.Fatalf("guess %d: %d, want 401", i, st)
		}
	}
	// The sixth must wait, even with the right password: it is not checked.
	e.wantErrorFrom(attacker, adminEmail, adminPassword, 429, "too many failed sign-in attempts: try again in 1s")
	// The account's owner is not locked out, from home or anywhere new.
	for _, addr := range []string{home, "192.0.2.44"} {
		if st := e.signIn(adminEmail, adminPassword, addr); st != 200 {
			t.Fatalf("the right password from %s after someone else's guesses: %d", addr, st)
		}
	}
	// The wait is short and grows: a second later the attacker may try
	// once more, then waits two seconds, then four…
	e.clock.Add(time.Second)
	if st := e.signIn(adminEmail, "guess 6", attacker); st != 401 {
		t.Fatalf("after waiting: %d, want a checked (refused) guess", st)
	}
	e.wantErrorFrom(attacker, adminEmail, "guess 7", 429, "try again in 2s")

	// A patient attacker trying every ten seconds for an hour gets about one
	// guess a minute; the same person typing the right password after the
	// wait gets in.
	checked := 0
	for range 360 {
		e.clock.Add(10 * time.Second)
		if e.signIn(adminEmail, "patient guess", attacker) == 401 {
			checked++
		}
	}
	if checked < 50 || checked > 70 {
		t.Fatalf("an hour of guessing from one address had %d guesses checked, want about 60", checked)
	}
	e.clock.Add(time.Minute)
	if st := e.signIn(adminEmail, adminPassword, attacker); st != 200 {
		t.Fatalf("the right password from the guessing address after the wait: %d", st)
	}

	// A botnet: one guess from each of many addresses. After twenty, new
	// addresses wait too; the owner's home address does not.
	e.clock.Add(25 * time.Hour) // every counter forgotten
	for i := range 20 {
		if st := e.signIn(adminEmail, "botnet guess", fmt.Sprintf("192.0.2.%d", 100+i)); st != 401 {
			t.Fatalf("botnet guess %d: %d", i, st)
		}
	}
	if st := e.signIn(adminEmail, adminPassword, "192.0.2.250"); st != 429 {
		t.Fatalf("a new address after twenty guesses from elsewhere: %d, want 429", st)
	}
	if st := e.signIn(adminEmail, adminPassword, home); st != 200 {
		t.Fatalf("the owner at home during a botnet's guessing: %d", st)
	}

	// Spraying: one address tries fifty accounts; then it waits for any
	// account, except someone who signed in from it before.
	e.clock.Add(25 * time.Hour)
	const office = "203.0.113.50"
	mb := "mb@example.org"
	e.addUser(mb, "model_builder")
	if st := e.signIn(mb, "password-"+mb, office); st != 200 {
		t.Fatal(st)
	}
	for i := range 50 {
		if st := e.signIn(fmt.Sprintf("user%d@example.org", i), "spray", office); st != 401 {
			t.Fatalf("spray %d: %d", i, st)
		}
	}
	if st := e.signIn(adminEmail, adminPassword, office); st != 429 {
		t.Fatalf("another account from the spraying address: %d, want 429", st)
	}
	if st := e.signIn(mb, "password-"+mb, office); st != 200 {
		t.Fatalf("a colleague who signed in from the office before: %d", st)
	}

	// Behind the owner's own address (one NAT): the right password still
	// gets in while the guesses there are few; past fifty in a day the
	// address is throttled for everyone, the owner included, so guessing
	// stays bounded there too.
	e.clock.Add(25 * time.Hour)
	for i := range 10 {
		e.signIn(adminEmail, fmt.Sprint("nat guess ", i), home)
	}
	if st := e.signIn(adminEmail, adminPassword, home); st != 200 {
		t.Fatalf("the owner behind the guesser's NAT: %d", st)
	}
	for i := range 50 {
		e.signIn(adminEmail, fmt.Sprint("nat guess ", i), home)
	}
	if st := e.signIn(adminEmail, adminPassword, home); st != 429 {
		t.Fatalf("after fifty guesses from the owner's address: %d, want 429", st)
	}
}

// wantErrorFrom checks a sign-in from addr fails with status and a message
// containing substr.
func (e *env) wantErrorFrom(addr, email, password string, status int, substr string) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, _ := http.NewRequest("POST", e.ts.URL+"/api/v1/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var got apiError
	json.NewDecoder(resp.Body).Decode(&got)
	if resp.StatusCode != status || !strings.Contains(got.Error.Message, substr) {
		e.t.Fatalf("sign-in from %s: %d %q, want %d containing %q", addr, resp.StatusCode, got.Error.Message, status, substr)
	}
}

// TestForwardedForTrustedOnlyFromProxies: X-Forwarded-For is believed only
// from --trusted-proxies, and then only its right-most untrusted entry (what
// the proxy saw), so a client cannot pick the address it is counted under.
func TestForwardedForTrustedOnlyFromProxies(t *testing.T) {
	e := newEnv(t)
	// No trusted proxy: the header is ignored, all guesses count against
	// the real peer, whatever it claims.
	for i := range 5 {
		e.signIn(adminEmail, "wrong", fmt.Sprintf("10.9.9.%d", i))
	}
	if st := e.signIn(adminEmail, "wrong", "10.9.9.200"); st != 429 {
		t.Fatalf("a made-up X-Forwarded-For escaped the throttle: %d", st)
	}
	e.clock.Add(25 * time.Hour)
	// Behind a trusted proxy, entries left of the proxy's own are the
	// client's say-so and are ignored.
	e.trustLoopbackProxy()
	for i := range 5 {
		e.signIn(adminEmail, "wrong", fmt.Sprintf("10.8.8.%d, 203.0.113.9", i))
	}
	if st := e.signIn(adminEmail, adminPassword, "10.8.8.200, 203.0.113.9"); st != 429 {
		t.Fatalf("a spoofed entry before the proxy's escaped the throttle: %d", st)
	}
	if st := e.signIn(adminEmail, adminPassword, "203.0.113.10"); st != 200 {
		t.Fatalf("another client behind the proxy: %d", st)
	}
	// IPv6 clients are counted per /64.
	for i := range 5 {
		e.signIn(adminEmail, "wrong", fmt.Sprintf("2001:db8:1:2::%x", i+1))
	}
	if st := e.signIn(adminEmail, adminPassword, "2001:db8:1:2:ffff::1"); st != 429 {
		t.Fatalf("a new address in the same /64 escaped the throttle: %d", st)
	}
}

// TestOriginNullRefused: a request from a sandboxed frame, a data: or file:
// page or a cross-site redirect carries "Origin: null"; neither the
// sign-in form nor any cookie-authenticated change accepts it, and a browser
// saying Sec-Fetch-Site: cross-site is refused too.
func TestOriginNullRefused(t *testing.T) {
	e := newEnv(t)
	post := func(path string, form url.Values, header map[string]string, cookies []*http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", e.ts.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	creds := url.Values{"email": {adminEmail}, "password": {adminPassword}}
	for _, h := range []map[string]string{{"Origin": "null"}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}} {
		if resp := post("/login", creds, h, nil); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) > 0 {
			t.Errorf("sign-in with %v: %d, cookies %v", h, resp.StatusCode, resp.Cookies())
		}
		var got apiError
		if st := e.doWithHeader("POST", "/api/v1/login", h, map[string]string{"email": adminEmail, "password": adminPassword}, &got); st != http.StatusForbidden || !strings.Contains(got.Error.Message, "cross-site request refused") {
			t.Errorf("API sign-in with %v: %d %+v", h, st, got.Error)
		}
	}
	// A signed-in browser: a change with the right CSRF token but
	// Origin: null is refused.
	resp := post("/login", creds, map[string]string{"Origin": e.ts.URL}, nil)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) == 0 {
		t.Fatalf("same-site sign-in: %d", resp.StatusCode)
	}
	cookies := resp.Cookies()
	csrf := e.csrfToken(cookies)
	form := url.Values{"csrf_token": {csrf}, "email": {"x@example.org"}, "roles": {"model_builder"}}
	if resp := post("/settings/invites", form, map[string]string{"Origin": "null"}, cookies); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a signed-in change with Origin: null: %d", resp.StatusCode)
	}
	var invites []silo.Invite
	if e.do("GET", "/api/v1/invites", e.admin, nil, &invites); len(invites) != 0 {
		t.Fatalf("a refused form created %d invitations", len(invites))
	}
	post("/settings/invites", form, map[string]string{"Origin": e.ts.URL}, cookies)
	if e.do("GET", "/api/v1/invites", e.admin, nil, &invites); len(invites) != 1 {
		t.Errorf("the same change from this site made %d invitations", len(invites))
	}
}

// doWithHeader is do with extra request headers.
func (e *env) doWithHeader(method, path string, header map[string]string, body any, out any) int {
	e.t.Helper()
	buf, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(buf))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// csrfToken reads the sign-in's CSRF token from a page's forms.
func (e *env) csrfToken(cookies []*http.Cookie) string {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.ts.URL+"/settings/users", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var page bytes.Buffer
	page.ReadFrom(resp.Body)
	_, after, ok := strings.Cut(page.String(), `name="csrf_token" value="`)
	if !ok {
		e.t.Fatalf("no CSRF token on the page (%d)", resp.StatusCode)
	}
	token, _, _ := strings.Cut(after, `"`)
	return token
}

// TestInviteLinksNeedTrustedHost: without --public-url, an invitation link
// is built only for a request to the loopback or the address the server
// listens on; a request naming another Host is refused, saying how to fix
// it, and nothing is stored. With --public-url, links always use it.
func TestInviteLinksNeedTrustedHost(t *testing.T) {
	e := newEnv(t)
	invite := func(host, email string) (int, apiError, silo.Invite) {
		t.Helper()
		buf, _ := json.Marshal(map[string]any{"email": email, "roles": []string{"model_builder"}})
		req, _ := http.NewRequest("POST", e.ts.URL+"/api/v1/invites", bytes.NewReader(buf))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.admin)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw bytes.Buffer
		raw.ReadFrom(resp.Body)
		var ae apiError
		var inv silo.Invite
		json.Unmarshal(raw.Bytes(), &ae)
		json.Unmarshal(raw.Bytes(), &inv)
		return resp.StatusCode, ae, inv
	}
	st, ae, _ := invite("silo.evil.example", "a@example.org")
	if st != http.StatusConflict || !strings.Contains(ae.Error.Message, "--public-url") {
		t.Fatalf("an invitation for Host silo.evil.example: %d %+v", st, ae.Error)
	}
	var invites []silo.Invite
	if e.do("GET", "/api/v1/invites", e.admin, nil, &invites); len(invites) != 0 {
		t.Fatalf("a refused invitation was stored: %+v", invites)
	}
	for _, host := range []string{"", "localhost:1234", "[::1]:99"} {
		if st, _, inv := invite(host, "b"+fmt.Sprint(len(host))+"@example.org"); st != 201 || !strings.Contains(inv.Link, "/invite/") {
			t.Fatalf("an invitation for Host %q: %d %q", host, st, inv.Link)
		}
	}
	e.srv.PublicURL = "https://silo.example.org/"
	if st, _, inv := invite("silo.evil.example", "c@example.org"); st != 201 || !strings.HasPrefix(inv.Link, "https://silo.example.org/invite/") {
		t.Fatalf("with a public URL: %d %q", st, inv.Link)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := server.ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.7 ,fd00::/8,,::ffff:198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "fd00::/8", "198.51.100.1/32"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parsed %v, want %v", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example", "10.0.0.1:8080"} {
		if _, err := server.ParseTrustedProxies(bad); err == nil || !strings.Contains(err.Error(), "CIDR") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
