package server_test

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

// TestResultBodyReadOnlyForItsRunner: a runner that posts a huge result for
// a task that is not its own, does not exist, or no longer runs is refused
// before the server reads its body: sending 200 MiB without a declared
// length gets the answer after a few MiB at most.
func TestResultBodyReadOnlyForItsRunner(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := client.New(e.ts.URL, e.admin)
	var tokens []string
	for _, name := range []string{"owner", "rogue"} {
		r, err := admin.RegisterRunner(ctx, silo.RunnerSpec{Name: name, Provider: silo.ProviderLocal, StoragePath: "file://" + t.TempDir(), VCPU: 1, MemoryGB: 1})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, r.Token)
	}
	task, err := admin.QueueDiagnostics(ctx, "owner", 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	const huge = 200 << 20
	for _, tc := range []struct {
		name, token, task string
		status            int
	}{
		{"another runner's task", tokens[1], task.ID, http.StatusNotFound},
		{"no such task", tokens[1], "task_nope", http.StatusNotFound},
		{"its own task, not yet running", tokens[0], task.ID, http.StatusConflict},
	} {
		var sent atomic.Int64
		body := &countingZeros{left: huge, sent: &sent}
		req, _ := http.NewRequest("POST", e.ts.URL+"/api/v1/runner/tasks/"+tc.task+"/result", body)
		req.ContentLength = -1 // chunked: the server cannot refuse by the declared length
		req.Header.Set("Authorization", "Bearer "+tc.token)
		req.Header.Set("Content-Type", silo.FramesContentType)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
			}
		} // else the server closed the connection mid-upload: refused as well
		if n := sent.Load(); n > 16<<20 {
			t.Errorf("%s: the server took %d MiB of the body before refusing it", tc.name, n>>20)
		}
	}
}

// countingZeros is a body of left zero bytes that counts what was taken.
type countingZeros struct {
	left int64
	sent *atomic.Int64
}

func (z *countingZeros) Read(p []byte) (int, error) {
	if z.left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.left))
	clear(p[:n])
	z.left -= int64(n)
	z.sent.Add(int64(n))
	return n, nil
}
