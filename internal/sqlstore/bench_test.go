package sqlstore_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
)

// The store's hot paths on SQLite, one statement or transaction at a time:
// what a round of a session costs the store.

// cpuPerOp reports the process's CPU time per operation (cpu-µs/op): on a
// shared machine it measures work where wall time measures the neighbours.
func cpuPerOp(b *testing.B) {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	b.Cleanup(func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpu()-start).Microseconds())/float64(b.N), "cpu-µs/op")
		}
	})
}

func benchStore(b *testing.B) (*sqlstore.DB, *sqlstore.StoredRunner) {
	db := sqlstore.New(filepath.Join(b.TempDir(), "silo.db"))
	if err := db.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	r := &sqlstore.StoredRunner{Runner: silo.Runner{RunnerSpec: silo.RunnerSpec{Name: "r", Provider: silo.ProviderLocal, StoragePath: "file:///data/r", VCPU: 2, MemoryGB: 4},
		Status: silo.RunnerRegistering, CreatedBy: "a@example.org"}, TokenHash: "tok-r"}
	if err := db.CreateRunner(context.Background(), r); err != nil {
		b.Fatal(err)
	}
	return db, r
}

// BenchmarkTaskRoundTrip queues a task, claims it and takes its result
// with a small part and three log lines: a runner's share of a step.
func BenchmarkTaskRoundTrip(b *testing.B) {
	db, r := benchStore(b)
	ctx := context.Background()
	res := silo.TaskResult{Status: silo.TaskSucceeded, Output: json.RawMessage(`{"n_train":80,"steps":3}`),
		Logs: []silo.LogLine{{Message: "task started"}, {Message: "local training done"}, {Message: "task succeeded"}}}
	b.ResetTimer()
	cpuPerOp(b)
	for i := range b.N {
		id := "t" + strconv.Itoa(i)
		if err := db.CreateTask(ctx, r.ID, &silo.Task{ID: id, Type: silo.TaskDiagnostics, VCPU: 1, MemoryMB: 16}); err != nil {
			b.Fatal(err)
		}
		if t, err := db.ClaimTask(ctx, r.ID); err != nil || t == nil {
			b.Fatal(t, err)
		}
		if _, err := db.FindTaskHead(ctx, id); err != nil {
			b.Fatal(err)
		}
		if _, err := db.FinishTask(ctx, r.ID, id, res, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaimNothing is a long-poll's look when nothing is queued.
func BenchmarkClaimNothing(b *testing.B) {
	db, r := benchStore(b)
	ctx := context.Background()
	cpuPerOp(b)
	for range b.N {
		if t, err := db.ClaimTask(ctx, r.ID); err != nil || t != nil {
			b.Fatal(t, err)
		}
	}
}

// BenchmarkTaskHead is one small read on the read pool.
func BenchmarkTaskHead(b *testing.B) {
	db, r := benchStore(b)
	ctx := context.Background()
	if err := db.CreateTask(ctx, r.ID, &silo.Task{ID: "t", Type: silo.TaskDiagnostics}); err != nil {
		b.Fatal(err)
	}
	cpuPerOp(b)
	for range b.N {
		if _, err := db.FindTaskHead(ctx, "t"); err != nil {
			b.Fatal(err)
		}
	}
}
