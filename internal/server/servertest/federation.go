package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server"
)

// Agents runs runner agents in-process, the way the server's launcher runs
// child processes, and remembers how each one ended.
type Agents struct {
	t    *testing.T
	url  string
	mu   sync.Mutex
	ends map[string]chan error
}

// NewAgents returns the agents of e's server, and makes them its launcher,
// with a fresh folder for the storage of the runners it starts.
func NewAgents(t *testing.T, e *Env) *Agents {
	a := &Agents{t: t, url: e.TS.URL, ends: map[string]chan error{}}
	e.Srv.Launch = a.Launch
	e.Srv.InternalURL = e.TS.URL
	root, err := server.CheckLocalRunnersRoot(filepath.Join(t.TempDir(), "runners"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Srv.LocalRunnersRoot = root
	return a
}

// Launch is a server.Launcher.
func (a *Agents) Launch(ctx context.Context, l server.LocalLaunch) (func(), error) {
	if err := os.MkdirAll(l.StorageRoot, 0o700); err != nil {
		return nil, err
	}
	return a.Start(ctx, l.Name, l.Token, l.StorageRoot, l.VCPU, l.MemoryMB), nil
}

// Start runs an agent until the returned stop is called.
func (a *Agents) Start(ctx context.Context, name, token, root string, vcpu, memMB int) func() {
	ag, err := runner.New(runner.Config{ServerURL: a.url, Token: token, StorageRoot: root, VCPU: vcpu, MemoryMB: memMB,
		PollWait: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		a.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	end := make(chan error, 1)
	a.mu.Lock()
	a.ends[name] = end
	a.mu.Unlock()
	go func() { end <- ag.Run(ctx) }()
	a.t.Cleanup(cancel)
	return func() { cancel(); <-end; end <- nil }
}

// Ended waits for the named agent to stop by itself and returns why.
func (a *Agents) Ended(name string) error {
	a.mu.Lock()
	end := a.ends[name]
	a.mu.Unlock()
	select {
	case err := <-end:
		return err
	case <-time.After(20 * time.Second):
		a.t.Fatalf("agent %s did not stop", name)
		return nil
	}
}

// Eventually polls cond until it holds, for at most two minutes: a bound
// for failing, generous enough for the race detector on a busy machine.
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		Pause()
	}
}

// Pause is one wait between polls.
func Pause() { time.Sleep(20 * time.Millisecond) }

// RunnerStatus returns the named runner's status.
func RunnerStatus(t *testing.T, c *client.Client, name string) silo.RunnerStatus {
	r, err := c.GetRunner(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return r.Status
}

// WaitDataset waits for a dataset to leave connecting.
func WaitDataset(t *testing.T, c *client.Client, name string) *silo.Dataset {
	t.Helper()
	var d *silo.Dataset
	Eventually(t, name+" connected", func() bool {
		var err error
		d, err = c.GetDataset(context.Background(), name)
		return err == nil && d.Status != silo.DatasetConnecting
	})
	return d
}

// Wire records every request body runners send to the server.
type Wire struct {
	mu   sync.Mutex
	sent bytes.Buffer
}

// Wrap records the runner protocol's requests on their way to next.
func (w *Wire) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/v1/runner/") {
			body, _ := io.ReadAll(r.Body)
			w.mu.Lock()
			w.sent.Write(body)
			w.sent.WriteString(r.URL.RawQuery)
			w.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(rw, r)
	})
}

// String returns everything recorded so far.
func (w *Wire) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent.String()
}

// Federation is a server with three hospitals' runners (agents in-process),
// each holding its part of the breast-cancer data.
type Federation struct {
	*Env
	API      *client.Client // a Model Builder, mb@example.org
	AdminAPI *client.Client
	DC       *client.Client // a Data Custodian, dc@example.org
	Roots    map[string]string
	Stops    map[string]func() // stop each hospital's agent
	Wire     *Wire
}

// SampleData is the folder of the quickstart's sample data: the
// breast-cancer data split across hospitals a, b and c.
var SampleData = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "cmd", "silo", "sampledata")
}()

// NewFederation starts a server with hospitals a, b and c, each a local
// runner whose dataset hospital_<h> is connected (patient_id an identifier
// column).
func NewFederation(t *testing.T) *Federation {
	e := New(t)
	f := &Federation{Env: e, Wire: &Wire{}, Roots: map[string]string{}, Stops: map[string]func(){}}
	// Every byte runners send passes through the recorder.
	e.TS.Config.Handler = f.Wire.Wrap(e.TS.Config.Handler)
	ag := NewAgents(t, e)
	ctx := context.Background()
	f.AdminAPI = client.New(e.TS.URL, e.Admin)
	f.DC = client.New(e.TS.URL, e.AddUser("dc@example.org", "data_custodian"))
	f.API = client.New(e.TS.URL, e.AddUser("mb@example.org", "model_builder"))
	privacy := silo.DefaultPrivacyControls()
	privacy.IdentifierColumns = []string{"patient_id"}
	for _, h := range []string{"a", "b", "c"} {
		token, root := RegisterHospital(t, f.AdminAPI, h)
		f.Stops[h] = ag.Start(ctx, "hospital-"+h, token, root, 2, 1024)
		f.Roots[h] = root
	}
	for _, h := range []string{"a", "b", "c"} {
		ConnectHospital(t, f.AdminAPI, f.DC, h, f.Roots[h], &privacy)
	}
	return f
}

// RegisterHospital registers hospital h's local runner over a fresh storage
// root holding its share of the sample data, and returns its token and root.
func RegisterHospital(t *testing.T, admin *client.Client, h string) (token, root string) {
	t.Helper()
	root = t.TempDir()
	data, err := os.ReadFile(filepath.Join(SampleData, "hospital_"+h+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "patients.csv"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := admin.RegisterRunner(context.Background(), silo.RunnerSpec{Name: "hospital-" + h, Provider: silo.ProviderLocal, StoragePath: "file://" + root, VCPU: 2, MemoryGB: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r.Token, root
}

// ConnectHospital waits for hospital h's runner to come online, then
// registers its dataset with privacy and waits for the runner to connect it.
func ConnectHospital(t *testing.T, admin, dc *client.Client, h, root string, privacy *silo.PrivacyControls) {
	t.Helper()
	Eventually(t, "runner online", func() bool { return RunnerStatus(t, admin, "hospital-"+h) == silo.RunnerOnline })
	if _, err := dc.RegisterDataset(context.Background(), silo.DatasetSpec{Name: "hospital_" + h, Runner: "hospital-" + h, URI: "file://" + filepath.Join(root, "patients.csv"), Privacy: privacy}); err != nil {
		t.Fatal(err)
	}
	if d := WaitDataset(t, dc, "hospital_"+h); d.Status != silo.DatasetConnected {
		t.Fatalf("dataset %s: %s %s", d.Name, d.Status, d.Error)
	}
}

// SessionConfig is an hfl session over the three hospitals' datasets
// (logistic regression of diagnosis, 15 rounds); edit changes it.
func SessionConfig(name string, edit func(m map[string]any)) json.RawMessage {
	m := map[string]any{
		"name": name, "type": "hfl", "datasets": []string{"hospital_a", "hospital_b", "hospital_c"}, "min_clients": 2, "rounds": 15, "round_timeout": "2m",
		"task":      map[string]any{"type": "classification", "target": "diagnosis", "positive_class": "malignant"},
		"model":     map[string]any{"package": "glm", "family": "binomial", "l2": 0.0001},
		"optimizer": map[string]any{"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "batch_size": 32, "local_epochs": 1},
		"strategy":  map[string]any{"name": "fedavg"}, "validation": map[string]any{"fraction": 0.25}, "seed": 23,
	}
	if edit != nil {
		edit(m)
	}
	b, _ := json.Marshal(m)
	return b
}

// WaitSession waits (bounded) for a session to end and returns it.
func WaitSession(t *testing.T, c *client.Client, id string) *silo.Session {
	t.Helper()
	var s *silo.Session
	deadline := 90 * 1000
	for i := 0; i < deadline/20; i++ {
		var err error
		if s, err = c.GetSession(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if s.Status.Done() {
			return s
		}
		Pause()
	}
	t.Fatalf("session %s did not finish: %s round %d (%s)", id, s.Status, s.Round, s.StatusReason)
	return nil
}
