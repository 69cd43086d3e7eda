package server_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo/internal/server/servertest"
	"github.com/silofl/silo/internal/testsvc"
)

// TestAPIOnPostgres runs the black-box API tests again on PostgreSQL: every
// test of this package built on servertest's environment (newEnv or a
// federation, directly or through helpers), found by reading the test
// files, so a new API test is included without being listed. Left out:
// browser tests, which test pages, not the store; the TestFault… tests,
// which choose their stores themselves; and tests that work on the SQLite
// file itself (their body names dbPath). The tests run in a child test
// process with SILO_TEST_STORE=postgres, on this process's PostgreSQL
// server; to run one of them on PostgreSQL by hand:
//
//	SILO_TEST_STORE=postgres go test ./internal/server -run TestTokens
func TestAPIOnPostgres(t *testing.T) {
	if servertest.Store() != "sqlite" {
		t.Skip("already running on " + servertest.Store())
	}
	if testing.Short() {
		t.Skip("-short: the API tests run on SQLite only")
	}
	admin := testsvc.PostgresServer(t)
	tests := apiTests(t)
	if len(tests) < 20 {
		t.Fatalf("found only %d tests built on newEnv: %v", len(tests), tests)
	}
	args := []string{"-test.run", "^(" + strings.Join(tests, "|") + ")$", "-test.count=1", "-test.v"}
	if d, ok := t.Deadline(); ok {
		// The child stops (and says where it was) before this test's
		// deadline kills the lot.
		args = append(args, "-test.timeout="+(time.Until(d)*9/10).Round(time.Second).String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SILO_TEST_POSTGRES="+admin, servertest.StoreEnv+"=postgres")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	ran := regexp.MustCompile(`(?m)^--- (PASS|FAIL|SKIP): (\w+)`).FindAllStringSubmatch(out.String(), -1)
	var failed, skipped []string
	for _, m := range ran {
		switch m[1] {
		case "FAIL":
			failed = append(failed, m[2])
		case "SKIP":
			skipped = append(skipped, m[2])
		}
	}
	if err != nil || len(failed) > 0 {
		t.Fatalf("on PostgreSQL: %v; failed: %v\n%s", err, failed, out.String())
	}
	if len(ran) != len(tests) || len(skipped) > 0 {
		t.Fatalf("on PostgreSQL %d of %d tests ran, skipped: %v\n%s", len(ran), len(tests), skipped, out.String())
	}
	t.Logf("%d API tests passed on PostgreSQL", len(ran))
}

// apiTests returns the names of this package's tests that reach newEnv or
// servertest.NewFederation through any chain of calls, leaving out those
// that drive a browser, the fault tests and those that open the SQLite file.
func apiTests(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string][]string{}  // function (or method) name -> names it calls
	sqliteFile := map[string]bool{} // functions whose body names the SQLite file
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok && (sel.Sel.Name == "dbPath" || sel.Sel.Name == "DBPath") {
					sqliteFile[fn.Name.Name] = true
				}
				if c, ok := n.(*ast.CallExpr); ok {
					switch f := c.Fun.(type) {
					case *ast.Ident:
						calls[fn.Name.Name] = append(calls[fn.Name.Name], f.Name)
					case *ast.SelectorExpr:
						calls[fn.Name.Name] = append(calls[fn.Name.Name], f.Sel.Name)
					}
				}
				return true
			})
		}
	}
	reaches := func(from string, targets ...string) bool {
		seen := map[string]bool{}
		var walk func(string) bool
		walk = func(name string) bool {
			if slices.Contains(targets, name) {
				return true
			}
			if seen[name] {
				return false
			}
			seen[name] = true
			return slices.ContainsFunc(calls[name], walk)
		}
		return walk(from)
	}
	var out []string
	for name := range calls {
		if strings.HasPrefix(name, "Test") && !strings.HasPrefix(name, "TestFault") && name != "TestAPIOnPostgres" && !sqliteFile[name] &&
			reaches(name, "newEnv", "NewFederation") && !reaches(name, "newChromium", "NewChromium") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
