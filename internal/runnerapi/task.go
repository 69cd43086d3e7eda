package runnerapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/sqlstore"
)

// MaxPollWait bounds a long-poll, below common proxy idle timeouts.
const MaxPollWait = 60 * time.Second

// PollTask answers GET /api/v1/runner/tasks: the runner's next task as a
// frames body, or 204 when none came within ?wait.
func (a *API) PollTask(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFrom(ctx)
	wait, err := waitParam(r, "wait", 25*time.Second)
	if err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	t, err := a.nextTask(ctx, rn, wait)
	if err != nil && ctx.Err() != nil {
		return // the agent hung up (stopping, or its network cut)
	} else if err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	if t == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", silo.FramesContentType)
	if sent, err := a.writeTask(ctx, w, r, t); !sent {
		a.undeliverable(ctx, t, err)
		w.WriteHeader(http.StatusNoContent)
	} else if err != nil {
		// The task is claimed but did not arrive whole: the runner's next
		// heartbeat shows it lost, and it is queued again.
		a.Logger.Warn("send task", "runner", rn.Name, "task", t.ID, "err", err)
	}
}

// undeliverable fails a claimed task the server could not even start to
// send (its parts are gone: the session moved on or ended).
// A store that failed on the way (a dropped connection) fails nothing: the
// task goes back in the queue for the runner's next poll.
func (a *API) undeliverable(ctx context.Context, t *silo.Task, cause error) {
	ctx = context.WithoutCancel(ctx)
	a.Logger.Warn("task not sent", "task", t.ID, "session", t.Session, "err", cause)
	if silo.ErrorCode(cause) == silo.EINTERNAL {
		if _, err := a.db.UnclaimTask(ctx, t.ID); err != nil {
			a.Logger.Warn("put an unsent task back in the queue", "task", t.ID, "err", err)
		}
		return
	}
	if _, err := a.db.FailTask(ctx, t.ID, "the server could not send this task: "+silo.ErrorMessage(cause)); err != nil {
		a.Logger.Warn("fail an unsent task", "task", t.ID, "err", err)
	}
	if t.Session != "" {
		a.engine.Wake(t.Session)
	}
}

// waitParam reads a long-poll duration from the query.
func waitParam(r *http.Request, name string, def time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > MaxPollWait {
		return 0, silo.FieldErrorf(name, "%s %q must be a duration from 0s to %s", name, v, MaxPollWait)
	}
	return d, nil
}

// nextTask claims the runner's next task, waiting up to wait for one. While
// it waits, a session's driver on this server may hand it a task it queued
// claimed (waker.claim), which saves the claim.
func (a *API) nextTask(ctx context.Context, rn *sqlstore.StoredRunner, wait time.Duration) (*silo.Task, error) {
	return a.nextTaskAfter(ctx, rn, wait, nil, true)
}

// nextTaskAfter is nextTask after a look that found nothing queued (look
// false) since woken was taken: the first claim is skipped.
func (a *API) nextTaskAfter(ctx context.Context, rn *sqlstore.StoredRunner, wait time.Duration, woken <-chan struct{}, look bool) (*silo.Task, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		// Take the wake channel before looking, so a task queued between
		// the look and the wait is not missed.
		if woken == nil || look {
			woken = a.wake.channel(rn.ID)
			t, err := a.db.ClaimTask(ctx, rn.ID)
			if err != nil || t != nil {
				return t, err
			}
		}
		look = true
		// On SQLite this server queues every task, and wakes the poll
		// itself; on PostgreSQL another replica's task wakes it through the
		// store (sqlstore.Listen). While the store does not hear the other
		// replicas (its listener reconnecting), look again now and then.
		var recheck <-chan time.Time
		if a.db.Dialect() == "postgres" && !a.db.Listening() {
			recheck = time.After(2 * time.Second)
		}
		h := a.wake.ready(rn.ID)
		select {
		case t := <-h.task:
			if t != nil {
				return t, nil
			}
			continue // let go: look again
		case <-woken:
		case <-recheck:
		case <-deadline.C:
			return a.wake.leave(ctx, rn.ID, h), nil
		case <-ctx.Done():
			return a.wake.leave(ctx, rn.ID, h), ctx.Err()
		}
		if t := a.wake.leave(ctx, rn.ID, h); t != nil {
			return t, nil
		}
		woken = nil
	}
}

// writeTask sends a claimed task as a frames body: its JSON, then each part
// the runner does not already hold (by the digests it listed), streamed
// from the session's blobs. It reports whether it wrote anything.
func (a *API) writeTask(ctx context.Context, w io.Writer, r *http.Request, t *silo.Task) (bool, error) {
	// The runner lists what it holds by digest, or by a digest's first
	// characters (at least MinHaveDigest): a prefix that matches another
	// part only costs the runner a fetch of that part (GET …/parts/NAME),
	// which it checks against the full digest.
	var have []string
	for _, d := range strings.Split(r.Header.Get(silo.HaveHeader), ",") {
		if d = strings.TrimSpace(d); len(d) >= silo.MinHaveDigest && len(have) < 64 {
			have = append(have, d)
		}
	}
	held := func(digest string) bool {
		return slices.ContainsFunc(have, func(h string) bool { return strings.HasPrefix(digest, h) })
	}
	names := make([]string, len(t.Inputs))
	for i, in := range t.Inputs {
		names[i] = in.Blob
	}
	infos, err := a.db.SessionBlobInfos(ctx, t.Session, names)
	if err != nil {
		return false, err
	}
	t.Parts = make([]silo.Part, len(infos))
	for i, info := range infos {
		t.Parts[i] = silo.Part{Name: t.Inputs[i].Part, Size: info.Size, Digest: info.Digest[:min(len(info.Digest), silo.PartDigestChars)], Cached: held(info.Digest)}
	}
	if err := silo.WriteFrames(w, wireTask{ID: t.ID, Type: t.Type, Payload: t.Payload, VCPU: t.VCPU, MemoryMB: t.MemoryMB, Parts: t.Parts,
		Session: t.Session, Round: t.Round, Dataset: t.Dataset}); err != nil {
		return true, err
	}
	for i, p := range t.Parts {
		if p.Cached {
			continue
		}
		if data := infos[i].Data; data != nil {
			if int64(len(data)) != p.Size {
				return true, fmt.Errorf("blob %s of session %s: %d bytes stored, %d expected", t.Inputs[i].Blob, t.Session, len(data), p.Size)
			}
			if _, err := w.Write(data); err != nil {
				return true, err
			}
			continue
		}
		if err := a.db.CopySessionBlob(ctx, t.Session, t.Inputs[i].Blob, w); err != nil {
			return true, err
		}
	}
	return true, nil
}

// wireTask is a task as it goes to its runner: what the runner needs to run
// it, without the server's bookkeeping (its runner, status and times),
// which is much of a small task's bytes.
type wireTask struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	VCPU     int             `json:"vcpu"`
	MemoryMB int             `json:"memory_mb"`
	Parts    []silo.Part     `json:"parts,omitempty"`
	Session  string          `json:"session,omitempty"`
	Round    int             `json:"round,omitempty"`
	Dataset  string          `json:"dataset,omitempty"`
}

// TaskPart answers GET /api/v1/runner/tasks/{id}/parts/{part}: one input
// part of a task the runner is running, for one it did not hold after all.
func (a *API) TaskPart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFrom(ctx)
	t, err := a.db.FindTask(ctx, r.PathValue("id"))
	if err != nil || t.Runner != rn.Name || t.Status != silo.TaskRunning {
		httpjson.Error(w, r, a.Logger, silo.Errorf(silo.ENOTFOUND, "no running task %s for this runner", r.PathValue("id")))
		return
	}
	i := slices.IndexFunc(t.Inputs, func(in silo.PartBlob) bool { return in.Part == r.PathValue("part") })
	if i < 0 {
		httpjson.Error(w, r, a.Logger, silo.Errorf(silo.ENOTFOUND, "task %s has no part %s", t.ID, r.PathValue("part")))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := a.db.CopySessionBlob(ctx, t.Session, t.Inputs[i].Blob, w); err != nil {
		a.Logger.Warn("send task part", "task", t.ID, "part", t.Inputs[i].Part, "err", err)
	}
}
