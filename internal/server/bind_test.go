package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/model"
)

// TestLocalRunnersConfined is the attack that read the server's key: a
// Model Builder registers a local runner over the server's data directory
// and starts it from the server. Only admins start runners on the server's
// machine, and only over a folder inside --local-runners-root, links
// resolved; a server without that folder starts none.
func TestLocalRunnersConfined(t *testing.T) {
	e := newEnv(t)
	newAgents(t, e)
	ctx := context.Background()
	admin := client.New(e.ts.URL, e.admin)
	mb := client.New(e.ts.URL, e.addUser("mb@example.org", "model_builder"))
	dataDir := filepath.Dir(e.dbPath)
	root := e.srv.LocalRunnersRoot

	register := func(name, path string) {
		t.Helper()
		if _, err := mb.RegisterRunner(ctx, silo.RunnerSpec{Name: name, Provider: silo.ProviderLocal, StoragePath: "file://" + path, VCPU: 1, MemoryGB: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// Registering is fine: such a runner may run on another machine.
	register("thief", dataDir)
	if _, err := mb.StartRunner(ctx, "thief"); silo.ErrorCode(err) != silo.EFORBIDDEN {
		t.Fatalf("a Model Builder started a runner on the server's machine: %v", err)
	}
	if _, err := admin.StartRunner(ctx, "thief"); silo.ErrorCode(err) != silo.EFORBIDDEN || !strings.Contains(err.Error(), "not a folder inside this server's folder for runners") {
		t.Fatalf("a runner over the server's data dir was started: %v", err)
	}
	// A link inside the folder leading to the data dir is no way around it.
	if err := os.Symlink(dataDir, filepath.Join(root, "innocent")); err != nil {
		t.Fatal(err)
	}
	register("linked", filepath.Join(root, "innocent"))
	if _, err := admin.StartRunner(ctx, "linked"); silo.ErrorCode(err) != silo.EFORBIDDEN {
		t.Fatalf("a runner through a link to the data dir was started: %v", err)
	}
	// The folder itself holds every runner's storage: no runner gets it.
	register("greedy", root)
	if _, err := admin.StartRunner(ctx, "greedy"); silo.ErrorCode(err) != silo.EFORBIDDEN {
		t.Fatalf("a runner over the whole folder was started: %v", err)
	}
	// Runners inside it start; one nested in another's storage does not.
	register("hospital-a", filepath.Join(root, "hospital-a"))
	if _, err := admin.StartRunner(ctx, "hospital-a"); err != nil {
		t.Fatal(err)
	}
	register("nested", filepath.Join(root, "hospital-a", "nested"))
	if _, err := admin.StartRunner(ctx, "nested"); silo.ErrorCode(err) != silo.ECONFLICT || !strings.Contains(err.Error(), "overlaps runner hospital-a") {
		t.Fatalf("a runner inside another's storage: %v", err)
	}
	if _, err := mb.StopRunner(ctx, "hospital-a"); silo.ErrorCode(err) != silo.EFORBIDDEN {
		t.Fatalf("a Model Builder stopped a runner on the server's machine: %v", err)
	}
	denied := 0
	entries, _ := admin.ListAudit(ctx, client.AuditQuery{Limit: 200})
	for _, a := range entries {
		if a.Action == "runner.start" && a.Outcome == silo.OutcomeDenied {
			denied++
		}
	}
	if denied < 3 {
		t.Errorf("audit has %d denied runner starts, want the refusals recorded", denied)
	}

	// A server given no folder for runners starts none, and says how.
	e2 := newEnv(t)
	newAgents(t, e2)
	e2.srv.LocalRunnersRoot = ""
	admin2 := client.New(e2.ts.URL, e2.admin)
	if _, err := admin2.RegisterRunner(ctx, silo.RunnerSpec{Name: "edge-1", Provider: silo.ProviderLocal, StoragePath: "file://" + t.TempDir(), VCPU: 1, MemoryGB: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin2.StartRunner(ctx, "edge-1"); silo.ErrorCode(err) != silo.ECONFLICT || !strings.Contains(err.Error(), "--local-runners-root") {
		t.Fatalf("a server without a folder for runners: %v", err)
	}
}

// TestCheckLocalRunnersRoot: the folder for runners shares nothing with
// the server and holds nothing the server did not create for runners.
func TestCheckLocalRunnersRoot(t *testing.T) {
	base := t.TempDir()
	data := filepath.Join(base, "data")
	os.MkdirAll(data, 0o700)
	key := filepath.Join(data, "server.key")
	os.WriteFile(key, []byte("k"), 0o600)
	protected := []string{data, key, filepath.Join(base, "config", "config.json")}
	for _, bad := range []string{data, filepath.Join(data, "runners"), base, "/", filepath.Join(base, "config")} {
		if _, err := server.CheckLocalRunnersRoot(bad, protected); err == nil || !strings.Contains(err.Error(), "the server's own") {
			t.Errorf("--local-runners-root %s: %v", bad, err)
		}
	}
	// A link to the data dir is the data dir.
	os.Symlink(data, filepath.Join(base, "link"))
	if _, err := server.CheckLocalRunnersRoot(filepath.Join(base, "link", "runners"), protected); err == nil {
		t.Error("a folder reached through a link into the data dir was accepted")
	}
	// A folder that already holds files is not the server's to give away.
	home := filepath.Join(base, "home")
	os.MkdirAll(home, 0o700)
	os.WriteFile(filepath.Join(home, ".ssh"), []byte("x"), 0o600)
	if _, err := server.CheckLocalRunnersRoot(home, protected); err == nil || !strings.Contains(err.Error(), "did not create for runners") {
		t.Errorf("a folder holding other files: %v", err)
	}
	// A new folder is created and marked; it is accepted again after
	// runners put their storage in it.
	runners := filepath.Join(base, "runners")
	got, err := server.CheckLocalRunnersRoot(runners, protected)
	if err != nil || got != runners {
		t.Fatalf("new folder: %q %v", got, err)
	}
	os.MkdirAll(filepath.Join(runners, "hospital-a"), 0o700)
	if _, err := server.CheckLocalRunnersRoot(runners, protected); err != nil {
		t.Fatalf("the server's own folder again: %v", err)
	}
	if _, err := server.CheckLocalRunnersRoot(" ", protected); err == nil {
		t.Error("an empty folder name was accepted")
	}
}

// writeCRM writes 400 rows: a unique ssn and name, a ward (C in 10 rows
// only), an age and a 0/1 outcome.
func writeCRM(t *testing.T, path string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("ssn,name,ward,age,y\n")
	for i := range 400 {
		ward := "A"
		switch {
		case i%40 == 7:
			ward = "C"
		case i%5 == 1:
			ward = "B"
		}
		fmt.Fprintf(&b, "999-00-%04d,Person %d,%s,%d,%d\n", i, i, ward, 20+i%50, (i/3)%2)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSameDataSharesControls is the re-registration attack: a second
// custodian registers the same file under another name with no identifier
// columns and min_records 1. Whatever dataset names the data, the strictest
// controls of every dataset on it bind it, on the server (refused up front,
// saying who set the control) and on the runner; the data has one epsilon
// budget; no rare value enters a model; and a server whose rows are edited
// behind its back still gets nothing past the runner.
func TestSameDataSharesControls(t *testing.T) {
	de := newDatasetEnv(t)
	ctx := context.Background()
	path := filepath.Join(de.root, "crm", "patients.csv")
	os.MkdirAll(filepath.Dir(path), 0o700)
	writeCRM(t, path)
	strict := silo.DefaultPrivacyControls()
	strict.IdentifierColumns, strict.MinRecordsPerAggregate, strict.EpsilonBudget, strict.MaxEpsilonPerSession = []string{"ssn", "name"}, 20, 5, 4
	if _, err := de.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "crm_a", Runner: "hospital-a", URI: "file://" + path, Privacy: &strict}); err != nil {
		t.Fatal(err)
	}
	if d := waitDataset(t, de.dc, "crm_a"); d.Status != silo.DatasetConnected {
		t.Fatalf("crm_a: %s", d.Error)
	}
	other := client.New(de.ts.URL, de.addUser("dc2@example.org", "data_custodian"))
	lenient := silo.DefaultPrivacyControls()
	lenient.MinRecordsPerAggregate, lenient.EpsilonBudget, lenient.MaxEpsilonPerSession = 1, 50, 10
	for name, uri := range map[string]string{"crm_b": "file://" + path, "crm_folder": "file://" + filepath.Dir(path) + "/"} {
		if _, err := other.RegisterDataset(ctx, silo.DatasetSpec{Name: name, Runner: "hospital-a", URI: uri, Privacy: &lenient}); err != nil {
			t.Fatal(err)
		}
		d := waitDataset(t, other, name)
		if d.Status != silo.DatasetConnected {
			t.Fatalf("%s: %s", name, d.Error)
		}
		// The runner reported it under the strict controls.
		for _, c := range d.Columns {
			if (c.Name == "ssn" || c.Name == "name") && (!c.Identifier || c.Distinct != nil) {
				t.Errorf("%s column %+v: crm_a made it an identifier", name, c)
			}
			if c.Name == "ward" && slices.Contains(c.Categories, "C") {
				t.Errorf("%s shows ward C (10 rows, crm_a's floor 20)", name)
			}
		}
		eff := d.Effective
		if eff == nil || eff.Controls.MinRecordsPerAggregate != 20 || eff.Controls.EpsilonBudget != 5 || !slices.Contains(eff.Controls.IdentifierColumns, "ssn") ||
			!strings.Contains(strings.Join(eff.Sources["min_records_per_aggregate"], ","), "dataset crm_a") {
			t.Fatalf("%s's controls in effect = %+v", name, eff)
		}
	}

	mb := client.New(de.ts.URL, de.addUser("mb@example.org", "model_builder"))
	session := func(name string, datasets []string, edit func(m map[string]any)) (*silo.Session, error) {
		m := map[string]any{"name": name, "type": "hfl", "datasets": datasets, "min_clients": 1, "rounds": 2, "round_timeout": "2m",
			"task":      map[string]any{"type": "classification", "target": "y", "features": []string{"ward", "age"}},
			"model":     map[string]any{"package": "glm", "family": "binomial"},
			"optimizer": map[string]any{"name": "sgd", "learning_rate": 0.1, "batch_size": 32, "local_epochs": 1},
			"strategy":  map[string]any{"name": "fedavg"}, "validation": map[string]any{"fraction": 0.2}, "seed": 5}
		if edit != nil {
			edit(m)
		}
		b, _ := json.Marshal(m)
		return mb.CreateSession(ctx, b)
	}
	// Up front: the identifier crm_a declared cannot be a feature of crm_b.
	if _, err := session("steal-ssn", []string{"crm_b"}, func(m map[string]any) {
		m["task"].(map[string]any)["features"] = []string{"ssn", "age"}
	}); silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "column ssn of dataset crm_b is an identifier") {
		t.Fatalf("ssn as a feature of crm_b: %v", err)
	}
	if _, err := session("twice", []string{"crm_a", "crm_b"}, nil); silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "the same data") {
		t.Fatalf("the same data twice in a session: %v", err)
	}
	// No rare value enters the model.
	s, err := session("wards", []string{"crm_b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s = waitSession(t, mb, s.ID); s.Status != silo.SessionCompleted {
		t.Fatalf("session on crm_b: %s %s", s.Status, s.StatusReason)
	}
	doc, err := mb.LoadModel(ctx, s.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range doc.Preprocessing.Features {
		if f.Kind == model.Categorical && slices.Contains(f.Categories, "C") {
			t.Errorf("the model's categories for %s include C, seen in 10 rows: %v", f.Name, f.Categories)
		}
	}
	// One budget for the data: 4 spent through crm_a leaves 1 for crm_b.
	dp := func(m map[string]any) {
		m["differential_privacy"] = map[string]any{"epsilon": 4.0, "delta": 1e-5, "max_grad_norm": 1.0}
	}
	if s, err = session("dp-a", []string{"crm_a"}, dp); err != nil {
		t.Fatal(err)
	}
	if s = waitSession(t, mb, s.ID); s.Status != silo.SessionCompleted {
		t.Fatalf("DP session on crm_a: %s %s", s.Status, s.StatusReason)
	}
	if _, err := session("dp-b", []string{"crm_b"}, dp); silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "would exceed the budget") ||
		!strings.Contains(err.Error(), "dataset crm_a") {
		t.Fatalf("DP session on crm_b after crm_a spent the budget: %v", err)
	}
	if d, _ := other.GetDataset(ctx, "crm_b"); d.EpsilonSpent < 3.5 {
		t.Errorf("crm_b shows %g spent on its data, want crm_a's", d.EpsilonSpent)
	}

	// Behind the server's back its rows are loosened and its ledger wiped:
	// the server now accepts the session, the runner does not.
	db := openSQLite(t, de.dbPath)
	loose, _ := json.Marshal(lenient)
	sqlExec(t, db, "DELETE FROM privacy_ledger", fmt.Sprintf("UPDATE datasets SET privacy = '%s'", loose))
	if s, err = session("dp-again", []string{"crm_a"}, dp); err != nil {
		t.Fatalf("the edited server refused: %v", err)
	}
	if s = waitSession(t, mb, s.ID); s.Status != silo.SessionFailed || !strings.Contains(s.StatusReason, "refused by the runner") || !strings.Contains(s.StatusReason, "budget") {
		t.Fatalf("DP session past the runner's ledger: %s %s", s.Status, s.StatusReason)
	}

	// Deregistered, a dataset's controls stop binding the data, on the
	// server and on the runner, which the server tells.
	sqlExec(t, db, fmt.Sprintf("UPDATE datasets SET privacy = '%s' WHERE name = 'crm_a'", mustMarshal(strict)))
	if err := de.dc.DeregisterDataset(ctx, "crm_a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the runner forgets crm_a", func() bool {
		tasks, _ := de.api.RunnerTasks(ctx, "hospital-a")
		for _, task := range tasks {
			if task.Type == silo.TaskDeregister {
				if task.Status != silo.TaskQueued && task.Status != silo.TaskRunning && task.Status != silo.TaskSucceeded {
					t.Fatalf("deregister task %s: %s", task.Status, task.Error)
				}
				return task.Status == silo.TaskSucceeded
			}
		}
		return false
	})
	if d, _ := other.GetDataset(ctx, "crm_b"); d.Effective.Controls.MinRecordsPerAggregate != 1 {
		t.Errorf("after crm_a is deregistered, crm_b's min_records is %d", d.Effective.Controls.MinRecordsPerAggregate)
	}
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
