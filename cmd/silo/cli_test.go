package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/internal/ui"
)

const adminEmail, adminPassword = "admin@example.org", "correct horse battery"

// env is a real server and a private CLI configuration.
type env struct {
	t   *testing.T
	url string
	dir string
}

// newEnv starts a server on a fresh SQLite store with a bootstrapped admin,
// and points SILO_CONFIG at a temporary file so tests never touch the real
// login. The CLI is not signed in yet.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db := sqlstore.New(filepath.Join(dir, "silo.db"))
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := server.New(db)
	srv.AddRoutes(ui.New(srv)...)
	if _, _, err := srv.BootstrapAdmin(ctx, adminEmail, adminPassword); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Setenv("SILO_SERVER", "")
	t.Setenv("SILO_TOKEN", "")
	e := &env{t: t, url: ts.URL, dir: dir}
	e.useConfig("admin")
	return e
}

// useConfig switches the CLI to the saved login called name, as if another
// person ran it on another machine.
func (e *env) useConfig(name string) string {
	p := filepath.Join(e.dir, "config-"+name, "config.json")
	e.t.Setenv("SILO_CONFIG", p)
	return p
}

// result is what one run of the CLI printed and returned.
type result struct {
	out, err string
	code     int
}

// run runs the CLI in-process with stdin.
func (e *env) run(stdin string, args ...string) result {
	e.t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{out.String(), errb.String(), code}
}

// ok runs the CLI and fails the test unless it succeeds; it returns stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run("", args...)
	if r.code != 0 {
		e.t.Fatalf("silo %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// json runs the CLI with --json and decodes its output into v.
func (e *env) json(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("silo %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (e *env) loginAdmin() {
	e.t.Helper()
	e.ok("login", "--server", e.url, "--email", adminEmail, "--password", adminPassword)
}

// check compares r with the expected exit code and the substrings its
// outputs must contain.
func check(t *testing.T, args []string, r result, code int, out, errOut []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("silo %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.out, r.err)
		return
	}
	for _, s := range out {
		if !strings.Contains(r.out, s) {
			t.Errorf("silo %s: stdout lacks %q:\n%s", strings.Join(args, " "), s, r.out)
		}
	}
	for _, s := range errOut {
		if !strings.Contains(r.err, s) {
			t.Errorf("silo %s: stderr lacks %q:\n%s", strings.Join(args, " "), s, r.err)
		}
	}
}

// jsonError decodes an error printed with --json.
func jsonError(t *testing.T, stderr string) *silo.Error {
	t.Helper()
	var body struct{ Error *silo.Error }
	if err := json.Unmarshal([]byte(stderr), &body); err != nil || body.Error == nil {
		t.Fatalf("stderr is not a JSON error: %v\n%s", err, stderr)
	}
	return body.Error
}

// TestUsage covers what needs no server: help, and mistakes in the command
// line, which exit 2 and show the usage.
func TestUsage(t *testing.T) {
	t.Setenv("SILO_CONFIG", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("SILO_SERVER", "")
	t.Setenv("SILO_TOKEN", "")
	e := &env{t: t}
	for _, tc := range []struct {
		args        []string
		code        int
		out, errOut []string
	}{
		{nil, 2, nil, []string{"Usage: silo COMMAND", "users", "tokens", "workspace", "audit", "login"}},
		{[]string{"help"}, 0, []string{"Commands:", "quickstart", "SILO_SERVER"}, nil},
		{[]string{"-h"}, 0, []string{"Commands:"}, nil},
		{[]string{"help", "users"}, 0, []string{"Usage: silo users SUBCOMMAND", "set-roles EMAIL"}, nil},
		{[]string{"users", "-h"}, 0, []string{"Usage: silo users SUBCOMMAND"}, nil},
		{[]string{"users", "invite", "-h"}, 0, []string{"invite EMAIL --role", "Flags of 'silo users invite':", "--role A,B", "--expires VALUE"}, nil},
		// Each subcommand's -h lists its own flags: every runner field with
		// the providers that take it, the scopes a token may carry, the
		// audit filters.
		{[]string{"runners", "register", "-h"}, 0, []string{"Flags of 'silo runners register':", "--vpc-id VALUE", "aws, existing VPC", "--memory-mb N", "azure: memory in MB (default 16384",
			"--service-principal-secret VALUE", "-f VALUE", "docs/runners.md"}, nil},
		{[]string{"runners", "bundle", "-h"}, 0, []string{"--server-url VALUE", "URL the deployed runner dials"}, nil},
		{[]string{"tokens", "create", "-h"}, 0, []string{"--scope A,B", "Scopes (permissions", "  runners:read\n", "  predictions:run\n"}, nil},
		{[]string{"audit", "list", "-h"}, 0, []string{"--actor VALUE", "--action VALUE", "--before", "--outcome VALUE"}, nil},
		{[]string{"sessions", "-h"}, 0, []string{"docs/sessions.md", "examples/session-"}, nil},
		{[]string{"version"}, 0, []string{"silo " + silo.Version}, nil},
		{[]string{"frobnicate"}, 2, nil, []string{`silo: unknown command "frobnicate"`, "Commands:"}},
		{[]string{"users"}, 2, nil, []string{"silo users: missing subcommand", "Usage: silo users"}},
		{[]string{"users", "promote"}, 2, nil, []string{`unknown subcommand "promote"`}},
		{[]string{"users", "invite"}, 2, nil, []string{"silo users invite: missing EMAIL", "Usage: silo users"}},
		{[]string{"users", "invite", "a@example.org"}, 2, nil, []string{"--role is required"}},
		{[]string{"users", "set-roles", "a@example.org"}, 2, nil, []string{"missing ROLE"}},
		{[]string{"users", "list", "extra"}, 2, nil, []string{`unexpected argument "extra"`}},
		{[]string{"users", "list", "--frob"}, 2, nil, []string{"flag provided but not defined: -frob"}},
		{[]string{"tokens", "revoke"}, 2, nil, []string{"missing ID"}},
		{[]string{"audit", "list", "--limit", "many"}, 2, nil, []string{"invalid value"}},
		{[]string{"workspace", "set"}, 2, nil, []string{"nothing to change"}},
		{[]string{"login", "--email", "a@example.org"}, 2, nil, []string{"--server URL is required"}},
		{[]string{"login", "--server", "http://127.0.0.1:1"}, 2, nil, []string{"give --email EMAIL"}},
		{[]string{"login", "--server", "http://127.0.0.1:1", "--token", "t", "--email", "a@example.org"}, 2, nil, []string{"not both"}},
		{[]string{"login", "--server", "silo.example.org", "--token", "t"}, 1, nil, []string{`silo: server URL "silo.example.org" must look like https://`}},
		{[]string{"users", "list"}, 1, nil, []string{"silo: no server given", "silo login --server URL"}},
		{[]string{"users", "list", "--server", "http://127.0.0.1:1"}, 1, nil, []string{"silo: not signed in to http://127.0.0.1:1"}},
		{[]string{"users", "list", "--server", "http://127.0.0.1:1", "--token", "silo_x"}, 1, nil, []string{"silo: could not reach the Silo server at http://127.0.0.1:1"}},
	} {
		r := e.run("", tc.args...)
		check(t, tc.args, r, tc.code, tc.out, tc.errOut)
		if tc.code == 1 && strings.Count(r.err, "\n") != 1 {
			t.Errorf("silo %s: error is not one line:\n%s", strings.Join(tc.args, " "), r.err)
		}
	}

	// With --json, even usage errors are JSON.
	r := e.run("", "users", "list", "extra", "--json")
	if r.code != 2 || jsonError(t, r.err).Code != silo.EINVALID || !strings.Contains(jsonError(t, r.err).Message, "extra") {
		t.Fatalf("usage error with --json: %d %s", r.code, r.err)
	}
	r = e.run("", "users", "--json")
	if r.code != 2 || !strings.Contains(jsonError(t, r.err).Message, "missing subcommand") {
		t.Fatalf("missing subcommand with --json: %d %s", r.code, r.err)
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t)
	path := e.useConfig("admin")

	// The password from standard input, flags in any order.
	r := e.run(adminPassword+"\n", "login", "--email", adminEmail, "--server", e.url+"/")
	check(t, []string{"login"}, r, 0, []string{"Signed in to " + e.url + " as " + adminEmail + " (admin)."}, nil)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg config
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Server != e.url || !strings.HasPrefix(cfg.Token, silo.TokenPrefix) || cfg.TokenID == "" || cfg.Email != adminEmail {
		t.Fatalf("saved config = %+v, %v", cfg, err)
	}
	if strings.Contains(r.out+r.err, cfg.Token) {
		t.Fatal("login printed the token")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode = %v, want 0600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Errorf("config dir mode = %v, want 0700", fi.Mode().Perm())
	}
	var me struct {
		Server  string
		TokenID string `json:"token_id"`
		User    silo.User
	}
	// The token an email login creates is named after this machine.
	var tokens []silo.Token
	e.json(&tokens, "tokens", "list")
	if len(tokens) != 1 || tokens[0].ID != cfg.TokenID || !strings.HasPrefix(tokens[0].Name, "silo CLI") {
		t.Fatalf("tokens after login = %+v", tokens)
	}

	// A wrong password is one clear line; the saved login stays.
	r = e.run("", "login", "--server", e.url, "--email", adminEmail, "--password", "wrong password")
	check(t, []string{"login", "wrong"}, r, 1, nil, []string{"silo: wrong email or password\n"})
	r = e.run("", "login", "--server", e.url, "--email", adminEmail, "--password", "wrong password", "--json")
	if r.code != 1 || jsonError(t, r.err).Code != silo.EUNAUTHORIZED {
		t.Fatalf("wrong password with --json: %d %s", r.code, r.err)
	}
	r = e.run("", "login", "--server", e.url, "--email", adminEmail)
	check(t, []string{"login", "no password"}, r, 2, nil, []string{"no password"})
	if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
		t.Fatal("a failed login changed the saved login")
	}

	// Sign in with an existing token on another "machine".
	e.useConfig("laptop")
	r = e.run("", "login", "--server", e.url, "--token", cfg.Token, "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.out), &me) != nil || me.User.Email != adminEmail || me.TokenID != cfg.TokenID || me.Server != e.url {
		t.Fatalf("login --token --json: %d %s %s", r.code, r.out, r.err)
	}
	if strings.Contains(r.out, cfg.Token) {
		t.Fatal("login --json printed the token")
	}
	r = e.run("", "login", "--server", e.url, "--token", "silo_bogus")
	check(t, []string{"login", "--token", "bogus"}, r, 1, nil, []string{"silo: access token is not valid"})
}

func TestUsers(t *testing.T) {
	e := newEnv(t)
	e.loginAdmin()
	ctx := context.Background()

	out := e.ok("users", "list")
	if !regexp.MustCompile(`(?m)^EMAIL\s+NAME\s+ROLES\s+STATUS\s+CREATED$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^admin@example\.org\s+-\s+admin\s+active\s`).MatchString(out) {
		t.Fatalf("users list:\n%s", out)
	}
	var invites []silo.Invite
	e.json(&invites, "users", "invites")
	if r := e.run("", "users", "invites", "--json"); strings.TrimSpace(r.out) != "[]" {
		t.Fatalf("empty invites --json = %q, want []", r.out)
	}
	check(t, []string{"users", "invites"}, e.run("", "users", "invites"), 0, []string{"No invitations yet. Invite someone with: silo users invite EMAIL --role"}, nil)

	// Flags after the positional argument, roles repeated and comma-separated.
	out = e.ok("users", "invite", "bob@example.org", "--role", "model_builder", "--role", "data_custodian", "--expires", "24h")
	link := regexp.MustCompile(`http://\S+/invite/\S+`).FindString(out)
	if !strings.Contains(out, "Invited bob@example.org as model_builder,data_custodian") || link == "" || !strings.Contains(out, "not shown again") {
		t.Fatalf("users invite:\n%s", out)
	}
	check(t, []string{"users", "invite", "bad"}, e.run("", "users", "invite", "carol@example.org", "--role", "boss"), 1, nil, []string{`silo: unknown role "boss"`})
	check(t, []string{"users", "invite", "bad email"}, e.run("", "users", "invite", "carol", "--role", "admin"), 1, nil, []string{`"carol" is not a valid email address`})

	var inv silo.Invite
	e.json(&inv, "users", "invite", "dan@example.org", "--role", "admin")
	if inv.ID == 0 || inv.Link == "" || inv.Status != silo.InvitePending {
		t.Fatalf("users invite --json = %+v", inv)
	}
	check(t, []string{"users", "revoke-invite"}, e.run("", "users", "revoke-invite", strconv.FormatInt(inv.ID, 10)), 0, []string{"Revoked the invitation for dan@example.org."}, nil)
	e.json(&invites, "users", "invites")
	status := map[string]string{}
	for _, i := range invites {
		status[i.Email] = i.Status
	}
	if status["bob@example.org"] != silo.InvitePending || status["dan@example.org"] != silo.InviteRevoked {
		t.Fatalf("invite statuses = %v", status)
	}
	out = e.ok("users", "invites")
	if !regexp.MustCompile(`(?m)^\d+\s+bob@example\.org\s+model_builder,data_custodian\s+pending\s`).MatchString(out) {
		t.Fatalf("users invites:\n%s", out)
	}

	// Bob accepts through the SDK, then signs in with the CLI elsewhere.
	if _, err := client.New(e.url, "").AcceptInvite(ctx, client.AcceptInviteRequest{Token: link, Name: "Bob", Password: "bob's long password"}); err != nil {
		t.Fatal(err)
	}
	e.useConfig("bob")
	r := e.run("bob's long password\n", "login", "--server", e.url, "--email", "bob@example.org")
	check(t, []string{"login", "bob"}, r, 0, []string{"Signed in to " + e.url + " as bob@example.org (model_builder, data_custodian)."}, nil)
	r = e.run("", "users", "list")
	check(t, []string{"users", "list", "as bob"}, r, 1, nil, []string{"silo: you do not have permission to do this (it needs users:read"})
	e.useConfig("admin")

	var users []silo.User
	e.json(&users, "users", "list")
	if len(users) != 2 || users[1].Email != "bob@example.org" && users[0].Email != "bob@example.org" {
		t.Fatalf("users list --json = %+v", users)
	}

	check(t, []string{"set-roles"}, e.run("", "users", "set-roles", "bob@example.org", "admin,model_builder"), 0,
		[]string{"bob@example.org now has the roles: admin,model_builder."}, nil)
	var bob silo.User
	e.json(&bob, "users", "set-roles", "bob@example.org", "model_builder")
	if len(bob.Roles) != 1 || bob.Roles[0] != silo.RoleModelBuilder {
		t.Fatalf("set-roles --json = %+v", bob)
	}

	// The last admin stays.
	for _, args := range [][]string{
		{"users", "set-roles", adminEmail, "model_builder"},
		{"users", "disable", adminEmail},
		{"users", "remove", adminEmail},
	} {
		r := e.run("", args...)
		check(t, args, r, 1, nil, []string{"silo: the workspace must keep at least one active admin"})
		r = e.run("", append(args, "--json")...)
		if jerr := jsonError(t, r.err); r.code != 1 || jerr.Code != silo.ECONFLICT || !strings.Contains(jerr.Message, "at least one active admin") {
			t.Errorf("%v --json: %d %+v", args, r.code, jerr)
		}
	}

	check(t, []string{"disable"}, e.run("", "users", "disable", "bob@example.org"), 0, []string{"Disabled bob@example.org"}, nil)
	out = e.ok("users", "list")
	if !regexp.MustCompile(`(?m)^bob@example\.org\s+Bob\s+model_builder\s+disabled\s`).MatchString(out) {
		t.Fatalf("users list after disable:\n%s", out)
	}
	e.useConfig("bob")
	check(t, []string{"tokens list as disabled bob"}, e.run("", "tokens", "list"), 1, nil, []string{"silo: the account bob@example.org is disabled"})
	e.useConfig("admin")
	check(t, []string{"enable"}, e.run("", "users", "enable", "bob@example.org"), 0, []string{"Enabled bob@example.org."}, nil)

	check(t, []string{"remove"}, e.run("", "users", "remove", "bob@example.org"), 0, []string{"Removed bob@example.org."}, nil)
	check(t, []string{"remove again"}, e.run("", "users", "remove", "bob@example.org"), 1, nil, []string{"silo: "})
	if out := e.ok("users", "list"); strings.Contains(out, "bob@") {
		t.Fatalf("bob still listed:\n%s", out)
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	e.loginAdmin()

	var created silo.Token
	e.json(&created, "tokens", "create", "--name", "ci")
	if created.ID == "" || !strings.HasPrefix(created.Secret, silo.TokenPrefix) || created.Name != "ci" {
		t.Fatalf("tokens create --json = %+v", created)
	}
	// A mistyped scope: the error lists the valid ones.
	check(t, []string{"tokens create bad scope"}, e.run("", "tokens", "create", "--scope", "runner:read"), 1, nil,
		[]string{`unknown scope "runner:read": a scope is a permission, one of audit:read, datasets:manage, datasets:read`, "runners:read", "workspace:read"})
	var raw map[string]any
	json.Unmarshal([]byte(e.ok("tokens", "create", "--json")), &raw)
	if raw["id"] == nil || raw["token"] == nil {
		t.Fatalf("tokens create --json lacks id or token: %v", raw)
	}

	out := e.ok("tokens", "create", "--name", "read-only", "--scope", "runners:read", "--expires", "48h")
	scopedSecret := regexp.MustCompile(`silo_\S+`).FindString(out)
	if scopedSecret == "" || !strings.Contains(out, "scopes: runners:read") || !strings.Contains(out, "will not be shown again") {
		t.Fatalf("tokens create:\n%s", out)
	}

	out = e.ok("tokens", "list")
	for _, re := range []string{
		`(?m)^ID\s+NAME\s+SCOPES\s+STATUS\s+CREATED\s+EXPIRES\s+LAST USED$`,
		`(?m)^` + created.ID + `\s+ci\s+all\s+active\s.*never`,
		`(?m)^tok_\S+\s+read-only\s+runners:read\s+active\s`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("tokens list does not match %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, silo.TokenPrefix) {
		t.Fatalf("tokens list shows a secret:\n%s", out)
	}
	out = e.ok("tokens", "list", "--all")
	if !regexp.MustCompile(`(?m)^ID\s+OWNER\s+NAME\s+SCOPES`).MatchString(out) || !regexp.MustCompile(`(?m)^`+created.ID+`\s+admin@example\.org\s+ci\s+all\s`).MatchString(out) {
		t.Fatalf("tokens list --all:\n%s", out)
	}

	// A scoped token cannot list users, whether the token comes from a
	// flag or the environment (and a flag wins over the environment).
	r := e.run("", "users", "list", "--token", scopedSecret)
	check(t, []string{"users", "list", "scoped"}, r, 1, nil, []string{"silo: you do not have permission to do this (it needs users:read, which your roles or this token's scopes do not grant)\n"})
	t.Setenv("SILO_TOKEN", scopedSecret)
	r = e.run("", "users", "list", "--json")
	if jerr := jsonError(t, r.err); r.code != 1 || jerr.Code != silo.EFORBIDDEN || r.out != "" {
		t.Fatalf("scoped users list --json: %d %+v %q", r.code, jerr, r.out)
	}
	e.ok("users", "list", "--token", created.Secret)
	t.Setenv("SILO_TOKEN", "")

	check(t, []string{"tokens", "revoke"}, e.run("", "tokens", "revoke", created.ID), 0, []string{"Revoked token " + created.ID + "."}, nil)
	r = e.run("", "users", "list", "--token", created.Secret)
	check(t, []string{"revoked token"}, r, 1, nil, []string{"silo: access token is not valid (revoked, expired or mistyped)"})
	out = e.ok("tokens", "list")
	if !regexp.MustCompile(`(?m)^` + created.ID + `\s+ci\s+all\s+revoked\s`).MatchString(out) {
		t.Fatalf("tokens list after revoke:\n%s", out)
	}
	check(t, []string{"revoke unknown"}, e.run("", "tokens", "revoke", "tok_nosuch"), 1, nil, []string{"silo: no token with id tok_nosuch"})

	// Revoking the CLI's own token says how to recover.
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	out = e.ok("tokens", "revoke", cfg.TokenID)
	if !strings.Contains(out, "That was the token this CLI signs in with") {
		t.Fatalf("revoking the CLI's token:\n%s", out)
	}
	check(t, []string{"after self-revoke"}, e.run("", "tokens", "list"), 1, nil, []string{"access token is not valid"})
}

func TestWorkspace(t *testing.T) {
	e := newEnv(t)
	e.loginAdmin()

	out := e.ok("workspace", "show")
	if !regexp.MustCompile(`(?m)^Plan:\s+community$`).MatchString(out) || !strings.Contains(out, "Billing email:") {
		t.Fatalf("workspace show:\n%s", out)
	}
	out = e.ok("workspace", "set", "--name", "acme-health", "--billing-email", "Billing@Acme.example", "--billing-contact", "Jo Finance", "--plan", "team")
	for _, re := range []string{`(?m)^Updated the workspace\.$`, `(?m)^Name:\s+acme-health$`, `(?m)^Billing email:\s+billing@acme\.example$`, `(?m)^Billing contact:\s+Jo Finance$`, `(?m)^Plan:\s+team$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("workspace set does not match %s:\n%s", re, out)
		}
	}

	r := e.run("", "workspace", "set", "--billing-email", "not-an-email")
	check(t, []string{"workspace", "set", "bad email"}, r, 1, nil, []string{`silo: billing email: "not-an-email" is not a valid email address`})
	r = e.run("", "workspace", "set", "--billing-email", "not-an-email", "--json")
	if jerr := jsonError(t, r.err); r.code != 1 || jerr.Code != silo.EINVALID || jerr.Field != "billing_email" {
		t.Fatalf("bad billing email --json: %d %+v", r.code, jerr)
	}
	check(t, []string{"bad plan"}, e.run("", "workspace", "set", "--plan", "gold"), 1, nil, []string{`unknown plan "gold"`})

	// Clearing one field leaves the others alone.
	var w silo.Workspace
	e.json(&w, "workspace", "set", "--billing-contact", "")
	if w.Name != "acme-health" || w.BillingContact != "" || w.BillingEmail != "billing@acme.example" || w.Plan != "team" {
		t.Fatalf("workspace after clearing the contact = %+v", w)
	}
	e.json(&w, "workspace", "show")
	if w.Name != "acme-health" || w.UpdatedAt.IsZero() {
		t.Fatalf("workspace show --json = %+v", w)
	}
}

func TestAudit(t *testing.T) {
	e := newEnv(t)
	e.loginAdmin()
	e.ok("users", "invite", "eve@example.org", "--role", "data_custodian")
	e.ok("tokens", "create", "--name", "audit-me")
	e.run("", "users", "remove", adminEmail) // refused, and recorded

	out := e.ok("audit", "list", "--since", "1h")
	for _, re := range []string{
		`(?m)^ID\s+TIME\s+ACTOR\s+ACTION\s+TARGET\s+OUTCOME\s+DETAIL$`,
		`admin@example\.org\s+user\.invite\s+eve@example\.org as data_custodian\s+success`,
		`admin@example\.org\s+token\.create\s+tok_\S+ \(audit-me\)\s+success`,
		`admin@example\.org\s+auth\.login\s+admin@example\.org\s+success`,
		`admin@example\.org\s+user\.remove\s+admin@example\.org\s+failed\s+the workspace must keep at least one active admin`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("audit list does not match %s:\n%s", re, out)
		}
	}

	var entries []silo.AuditEntry
	e.json(&entries, "audit", "list", "--limit", "2")
	if len(entries) != 2 || entries[0].ID <= entries[1].ID || entries[0].Action != "user.remove" {
		t.Fatalf("audit list --limit 2 --json = %+v", entries)
	}
	if r := e.run("", "audit", "list", "--since", "2999-01-01T00:00:00Z", "--json"); r.code != 0 || strings.TrimSpace(r.out) != "[]" {
		t.Fatalf("empty audit --json = %d %q", r.code, r.out)
	}
	check(t, []string{"audit", "future"}, e.run("", "audit", "list", "--since", "2999-01-01T00:00:00Z"), 0, []string{"No audit entries match"}, nil)

	// Filters narrow the log; --before pages back, and a full page says how.
	var filtered []silo.AuditEntry
	e.json(&filtered, "audit", "list", "--action", "user.", "--outcome", "failed")
	if len(filtered) != 1 || filtered[0].Action != "user.remove" {
		t.Errorf("audit list --action user. --outcome failed = %+v", filtered)
	}
	e.json(&filtered, "audit", "list", "--actor", adminEmail, "--target", "audit-me")
	if len(filtered) != 1 || filtered[0].Action != "token.create" {
		t.Errorf("audit list --actor --target = %+v", filtered)
	}
	e.json(&filtered, "audit", "list", "--action", "user%")
	if len(filtered) != 0 {
		t.Errorf("a filter's %% is matched literally: %+v", filtered)
	}
	e.json(&filtered, "audit", "list", "--before", strconv.FormatInt(entries[0].ID, 10), "--limit", "1")
	if len(filtered) != 1 || filtered[0].ID != entries[1].ID {
		t.Errorf("audit list --before: %+v, want entry %d", filtered, entries[1].ID)
	}
	check(t, []string{"audit", "page"}, e.run("", "audit", "list", "--limit", "1"), 0, []string{"Older entries: add --before "}, nil)
	check(t, []string{"audit", "bad outcome"}, e.run("", "audit", "list", "--outcome", "ok"), 1, nil, []string{`outcome "ok": use success, failed or denied`})
	check(t, []string{"audit", "bad since"}, e.run("", "audit", "list", "--since", "yesterday"), 1, nil, []string{`silo: since "yesterday" is neither a duration`})

	// Audit is for admins.
	var tok silo.Token
	e.json(&tok, "tokens", "create", "--scope", "workspace:read")
	check(t, []string{"audit", "scoped"}, e.run("", "audit", "list", "--token", tok.Secret), 1, nil, []string{"it needs audit:read"})
}

// TestServerChoice checks where the server and token come from: flags, then
// SILO_SERVER/SILO_TOKEN, then the saved login, and that the saved token is
// never sent to a different server.
func TestServerChoice(t *testing.T) {
	e := newEnv(t)
	e.loginAdmin()
	other := newEnv(t) // a second server; newEnv also switched SILO_CONFIG
	t.Setenv("SILO_CONFIG", filepath.Join(e.dir, "config-admin", "config.json"))

	check(t, []string{"flag server"}, e.run("", "users", "list", "--server", other.url), 1, nil, []string{"silo: not signed in to " + other.url})
	t.Setenv("SILO_SERVER", other.url)
	check(t, []string{"env server"}, e.run("", "users", "list"), 1, nil, []string{"silo: not signed in to " + other.url})
	// The flag wins over the environment.
	check(t, []string{"flag over env"}, e.run("", "workspace", "show", "--server", e.url), 0, []string{"Plan:"}, nil)
	t.Setenv("SILO_SERVER", "")

	t.Setenv("SILO_TOKEN", "silo_bogus")
	check(t, []string{"env token"}, e.run("", "workspace", "show"), 1, nil, []string{"access token is not valid"})
	t.Setenv("SILO_TOKEN", "")
	e.ok("workspace", "show")
}
