package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/model"
)

// TestSessionsCLI trains across two runners the server started, through the
// command line only: create, wait, metrics, models download, predict.
func TestSessionsCLI(t *testing.T) {
	e, _ := newLiveEnv(t)
	privacy := writeJSONFile(t, "privacy.json", map[string]any{"identifier_columns": []string{"patient_id"}})
	for _, h := range []string{"a", "b"} {
		root := filepath.Join(e.dir, "runners", h)
		os.MkdirAll(root, 0o700)
		data, _ := os.ReadFile("sampledata/hospital_" + h + ".csv")
		os.WriteFile(filepath.Join(root, "data.csv"), data, 0o600)
		e.ok("runners", "register", "--provider", "local", "--name", "hospital-"+h, "--storage-path", "file://"+root)
		e.ok("runners", "start", "hospital-"+h)
		e.waitStatus("hospital-"+h, silo.RunnerOnline)
		e.ok("datasets", "register", "--runner", "hospital-"+h, "--name", "hospital_"+h, "--uri", "file://"+filepath.Join(root, "data.csv"), "--privacy", privacy)
	}
	cfg := writeJSONFile(t, "session.json", map[string]any{
		"name": "cli-glm", "datasets": []string{"hospital_a", "hospital_b"}, "rounds": 3,
		"task":  map[string]any{"type": "classification", "target": "diagnosis"},
		"model": map[string]any{"package": "glm"}, "seed": 7,
	})
	var s silo.Session
	e.json(&s, "sessions", "create", "-f", cfg)
	if s.ID == "" || s.Rounds != 3 {
		t.Fatalf("create --json = %+v", s)
	}
	out := e.ok("sessions", "wait", s.ID)
	for _, want := range []string{"round 3/3", "Completed: accuracy"} {
		if !strings.Contains(out, want) {
			t.Errorf("wait output lacks %q:\n%s", want, out)
		}
	}
	var shown map[string]any
	e.json(&shown, "sessions", "show", s.ID)
	hasKeys(t, "sessions show --json", shown, "id", "name", "status", "round", "rounds", "status_reason")
	if shown["status"] != "completed" || shown["round"] != 3.0 {
		t.Fatalf("show = %v", shown)
	}
	// The metrics --json contract (SPEC §5).
	var m struct {
		Federated []map[string]float64         `json:"federated"`
		Clients   []map[string]json.RawMessage `json:"clients"`
	}
	e.json(&m, "sessions", "metrics", s.ID)
	if len(m.Federated) != 3 || m.Federated[2]["round"] != 3 || len(m.Clients) != 6 {
		t.Fatalf("metrics = %+v", m)
	}
	for _, k := range []string{"round", "dataset", "n_train", "n_test", "test_loss", "test_roc_auc"} {
		if _, ok := m.Clients[0][k]; !ok {
			t.Errorf("client metrics lack %s: %v", k, m.Clients[0])
		}
	}
	// Download the best model and load it with the SDK.
	path := filepath.Join(t.TempDir(), "model.json")
	e.ok("models", "download", s.ID, "--best", "-o", path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := model.Load(f)
	f.Close()
	if err != nil || !doc.Metadata.Best || len(doc.Spec.Classes) != 2 {
		t.Fatalf("downloaded model: %+v, %v", doc, err)
	}
	// Predict on hospital_a: rows and path, as Parquet this time.
	var pred silo.PredictOutput
	e.json(&pred, "predict", "--session", s.ID, "--dataset", "hospital_a", "--format", "parquet")
	if pred.Rows != 230 || !strings.HasSuffix(pred.Path, ".parquet") {
		t.Fatalf("predict = %+v", pred)
	}
	if fi, err := os.Stat(strings.TrimPrefix(pred.Path, "file://")); err != nil || fi.Size() == 0 {
		t.Fatalf("predictions file: %v", err)
	}
	// Errors: a missing config file, a bad config, an unknown session.
	check(t, nil, e.run("", "sessions", "create"), 2, nil, []string{"-f session.json is required"})
	bad := writeJSONFile(t, "bad.json", map[string]any{"name": "x", "datasets": []string{"hospital_a"}, "rounds": 1, "task": map[string]any{"type": "classification", "target": "diagnosis"}, "model": map[string]any{"package": "glm"}, "colour": 1})
	check(t, nil, e.run("", "sessions", "create", "-f", bad), 1, nil, []string{`unknown field "colour"`})
	check(t, nil, e.run("", "sessions", "show", "sess_nope"), 1, nil, []string{"no session sess_nope"})
}
