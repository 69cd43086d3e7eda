package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/testsvc"
)

// TestFaultServerKilledMidLinkage kills the server with SIGKILL while a
// record linkage runs and starts it again: the runners (separate
// processes) keep their secrets, the exchange resumes, and the linkage
// completes with the exact overlap, the same order on both runners. On
// SQLite and on PostgreSQL.
func TestFaultServerKilledMidLinkage(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := "sqlite"
			if db == "postgres" {
				dsn = testsvc.Postgres(t)
			}
			killMidLinkage(t, dsn)
		})
	}
}

func killMidLinkage(t *testing.T, dsn string) {
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
	privacy.IdentifierColumns = []string{"email"}
	const n, shift = 30000, 12000
	roots := map[string]string{}
	for k, org := range []string{"bank", "telco"} {
		root := filepath.Join(dir, "runner-"+org)
		os.MkdirAll(root, 0o700)
		var b strings.Builder
		b.WriteString("email,score\n")
		for i := range n {
			fmt.Fprintf(&b, "Person%06d@Example.org,%d\n", i+k*shift, i%5)
		}
		os.WriteFile(filepath.Join(root, "data.csv"), []byte(b.String()), 0o600)
		roots[org] = root
		r, err := api.RegisterRunner(ctx, silo.RunnerSpec{Name: org + "-runner", Provider: silo.ProviderLocal, StoragePath: "file://" + root, VCPU: 1, MemoryGB: 1})
		if err != nil {
			t.Fatal(err)
		}
		agent := exec.Command(os.Args[0], "runner", "--server", url, "--storage-root", root, "--vcpu", "1", "--memory", "512MiB")
		agent.Env = append(os.Environ(), "SILO_RUNNER_TOKEN="+r.Token)
		agent.Stdout, agent.Stderr = logs, logs
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
		waitFor(t, 30*time.Second, "runner online", func() bool {
			r, err := api.GetRunner(ctx, org+"-runner")
			return err == nil && r.Status == silo.RunnerOnline
		})
		if _, err := api.RegisterDataset(ctx, silo.DatasetSpec{Name: org, Runner: org + "-runner", URI: "file://" + filepath.Join(root, "data.csv"), Privacy: &privacy}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "dataset connected", func() bool {
			d, err := api.GetDataset(ctx, org)
			return err == nil && d.Status == silo.DatasetConnected
		})
	}
	s, err := api.CreateSession(ctx, []byte(`{"name": "resume-linkage", "type": "prl", "datasets": ["bank", "telco"],
		"id_columns": {"bank": ["email"], "telco": ["email"]}, "normalize": ["lowercase"]}`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "the linkage under way", func() bool {
		s, err = api.GetSession(ctx, s.ID)
		return err == nil && (s.Status.Done() || s.Phase == silo.TaskPRLReblind || (s.Progress != nil && s.Progress.Done > 0))
	})
	if s.Status.Done() {
		t.Fatalf("the linkage ended before the server could be killed: %s", s.Status)
	}
	server.Process.Kill() // SIGKILL: no goodbyes
	server.Wait()
	startServer()
	waitFor(t, 240*time.Second, "the resumed linkage to end", func() bool {
		s, err = api.GetSession(ctx, s.ID)
		return err == nil && s.Status.Done()
	})
	if s.Status != silo.SessionCompleted {
		t.Fatalf("after the restart the linkage is %s: %s", s.Status, s.StatusReason)
	}
	m, err := api.LinkageMetrics(ctx, s.ID)
	if err != nil || len(m.Clients) != 2 || m.Clients[0].NOverlappedRecords != n-shift {
		t.Fatalf("metrics after the restart: %+v, %v (want %d linked)", m, err, n-shift)
	}
	var rows [][]int64
	for _, org := range []string{"bank", "telco"} {
		l, err := (&runner.Config{StorageRoot: roots[org]}).Linkage(ctx, s.ID, org, "file://"+filepath.Join(roots[org], "data.csv"))
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, l.Rows)
	}
	// Bank's row i is person i; telco's row j is person j+shift.
	for i := range rows[0] {
		if rows[0][i] != rows[1][i]+shift {
			t.Fatalf("record %d of the common order: bank row %d, telco row %d", i, rows[0][i], rows[1][i])
		}
	}
}
