package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

func killAndResume(t *testing.T, dsn string) {
	t.Setenv(asCLI, "1")
	t.Setenv("SILO_LOG_LEVEL", "warn")
	dir, addr := t.TempDir(), freeAddr(t)
	url := "http://" + addr
	logs := &syncBuffer{}
	startServer := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "server", "--addr", addr, "--data", filepath.Join(dir, "data"), "--database", dsn,
			"--admin-email", adminEmail, "--admin-password", adminPassword, "--log-format", "text")
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitFor(t, 30*time.Second, "the server to answer", func() bool {
			_, err := client.New(url, "").Health(context.Background())
			return err == nil
		})
		return cmd
	}
	defer func() {
		if t.Failed() {
			t.Logf("server and runner logs:\n%s", logs)
		}
	}()
	server := startServer()
	ctx := context.Background()
	login, err := client.New(url, "").Login(ctx, client.LoginRequest{Email: adminEmail, Password: adminPassword})
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(url, login.Token)
	privacy := silo.DefaultPrivacyControls()
	privacy.IdentifierColumns = []string{"patient_id"}
	for _, h := range []string{"a", "b"} {
		root := filepath.Join(dir, "runner-"+h)
		os.MkdirAll(root, 0o700)
		data, _ := os.ReadFile("sampledata/hospital_" + h + ".csv")
		os.WriteFile(filepath.Join(root, "data.csv"), data, 0o600)
		r, err := api.RegisterRunner(ctx, silo.RunnerSpec{Name: "hospital-" + h, Provider: silo.ProviderLocal, StoragePath: "file://" + root, VCPU: 1, MemoryGB: 1})
		if err != nil {
			t.Fatal(err)
		}
		// Runners are their own processes: they outlive the server.
		agent := exec.Command(os.Args[0], "runner", "--server", url, "--storage-root", root, "--vcpu", "1", "--memory", "512MiB")
		agent.Env = append(os.Environ(), "SILO_RUNNER_TOKEN="+r.Token)
		agent.Stdout, agent.Stderr = logs, logs
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
		waitFor(t, 30*time.Second, "runner online", func() bool {
			r, err := api.GetRunner(ctx, "hospital-"+h)
			return err == nil && r.Status == silo.RunnerOnline
		})
		if _, err := api.RegisterDataset(ctx, silo.DatasetSpec{Name: "hospital_" + h, Runner: "hospital-" + h, URI: "file://" + filepath.Join(root, "data.csv"), Privacy: &privacy}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "dataset connected", func() bool {
			d, err := api.GetDataset(ctx, "hospital_"+h)
			return err == nil && d.Status == silo.DatasetConnected
		})
	}
	const rounds = 30
	cfg := fmt.Sprintf(`{"name": "resume", "datasets": ["hospital_a", "hospital_b"], "rounds": %d, "round_timeout": "5m",
		"task": {"type": "classification", "target": "diagnosis"}, "model": {"package": "glm"},
		"optimizer": {"batch_size": 16, "local_epochs": 2},
		"differential_privacy": {"epsilon": 5, "delta": 1e-5, "max_grad_norm": 1}, "seed": 3}`, rounds)
	s, err := api.CreateSession(ctx, []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "round 3", func() bool {
		s, err = api.GetSession(ctx, s.ID)
		return err == nil && s.Round >= 3
	})
	if s.Status.Done() {
		t.Fatalf("the session ended before the server could be killed: %s", s.Status)
	}
	server.Process.Kill() // SIGKILL: no goodbyes
	server.Wait()
	startServer()
	waitFor(t, 120*time.Second, "the resumed session to end", func() bool {
		s, err = api.GetSession(ctx, s.ID)
		return err == nil && s.Status.Done()
	})
	if s.Status != silo.SessionCompleted || s.Round != rounds {
		t.Fatalf("after the restart the session is %s at round %d: %s", s.Status, s.Round, s.StatusReason)
	}
	m, err := api.SessionMetrics(ctx, s.ID)
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
	for _, h := range []string{"a", "b"} {
		d, _ := api.GetDataset(ctx, "hospital_"+h)
		if spent := s.EpsilonSpent[d.Name]; spent <= 0 || d.EpsilonSpent != spent {
			t.Fatalf("ledger of %s holds %g, the session spent %g", d.Name, d.EpsilonSpent, spent)
		}
	}
}
