package sqlstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

func mustRunner(t *testing.T, db *sqlstore.DB, name string) *sqlstore.StoredRunner {
	t.Helper()
	r := &sqlstore.StoredRunner{Runner: silo.Runner{RunnerSpec: silo.RunnerSpec{Name: name, Provider: silo.ProviderLocal, StoragePath: "file:///data/" + name, VCPU: 2, MemoryGB: 4},
		Status: silo.RunnerRegistering, CreatedBy: "a@example.org"}, TokenHash: "tok-" + name}
	if err := db.CreateRunner(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunners(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		az := &sqlstore.StoredRunner{Runner: silo.Runner{RunnerSpec: silo.RunnerSpec{Name: "azure-1", Provider: silo.ProviderAzure, Region: "westeurope",
			ServicePrincipalSecret: "s3cret", MemoryMB: 16384}, Status: silo.RunnerProvisioning, CreatedBy: "a@example.org"},
			SealedSecrets: []byte{1, 2, 3}, TokenHash: "h-az"}
		if err := db.CreateRunner(ctx, az); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindRunner(ctx, "azure-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ServicePrincipalSecret != "" {
			t.Fatal("a secret was stored in the clear")
		}
		if got.Region != "westeurope" || got.MemoryMB != 16384 || string(got.SealedSecrets) != "\x01\x02\x03" || got.Status != silo.RunnerProvisioning {
			t.Fatalf("FindRunner = %+v", got)
		}
		local := mustRunner(t, db, "local-1")
		err = db.CreateRunner(ctx, &sqlstore.StoredRunner{Runner: silo.Runner{RunnerSpec: silo.RunnerSpec{Name: "local-1", Provider: silo.ProviderLocal}, Status: silo.RunnerRegistering}})
		wantCode(t, err, silo.EINVALID)

		// Heartbeats bring a runner online; staleness takes it offline.
		r, err := db.RecordHeartbeat(ctx, local.ID, silo.Heartbeat{AgentVersion: "1.2.3", VCPU: 2, MemoryMB: 4096})
		if err != nil || r.Status != silo.RunnerOnline || r.AgentVersion != "1.2.3" || r.LastHeartbeat == nil {
			t.Fatalf("after heartbeat: %+v, %v", r, err)
		}
		c.add(time.Minute)
		names, err := db.MarkStaleRunnersOffline(ctx, c.now().Add(-30*time.Second).UnixMicro(), "no heartbeat for 30s")
		if err != nil || len(names) != 1 || names[0] != "local-1" {
			t.Fatalf("MarkStaleRunnersOffline = %v, %v", names, err)
		}
		if r, _ := db.FindRunner(ctx, "local-1"); r.Status != silo.RunnerOffline || r.StatusReason != "no heartbeat for 30s" {
			t.Fatalf("stale runner = %s %q", r.Status, r.StatusReason)
		}
		if r, _ := db.RecordHeartbeat(ctx, local.ID, silo.Heartbeat{}); r.Status != silo.RunnerOnline || r.StatusReason != "" {
			t.Fatalf("back online = %s %q", r.Status, r.StatusReason)
		}
		// A failed runner stays failed when its agent reports.
		if _, err := db.UpdateRunner(ctx, "azure-1", func(r *sqlstore.StoredRunner) error {
			r.Status, r.StatusReason = silo.RunnerFailed, "bucket access denied"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if r, _ := db.RecordHeartbeat(ctx, az.ID, silo.Heartbeat{}); r.Status != silo.RunnerFailed {
			t.Fatalf("failed runner turned %s", r.Status)
		}

		byToken, err := db.FindRunnerByTokenHash(ctx, "tok-local-1")
		if err != nil || byToken.Name != "local-1" {
			t.Fatalf("FindRunnerByTokenHash = %v, %v", byToken, err)
		}
		// Deregistering frees the name and kills the token.
		if _, err := db.UpdateRunner(ctx, "local-1", func(r *sqlstore.StoredRunner) error { r.Status = silo.RunnerDeregistered; return nil }); err != nil {
			t.Fatal(err)
		}
		_, err = db.FindRunnerByTokenHash(ctx, "tok-local-1")
		wantCode(t, err, silo.EUNAUTHORIZED)
		_, err = db.FindRunner(ctx, "local-1")
		wantCode(t, err, silo.ENOTFOUND)
		mustRunner(t, db, "local-1")
		live, _ := db.ListRunners(ctx, sqlstore.RunnerQuery{})
		all, _ := db.ListRunners(ctx, sqlstore.RunnerQuery{Deregistered: true})
		if len(live) != 2 || len(all) != 3 {
			t.Fatalf("ListRunners: %d live, %d all; want 2 and 3", len(live), len(all))
		}
	})
}

// TestRunnerPages: runners listed a page at a time come by name, each
// once; runners sharing a name (deregistered ones) never straddle two
// pages; the counts match.
func TestRunnerPages(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		for _, n := range []string{"e", "b", "d", "a", "c"} {
			mustRunner(t, db, "r-"+n)
		}
		// r-b is deregistered twice over, then registered again: three
		// runners called r-b.
		for range 2 {
			if _, err := db.UpdateRunner(ctx, "r-b", func(r *sqlstore.StoredRunner) error { r.Status = silo.RunnerDeregistered; return nil }); err != nil {
				t.Fatal(err)
			}
			mustRunner(t, db, "r-b")
		}
		if _, err := db.RecordHeartbeat(ctx, mustRunner(t, db, "r-f").ID, silo.Heartbeat{}); err != nil {
			t.Fatal(err)
		}
		pages := func(q sqlstore.RunnerQuery) (names []string, sizes []int) {
			for {
				page, err := db.ListRunners(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, len(page))
				for _, r := range page {
					names = append(names, r.Name)
				}
				if len(page) < q.Limit {
					return names, sizes
				}
				q.After = page[len(page)-1].Name
			}
		}
		names, sizes := pages(sqlstore.RunnerQuery{Limit: 2})
		if want := []string{"r-a", "r-b", "r-c", "r-d", "r-e", "r-f"}; !slices.Equal(names, want) || !slices.Equal(sizes, []int{2, 2, 2, 0}) {
			t.Fatalf("live runners by pages of 2: %v in pages of %v; want %v", names, sizes, want)
		}
		names, sizes = pages(sqlstore.RunnerQuery{Deregistered: true, Limit: 2})
		if want := []string{"r-a", "r-b", "r-b", "r-b", "r-c", "r-d", "r-e", "r-f"}; !slices.Equal(names, want) || !slices.Equal(sizes, []int{4, 2, 2, 0}) {
			t.Fatalf("all runners by pages of 2: %v in pages of %v; want %v, the three r-b on one page", names, sizes, want)
		}
		if total, online, err := db.CountRunners(ctx); err != nil || total != 6 || online != 1 {
			t.Fatalf("CountRunners = %d, %d online, %v; want 6, 1", total, online, err)
		}
	})
}

func TestTasks(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		r1 := mustRunner(t, db, "runner-1")
		r2 := mustRunner(t, db, "runner-2")
		task, err := db.ClaimTask(ctx, r1.ID)
		if err != nil || task != nil {
			t.Fatalf("claim on empty queue = %v, %v", task, err)
		}
		for i, id := range []string{"t1", "t2", "t3"} {
			c.add(time.Second)
			if err := db.CreateTask(ctx, r1.ID, &silo.Task{ID: id, Type: silo.TaskDiagnostics, Payload: json.RawMessage(`{"n":` + string(rune('0'+i)) + `}`), VCPU: 1, MemoryMB: 100}); err != nil {
				t.Fatal(err)
			}
		}
		// Concurrent claims hand out each task once, oldest first.
		var mu sync.Mutex
		var wg sync.WaitGroup
		claimed := map[string]int{}
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				task, err := db.ClaimTask(ctx, r1.ID)
				if err != nil {
					t.Error(err)
					return
				}
				if task != nil {
					mu.Lock()
					claimed[task.ID]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(claimed) != 3 || claimed["t1"] != 1 || claimed["t2"] != 1 || claimed["t3"] != 1 {
			t.Fatalf("claims = %v, want each of t1..t3 once", claimed)
		}
		// Only the owning runner may report, once.
		_, err = db.FinishTask(ctx, r2.ID, "t1", silo.TaskResult{Status: silo.TaskSucceeded}, nil)
		wantCode(t, err, silo.ENOTFOUND)
		_, err = db.FinishTask(ctx, r1.ID, "t1", silo.TaskResult{Status: "done"}, nil)
		wantCode(t, err, silo.EINVALID)
		done, err := db.FinishTask(ctx, r1.ID, "t1", silo.TaskResult{Status: silo.TaskSucceeded, Output: json.RawMessage(`{"ok":true}`)}, nil)
		if err != nil || done.Status != silo.TaskSucceeded || string(done.Output) != `{"ok":true}` || done.FinishedAt == nil || done.Runner != "runner-1" {
			t.Fatalf("FinishTask = %+v, %v", done, err)
		}
		_, err = db.FinishTask(ctx, r1.ID, "t1", silo.TaskResult{Status: silo.TaskFailed}, nil)
		wantCode(t, err, silo.ECONFLICT)

		// Logs belong to the runner's own tasks.
		lines := []silo.LogLine{{Time: c.now(), Level: "INFO", Message: "hello"}, {Time: c.now(), Level: "WARN", Message: "careful"}}
		if err := db.AppendTaskLogs(ctx, r1.ID, "t2", lines); err != nil {
			t.Fatal(err)
		}
		wantCode(t, db.AppendTaskLogs(ctx, r2.ID, "t2", lines), silo.ENOTFOUND)
		got, err := db.ListTaskLogs(ctx, []string{"t2", "t3"}, 0, 0)
		if err != nil || len(got) != 2 || got[1].Message != "careful" || got[0].TaskID != "t2" {
			t.Fatalf("ListTaskLogs = %+v, %v", got, err)
		}
		if more, _ := db.ListTaskLogs(ctx, []string{"t2"}, got[0].ID, 0); len(more) != 1 {
			t.Fatalf("ListTaskLogs after first = %d lines, want 1", len(more))
		}

		// A restarted agent that no longer runs t2 gets it failed.
		if lost, _ := db.FailLostTasks(ctx, r1.ID, []string{"t3"}, c.now().Add(-time.Hour), "the runner restarted"); len(lost) != 0 {
			t.Fatalf("tasks claimed just now were failed as lost: %v", lost)
		}
		lost, err := db.FailLostTasks(ctx, r1.ID, []string{"t3"}, c.now().Add(time.Second), "the runner restarted")
		if err != nil || len(lost) != 1 || lost[0] != "t2" {
			t.Fatalf("FailLostTasks = %v, %v", lost, err)
		}
		// Deregistering cancels what is left.
		db.CreateTask(ctx, r1.ID, &silo.Task{ID: "t4", Type: silo.TaskDiagnostics})
		db.UpdateRunner(ctx, "runner-1", func(r *sqlstore.StoredRunner) error { r.Status = silo.RunnerDeregistered; return nil })
		tasks, _ := db.ListTasks(ctx, r1.ID, 10)
		states := map[string]string{}
		for _, t := range tasks {
			states[t.ID] = t.Status
		}
		if states["t1"] != "succeeded" || states["t2"] != "failed" || states["t3"] != "cancelled" || states["t4"] != "cancelled" {
			t.Fatalf("task states = %v", states)
		}
	})
}

// TestTouchRunners: heartbeats written together move each online runner's
// last heartbeat on (never back), and name the runners no longer online,
// whose heartbeats must be written in full.
func TestTouchRunners(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		on, off := mustRunner(t, db, "on"), mustRunner(t, db, "off")
		for _, r := range []*sqlstore.StoredRunner{on, off} {
			if _, err := db.RecordHeartbeat(ctx, r.ID, silo.Heartbeat{}); err != nil {
				t.Fatal(err)
			}
		}
		t0 := c.now()
		if _, err := db.MarkStaleRunnersOffline(ctx, t0.Add(time.Second).UnixMicro(), "gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RecordHeartbeat(ctx, on.ID, silo.Heartbeat{}); err != nil {
			t.Fatal(err)
		}
		last := func(r *sqlstore.StoredRunner) time.Time {
			got, err := db.FindRunner(ctx, r.Name)
			if err != nil || got.LastHeartbeat == nil {
				t.Fatalf("runner %s: %+v, %v", r.Name, got, err)
			}
			return *got.LastHeartbeat
		}
		gone, err := db.TouchRunners(ctx, map[int64]time.Time{on.ID: t0.Add(5 * time.Second), off.ID: t0.Add(5 * time.Second)})
		if err != nil || len(gone) != 1 || gone[0] != off.ID {
			t.Fatalf("TouchRunners = %v, %v; want the offline runner", gone, err)
		}
		if got := last(on); !got.Equal(t0.Add(5 * time.Second)) {
			t.Fatalf("last heartbeat %v, want %v", got, t0.Add(5*time.Second))
		}
		if got := last(off); !got.Equal(t0) {
			t.Fatalf("an offline runner's heartbeat was touched: %v", got)
		}
		if gone, err := db.TouchRunners(ctx, map[int64]time.Time{on.ID: t0.Add(2 * time.Second)}); err != nil || len(gone) != 0 {
			t.Fatalf("an older heartbeat: %v, %v", gone, err)
		}
		if got := last(on); !got.Equal(t0.Add(5 * time.Second)) {
			t.Fatalf("an older heartbeat moved the last one back to %v", got)
		}
		// Heartbeats of more runners than one statement takes: every
		// batch is written, and each runner that is not online is named.
		many := map[int64]time.Time{on.ID: t0.Add(7 * time.Second)}
		for i := range int64(1200) {
			many[1_000_000+i] = t0 // no such runner
		}
		gone, err = db.TouchRunners(ctx, many)
		if err != nil || len(gone) != 1200 || slices.Contains(gone, on.ID) {
			t.Fatalf("TouchRunners of %d = %d gone, %v; want the 1200 unknown", len(many), len(gone), err)
		}
		if got := last(on); !got.Equal(t0.Add(7 * time.Second)) {
			t.Fatalf("last heartbeat %v after a many-batch write, want %v", got, t0.Add(7*time.Second))
		}

		// A runner found running nothing is seen running its next claim.
		if running, err := db.RunningTasks(ctx, on.ID); err != nil || len(running) != 0 {
			t.Fatalf("RunningTasks = %v, %v", running, err)
		}
		if err := db.CreateTask(ctx, on.ID, &silo.Task{ID: "t1", Type: silo.TaskDiagnostics}); err != nil {
			t.Fatal(err)
		}
		if task, err := db.ClaimTask(ctx, on.ID); err != nil || task == nil {
			t.Fatalf("ClaimTask = %v, %v", task, err)
		}
		if running, err := db.RunningTasks(ctx, on.ID); err != nil || len(running) != 1 || running[0].ID != "t1" {
			t.Fatalf("RunningTasks after a claim = %v, %v", running, err)
		}
	})
}

// TestFinishTasksTogether: results that arrive together are each taken or
// refused on their own (SQLite takes them in one transaction), with their
// log lines, and each says whether its runner has a task queued.
func TestFinishTasksTogether(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		r1, r2 := mustRunner(t, db, "r1"), mustRunner(t, db, "r2")
		const n = 12
		for i := range n {
			if err := db.CreateTask(ctx, r1.ID, &silo.Task{ID: fmt.Sprintf("t%d", i), Type: silo.TaskDiagnostics}); err != nil {
				t.Fatal(err)
			}
			if task, err := db.ClaimTask(ctx, r1.ID); err != nil || task == nil {
				t.Fatalf("ClaimTask = %v, %v", task, err)
			}
		}
		if err := db.CreateTask(ctx, r1.ID, &silo.Task{ID: "later", Type: silo.TaskDiagnostics}); err != nil {
			t.Fatal(err)
		}
		type outcome struct {
			task   *silo.Task
			queued bool
			err    error
		}
		out := make([]outcome, n+2)
		var wg sync.WaitGroup
		for i := range n + 2 {
			wg.Go(func() {
				runner, id := r1.ID, fmt.Sprintf("t%d", i)
				switch i {
				case n: // another runner's task
					runner, id = r2.ID, "t0"
				case n + 1: // no such task
					id = "nope"
				}
				res := silo.TaskResult{Status: silo.TaskSucceeded, Output: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
					Logs: []silo.LogLine{{Time: c.now(), Level: "INFO", Message: fmt.Sprintf("line of %d", i)}}}
				task, queued, err := db.FinishTaskNext(ctx, runner, id, res, nil)
				out[i] = outcome{task, queued, err}
			})
		}
		wg.Wait()
		for i := range n {
			o := out[i]
			if o.err != nil || o.task == nil || o.task.Status != silo.TaskSucceeded || string(o.task.Output) != fmt.Sprintf(`{"i":%d}`, i) || !o.queued {
				t.Fatalf("result %d = %+v", i, o)
			}
		}
		wantCode(t, out[n].err, silo.ENOTFOUND)
		wantCode(t, out[n+1].err, silo.ENOTFOUND)
		ids := make([]string, n)
		for i := range n {
			ids[i] = fmt.Sprintf("t%d", i)
		}
		if lines, err := db.ListTaskLogs(ctx, ids, 0, 0); err != nil || len(lines) != n {
			t.Fatalf("log lines = %d, %v; want %d", len(lines), err, n)
		}
		// Taken once: a second delivery is refused.
		_, _, err := db.FinishTaskNext(ctx, r1.ID, "t3", silo.TaskResult{Status: silo.TaskFailed}, nil)
		wantCode(t, err, silo.ECONFLICT)
		if task, queued, err := db.FinishTaskNext(ctx, r2.ID, "later", silo.TaskResult{Status: silo.TaskSucceeded}, nil); err == nil {
			t.Fatalf("another runner's queued task was finished: %+v %v", task, queued)
		}
	})
}
