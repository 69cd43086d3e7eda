package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server/servertest"
)

// examplesDir is the repository's examples/ folder, whose files the docs
// point users at.
var examplesDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples")
}()

func readExample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeStrict decodes an example as the CLI and the API do: unknown keys
// are mistakes.
func decodeStrict(t *testing.T, name string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(readExample(t, name))))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("examples/%s: %v", name, err)
	}
}

// TestExamples keeps examples/ valid: every file is taken by the real
// validators through the API, the session configs run to the end on the
// three hospitals of the quickstart's sample data (the datasets they name),
// and the privacy controls are registered and refuse what they should.
func TestExamples(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()

	// Runners: registered as they are, the Azure one with its secrets from
	// flags (they do not belong in a file).
	var aws, azure silo.RunnerSpec
	decodeStrict(t, "runner-aws.json", &aws)
	decodeStrict(t, "runner-azure.json", &azure)
	azure.ServicePrincipalSecret, azure.RuntimeServicePrincipalSecret = "sp-secret-from-a-flag", "rt-secret-from-a-flag"
	for _, spec := range []silo.RunnerSpec{aws, azure} {
		r, err := f.admin.RegisterRunner(ctx, spec)
		if err != nil {
			t.Fatalf("examples: runner %s: %v", spec.Name, err)
		}
		if r.Token == "" {
			t.Errorf("registering %s printed no token", r.Name)
		}
	}

	// Privacy controls: registered on hospital a's data, with the free-text
	// column the example excludes.
	var privacy silo.PrivacyControls
	decodeStrict(t, "privacy.json", &privacy)
	data, err := os.ReadFile(filepath.Join(f.roots["a"], "patients.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimRight(string(data), "\n"), "\n")
	for i, l := range lines {
		note := ",seen in clinic"
		if i == 0 {
			note = ",free_text_notes"
		}
		lines[i] = strings.TrimSuffix(l, "\n") + note + "\n"
	}
	if err := os.WriteFile(filepath.Join(f.roots["a"], "notes.csv"), []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "hospital_a_strict", Runner: "hospital-a",
		URI: "file://" + filepath.Join(f.roots["a"], "notes.csv"), Privacy: &privacy}); err != nil {
		t.Fatalf("examples/privacy.json: %v", err)
	}
	if d := servertest.WaitDataset(t, f.dc, "hospital_a_strict"); d.Status != silo.DatasetConnected || d.Privacy.MinRecordsPerAggregate != 20 {
		t.Fatalf("examples/privacy.json: dataset %s %s %v", d.Status, d.Error, d.Privacy)
	}
	// It is open only to the user it names, and only with DP.
	strict := strings.Replace(string(readExample(t, "session-dp.json")), `["hospital_a", "hospital_b", "hospital_c"]`, `["hospital_a_strict"]`, 1)
	if _, err := f.api.CreateSession(ctx, []byte(strict)); silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "not open to mb@example.org") {
		t.Errorf("a session by a user privacy.json does not list: %v", err)
	}

	// Sessions: each example, as it is, to the end.
	for _, name := range []string{"session-glm.json", "session-ffnet.json", "session-dp.json"} {
		cfg, err := silo.ParseSessionConfig(readExample(t, name))
		if err != nil {
			t.Fatalf("examples/%s: %v", name, err)
		}
		s, err := f.api.CreateSession(ctx, readExample(t, name))
		if err != nil {
			t.Fatalf("examples/%s: %v", name, err)
		}
		s = servertest.WaitSession(t, f.api, s.ID)
		if s.Status != silo.SessionCompleted || s.Round != cfg.Rounds {
			t.Fatalf("examples/%s: %s at round %d: %s", name, s.Status, s.Round, s.StatusReason)
		}
		if cfg.DifferentialPrivacy != nil {
			for _, d := range cfg.Datasets {
				if e := s.EpsilonSpent[d]; !(e > 0 && e <= cfg.DifferentialPrivacy.Epsilon) {
					t.Errorf("examples/%s: epsilon spent on %s = %v", name, d, e)
				}
			}
		}
	}
}
