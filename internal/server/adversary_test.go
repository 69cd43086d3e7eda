package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

// TestAdversarialRunnerProtocol: a runner that plays the protocol against
// the server cannot get a result in where it does not belong — not with
// another runner's token, not for another runner's task, not as a body
// larger than the limit, not by replaying a result, not for a round that
// already closed — and the session completes with the honest runners.
func TestAdversarialRunnerProtocol(t *testing.T) {
	f := newFederation(t)
	ctx := context.Background()
	f.stops["c"]()
	rotated, err := f.admin.RotateRunnerToken(ctx, "hospital-c")
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(f.ts.URL, rotated.Token)
	rogue, err := f.admin.RegisterRunner(ctx, silo.RunnerSpec{Name: "rogue", Provider: silo.ProviderLocal, VCPU: 1, MemoryGB: 1, StoragePath: "file://" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rc := client.New(f.ts.URL, rogue.Token)
	hb := silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion, AgentVersion: "adversary", VCPU: 2, MemoryMB: 1024}
	next := func(typ string) *silo.Task {
		t.Helper()
		var got *silo.Task
		eventually(t, "a "+typ+" task for hospital-c", func() bool {
			c.Heartbeat(ctx, hb)
			task, _, err := c.PollTask(ctx, 200*time.Millisecond, nil)
			if err == nil && task != nil && task.Type == typ {
				got = task
			}
			return got != nil
		})
		return got
	}
	// taskOf waits for runner's task of a phase to end well, and returns it.
	taskOf := func(id, typ string, round int, runner string) *silo.Task {
		t.Helper()
		var got *silo.Task
		eventually(t, runner+"'s "+typ+" result", func() bool {
			tasks, _ := f.db.ListSessionTasks(ctx, id, round, typ)
			for _, task := range tasks {
				if task.Runner == runner && task.Status == silo.TaskSucceeded {
					got = task
				}
			}
			return got != nil
		})
		return got
	}

	s, err := f.api.CreateSession(ctx, sessionConfig("adversary", func(m map[string]any) { m["rounds"] = 2; m["round_timeout"] = "1m" }))
	if err != nil {
		t.Fatal(err)
	}
	stats := next(silo.TaskStats)
	honest := taskOf(s.ID, silo.TaskStats, 0, "hospital-b")

	// Another runner's token cannot answer for hospital-c, and hospital-c
	// cannot answer hospital-b's task.
	if _, _, err := rc.ReportTask(ctx, stats.ID, silo.TaskResult{Status: silo.TaskSucceeded, Output: honest.Output}, nil, nil); silo.ErrorCode(err) != silo.ENOTFOUND {
		t.Fatalf("a result under another runner's token: %v", err)
	}
	if _, _, err := c.ReportTask(ctx, honest.ID, silo.TaskResult{Status: silo.TaskFailed, Error: "overwritten"}, nil, nil); silo.ErrorCode(err) != silo.ENOTFOUND {
		t.Fatalf("a result for another runner's task: %v", err)
	}
	// A result body over the limit is refused with 413 and not taken; one
	// that says its length up front is refused before it is read.
	const hugeLen = 257 << 20
	huge := io.MultiReader(strings.NewReader(`{"status":"succeeded","output":{"junk":"`), io.LimitReader(zeros{}, hugeLen), strings.NewReader("\"}}\n"))
	req, _ := http.NewRequest("POST", f.ts.URL+"/api/v1/runner/tasks/"+stats.ID+"/result", huge)
	req.ContentLength = hugeLen + 42
	req.Header.Set("Authorization", "Bearer "+rotated.Token)
	req.Header.Set("Content-Type", silo.FramesContentType)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("a 257 MiB result: status %d, want 413", resp.StatusCode)
		}
	} // else the server closed the connection mid-upload: refused as well
	if got, _ := f.db.FindTask(ctx, stats.ID); got.Status != silo.TaskRunning {
		t.Fatalf("after an oversized result the task is %s", got.Status)
	}

	// hospital-c answers with plausible statistics; a replay is refused.
	if _, _, err := c.ReportTask(ctx, stats.ID, silo.TaskResult{Status: silo.TaskSucceeded, Output: honest.Output}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReportTask(ctx, stats.ID, silo.TaskResult{Status: silo.TaskSucceeded, Output: []byte(`{"n_train":1}`)}, nil, nil); silo.ErrorCode(err) != silo.ECONFLICT {
		t.Fatalf("a replayed result: %v", err)
	}
	if got, _ := f.db.FindTask(ctx, stats.ID); !bytes.Equal(got.Output, honest.Output) {
		t.Fatalf("a replay overwrote the result: %s", got.Output)
	}

	// hospital-c sits on its round-1 update until the round closed without
	// it; the late update is refused.
	fit := next(silo.TaskFit)
	if fit.Round != 1 {
		t.Fatalf("fit task of round %d, want 1", fit.Round)
	}
	update := taskOf(s.ID, silo.TaskFit, 1, "hospital-a")
	taskOf(s.ID, silo.TaskFit, 1, "hospital-b")
	f.clock.Add(61 * time.Second)
	eventually(t, "round 1 to close without hospital-c", func() bool {
		got, _ := f.db.FindTask(ctx, fit.ID)
		return got.Status == silo.TaskCancelled
	})
	if _, _, err := c.ReportTask(ctx, fit.ID, silo.TaskResult{Status: silo.TaskSucceeded, Output: update.Output}, nil, nil); silo.ErrorCode(err) != silo.ECONFLICT {
		t.Fatalf("an update for a closed round: %v", err)
	}

	waitPastTimeouts(t, f, s.ID, "hospital-c")
	s, _ = f.api.GetSession(ctx, s.ID)
	if s.Status != silo.SessionCompleted || !(s.Latest["roc_auc"] > 0.95) {
		t.Fatalf("session with an adversarial client: %s %q %v", s.Status, s.StatusReason, s.Latest)
	}
	m, _ := f.api.SessionMetrics(ctx, s.ID)
	for _, cm := range m.Clients {
		if cm.Dataset == "hospital_c" {
			t.Fatalf("metrics recorded for the client that never evaluated: %+v", cm)
		}
	}
}

// zeros is an endless reader of the byte '0'.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}
