package silo_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
)

// FuzzWireTypes sends any bytes to the server's runner-protocol routes —
// heartbeat and task logs (JSON), task result (a frames body: a JSON line,
// then binary parts) — as a hostile runner with a valid token would,
// through the server's own handlers, decoding and checks, on a real store.
// Every answer is a success or a 4xx error in the API's shape (never a
// panic or a 5xx: bad input is the sender's fault), and what an accepted
// request stored is within the protocol's bounds.
func FuzzWireTypes(f *testing.F) {
	f.Add([]byte(`{"protocol_version":1,"agent_version":"x","vcpu":2,"memory_mb":1024,"running_tasks":["t"]}`))
	f.Add([]byte(`{"status":"succeeded","output":{"n_train":3},"parts":[{"name":"params","size":4}]}` + "\nSILO"))
	f.Add([]byte(`{"status":"failed","error":"disk full","logs":[{"level":"ERROR","message":"no \u001b[2J space"}]}` + "\n"))
	f.Add([]byte(`[{"task_id":"t","time":"2026-01-02T03:04:05Z","level":"WARN","message":"disk \u0000 almost full"}]`))
	f.Add([]byte(`{"status":"failed","error":"` + strings.Repeat("é", 3000) + `"}`))
	f.Add([]byte(`[{"level":"EVIL","message":"` + strings.Repeat("\xff", 5000) + `"}]`))
	f.Add([]byte(`{"protocol_version":1,"vcpu":-1}`))

	ctx := context.Background()
	db := sqlstore.New(filepath.Join(f.TempDir(), "silo.db"))
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(ctx); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	srv := server.New(db)
	srv.Logger = slog.New(slog.DiscardHandler)
	if _, _, err := srv.BootstrapAdmin(ctx, "admin@example.org", "correct horse battery"); err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	call := func(t testing.TB, method, path, token string, body []byte) (int, []byte) {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if strings.HasSuffix(path, "/result") {
			req.Header.Set("Content-Type", silo.FramesContentType)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.Bytes()
	}
	var login struct{ Token string }
	if st, b := call(f, "POST", "/api/v1/login", "", []byte(`{"email":"admin@example.org","password":"correct horse battery"}`)); st != 200 || json.Unmarshal(b, &login) != nil {
		f.Fatalf("sign in: %d %s", st, b)
	}
	admin := login.Token
	var rn silo.Runner
	if st, b := call(f, "POST", "/api/v1/runners", admin, []byte(`{"name":"fuzz-runner","provider":"local","storage_path":"file:///srv/fuzz","vcpu":1,"memory_gb":1}`)); st != 201 || json.Unmarshal(b, &rn) != nil {
		f.Fatalf("register a runner: %d %s", st, b)
	}
	// runningTask queues a diagnostics task and claims it as the runner.
	runningTask := func(t testing.TB) string {
		if st, b := call(t, "POST", "/api/v1/runners/fuzz-runner/tasks", admin, []byte(`{"type":"diagnostics"}`)); st != 201 {
			t.Fatalf("queue a task: %d %s", st, b)
		}
		var task silo.Task
		st, b := call(t, "GET", "/api/v1/runner/tasks?wait=0s", rn.Token, nil)
		if st != 200 || silo.ReadFrameHeader(bufio.NewReader(bytes.NewReader(b)), 1<<20, &task) != nil {
			t.Fatalf("claim a task: %d %s", st, b)
		}
		return task.ID
	}
	logTask, resultTask := runningTask(f), runningTask(f)
	var lastLine int64

	f.Fuzz(func(t *testing.T, b []byte) {
		answered := func(what string, st int, body []byte) bool {
			t.Helper()
			if st >= 500 {
				t.Fatalf("%s: %d for input %q: %s", what, st, b, body)
			}
			if st >= 400 {
				var e struct{ Error *silo.Error }
				if json.Unmarshal(body, &e) != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
					t.Fatalf("%s: %d without an error in the API's shape: %s", what, st, body)
				}
				return false
			}
			return true
		}

		if st, body := call(t, "POST", "/api/v1/runner/heartbeat", rn.Token, b); answered("heartbeat", st, body) {
			_, got := call(t, "GET", "/api/v1/runners/fuzz-runner", admin, nil)
			var r silo.Runner
			if err := json.Unmarshal(got, &r); err != nil || r.AgentVCPU < 0 || r.AgentMemoryMB < 0 || len(r.AgentVersion) > 64 {
				t.Fatalf("an accepted heartbeat stored %+v (%v)", r, err)
			}
		}

		if st, body := call(t, "POST", "/api/v1/runner/tasks/"+logTask+"/logs", rn.Token, b); answered("logs", st, body) {
			_, got := call(t, "GET", "/api/v1/runners/fuzz-runner/logs?task="+logTask+"&after="+strconv.FormatInt(lastLine, 10), admin, nil)
			var lines []silo.LogLine
			if err := json.Unmarshal(got, &lines); err != nil {
				t.Fatalf("read logs back: %v: %s", err, got)
			}
			for _, l := range lines {
				if !utf8.ValidString(l.Message) || strings.ContainsFunc(l.Message, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) || len(l.Message) > silo.MaxLogLineBytes+len(" …(truncated)") || !slices.Contains([]string{"DEBUG", "INFO", "WARN", "ERROR"}, l.Level) || l.TaskID != logTask {
					t.Fatalf("an accepted log line was stored as %+v", l)
				}
				lastLine = max(lastLine, l.ID)
			}
		}

		if st, body := call(t, "POST", "/api/v1/runner/tasks/"+resultTask+"/result", rn.Token, b); answered("result", st, body) {
			_, got := call(t, "GET", "/api/v1/runners/fuzz-runner/tasks", admin, nil)
			var tasks []silo.Task
			if err := json.Unmarshal(got, &tasks); err != nil {
				t.Fatalf("read tasks back: %v: %s", err, got)
			}
			for _, task := range tasks {
				if task.ID != resultTask {
					continue
				}
				if !slices.Contains([]string{silo.TaskSucceeded, silo.TaskFailed, silo.TaskRefused}, task.Status) || len(task.Error) > 4096 || !utf8.ValidString(task.Error) {
					t.Fatalf("an accepted result left task %+v", task)
				}
			}
			resultTask = runningTask(t) // that one is finished
		}
	})
}
