package server_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server"
)

var update = flag.Bool("update", false, "rewrite docs/permissions.md from the code")

// TestPermissionsDoc keeps docs/permissions.md in step with the permission
// matrix and the route table: run with -update after changing either.
func TestPermissionsDoc(t *testing.T) {
	e := newEnv(t)
	got := permissionsDoc(e.srv.Routes())
	path := filepath.Join("..", "..", "docs", "permissions.md")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./internal/server -run TestPermissionsDoc -update)", err)
	}
	if string(want) != got {
		t.Fatalf("docs/permissions.md is out of date: run go test ./internal/server -run TestPermissionsDoc -update")
	}
}

func permissionsDoc(routes []server.RouteRule) string {
	var b strings.Builder
	b.WriteString("# Permissions\n\nGenerated from the code (`silo.RolePermissions` and the server's route table) by\n" +
		"`go test ./internal/server -run TestPermissionsDoc -update`; a test fails when it is out of date.\n\n" +
		"## Roles\n\n| permission | " + strings.Join(roleTitles(), " | ") + " |\n|---|" + strings.Repeat("---|", len(silo.Roles)) + "\n")
	for _, p := range silo.AllPermissions() {
		fmt.Fprintf(&b, "| `%s` |", p)
		for _, r := range silo.Roles {
			mark := ""
			if silo.Can([]silo.Role{r}, p) {
				mark = "yes"
			}
			fmt.Fprintf(&b, " %s |", mark)
		}
		b.WriteString("\n")
	}
	b.WriteString("\nEvery signed-in user holds `" + strings.Join(everyonePerms(), "`, `") + "`.\n" +
		"A Data Custodian's `datasets:manage` covers only datasets they own, and `sessions:read` only sessions that use them.\n" +
		"A Model Builder's `sessions:read`, `models:download` and `predictions:run` cover only sessions all of whose datasets are open to them (`allowed_users`); admins see every session.\n" +
		"`runners:manage` changes (edits, deregisters, re-tokens, provisions) only runners the user registered, or any runner for admins; diagnostics may be queued on any.\n" +
		"A runner's task list shows every reader the tasks' metadata; outputs and logs only to those who may see what a task serves (its session, its dataset); payloads and one client's statistics, updates and evaluations to no one.\n" +
		"A scoped access token carries a subset of its owner's permissions and lives at most 30 days; tokens it creates expire no later than it and are revoked with it.\n" +
		"There is always at least one active admin: removing, demoting or disabling the last one is refused.\n\n" +
		"## Routes\n\n`public`: no sign-in; `signed_in`: any signed-in user; otherwise the permission needed.\n\n| method | path | access | kind |\n|---|---|---|---|\n")
	sorted := slices.Clone(routes)
	slices.SortFunc(sorted, func(a, b server.RouteRule) int { return strings.Compare(a.Path+" "+a.Method, b.Path+" "+b.Method) })
	for _, rt := range sorted {
		kind := "API"
		if rt.Page {
			kind = "page"
		}
		fmt.Fprintf(&b, "| %s | `%s` | `%s` | %s |\n", rt.Method, rt.Path, rt.Access, kind)
	}
	return b.String()
}

func roleTitles() []string {
	var out []string
	for _, r := range silo.Roles {
		out = append(out, fmt.Sprintf("%s (`%s`)", r.Title(), r))
	}
	return out
}

func everyonePerms() []string {
	var out []string
	for _, p := range silo.PermissionsOf(nil) {
		out = append(out, string(p))
	}
	return out
}
