package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/internal/seal"
	"github.com/silofl/silo/model"
)

// writePatients writes n rows: a unique ssn and name, a ward (A for most
// rows, B for a few, C for two), an age and a 0/1 outcome.
func writePatients(t testing.TB, path string, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("ssn,name,ward,age,y\n")
	for i := range n {
		ward := "A"
		switch {
		case i%40 == 7:
			ward = "C" // rare
		case i%5 == 1:
			ward = "B"
		}
		fmt.Fprintf(&b, "999-00-%04d,Person %d,%s,%d,%d\n", i, i, ward, 20+i%50, i%2)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return "file://" + path
}

var patientSchema = []silo.ColumnType{{Name: "ssn", Type: "string"}, {Name: "name", Type: "string"}, {Name: "ward", Type: "string"}, {Name: "age", Type: "int"}, {Name: "y", Type: "int"}}

func statsOn(cfg *Config, dataset, uri string, privacy silo.PrivacyControls, features ...string) (*silo.StatsOutput, error) {
	p, _ := json.Marshal(silo.StatsPayload{TrainingData: silo.TrainingData{Session: "s", Dataset: dataset, URI: uri, Schema: patientSchema, Privacy: privacy, Fraction: 0.2, Seed: 1},
		TaskType: "classification", Target: "y", Features: features})
	raw, err := runStats(context.Background(), &Task{Task: &silo.Task{Payload: p}}, newTaskLog(nil, "t", slog.New(slog.DiscardHandler)), cfg)
	if err != nil {
		return nil, err
	}
	var out silo.StatsOutput
	return &out, json.Unmarshal(raw, &out)
}

// TestSameDataKeepsItsControls is the re-registration attack: a second
// dataset on the same file — by another name, through a link, or as the
// folder holding it — with no identifier columns and min_records 1 gets
// nothing its first registration withholds.
func TestSameDataKeepsItsControls(t *testing.T) {
	root := t.TempDir()
	uri := writePatients(t, filepath.Join(root, "crm", "patients.csv"), 400)
	if err := os.Symlink(filepath.Join(root, "crm"), filepath.Join(root, "alias")); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{StorageRoot: root, cache: &dataCache{}}
	strict := silo.DefaultPrivacyControls()
	strict.IdentifierColumns, strict.MinRecordsPerAggregate = []string{"ssn", "name"}, 20
	if err := connect(cfg, "patients", uri, strict); err != nil {
		t.Fatal(err)
	}
	lenient := silo.DefaultPrivacyControls()
	lenient.MinRecordsPerAggregate = 1
	for _, again := range []struct{ name, uri string }{
		{"copy", uri},
		{"through_a_link", "file://" + filepath.Join(root, "alias", "patients.csv")},
		{"the_folder", "file://" + filepath.Join(root, "crm") + "/"},
		{"the_whole_root", "file://" + root},
	} {
		t.Run(again.name, func(t *testing.T) {
			out, err := connectOutput(cfg, again.name, again.uri, lenient)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range out.Columns {
				if (c.Name == "ssn" || c.Name == "name") && (!c.Identifier || c.Distinct != nil || c.Categories != nil) {
					t.Errorf("%s reported as %+v: the first registration made it an identifier", c.Name, c)
				}
				if c.Name == "ward" && slices.Contains(c.Categories, "C") {
					t.Errorf("ward's categories %v show C, seen in fewer than 20 rows", c.Categories)
				}
			}
			if _, err := statsOn(cfg, again.name, again.uri, lenient, "ssn"); err == nil || !strings.Contains(err.Error(), "is an identifier") || !strings.Contains(err.Error(), "dataset patients") {
				t.Fatalf("ssn as a feature: %v", err)
			}
			st, err := statsOn(cfg, again.name, again.uri, lenient, "ward", "age")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := st.Categories["ward"]["C"]; ok {
				t.Errorf("the statistics show ward C: %v", st.Categories["ward"])
			}
		})
	}
	// A dataset never connected on this runner is refused, whatever its name.
	if _, err := statsOn(cfg, "never", uri, lenient, "age"); err == nil || !strings.Contains(err.Error(), "never connected") {
		t.Fatalf("unconnected dataset: %v", err)
	}
	// Deregistered, the first dataset's controls stop binding the data.
	if _, err := runDeregister(context.Background(), &Task{Task: &silo.Task{Payload: mustJSON(silo.DeregisterPayload{Dataset: "patients", URI: uri})}}, newTaskLog(nil, "t", slog.New(slog.DiscardHandler)), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := statsOn(cfg, "copy", uri, lenient, "name", "age"); err == nil || !strings.Contains(err.Error(), "occur only once") {
		t.Fatalf("after deregistration, name is no longer an identifier but still identifies people: %v", err)
	}
	if _, err := statsOn(cfg, "patients", uri, strict, "age"); err == nil || !strings.Contains(err.Error(), "never connected") {
		t.Fatalf("a deregistered dataset is still usable: %v", err)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestStateDirIsNeverData: the runner's own state can never be a dataset,
// be read through a link, or be written by a prediction.
func TestStateDirIsNeverData(t *testing.T) {
	root := t.TempDir()
	cfg := &Config{StorageRoot: root, cache: &dataCache{}}
	uri := writePatients(t, filepath.Join(root, "p.csv"), 100)
	if err := connect(cfg, "p", uri, silo.DefaultPrivacyControls()); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(root, ".silo")
	if err := os.Symlink(state, filepath.Join(root, "innocent")); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"file://" + state + "/", "file://" + state + "/locations", "file://" + root + "/innocent/"} {
		if err := connect(cfg, "steal", u, silo.DefaultPrivacyControls()); err == nil || !strings.Contains(err.Error(), "own state") {
			t.Errorf("connect %s: %v", u, err)
		}
	}
	if err := cfg.checkOutput(mustURI(t, "file://"+state+"/locations/x.json")); err == nil {
		t.Error("a prediction may be written into the runner's state")
	}
	if err := cfg.checkOutput(mustURI(t, "file://"+root+"/p.csv")); err == nil {
		t.Error("a prediction may overwrite the data")
	}
	if err := cfg.checkOutput(mustURI(t, "file://"+root+"/predictions/p/s-final.csv")); err != nil {
		t.Errorf("a prediction in predictions/ is refused: %v", err)
	}
	if err := cfg.checkOutput(mustURI(t, "s3://bank.silo/crm/p.csv")); err == nil {
		t.Error("a prediction may overwrite S3 data")
	}
}

// TestSealingKeyIsNoDataset: the attack that found the sealing key file
// readable as a dataset: even on a runner whose storage holds it, the key
// never comes back as a column name or in an error.
func TestSealingKeyIsNoDataset(t *testing.T) {
	root := t.TempDir()
	keyFile := filepath.Join(root, "server.key")
	if _, err := seal.LoadOrCreateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(keyFile)
	cfg := &Config{StorageRoot: root, cache: &dataCache{}}
	out, err := connectOutput(cfg, "key", "file://"+keyFile, silo.DefaultPrivacyControls())
	if err == nil {
		t.Fatalf("the key file connected as a dataset: %+v", out)
	}
	secret := strings.TrimSpace(string(key))
	if strings.Contains(err.Error(), secret) || len(secret) < 16 {
		t.Fatalf("the error repeats the key: %v", err)
	}
}

func mustURI(t *testing.T, s string) blob.URI {
	t.Helper()
	u, err := blob.ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestIdentifierInDisguise: a categorical feature whose values mostly
// occur once is refused with the reason.
func TestIdentifierInDisguise(t *testing.T) {
	root := t.TempDir()
	cfg := &Config{StorageRoot: root, cache: &dataCache{}}
	uri := writePatients(t, filepath.Join(root, "p.csv"), 200)
	if err := connect(cfg, "p", uri, silo.DefaultPrivacyControls()); err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"ssn", "name"} {
		if _, err := statsOn(cfg, "p", uri, silo.DefaultPrivacyControls(), col); err == nil || !strings.Contains(err.Error(), "identifies people") {
			t.Errorf("%s as a categorical feature: %v", col, err)
		}
	}
	if _, err := statsOn(cfg, "p", uri, silo.DefaultPrivacyControls(), "ward"); err != nil {
		t.Errorf("ward refused: %v", err)
	}
}

// TestRareCategoriesWithheldFromTraining: a model whose category list
// names a value this runner holds fewer than min_records times (a server's
// guess, or another runner's common value) learns nothing from it here.
func TestRareCategoriesWithheldFromTraining(t *testing.T) {
	root := t.TempDir()
	cfg := &Config{StorageRoot: root, cache: &dataCache{}}
	uri := writePatients(t, filepath.Join(root, "p.csv"), 400)
	privacy := silo.DefaultPrivacyControls()
	privacy.MinRecordsPerAggregate = 20
	if err := connect(cfg, "p", uri, privacy); err != nil {
		t.Fatal(err)
	}
	prep := model.Preprocessing{Task: "classification", Target: "y", Classes: []string{"0", "1"}, TargetType: "int",
		Features: []model.Feature{{Name: "ward", Type: "string", Kind: model.Categorical, Categories: []string{"A", "B", "C", "Person 3"}}}}
	spec := ml.Spec{Package: ml.PackageGLM, Task: ml.Classification, NumFeatures: prep.Width(), Classes: prep.Classes}
	m, err := ml.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	setup := &silo.TrainingSetup{TrainingData: silo.TrainingData{Session: "s", Dataset: "p", URI: uri, Schema: patientSchema, Privacy: privacy, Fraction: 0.2, Seed: 1}}
	setup.Spec, _ = json.Marshal(spec)
	setup.Preprocessing, _ = json.Marshal(prep)
	_, _, data, _, err := load(context.Background(), cfg, newTaskLog(nil, "t", slog.New(slog.DiscardHandler)), setup, m.MarshalBinaryParams())
	if err != nil {
		t.Fatal(err)
	}
	count := func(d ml.Dataset, col int) (n int) {
		for i := range d.Len() {
			if d.X.At(i, col) != 0 {
				n++
			}
		}
		return n
	}
	if count(data.train, 0) == 0 || count(data.train, 1) == 0 {
		t.Fatal("common wards A and B are not encoded")
	}
	if n := count(data.train, 2) + count(data.test, 2); n != 0 {
		t.Errorf("ward C (in 10 rows, fewer than 20) is encoded in %d rows", n)
	}
}
