package silo

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The user documentation in docs/ is checked against the code's own types,
// so it cannot drift: a field added to a config without a row in its doc
// fails these tests, naming the field and the file to document it in.

// docKeys returns the keys a reference documents: the backquoted first cell
// of each table row ("| `task.target` | …").
func docKeys(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\|\\s*`([a-z0-9_.]+)`\\s*\\|")
	keys := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		keys[m[1]] = true
	}
	return keys
}

// jsonKeys lists the JSON keys of a config type, nested structs (and
// pointers to them) as dotted paths; maps, lists and other values are
// leaves.
func jsonKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			out = append(out, jsonKeys(f.Type, prefix)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
			out = append(out, jsonKeys(ft, prefix+name+".")...)
			continue
		}
		out = append(out, prefix+name)
	}
	return out
}

// TestSessionDocs: every key of SessionConfig, whatever session type adds
// it, has a row in docs/sessions.md, and every value the code offers
// (packages, families, strategies and their parameters, optimisers,
// activations, metrics, session types) is named there.
func TestSessionDocs(t *testing.T) {
	const doc = "docs/sessions.md"
	keys := docKeys(t, doc)
	for _, k := range jsonKeys(reflect.TypeOf(SessionConfig{}), "") {
		if !keys[k] {
			t.Errorf("%s does not document session config key %q: add a row for it in the section of the session type that uses it (common fields, hfl, prl, …), with its type, default, allowed values and an example", doc, k)
		}
	}
	b, _ := os.ReadFile(doc)
	values := slices.Concat(SessionTypes, ModelPackages, GLMFamilies, Strategies, Optimizers, Activations, MetricsFor("classification"), MetricsFor("regression"))
	for _, params := range StrategyParams {
		values = append(values, params...)
	}
	for _, v := range values {
		if !strings.Contains(string(b), "`"+v+"`") {
			t.Errorf("%s does not name the value %q the code accepts: add it where its key is documented", doc, v)
		}
	}
}

// TestPrivacyDocs: every privacy control has a row and a section (what it
// refuses) in docs/privacy.md, and a line of CLI help.
func TestPrivacyDocs(t *testing.T) {
	const doc = "docs/privacy.md"
	keys := docKeys(t, doc)
	b, _ := os.ReadFile(doc)
	for _, k := range jsonKeys(reflect.TypeOf(PrivacyControls{}), "") {
		if !keys[k] {
			t.Errorf("%s does not document privacy control %q: add a row to its table", doc, k)
		}
		if !strings.Contains(string(b), "\n### "+k+"\n") {
			t.Errorf("%s has no section \"### %s\" saying what it allows and refuses", doc, k)
		}
		if PrivacyFieldHelp(k) == "" {
			t.Errorf("privacy control %q has no line in privacyFieldHelp ('silo datasets register -h')", k)
		}
	}
	for _, v := range SessionTypes {
		if !strings.Contains(string(b), "`"+v+"`") {
			t.Errorf("%s does not name session type %q", doc, v)
		}
	}
}

// TestRunnerDocs: every runner field has a row in docs/runners.md and a line
// of CLI help, and every provider a section.
func TestRunnerDocs(t *testing.T) {
	const doc = "docs/runners.md"
	keys := docKeys(t, doc)
	b, _ := os.ReadFile(doc)
	for _, k := range jsonKeys(reflect.TypeOf(RunnerSpec{}), "") {
		if !keys[k] {
			t.Errorf("%s does not document runner field %q: add a row to the table of each provider that takes it, with its rule and default", doc, k)
		}
		if RunnerFieldHelp(k) == "" {
			t.Errorf("runner field %q has no line in runnerFieldHelp ('silo runners register -h')", k)
		}
	}
	for _, title := range []string{"## Local", "## AWS", "## Azure", "### Deploy an AWS runner", "### Deploy an Azure runner", "## Networking"} {
		if !strings.Contains(string(b), "\n"+title) {
			t.Errorf("%s has no section %q", doc, title)
		}
	}
}

// internalDocs are references for the people who build Silo; users never
// see them, so user-facing text may not point at them.
var internalDocs = regexp.MustCompile(`SPEC|§|DESIGN\.md`)

// TestUserTextNamesNoInternalDocs: what users read — the README and every
// Markdown file shipped with the product, the UI's templates, and every
// string in the Go code (CLI usage and errors, API errors, route summaries
// and the OpenAPI document are all string literals) — refers to no document
// outside the repository, and every relative link in the Markdown resolves.
func TestUserTextNamesNoInternalDocs(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || name == "bench") {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(name, ".md"), strings.HasSuffix(name, ".html"), strings.HasSuffix(name, ".ipynb"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(b), "\n") {
				if m := internalDocs.FindString(line); m != "" {
					t.Errorf("%s:%d refers to %q, a document users do not have: say it in the words of the product, or link a file in the repository", path, i+1, m)
				}
			}
			if strings.HasSuffix(name, ".md") {
				checkLinks(t, path, string(b))
			}
		case strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go"):
			checkGoStrings(t, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkGoStrings reports string literals of a Go file that name an internal
// document. Comments are for developers and are not checked.
func checkGoStrings(t *testing.T, path string) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			s = lit.Value
		}
		if m := internalDocs.FindString(s); m != "" {
			t.Errorf("%s: a string refers to %q, a document users do not have: %.80q", fset.Position(lit.Pos()), m, s)
		}
		return true
	})
}

// mdLink finds Markdown links and their targets.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// checkLinks reports relative links of a Markdown file whose target is not
// in the repository.
func checkLinks(t *testing.T, path, text string) {
	for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
		target := m[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		target, _, _ = strings.Cut(target, "#")
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), target)); err != nil {
			t.Errorf("%s links to %s, which is not in the repository", path, m[1])
		}
	}
}
