package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/testsvc"
)

// TestFaultServerKilledMidSession kills the server with SIGKILL in the
// middle of a DP training session and starts it again on the same data:
// the runners (separate processes) reconnect, the session resumes from its
// last completed phase and completes, and every round's metrics and the
// privacy ledger are there exactly once. On SQLite and on PostgreSQL.
func TestFaultServerKilledMidSession(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := "sqlite"
			if db == "postgres" {
				dsn = testsvc.Postgres(t)
			}
			killAndResume(t, dsn)
		})
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// procFed is a server and local runners, each a process of its own, on the
// sample hospitals' data.
type procFed struct {
	t      *testing.T
	dir    string
	addr   string
	url    string
	args   []string // the server's
	logs   *syncBuffer
	server *exec.Cmd
	agents map[string]*exec.Cmd
	api    *client.Client
}

// newProcFed starts a server on dsn with extra flags, and a runner and a
// connected dataset for each hospital.
func newProcFed(t *testing.T, dsn string, hospitals []string, extra ...string) *procFed {
	t.Setenv(asCLI, "1")
	t.Setenv("SILO_LOG_LEVEL", "warn")
	f := &procFed{t: t, dir: t.TempDir(), addr: freeAddr(t), logs: &syncBuffer{}, agents: map[string]*exec.Cmd{}}
	f.url = "http://" + f.addr
	f.args = append([]string{"server", "--addr", f.addr, "--data", filepath.Join(f.dir, "data"), "--database", dsn,
		"--admin-email", adminEmail, "--admin-password", adminPassword, "--log-format", "text"}, extra...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server and runner logs:\n%s", f.logs)
		}
	})
	f.startServer()
	ctx := context.Background()
	login, err := client.New(f.url, "").Login(ctx, client.LoginRequest{Email: adminEmail, Password: adminPassword})
	if err != nil {
		t.Fatal(err)
	}
	f.api = client.New(f.url, login.Token)
	privacy := silo.DefaultPrivacyControls()
	privacy.IdentifierColumns = []string{"patient_id"}
	for _, h := range hospitals {
		root := filepath.Join(f.dir, "runner-"+h)
		os.MkdirAll(root, 0o700)
		data, _ := os.ReadFile("sampledata/hospital_" + h + ".csv")
		os.WriteFile(filepath.Join(root, "data.csv"), data, 0o600)
		r, err := f.api.RegisterRunner(ctx, silo.RunnerSpec{Name: "hospital-" + h, Provider: silo.ProviderLocal, StoragePath: "file://" + root, VCPU: 1, MemoryGB: 1})
		if err != nil {
			t.Fatal(err)
		}
		// Runners are their own processes: they outlive the server.
		agent := exec.Command(os.Args[0], "runner", "--server", f.url, "--storage-root", root, "--vcpu", "1", "--memory", "512MiB")
		agent.Env = append(os.Environ(), "SILO_RUNNER_TOKEN="+r.Token)
		agent.Stdout, agent.Stderr = f.logs, f.logs
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
		f.agents[h] = agent
		waitFor(t, 30*time.Second, "runner online", func() bool {
			r, err := f.api.GetRunner(ctx, "hospital-"+h)
			return err == nil && r.Status == silo.RunnerOnline
		})
		if _, err := f.api.RegisterDataset(ctx, silo.DatasetSpec{Name: "hospital_" + h, Runner: "hospital-" + h, URI: "file://" + filepath.Join(root, "data.csv"), Privacy: &privacy}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "dataset connected", func() bool {
			d, err := f.api.GetDataset(ctx, "hospital_"+h)
			return err == nil && d.Status == silo.DatasetConnected
		})
	}
	return f
}

func (f *procFed) startServer() {
	cmd := exec.Command(os.Args[0], f.args...)
	cmd.Stdout, cmd.Stderr = f.logs, f.logs
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(f.t, 30*time.Second, "the server to answer", func() bool {
		_, err := client.New(f.url, "").Health(context.Background())
		return err == nil
	})
	f.server = cmd
}

// kill ends a process with SIGKILL: no goodbyes.
func kill(cmd *exec.Cmd) {
	cmd.Process.Kill()
	cmd.Wait()
}

// waitRound waits for a session to complete round n, and fails if it ended.
func (f *procFed) waitRound(id string, n int) *silo.Session {
	var s *silo.Session
	var err error
	waitFor(f.t, 120*time.Second, fmt.Sprintf("round %d", n), func() bool {
		s, err = f.api.GetSession(context.Background(), id)
		return err == nil && (s.Round >= n || s.Status.Done())
	})
	if s.Status.Done() {
		f.t.Fatalf("the session ended before round %d: %s %s", n, s.Status, s.StatusReason)
	}
	return s
}

// waitEnd waits for a session to end.
func (f *procFed) waitEnd(id string) *silo.Session {
	var s *silo.Session
	var err error
	waitFor(f.t, 240*time.Second, "the session to end", func() bool {
		s, err = f.api.GetSession(context.Background(), id)
		return err == nil && s.Status.Done()
	})
	return s
}

// sessionTasks lists a session's tasks on the runners of the hospitals.
func (f *procFed) sessionTasks(id string, hospitals ...string) []*silo.Task {
	var out []*silo.Task
	for _, h := range hospitals {
		tasks, err := f.api.RunnerTasks(context.Background(), "hospital-"+h)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, task := range tasks {
			if task.Session == id {
				out = append(out, task)
			}
		}
	}
	return out
}

// checkRanOnce checks that no step of a session succeeded twice for one
// dataset: a restart never applies a task's work again.
func checkRanOnce(t *testing.T, tasks []*silo.Task) {
	t.Helper()
	seen := map[string]int{}
	for _, task := range tasks {
		if task.Status == silo.TaskSucceeded {
			key := fmt.Sprintf("%s round %d %s", task.Type, task.Round, task.Dataset)
			if seen[key]++; seen[key] > 1 {
				t.Errorf("%s succeeded %d times", key, seen[key])
			}
		}
	}
}

func killAndResume(t *testing.T, dsn string) {
	f := newProcFed(t, dsn, []string{"a", "b"})
	ctx := context.Background()
	const rounds, epsilon = 30, 5.0
	cfg := fmt.Sprintf(`{"name": "resume", "datasets": ["hospital_a", "hospital_b"], "rounds": %d, "round_timeout": "5m",
		"task": {"type": "classification", "target": "diagnosis"}, "model": {"package": "glm"},
		"optimizer": {"batch_size": 16, "local_epochs": 2},
		"differential_privacy": {"epsilon": %g, "delta": 1e-5, "max_grad_norm": 1}, "seed": 3}`, rounds, epsilon)
	s, err := f.api.CreateSession(ctx, []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	f.waitRound(s.ID, 3)
	kill(f.server)
	f.startServer()
	s = f.waitEnd(s.ID)
	if s.Status != silo.SessionCompleted || s.Round != rounds {
		t.Fatalf("after the restart the session is %s at round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	m, err := f.api.SessionMetrics(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Federated) != rounds || len(m.Clients) != 2*rounds {
		t.Fatalf("%d federated and %d client metric rows, want %d and %d", len(m.Federated), len(m.Clients), rounds, 2*rounds)
	}
	for i, r := range m.Federated {
		if int(r["round"]) != i+1 {
			t.Fatalf("round %d recorded as %v: a round was lost or repeated", i+1, r["round"])
		}
	}
	checkRanOnce(t, f.sessionTasks(s.ID, "a", "b"))
	for _, h := range []string{"a", "b"} {
		d, _ := f.api.GetDataset(ctx, "hospital_"+h)
		spent := s.EpsilonSpent[d.Name]
		if spent <= 0 || d.EpsilonSpent != spent {
			t.Fatalf("ledger of %s holds %g, the session spent %g", d.Name, d.EpsilonSpent, spent)
		}
		if spent > epsilon+1e-9 {
			t.Fatalf("the session spent %g of %s's epsilon, more than the %g it asked for", spent, d.Name, epsilon)
		}
	}
}

// TestFaultRunnerKilledMidRound kills one of three runner processes and the
// server (SIGKILL both, then the server starts again) at round 5 of a
// 40-round ffnet session with min_clients 2: the session completes with the
// two runners left, and once the dead runner is offline no step waits for
// it — no step closes by round_timeout, and no task is queued for it. Then,
// with both of two runners needed, killing one fails the session after
// round_timeout with the reason.
func TestFaultRunnerKilledMidRound(t *testing.T) {
	f := newProcFed(t, "sqlite", []string{"a", "b", "c"}, "--heartbeat-interval", "1s")
	ctx := context.Background()
	const rounds = 40
	cfg := fmt.Sprintf(`{"name": "dropout", "datasets": ["hospital_a", "hospital_b", "hospital_c"], "min_clients": 2, "rounds": %d,
		"round_timeout": "20s", "task": {"type": "classification", "target": "diagnosis"},
		"model": {"package": "ffnet", "hidden_layers": [16]}, "optimizer": {"name": "adam", "batch_size": 32}, "seed": 5}`, rounds)
	s, err := f.api.CreateSession(ctx, []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	f.waitRound(s.ID, 5)
	kill(f.agents["c"])
	kill(f.server)
	killed := time.Now()
	f.startServer()
	waitFor(t, 30*time.Second, "hospital-c offline", func() bool {
		r, err := f.api.GetRunner(ctx, "hospital-c")
		return err == nil && r.Status == silo.RunnerOffline
	})
	offline, _ := f.api.GetSession(ctx, s.ID)
	s = f.waitEnd(s.ID)
	if s.Status != silo.SessionCompleted || s.Round != rounds {
		t.Fatalf("after the dropout the session is %s at round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	t.Logf("the %d rounds after the kill took %s", rounds-5, time.Since(killed).Round(time.Millisecond))
	m, err := f.api.SessionMetrics(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	perRound := map[int]int{}
	for _, c := range m.Clients {
		perRound[c.Round]++
		if c.Dataset == "hospital_c" && c.Round > offline.Round+1 {
			t.Errorf("hospital_c has metrics for round %d, after it went offline in round %d", c.Round, offline.Round+1)
		}
	}
	for r := 1; r <= rounds; r++ {
		if perRound[r] < 2 {
			t.Errorf("round %d has %d clients' metrics, want at least 2", r, perRound[r])
		}
	}
	tasks := f.sessionTasks(s.ID, "a", "b", "c")
	checkRanOnce(t, tasks)
	for _, task := range tasks {
		if strings.Contains(task.Error, "round_timeout") {
			t.Errorf("%s task of round %d for %s closed by round_timeout: the session waited for a runner it knew was offline", task.Type, task.Round, task.Dataset)
		}
		if task.Dataset == "hospital_c" && task.Round > offline.Round+1 {
			t.Errorf("a %s task of round %d was queued for hospital-c, offline since round %d", task.Type, task.Round, offline.Round+1)
		}
	}

	// With both of two runners needed, losing one fails the session and
	// says why.
	s, err = f.api.CreateSession(ctx, []byte(`{"name": "needs-both", "datasets": ["hospital_a", "hospital_b"], "min_clients": 2, "rounds": 50,
		"round_timeout": "5s", "task": {"type": "classification", "target": "diagnosis"}, "model": {"package": "glm"}}`))
	if err != nil {
		t.Fatal(err)
	}
	f.waitRound(s.ID, 2)
	kill(f.agents["b"])
	s = f.waitEnd(s.ID)
	if s.Status != silo.SessionFailed || !strings.Contains(s.StatusReason, "only 1 of 2 clients answered, min_clients is 2") ||
		!(strings.Contains(s.StatusReason, "hospital-b") || strings.Contains(s.StatusReason, "hospital_b")) {
		t.Fatalf("session short of clients: %s %q", s.Status, s.StatusReason)
	}
}
