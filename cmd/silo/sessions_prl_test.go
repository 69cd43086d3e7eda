package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/silofl/silo"
)

// TestLinkageCLI links two hospitals' referred patients through the command
// line only: sessions create --wait shows the linkage's progress and result,
// and sessions metrics prints each dataset's overlap (--json: the clients
// shape).
func TestLinkageCLI(t *testing.T) {
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
	cfg := writeJSONFile(t, "prl.json", map[string]any{
		"name": "cli-link", "type": "prl", "datasets": []string{"hospital_a", "hospital_b"},
		"id_columns": map[string][]string{"hospital_a": {"patient_id"}, "hospital_b": {"patient_id"}}, "normalize": []string{"trim", "lowercase"},
	})
	out := e.ok("sessions", "create", "-f", cfg, "--wait")
	for _, want := range []string{"Completed: linked 30 records across 2 datasets", "Overlap: silo sessions metrics"} {
		if !strings.Contains(out, want) {
			t.Errorf("create --wait output lacks %q:\n%s", want, out)
		}
	}
	id := strings.Fields(out[strings.Index(out, "silo sessions metrics ")+len("silo sessions metrics "):])[0]
	var m struct {
		Federated []any            `json:"federated"`
		Clients   []map[string]any `json:"clients"`
	}
	e.json(&m, "sessions", "metrics", id)
	if m.Federated != nil || len(m.Clients) != 2 {
		t.Fatalf("metrics --json = %+v", m)
	}
	hasKeys(t, "sessions metrics --json", m.Clients[0], "dataset", "n_records", "n_overlapped_records", "frac_overlapped")
	if m.Clients[0]["dataset"] != "hospital_a" || m.Clients[0]["n_records"] != 230.0 || m.Clients[1]["n_overlapped_records"] != 30.0 {
		t.Fatalf("metrics --json = %+v", m)
	}
	text := e.ok("sessions", "metrics", id)
	for _, want := range []string{"DATASET", "hospital_b", "190", "30", "0.1579"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics output lacks %q:\n%s", want, text)
		}
	}
}
