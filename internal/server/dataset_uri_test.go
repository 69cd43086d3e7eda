package server_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

// TestDatasetURICorrected: a dataset registered on a file that is not
// there ends in error; its owner (or an admin) corrects the URI and the
// runner connects again. Nobody else may move it, and it cannot be moved
// outside its runner's storage root or to another scheme.
func TestDatasetURICorrected(t *testing.T) {
	de := newDatasetEnv(t)
	ctx := context.Background()
	good := de.write(t, "patients.csv", patientsCSV(40))
	privacy := silo.DefaultPrivacyControls()
	privacy.IdentifierColumns = []string{"patient_id"}
	if _, err := de.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "admissions", Runner: "hospital-a", URI: "file://" + filepath.Join(de.root, "patient.csv"), Privacy: &privacy}); err != nil {
		t.Fatal(err)
	}
	if d := waitDataset(t, de.dc, "admissions"); d.Status != silo.DatasetError {
		t.Fatalf("a missing file: %s %q", d.Status, d.Error)
	}

	// Another custodian may not move it; a Model Builder has no right to.
	other := client.New(de.ts.URL, de.addUser("dc2@example.org", "data_custodian"))
	mb := client.New(de.ts.URL, de.addUser("mb@example.org", "model_builder"))
	for who, c := range map[string]*client.Client{"another custodian": other, "a model builder": mb} {
		if _, err := c.UpdateDataset(ctx, "admissions", client.DatasetUpdate{URI: &good}); silo.ErrorCode(err) != silo.EFORBIDDEN {
			t.Errorf("%s moved the dataset: %v", who, err)
		}
	}
	// Not outside the runner's root, nor to another scheme; nothing changes.
	for _, bad := range []string{"file:///etc/passwd", "file://" + de.root + "/../x.csv", "s3://data.silo/x.csv", ""} {
		_, err := de.dc.UpdateDataset(ctx, "admissions", client.DatasetUpdate{URI: &bad})
		if e, ok := err.(*silo.Error); !ok || e.Code != silo.EINVALID || e.Field != "uri" {
			t.Errorf("moving to %q: %v", bad, err)
		}
	}
	if d, _ := de.dc.GetDataset(ctx, "admissions"); !strings.HasSuffix(d.URI, "/patient.csv") {
		t.Fatalf("a refused move changed the URI to %s", d.URI)
	}

	// The owner corrects it: the runner reads the data again.
	d, err := de.dc.UpdateDataset(ctx, "admissions", client.DatasetUpdate{URI: &good})
	if err != nil || d.Status != silo.DatasetConnecting {
		t.Fatalf("correcting the URI: %+v, %v", d, err)
	}
	if d = waitDataset(t, de.dc, "admissions"); d.Status != silo.DatasetConnected || d.RowCount != 40 || d.URI != good {
		t.Fatalf("after correcting the URI: %s %q rows=%d uri=%s", d.Status, d.Error, d.RowCount, d.URI)
	}
	audit, _ := de.api.ListAudit(ctx, client.AuditQuery{Action: "dataset.uri"})
	if len(audit) != 1 || !strings.Contains(audit[0].Detail, "patient.csv to "+good) {
		t.Errorf("the move is not in the audit log: %+v", audit)
	}
}

// TestCancelRunnerTask: a diagnostics task nobody answers can be cancelled
// by those who manage runners; a session's or a dataset's task cannot be
// cancelled this way (that would break them), and a task is found only
// under its own runner.
func TestCancelRunnerTask(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	api := client.New(e.ts.URL, e.admin)
	for _, name := range []string{"idle-a", "idle-b"} {
		if _, err := api.RegisterRunner(ctx, silo.RunnerSpec{Name: name, Provider: silo.ProviderLocal, StoragePath: "file:///srv/" + name}); err != nil {
			t.Fatal(err)
		}
	}
	task, err := api.QueueDiagnostics(ctx, "idle-a", 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.CancelRunnerTask(ctx, "idle-b", task.ID); silo.ErrorCode(err) != silo.ENOTFOUND {
		t.Errorf("cancelled another runner's task: %v", err)
	}
	got, err := api.CancelRunnerTask(ctx, "idle-a", task.ID)
	if err != nil || got.Status != silo.TaskCancelled {
		t.Fatalf("cancel: %+v, %v", got, err)
	}
	if again, err := api.CancelRunnerTask(ctx, "idle-a", task.ID); err != nil || again.Status != silo.TaskCancelled {
		t.Errorf("cancelling twice: %+v, %v", again, err)
	}
	// A dataset's connect task is not cancelled by hand.
	if _, err := api.RegisterDataset(ctx, silo.DatasetSpec{Name: "waiting", Runner: "idle-a", URI: "file:///srv/idle-a/x.csv"}); err != nil {
		t.Fatal(err)
	}
	tasks, _ := api.RunnerTasks(ctx, "idle-a")
	for _, tk := range tasks {
		if tk.Type == silo.TaskConnect {
			if _, err := api.CancelRunnerTask(ctx, "idle-a", tk.ID); silo.ErrorCode(err) != silo.ECONFLICT {
				t.Errorf("cancelled a connect task: %v", err)
			}
		}
	}
	// Those who only read runners may not cancel.
	reader := client.New(e.ts.URL, e.addUser("dc@example.org", "data_custodian"))
	task, _ = api.QueueDiagnostics(ctx, "idle-a", 1, 64)
	if _, err := reader.CancelRunnerTask(ctx, "idle-a", task.ID); silo.ErrorCode(err) != silo.EFORBIDDEN {
		t.Errorf("a custodian cancelled a runner's task: %v", err)
	}
}
