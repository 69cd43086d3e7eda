package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/dp"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/model"
)

// hostileServer speaks the runner protocol and sends whatever a test
// wants: a server that lies about privacy controls, noise and ledgers.
type hostileServer struct {
	t       *testing.T
	srv     *httptest.Server
	tasks   chan queued
	mu      sync.Mutex
	results map[string]chan silo.TaskResult
	policy  *silo.RunnerPolicy
	n       int
}

// queued is a task and its binary parts.
type queued struct {
	task  *silo.Task
	parts [][]byte
}

func newHostileServer(t *testing.T) *hostileServer {
	h := &hostileServer{t: t, tasks: make(chan queued, 16), results: map[string]chan silo.TaskResult{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/runner/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		var hb silo.Heartbeat
		json.NewDecoder(r.Body).Decode(&hb)
		h.mu.Lock()
		h.policy = hb.Policy
		h.mu.Unlock()
		json.NewEncoder(w).Encode(silo.HeartbeatReply{Runner: "bank", Status: silo.RunnerOnline, ProtocolVersion: silo.ProtocolVersion, HeartbeatInterval: "1h"})
	})
	mux.HandleFunc("GET /api/v1/runner/tasks", func(w http.ResponseWriter, r *http.Request) {
		select {
		case q := <-h.tasks:
			w.Header().Set("Content-Type", silo.FramesContentType)
			var bodies []io.Reader
			for _, b := range q.parts {
				bodies = append(bodies, bytes.NewReader(b))
			}
			silo.WriteFrames(w, q.task, bodies...)
		case <-time.After(200 * time.Millisecond):
			w.WriteHeader(http.StatusNoContent)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("POST /api/v1/runner/tasks/{id}/result", func(w http.ResponseWriter, r *http.Request) {
		var res silo.TaskResult
		if err := silo.ReadFrameHeader(bufio.NewReader(r.Body), 16<<20, &res); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		c := h.results[r.PathValue("id")]
		h.mu.Unlock()
		if c != nil {
			c <- res
		}
		w.WriteHeader(http.StatusNoContent) // no next task here: the agent polls
	})
	mux.HandleFunc("POST /api/v1/runner/tasks/{id}/logs", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

// run hands the agent one task, with its parts (name, bytes, …), and waits
// for its result.
func (h *hostileServer) run(typ string, payload any, parts ...any) silo.TaskResult {
	h.t.Helper()
	h.mu.Lock()
	h.n++
	id := fmt.Sprintf("task_%d", h.n)
	c := make(chan silo.TaskResult, 1)
	h.results[id] = c
	h.mu.Unlock()
	b, _ := json.Marshal(payload)
	q := queued{task: &silo.Task{ID: id, Type: typ, Payload: b, VCPU: 1, MemoryMB: 64}}
	for i := 0; i+1 < len(parts); i += 2 {
		body := parts[i+1].([]byte)
		q.task.Parts = append(q.task.Parts, silo.Part{Name: parts[i].(string), Size: int64(len(body)), Digest: silo.Digest(body)})
		q.parts = append(q.parts, body)
	}
	h.tasks <- q
	select {
	case res := <-c:
		return res
	case <-time.After(60 * time.Second):
		h.t.Fatalf("no result for %s task", typ)
		return silo.TaskResult{}
	}
}

// startAgent runs an agent against the server until the test ends or stop.
func (h *hostileServer) startAgent(cfg Config) (stop func()) {
	h.t.Helper()
	cfg.ServerURL, cfg.Token, cfg.PollWait, cfg.Logger = h.srv.URL, silo.RunnerTokenPrefix+"x", time.Second, slog.New(slog.DiscardHandler)
	a, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	h.t.Cleanup(stop)
	return stop
}

// TestHostileServerCannotLoosen: a server that sends weakened controls,
// no or too little noise, and forgets its ledger gets nothing below the
// floor the data owner pinned on the runner, and each refusal names the
// rule behind it. The runner counts the epsilon itself and keeps its own
// ledger, which outlives a restart.
func TestHostileServerCannotLoosen(t *testing.T) {
	root := t.TempDir()
	uri := writePatients(t, filepath.Join(root, "crm", "patients.csv"), 400)
	const delta = 1e-5
	policyFile := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policyFile, []byte(fmt.Sprintf(`{"rules": [{"name": "crm", "prefix": "file://%s/crm/", "require_differential_privacy": true,
		"max_epsilon_per_session": 2, "epsilon_budget": 3.5, "delta": %g, "min_records_per_aggregate": 30,
		"identifier_columns": ["ssn", "name"], "allow_predictions": false}]}`, root, delta)), 0o600)
	policy, err := LoadPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	h := newHostileServer(t)
	stop := h.startAgent(Config{StorageRoot: root, Policy: policy, VCPU: 2, MemoryMB: 512})

	// Everything the server sends claims the loosest controls there are.
	lenient := silo.DefaultPrivacyControls()
	lenient.MinRecordsPerAggregate, lenient.MaxEpsilonPerSession, lenient.EpsilonBudget, lenient.Delta = 1, 1000, 1000, 0.009
	refused := func(res silo.TaskResult, want ...string) {
		t.Helper()
		if res.Status == silo.TaskSucceeded {
			t.Fatalf("succeeded, want a refusal saying %q", want)
		}
		for _, w := range append(want, `policy rule "crm"`) {
			if !strings.Contains(res.Error, w) {
				t.Errorf("refusal %q does not say %q", res.Error, w)
			}
		}
	}

	res := h.run(silo.TaskConnect, silo.ConnectPayload{Dataset: "patients", URI: uri, Privacy: lenient})
	if res.Status != silo.TaskSucceeded {
		t.Fatalf("connect: %s %s", res.Status, res.Error)
	}
	var conn silo.ConnectOutput
	json.Unmarshal(res.Output, &conn)
	for _, c := range conn.Columns {
		if (c.Name == "ssn" || c.Name == "name") && !c.Identifier {
			t.Errorf("%s is not an identifier in the report: %+v", c.Name, c)
		}
		if c.Name == "ward" && strings.Contains(strings.Join(c.Categories, ","), "C") {
			t.Errorf("ward C (10 rows, floor 30) reported: %v", c.Categories)
		}
	}
	h.mu.Lock()
	if h.policy == nil || h.policy.Digest != policy.Digest || len(h.policy.Rules) != 1 {
		t.Errorf("heartbeats carry policy %+v, want the pinned one", h.policy)
	}
	h.mu.Unlock()

	td := silo.TrainingData{Session: "s0", Dataset: "patients", URI: uri, Schema: patientSchema, Privacy: lenient, Fraction: 0.2, Seed: 3}
	refused(h.run(silo.TaskStats, silo.StatsPayload{TrainingData: td, TaskType: "classification", Target: "y", Features: []string{"ssn", "age"}}), "column ssn", "is an identifier")

	fitOn, seg := dpFits(t, h, td, 1.6, delta)
	fit := func(session string, sigma float64) silo.TaskResult {
		d := td
		d.Session = session
		return fitOn(d, sigma)
	}
	if two := dp.EpsilonOf([]dp.Segment{seg, seg}, delta); two <= 2 {
		t.Fatalf("test design: two rounds spend %g, not more than 2", two)
	}

	refused(fit("s0", 0), "requires differential privacy")
	refused(fit("s0", seg.NoiseMultiplier/10), "max_epsilon_per_session", "would spend")
	if res := fit("s1", seg.NoiseMultiplier); res.Status != silo.TaskSucceeded {
		t.Fatalf("a fit within the floor: %s %s", res.Status, res.Error)
	}
	refused(fit("s1", seg.NoiseMultiplier), "max_epsilon_per_session")
	// The server "forgets" s1 and starts afresh: the location's budget
	// (3.5) holds across sessions.
	if res := fit("s2", seg.NoiseMultiplier); res.Status != silo.TaskSucceeded {
		t.Fatalf("second session within the budget: %s %s", res.Status, res.Error)
	}
	refused(fit("s3", seg.NoiseMultiplier), "would exceed the budget")

	// The same data registered again under another name, with lenient
	// controls, shares the budget.
	if res := h.run(silo.TaskConnect, silo.ConnectPayload{Dataset: "again", URI: "file://" + filepath.Join(root, "crm") + "/", Privacy: lenient}); res.Status != silo.TaskSucceeded {
		t.Fatalf("connect again: %s", res.Error)
	}
	again := td
	again.Dataset, again.URI, again.Session = "again", "file://"+filepath.Join(root, "crm")+"/", "s5"
	refused(fitOn(again, seg.NoiseMultiplier), "would exceed the budget")

	// Predictions are off under the policy, whatever the server says.
	spec, prep, m := patientModel()
	doc, err := model.New(spec, prep, m.Params(), model.Metadata{Session: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	docJSON, _ := json.Marshal(doc)
	refused(h.run(silo.TaskPredict, silo.PredictPayload{Dataset: "patients", URI: uri, Schema: patientSchema, Privacy: lenient, Document: docJSON, Format: "csv",
		Output: "file://" + filepath.Join(root, "predictions", "p.csv")}), "does not allow predictions")

	// A runner restarted against a server whose ledger was reset keeps its
	// own: the budget is still spent.
	stop()
	h.startAgent(Config{StorageRoot: root, Policy: policy, VCPU: 2, MemoryMB: 512})
	refused(fit("s6", seg.NoiseMultiplier), "would exceed the budget")

	// The ledger is the runner's, in its state directory.
	var ledger []string
	filepath.Walk(filepath.Join(root, ".silo", "locations"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			ledger = append(ledger, string(b))
		}
		return nil
	})
	if all := strings.Join(ledger, ""); !strings.Contains(all, `"s1"`) || !strings.Contains(all, `"s2"`) || strings.Contains(all, `"s3"`) {
		t.Errorf("the runner's ledger holds sessions s1 and s2 only:\n%s", all)
	}
}

// TestPolicyFileErrors: a policy file is checked when the runner starts,
// with errors that say what to fix.
func TestPolicyFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"not json", `{"rules": [`, "not valid JSON"},
		{"unknown key", `{"rules": [{"prefix": "file:///srv/a/", "min_record_per_aggregate": 20}]}`, `unknown key "min_record_per_aggregate"`},
		{"unknown top key", `{"rule": []}`, `unknown key "rule"`},
		{"no rules", `{"rules": []}`, "no rules"},
		{"bad prefix", `{"rules": [{"prefix": "/srv/a", "min_records_per_aggregate": 20}]}`, "policy rule 1: prefix"},
		{"relative file prefix", `{"rules": [{"prefix": "file://srv/a", "min_records_per_aggregate": 20}]}`, "policy rule 1: prefix"},
		{"s3 bucket", `{"rules": [{"prefix": "s3://bank/crm/", "min_records_per_aggregate": 20}]}`, `must end in ".silo"`},
		{"wrong type", `{"rules": [{"prefix": "file:///srv/a/", "min_records_per_aggregate": "20"}]}`, "must be a int"},
		{"bad value", `{"rules": [{"prefix": "file:///srv/a/", "delta": 0.5}]}`, "rule 1: delta"},
		{"digest given", `{"rules": [{"prefix": "file:///srv/a/", "delta": 1e-6}], "digest": "x"}`, "set by the runner"},
		{"two documents", `{"rules": [{"prefix": "file:///srv/a/", "delta": 1e-6}]} {}`, "more than one JSON value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	p, err := ParsePolicy([]byte(`{"rules": [{"prefix": "s3://bank.silo/crm/", "allowed_session_types": ["eda"], "min_records_per_aggregate": 50}], "refuse_unmatched": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if srcs, err := p.sources("s3://bank.silo/crm/2024/p.parquet"); err != nil || len(srcs) != 1 || srcs[0].Controls.MinRecordsPerAggregate != 50 {
		t.Fatalf("covered data: %v %v", srcs, err)
	}
	if _, err := p.sources("s3://bank.silo/hr/p.parquet"); err == nil || !strings.Contains(err.Error(), "no rule of its policy") {
		t.Fatalf("data outside every rule: %v", err)
	}
}

// patientModel is a GLM for the patients data of writePatients.
func patientModel() (ml.Spec, model.Preprocessing, *ml.Model) {
	prep := model.Preprocessing{Task: "classification", Target: "y", Classes: []string{"0", "1"}, TargetType: "int", Features: []model.Feature{
		{Name: "age", Type: "int", Kind: model.Numeric, Mean: 44, Std: 14}, {Name: "ward", Type: "string", Kind: model.Categorical, Categories: []string{"A", "B"}}}}
	spec := ml.Spec{Package: ml.PackageGLM, Task: ml.Classification, NumFeatures: prep.Width(), Classes: prep.Classes}
	m, _ := ml.NewModel(spec, 1)
	return spec, prep, m
}

// dpFits returns a function that runs one DP-SGD round on training data td
// with a noise multiplier, and the round the runner counts for td: seg's
// noise spends eps per round at delta.
func dpFits(t *testing.T, h *hostileServer, td silo.TrainingData, eps, delta float64) (fit func(d silo.TrainingData, sigma float64) silo.TaskResult, seg dp.Segment) {
	t.Helper()
	spec, prep, m := patientModel()
	setup := silo.TrainingSetup{Optimizer: silo.OptimizerConfig{Name: "sgd", LearningRate: 0.1, BatchSize: 64, LocalEpochs: 1}, ClipNorm: 1}
	setup.Spec, _ = json.Marshal(spec)
	setup.Preprocessing, _ = json.Marshal(prep)
	fit = func(d silo.TrainingData, sigma float64) silo.TaskResult {
		s := setup
		s.TrainingData, s.NoiseMultiplier = d, sigma
		b, _ := json.Marshal(s)
		return h.run(silo.TaskFit, silo.RoundPayload{Round: 1}, silo.PartSetup, b, silo.PartParams, m.MarshalBinaryParams())
	}
	// The runner knows what one round is: its own training rows, the batch
	// and the epochs.
	n := 0
	for i := range int64(400) {
		if !IsTestRow(td.Seed, i, td.Fraction) {
			n++
		}
	}
	seg = dp.Segment{SampleRate: ml.PoissonSampleRate(n, 64), Steps: ml.StepsPerEpoch(n, 64)}
	var err error
	if seg.NoiseMultiplier, err = dp.Calibrate(eps, delta, seg.SampleRate, seg.Steps); err != nil {
		t.Fatal(err)
	}
	return fit, seg
}
