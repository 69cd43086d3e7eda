package runner

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/silofl/silo"
)

// TestHTTPSThroughProxyWithCustomCA: the agent reaches a TLS server whose
// certificate only the given CA file vouches for, through HTTPS_PROXY.
func TestHTTPSThroughProxyWithCustomCA(t *testing.T) {
	var heartbeats atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/runner/heartbeat" {
			heartbeats.Add(1)
			json.NewEncoder(w).Encode(silo.HeartbeatReply{Runner: "edge", Status: silo.RunnerOnline, ProtocolVersion: silo.ProtocolVersion, HeartbeatInterval: "1h"})
			return
		}
		w.WriteHeader(http.StatusNoContent) // no task
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)

	// A CONNECT proxy that counts the tunnels it opens.
	var tunnels atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		// The proxy resolves names; example.com is the name on the test
		// server's certificate.
		host := strings.Replace(r.Host, "example.com", "127.0.0.1", 1)
		up, err := net.Dial("tcp", host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		tunnels.Add(1)
		w.WriteHeader(http.StatusOK)
		conn, _, _ := w.(http.Hijacker).Hijack()
		go func() { io.Copy(up, conn); up.Close() }()
		io.Copy(conn, up)
		conn.Close()
	}))
	defer proxy.Close()
	// Go never proxies loopback addresses, so the agent is pointed at the
	// server by a name only the proxy resolves.
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	serverURL := "https://example.com:" + port

	run := func(ca string) error {
		a, err := New(Config{ServerURL: serverURL, Token: silo.RunnerTokenPrefix + "x", CAFile: ca, PollWait: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(2*time.Second, cancel)
		return a.Run(ctx)
	}
	if err := run(caFile); err != nil {
		t.Fatalf("agent with the CA file: %v", err)
	}
	if heartbeats.Load() == 0 || tunnels.Load() == 0 {
		t.Fatalf("heartbeats %d through %d proxy tunnels: want both > 0", heartbeats.Load(), tunnels.Load())
	}
	// Without the CA file the server's certificate is not trusted: the agent
	// keeps retrying and never gets a heartbeat through.
	before := heartbeats.Load()
	run("")
	if heartbeats.Load() != before {
		t.Fatal("a heartbeat got through without trusting the CA")
	}
	if _, err := New(Config{ServerURL: srv.URL, Token: "t", CAFile: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}

// TestRunnerEnforcesPrivacy: whatever a task asks, the runner refuses to use
// an identifier or excluded column, a session type the custodian did not
// allow, or too few rows — using the controls it kept when it connected.
func TestRunnerEnforcesPrivacy(t *testing.T) {
	root := t.TempDir()
	var b strings.Builder
	b.WriteString("id,ssn,age,y\n")
	for i := 0; i < 50; i++ {
		b.WriteString("P" + string(rune('a'+i%26)) + ",123," + string(rune('2'+i%7)) + "0," + string(rune('0'+i%2)) + "\n")
	}
	os.WriteFile(filepath.Join(root, "d.csv"), []byte(b.String()), 0o600)
	cfg := &Config{StorageRoot: root, cache: &dataCache{}, kept: &keptCache{}}
	log := newTaskLog(nil, "t", slog.New(slog.DiscardHandler))
	kept := silo.DefaultPrivacyControls()
	kept.IdentifierColumns, kept.ExcludedColumns, kept.AllowedSessionTypes = []string{"id"}, []string{"ssn"}, []string{"eda"}
	if err := cfg.rememberPrivacy("d", kept); err != nil {
		t.Fatal(err)
	}
	schema := []silo.ColumnType{{Name: "id", Type: "string"}, {Name: "age", Type: "int"}, {Name: "y", Type: "int"}}
	// The task claims the dataset allows everything; the runner knows better.
	lenient := silo.DefaultPrivacyControls()
	stats := func(features []string, target string) error {
		p, _ := json.Marshal(silo.StatsPayload{TrainingData: silo.TrainingData{Dataset: "d", URI: "file://" + filepath.Join(root, "d.csv"), Schema: schema, Privacy: lenient, Fraction: 0.2},
			TaskType: "classification", Target: target, Features: features})
		_, err := runStats(context.Background(), &Task{Task: &silo.Task{Payload: p}}, log, cfg)
		return err
	}
	if err := stats([]string{"age"}, "y"); err == nil || !strings.Contains(err.Error(), "does not allow hfl sessions") {
		t.Fatalf("disallowed session type: %v", err)
	}
	kept.AllowedSessionTypes = []string{"hfl"}
	cfg.rememberPrivacy("d", kept)
	for _, tc := range []struct {
		features []string
		target   string
		want     string
	}{
		{[]string{"age", "id"}, "y", "is an identifier"},
		{[]string{"age"}, "id", "is an identifier"},
		{[]string{"ssn"}, "y", "is excluded"},
	} {
		if err := stats(tc.features, tc.target); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("features %v target %s: %v, want %q", tc.features, tc.target, err, tc.want)
		}
	}
	kept.MinRecordsPerAggregate = 1000
	cfg.rememberPrivacy("d", kept)
	if err := stats([]string{"age"}, "y"); err == nil || !strings.Contains(err.Error(), "fewer than its min_records_per_aggregate") {
		t.Fatalf("too few rows: %v", err)
	}
	kept.MinRecordsPerAggregate = 5
	cfg.rememberPrivacy("d", kept)
	if err := stats([]string{"age"}, "y"); err != nil {
		t.Fatalf("an allowed task was refused: %v", err)
	}
}
