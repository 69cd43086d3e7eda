package silo_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// allowedImports is the import picture of docs/architecture.md: what each
// package may import from the module. Nothing imports upward.
var allowedImports = map[string][]string{
	".":                          {},
	"client":                     {".", "model"},
	"model":                      {".", "internal/ml"},
	"cmd/silo":                   {".", "client", "model", "internal/blob", "internal/runner", "internal/seal", "internal/server", "internal/sqlstore", "internal/tabular", "internal/ui"},
	"internal/ui":                {".", "internal/httpjson", "internal/server", "internal/sqlstore"},
	"internal/server":            {".", "internal/blob", "internal/dp", "internal/httpjson", "internal/runnerapi", "internal/orchestrator", "internal/orchestrator/hfl", "internal/orchestrator/prl", "internal/provision", "internal/seal", "internal/sqlstore"},
	"internal/server/servertest": {".", "client", "internal/runner", "internal/server", "internal/sqlstore", "internal/testsvc", "internal/ui"},
	"internal/runnerapi":         {".", "internal/httpjson", "internal/orchestrator", "internal/sqlstore"},
	"internal/httpjson":          {"."},
	"internal/orchestrator":      {".", "internal/sqlstore"},
	"internal/orchestrator/hfl":  {".", "internal/dp", "internal/fl", "internal/ml", "internal/orchestrator", "internal/sqlstore", "model"},
	"internal/orchestrator/prl":  {".", "internal/orchestrator", "internal/psi", "internal/sqlstore"},
	"internal/runner":            {".", "client", "internal/blob", "internal/dp", "internal/ml", "internal/psi", "internal/tabular", "model"},
	"internal/psi":               {},
	"internal/provision":         {".", "internal/blob"},
	"internal/fl":                {".", "internal/ml"},
	"internal/sqlstore":          {"."},
	"internal/blob":              {"."},
	"internal/dp":                {},
	"internal/ml":                {},
	"internal/seal":              {},
	"internal/tabular":           {},
	"internal/testsvc":           {},
}

// TestImportPicture: every package's imports from the module (non-test
// files) are among those the architecture allows it; a new package must be
// placed in the picture.
func TestImportPicture(t *testing.T) {
	const module = "github.com/silofl/silo"
	imports := map[string]map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || path == "bench" || path == "python") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(path))
		if imports[pkg] == nil {
			imports[pkg] = map[string]bool{}
		}
		for _, spec := range f.Imports {
			p, _ := strconv.Unquote(spec.Path.Value)
			if p == module {
				imports[pkg]["."] = true
			} else if rest, ok := strings.CutPrefix(p, module+"/"); ok {
				imports[pkg][rest] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg, got := range imports {
		allowed, ok := allowedImports[pkg]
		if !ok {
			t.Errorf("package %s is not in the import picture (allowedImports, docs/architecture.md): place it there", pkg)
			continue
		}
		for imp := range got {
			if !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s, which the architecture does not allow it", pkg, imp)
			}
		}
	}
}
