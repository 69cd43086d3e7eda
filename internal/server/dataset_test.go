package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

// patientsCSV returns a small CSV with an identifier, a secret column the
// custodian excludes, numbers, a category and nulls.
func patientsCSV(n int) string {
	var b strings.Builder
	b.WriteString("patient_id,ssn,age,bmi,smoker,readmitted\n")
	for i := 0; i < n; i++ {
		bmi := fmt.Sprintf("%.1f", 20+float64(i%15))
		if i%10 == 0 {
			bmi = ""
		}
		fmt.Fprintf(&b, "P%05d,999-00-%04d,%d,%s,%v,%d\n", i, i, 30+i%40, bmi, i%3 == 0, i%2)
	}
	return b.String()
}

// datasetEnv is a server with one local runner (agent in-process) whose
// storage root holds the test's files.
type datasetEnv struct {
	*env
	root string
	dc   *client.Client // a Data Custodian
	api  *client.Client // the admin
}

func newDatasetEnv(t *testing.T) *datasetEnv {
	e := newEnv(t)
	ag := newAgents(t, e)
	ctx := context.Background()
	root := t.TempDir()
	api := client.New(e.ts.URL, e.admin)
	r, err := api.RegisterRunner(ctx, silo.RunnerSpec{Name: "hospital-a", Provider: silo.ProviderLocal, StoragePath: "file://" + root, VCPU: 2, MemoryGB: 1})
	if err != nil {
		t.Fatal(err)
	}
	ag.Start(ctx, "hospital-a", r.Token, root, 2, 1024)
	eventually(t, "runner online", func() bool { return runnerStatus(t, api, "hospital-a") == silo.RunnerOnline })
	return &datasetEnv{env: e, root: root, api: api, dc: client.New(e.ts.URL, e.addUser("dc@example.org", "data_custodian"))}
}

func (d *datasetEnv) write(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(d.root, name)
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return "file://" + path
}

func TestDatasetConnect(t *testing.T) {
	de := newDatasetEnv(t)
	ctx := context.Background()
	privacy := silo.DefaultPrivacyControls()
	privacy.IdentifierColumns = []string{"patient_id"}
	privacy.ExcludedColumns = []string{"ssn"}
	uri := de.write(t, "patients/part-0.csv", patientsCSV(120))
	de.write(t, "patients/part-1.csv", patientsCSV(30))
	de.write(t, "patients/_SUCCESS", "")

	d, err := de.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "hospital_a", Runner: "hospital-a", URI: filepath.Dir(strings.TrimPrefix(uri, "file://")), Privacy: &privacy})
	if silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "file://") {
		t.Fatalf("URI without scheme: %v", err)
	}
	d, err = de.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "hospital_a", Runner: "hospital-a", URI: "file://" + filepath.Join(de.root, "patients") + "/", Description: "Admissions 2024", Privacy: &privacy})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != silo.DatasetConnecting || d.Owner != "dc@example.org" {
		t.Fatalf("registered = %+v", d)
	}
	d = waitDataset(t, de.dc, "hospital_a")
	if d.Status != silo.DatasetConnected || d.RowCount != 150 || d.Files != 2 || d.Format != "csv" {
		t.Fatalf("connected = %s %q rows=%d files=%d", d.Status, d.Error, d.RowCount, d.Files)
	}
	cols := map[string]silo.Column{}
	for _, c := range d.Columns {
		cols[c.Name] = c
	}
	if c := cols["ssn"]; !c.Excluded || c.Type != "excluded" || c.Count != 0 {
		t.Errorf("excluded column = %+v", c)
	}
	if c := cols["patient_id"]; !c.Identifier || c.Distinct != nil || c.Categories != nil || c.Mean != nil {
		t.Errorf("identifier column carries a summary: %+v", c)
	}
	if c := cols["bmi"]; c.Type != "float" || c.Nulls != 15 || c.Mean == nil {
		t.Errorf("bmi = %+v", c)
	}
	if c := cols["smoker"]; c.Type != "bool" || strings.Join(c.Categories, ",") != "false,true" {
		t.Errorf("smoker = %+v", c)
	}
	// Nothing of the rows reaches the API: no identifier or excluded value.
	raw, _ := json.Marshal(d)
	for _, leaked := range []string{"P00001", "999-00-0001"} {
		if strings.Contains(string(raw), leaked) {
			t.Fatalf("a cell value reached the API: %s", leaked)
		}
	}

	// Privacy edits: the owner may, another custodian may not; each edit is
	// audited and makes the runner connect again.
	other := client.New(de.ts.URL, de.addUser("dc2@example.org", "data_custodian"))
	stricter := privacy
	stricter.MinRecordsPerAggregate = 1000
	if _, err := other.UpdateDataset(ctx, "hospital_a", client.DatasetUpdate{Privacy: &stricter}); silo.ErrorCode(err) != silo.EFORBIDDEN || !strings.Contains(err.Error(), "owner (dc@example.org)") {
		t.Fatalf("another custodian edited: %v", err)
	}
	mb := client.New(de.ts.URL, de.addUser("mb@example.org", "model_builder"))
	if _, err := mb.RegisterDataset(ctx, silo.DatasetSpec{Name: "mine", Runner: "hospital-a", URI: uri}); silo.ErrorCode(err) != silo.EFORBIDDEN {
		t.Fatalf("model builder registered a dataset: %v", err)
	}
	if _, err := de.dc.UpdateDataset(ctx, "hospital_a", client.DatasetUpdate{Privacy: &stricter}); err != nil {
		t.Fatal(err)
	}
	d = waitDataset(t, de.dc, "hospital_a")
	if c := d.Columns[2]; c.Name != "age" || c.Mean != nil || c.Distinct != nil {
		t.Fatalf("with min_records 1000, age still has summaries: %+v", c)
	}
	entries, _ := de.api.ListAudit(ctx, client.AuditQuery{Limit: 100})
	var trail []string
	for _, a := range entries {
		if strings.HasPrefix(a.Action, "dataset.") {
			trail = append(trail, a.Action+":"+a.Outcome)
		}
	}
	for _, want := range []string{"dataset.register:success", "dataset.connected:success", "dataset.privacy:denied", "dataset.privacy:success"} {
		if !strings.Contains(strings.Join(trail, " "), want) {
			t.Errorf("audit lacks %s: %v", want, trail)
		}
	}

	// Attachments: stored, listed, downloadable, size-limited, audited.
	a, err := de.dc.AddAttachment(ctx, "hospital_a", "dictionary.csv", "text/csv", []byte("column,meaning\nage,years\n"))
	if err != nil || a.Size != 25 {
		t.Fatalf("attach = %+v, %v", a, err)
	}
	var buf bytes.Buffer
	if err := mb.DownloadAttachment(ctx, "hospital_a", a.ID, &buf); err != nil || buf.String() != "column,meaning\nage,years\n" {
		t.Fatalf("download = %q, %v", buf.String(), err)
	}
	if _, err := de.dc.AddAttachment(ctx, "hospital_a", "big.bin", "", make([]byte, silo.MaxAttachmentBytes+1)); silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized attachment: %v", err)
	}
	got, _ := de.dc.GetDataset(ctx, "hospital_a")
	if len(got.Attachments) != 1 || got.Attachments[0].Name != "dictionary.csv" {
		t.Fatalf("attachments = %+v", got.Attachments)
	}
}

// TestDatasetErrors: bad data gives the dataset status error with a reason a
// person can act on; paths outside the runner's root never reach the data.
func TestDatasetErrors(t *testing.T) {
	de := newDatasetEnv(t)
	ctx := context.Background()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.csv"), []byte("a,b\n1,2\n"), 0o644)
	os.Symlink(filepath.Join(outside, "secret.csv"), filepath.Join(de.root, "link.csv"))

	for _, tc := range []struct{ name, uri, want string }{
		{"ragged", de.write(t, "ragged.csv", "a,b,c\n1,2,3\n4,5\n"), "ragged row at line 3"},
		{"missing", "file://" + filepath.Join(de.root, "nope.csv"), "no file or folder"},
		{"junk", de.write(t, "junk.bin", "\x00\x01\x02\xff\xfe binary junk \x00\x00"), "not CSV or Parquet"},
		{"empty", de.write(t, "empty.csv", ""), "empty"},
		{"symlink_out", "file://" + filepath.Join(de.root, "link.csv"), "escapes the runner's storage root"},
		{"key_file", de.write(t, "server.key", "q3Z9vJr0b1Xk2Lw8YpN4tQe7Hs6Ua5Dc0Fg1Ij2Kl3M=\n"), "one long opaque token"},
		{"header_only", de.write(t, "header.csv", "age,bmi\n"), "no data rows"},
	} {
		if _, err := de.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "bad_" + tc.name, Runner: "hospital-a", URI: tc.uri}); err != nil {
			t.Fatalf("%s: register: %v", tc.name, err)
		}
		d := waitDataset(t, de.dc, "bad_"+tc.name)
		if d.Status != silo.DatasetError || !strings.Contains(d.Error, tc.want) {
			t.Errorf("%s: status %s, error %q; want error containing %q", tc.name, d.Status, d.Error, tc.want)
		}
	}
	// Refused by the server before the runner is asked.
	for _, tc := range []struct{ uri, want string }{
		{"file://" + filepath.Join(outside, "secret.csv"), "outside runner hospital-a's storage root"},
		{"file://" + de.root + "/../etc/passwd", ".."},
		{"s3://data.silo/x.csv", "must be at a file:// URI"},
		{"file://" + de.root + "/.silo/", "own state"},
		{"file://" + de.root + "/.silo/locations", "own state"},
	} {
		_, err := de.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "refused", Runner: "hospital-a", URI: tc.uri})
		if silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid containing %q", tc.uri, err, tc.want)
		}
	}
	if _, err := de.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "no_runner", Runner: "ghost", URI: "file:///x.csv"}); silo.ErrorCode(err) != silo.EINVALID || !strings.Contains(err.Error(), "ask a Workspace Administrator or a Model Builder") {
		t.Errorf("unknown runner: %v", err)
	}
}
