package runner

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/testsvc"
)

// cloudRoot is a cloud runner's storage for a test, served by a real
// protocol server: gofakes3 for S3, Azurite for Azure.
type cloudRoot struct {
	root  string // the runner's storage root, as CloudRoot
	cfg   blob.Config
	store interface {
		blob.Store
		blob.Records
	}
}

// forEachCloud runs test on an S3 root and on an Azure one.
func forEachCloud(t *testing.T, test func(t *testing.T, c cloudRoot)) {
	t.Run("s3", func(t *testing.T) {
		backend := s3mem.New()
		if err := backend.CreateBucket("bank.silo"); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gofakes3.New(backend).Server())
		t.Cleanup(srv.Close)
		cfg := blob.Config{S3: blob.S3Config{Endpoint: srv.URL, UsePathStyle: true, AccessKeyID: "AKIATEST", SecretAccessKey: "secret"}}
		client, err := blob.NewS3Client(cfg.S3)
		if err != nil {
			t.Fatal(err)
		}
		test(t, cloudRoot{root: "s3://bank.silo", cfg: cfg, store: blob.NewS3Store(client, "bank.silo")})
	})
	t.Run("azure", func(t *testing.T) {
		cs := testsvc.Azurite(t)
		cfg := blob.Config{Azure: blob.AzureConfig{ConnectionString: cs}}
		client, err := blob.NewAzureClient(cfg.Azure)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 6)
		rand.Read(b)
		container := "state-" + hex.EncodeToString(b)
		if _, err := client.CreateContainer(context.Background(), container, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.DeleteContainer(context.Background(), container, nil) })
		test(t, cloudRoot{root: "azure://" + container, cfg: cfg, store: blob.NewAzureStore(client, container)})
	})
}

// freshMachine gives the runner process a new, empty home, as a replaced
// instance or container has.
func freshMachine(t *testing.T) string {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	return home
}

// TestCloudStateOutlivesTheRunner: a cloud runner keeps its ledger in its
// owner's storage, so one started afresh on a new machine still refuses
// a session that would overspend the budget; a damaged record stops work
// and says how to fix it; no dataset reaches the record.
func TestCloudStateOutlivesTheRunner(t *testing.T) {
	forEachCloud(t, func(t *testing.T, c cloudRoot) {
		ctx := context.Background()
		local := writePatients(t, filepath.Join(t.TempDir(), "patients.csv"), 400)
		data, err := os.ReadFile(strings.TrimPrefix(local, "file://"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.store.Put(ctx, "crm/patients.csv", strings.NewReader(string(data))); err != nil {
			t.Fatal(err)
		}
		uri := c.root + "/crm/patients.csv"
		const delta = 1e-5
		policy, err := ParsePolicy(fmt.Appendf(nil, `{"rules": [{"name": "crm", "prefix": "%s/crm/", "require_differential_privacy": true,
			"max_epsilon_per_session": 2, "epsilon_budget": 3.5, "delta": %g}]}`, c.root, delta))
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{CloudRoot: c.root, Storage: c.cfg, Policy: policy, VCPU: 2, MemoryMB: 512}
		home := freshMachine(t)
		h := newHostileServer(t)
		stop := h.startAgent(cfg)

		lenient := silo.DefaultPrivacyControls()
		lenient.MaxEpsilonPerSession, lenient.EpsilonBudget, lenient.Delta = 1000, 1000, 0.009
		if res := h.run(silo.TaskConnect, silo.ConnectPayload{Dataset: "patients", URI: uri, Privacy: lenient}); res.Status != silo.TaskSucceeded {
			t.Fatalf("connect: %s %s", res.Status, res.Error)
		}
		td := silo.TrainingData{Session: "s1", Dataset: "patients", URI: uri, Schema: patientSchema, Privacy: lenient, Fraction: 0.2, Seed: 3}
		fitOn, seg := dpFits(t, h, td, 1.6, delta)
		fit := func(session string) silo.TaskResult {
			d := td
			d.Session = session
			return fitOn(d, seg.NoiseMultiplier)
		}
		refused := func(res silo.TaskResult, want ...string) {
			t.Helper()
			if res.Status == silo.TaskSucceeded {
				t.Fatalf("succeeded, want a refusal saying %q", want)
			}
			for _, w := range want {
				if !strings.Contains(res.Error, w) {
					t.Errorf("refusal %q does not say %q", res.Error, w)
				}
			}
		}
		for _, s := range []string{"s1", "s2"} {
			if res := fit(s); res.Status != silo.TaskSucceeded {
				t.Fatalf("fit %s within the budget: %s %s", s, res.Status, res.Error)
			}
		}
		refused(fit("s3"), "would exceed the budget")

		// The machine is replaced: a new process, a new home, the same
		// storage, and a server that forgot everything.
		stop()
		if err := filepath.Walk(home, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				t.Errorf("the runner wrote %s on its machine", p)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		freshMachine(t)
		h = newHostileServer(t)
		h.startAgent(cfg)
		if res := h.run(silo.TaskConnect, silo.ConnectPayload{Dataset: "patients", URI: uri, Privacy: lenient}); res.Status != silo.TaskSucceeded {
			t.Fatalf("connect after the restart: %s %s", res.Status, res.Error)
		}
		fitOn, _ = dpFits(t, h, td, 1.6, delta)
		refused(fit("s6"), "would exceed the budget")

		// The record is in the owner's storage.
		const key = ".silo/runner-state/state.json"
		rec, version, err := c.store.GetRecord(ctx, key)
		if err != nil || strings.Count(string(rec), `"location":`) != 1 || !strings.Contains(string(rec), `"s1"`) || !strings.Contains(string(rec), `"s2"`) || strings.Contains(string(rec), `"s3"`) {
			t.Fatalf("the record holds one location, and sessions s1 and s2 only (%v):\n%s", err, rec)
		}

		// No dataset reads, or is registered on, the runner's record.
		for _, u := range []string{c.root + "/.silo/", c.root + "/.silo/runner-state/", c.root + "/" + key} {
			res := h.run(silo.TaskConnect, silo.ConnectPayload{Dataset: "steal", URI: u, Privacy: lenient})
			refused(res, "where the runner keeps its own record")
		}

		// A damaged record stops all work on the data, and says how to
		// fix it.
		if after, _, _ := c.store.GetRecord(ctx, key); string(after) != string(rec) {
			t.Fatalf("a refused connect changed the record:\n%s", after)
		}
		if err := c.store.PutRecord(ctx, key, []byte(`{"locations": {"x.json": {"location": `), version); err != nil {
			t.Fatal(err)
		}
		refused(fit("s7"), "is damaged", c.root+"/"+key, "restore it from a backup")
		refused(h.run(silo.TaskConnect, silo.ConnectPayload{Dataset: "patients", URI: uri, Privacy: lenient}), "is damaged")
	})
}

// TestCloudStateConcurrentUpdates: two runner processes updating the same
// record at once both land their ledger entries; conditional writes make
// the one overtaken read again and re-apply.
func TestCloudStateConcurrentUpdates(t *testing.T) {
	forEachCloud(t, func(t *testing.T, c cloudRoot) {
		ctx := context.Background()
		const loc, updaters, each = "s3://bank.silo/crm", 3, 8
		var wg sync.WaitGroup
		errs := make(chan error, updaters*each)
		for w := range updaters {
			cs, err := openCloudState(ctx, c.root, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			// A process of its own: not the mutex newStateStore shares.
			st := &stateStore{objs: cs, mu: &sync.Mutex{}}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					errs <- st.update(ctx, func(s *stateSnapshot) error {
						s.location(loc).Ledger[fmt.Sprintf("w%d-s%d", w, i)] = &ledgerEntry{Epsilon: 0.1, Delta: 1e-5}
						s.changed[loc] = true
						return nil
					})
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		cs, _ := openCloudState(ctx, c.root, c.cfg)
		var n int
		if err := newStateStore(cs).update(ctx, func(s *stateSnapshot) error {
			n = len(s.location(loc).Ledger)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != updaters*each {
			t.Fatalf("the ledger has %d entries after %d concurrent updates: updates were lost", n, updaters*each)
		}
	})
}

// TestCloudStateOverlappingLocations: while one runner process checks a
// budget that a folder and a file inside it share, another spends on the
// file; the first's write is refused though it wrote only the folder's
// record, and on reading again it finds the budget spent. Together they
// never spend past it.
func TestCloudStateOverlappingLocations(t *testing.T) {
	forEachCloud(t, func(t *testing.T, c cloudRoot) {
		ctx := context.Background()
		folder, file := c.root+"/crm/", c.root+"/crm/2024.csv"
		process := func() *stateStore {
			cs, err := openCloudState(ctx, c.root, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			return &stateStore{objs: cs, mu: &sync.Mutex{}} // a process of its own
		}
		spent := func(s *stateSnapshot) int { return len(s.location(folder).Ledger) + len(s.location(file).Ledger) }
		const budget = 1
		a, b := process(), process()
		tries := 0
		if err := a.update(ctx, func(s *stateSnapshot) error {
			tries++
			if spent(s) >= budget {
				return nil // refused: the shared budget is spent
			}
			if tries == 1 { // the other process spends on the file meanwhile
				if err := b.update(ctx, func(s *stateSnapshot) error {
					s.location(file).Ledger["b"] = &ledgerEntry{Epsilon: 1, Delta: 1e-5}
					s.changed[file] = true
					return nil
				}); err != nil {
					return err
				}
			}
			s.location(folder).Ledger["a"] = &ledgerEntry{Epsilon: 1, Delta: 1e-5}
			s.changed[folder] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := process().update(ctx, func(s *stateSnapshot) error { n = spent(s); return nil }); err != nil {
			t.Fatal(err)
		}
		if n != budget || tries != 2 {
			t.Fatalf("%d sessions spent on a budget of %d that a folder and a file share (%d tries): the second read nothing new", n, budget, tries)
		}
	})
}

// TestDamagedStateDir: a damaged file in a state directory stops all work
// on the runner's data, and says how to fix it.
func TestDamagedStateDir(t *testing.T) {
	root := t.TempDir()
	cfg := &Config{StorageRoot: root, cache: &dataCache{}}
	uri := writePatients(t, filepath.Join(root, "p.csv"), 100)
	if err := connect(cfg, "p", uri, silo.DefaultPrivacyControls()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, ".silo", "locations", "*.json"))
	if len(files) != 1 {
		t.Fatalf("state files %v, want one", files)
	}
	if err := os.WriteFile(files[0], []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := statsOn(cfg, "p", uri, silo.DefaultPrivacyControls(), "age")
	if err == nil || !strings.Contains(err.Error(), files[0]+" is damaged") || !strings.Contains(err.Error(), "restore it from a backup") {
		t.Fatalf("stats on damaged state: %v", err)
	}
}

// TestCloudRootStateNeedsNoDir: a cloud runner without --state-dir keeps no
// privacy record on its machine; --state-dir still wins.
func TestCloudRootStateNeedsNoDir(t *testing.T) {
	home := freshMachine(t)
	c := &Config{CloudRoot: "s3://bank.silo/team"}
	if dir := c.stateDir(); dir != "" {
		t.Errorf("stateDir = %q, want none: the state is in the storage", dir)
	}
	// Record linkage secrets, which live as long as a session, and large
	// task parts stay on the machine, as before.
	if dir, want := c.localDir(), filepath.Join(home, ".config", "silo", "runner-state"); dir != want {
		t.Errorf("localDir = %q, want %q", dir, want)
	}
	cs, err := openCloudState(context.Background(), c.CloudRoot, blob.Config{S3: blob.S3Config{Endpoint: "http://127.0.0.1:1", AccessKeyID: "a", SecretAccessKey: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cs.where("x.json"), "s3://bank.silo/team/.silo/runner-state/state.json"; got != want {
		t.Errorf("record at %s, want %s", got, want)
	}
	c.StateDir = "/var/lib/silo"
	if dir := c.stateDir(); dir != "/var/lib/silo" {
		t.Errorf("stateDir = %q with --state-dir", dir)
	}
}

// TestPolicyFromStorage: a cloud runner pins a policy kept in its own
// storage, read with its credentials; the digest is of the bytes read, and
// errors name the location and what to fix.
func TestPolicyFromStorage(t *testing.T) {
	forEachCloud(t, func(t *testing.T, c cloudRoot) {
		ctx := context.Background()
		doc := fmt.Appendf(nil, `{"rules": [{"name": "crm", "prefix": "%s/crm/", "min_records_per_aggregate": 40}]}`, c.root)
		sum := sha256.Sum256(doc)
		if err := c.store.PutRecord(ctx, ".silo/policy.json", doc, ""); err != nil {
			t.Fatal(err)
		}
		if err := c.store.Put(ctx, "policies/bad.json", strings.NewReader(`{"rules": [{"prefix": "s3://bank.silo/", "min_record": 4}]}`)); err != nil {
			t.Fatal(err)
		}
		p, err := LoadPolicyAt(ctx, c.root+"/.silo/policy.json", c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want := "sha256:" + hex.EncodeToString(sum[:]); p.Digest != want || len(p.Rules) != 1 || p.Rules[0].MinRecordsPerAggregate != 40 {
			t.Fatalf("policy %+v, want digest %s of the bytes stored", p, want)
		}
		for _, tc := range []struct{ loc, want string }{
			{c.root + "/.silo/missing.json", "policy " + c.root + "/.silo/missing.json: no file at " + c.root + "/.silo/missing.json"},
			{c.root + "/policies/bad.json", "policy " + c.root + `/policies/bad.json: unknown key "min_record"`},
			{c.root + "/policies/../x.json", "must not contain .."},
		} {
			if _, err := LoadPolicyAt(ctx, tc.loc, c.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadPolicyAt(%s): %v, want %q", tc.loc, err, tc.want)
			}
		}
	})
	// file:/// is a local file, as a plain path is.
	path := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(path, []byte(`{"rules": [{"prefix": "file:///srv/a/", "min_records_per_aggregate": 20}]}`), 0o600)
	for _, loc := range []string{path, "file://" + path} {
		if p, err := LoadPolicyAt(context.Background(), loc, blob.Config{}); err != nil || len(p.Rules) != 1 {
			t.Errorf("LoadPolicyAt(%s) = %+v, %v", loc, p, err)
		}
	}
	if _, err := LoadPolicyAt(context.Background(), "file:///nonexistent/policy.json", blob.Config{}); err == nil || !strings.Contains(err.Error(), "policy /nonexistent/policy.json") {
		t.Errorf("a missing file: %v", err)
	}
}
