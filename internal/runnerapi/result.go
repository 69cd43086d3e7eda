package runnerapi

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
	"github.com/silofl/silo/internal/sqlstore"
)

// Result bodies: the JSON header (output and log lines) is bounded on its
// own; parts, by what the task's step may send back (Task.MaxResult, or
// maxPartsDefault for a task that sets none). Parts up to inMemoryParts in
// all are read at once and stored with the result in one transaction;
// larger ones stream into the store chunk by chunk.
const (
	maxResultHeader = 16 << 20
	maxPartsDefault = 1 << 20
	inMemoryParts   = 8 << 20
)

// TaskResult answers POST /api/v1/runner/tasks/{id}/result: it takes a
// running task's result (a frames body), wakes its session and, with
// ?next, goes on as a long-poll for the runner's next task.
func (a *API) TaskResult(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFrom(ctx)
	next, err := waitParam(r, "next", 0)
	if err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	// Whose task it is, and whether it still wants a result, is settled
	// before a byte of the body is read: another runner's task, or a
	// replayed result, costs the server nothing.
	head, err := a.db.FindTaskHead(ctx, r.PathValue("id"))
	if err != nil || head.RunnerID != rn.ID {
		httpjson.Error(w, r, a.Logger, silo.Errorf(silo.ENOTFOUND, "no task %s for this runner", r.PathValue("id")))
		return
	}
	if head.Status != silo.TaskRunning {
		httpjson.Error(w, r, a.Logger, silo.Errorf(silo.ECONFLICT, "task %s is %s, not running: its result was not accepted", head.ID, head.Status))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != silo.FramesContentType {
		httpjson.Error(w, r, a.Logger, silo.Errorf(silo.EINVALID, "a task result is a frames body (Content-Type: %s), not %s: upgrade the runner", silo.FramesContentType, ct))
		return
	}
	limit := cmp.Or(head.MaxResult, maxPartsDefault)
	if r.ContentLength > limit+maxResultHeader {
		httpjson.Error(w, r, a.Logger, httpjson.TooLarge(&http.MaxBytesError{Limit: limit + maxResultHeader}))
		return
	}
	body := bufio.NewReader(http.MaxBytesReader(w, r.Body, limit+maxResultHeader))
	var res silo.TaskResult
	if err := silo.ReadFrameHeader(body, maxResultHeader, &res); err != nil {
		if errors.Is(err, silo.ErrFrameHeaderTooLarge) || httpjson.IsMaxBytes(err) {
			err = httpjson.TooLarge(&http.MaxBytesError{Limit: maxResultHeader})
		} else {
			err = silo.Errorf(silo.EINVALID, "task result: %v", err)
		}
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	if err := silo.CheckParts(res.Parts, limit); err != nil {
		if silo.ErrorCode(err) == silo.EINVALID && strings.Contains(silo.ErrorMessage(err), "limit") {
			err = fmt.Errorf("%w%w", err, httpjson.ErrTooLarge)
		}
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	parts, err := a.readParts(ctx, head, body, res.Parts)
	if err != nil {
		if httpjson.IsMaxBytes(err) {
			err = httpjson.TooLarge(err)
		}
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	if len(res.Error) > 4096 {
		res.Error = res.Error[:4096]
	}
	res.Error = printableLines(res.Error)
	res.Logs, res.Log = append(res.Logs, res.Log...), nil
	if len(res.Logs) > silo.MaxLogLinesPerPost {
		res.Logs = res.Logs[len(res.Logs)-silo.MaxLogLinesPerPost:]
	}
	a.cleanLogLines(head.ID, res.Logs)
	// Taken before the result is, the wake channel cannot miss a task
	// queued after the store said none was.
	woken := a.wake.channel(rn.ID)
	t, queued, err := a.db.FinishTaskNext(ctx, rn.ID, head.ID, res, parts)
	if err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	a.Logger.Debug("task finished", "runner", rn.Name, "task", t.ID, "type", t.Type, "status", t.Status)
	if t.Session != "" {
		a.engine.Wake(t.Session)
	}
	if t.Type == silo.TaskConnect {
		if err := a.Connected(ctx, t); err != nil {
			httpjson.Error(w, r, a.Logger, err)
			return
		}
	}
	if next == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// The result is taken: say so at once, then go on as a long-poll for
	// the runner's next task. An empty body means none came.
	w.Header().Set("Content-Type", silo.FramesContentType)
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	nt, err := a.nextTaskAfter(ctx, rn, next, woken, queued)
	if err != nil || nt == nil {
		return
	}
	if sent, err := a.writeTask(ctx, w, r, nt); !sent {
		a.undeliverable(ctx, nt, err)
	} else if err != nil {
		a.Logger.Warn("send task", "runner", rn.Name, "task", nt.ID, "err", err)
	}
}

// readParts reads a result's parts: small ones into memory, to be stored
// with the result; large ones streamed into the session's blobs now.
func (a *API) readParts(ctx context.Context, t *sqlstore.TaskHead, body io.Reader, list []silo.Part) (map[string][]byte, error) {
	var total int64
	for _, p := range list {
		total += p.Size
	}
	parts := map[string][]byte{}
	for _, p := range list {
		if total <= inMemoryParts {
			b := make([]byte, p.Size)
			if _, err := io.ReadFull(body, b); err != nil {
				return nil, silo.Errorf(silo.EINVALID, "task result: part %s ends after fewer than its %d bytes", p.Name, p.Size)
			}
			parts[p.Name] = b
			continue
		}
		if t.Session == "" {
			return nil, silo.Errorf(silo.EINVALID, "task %s belongs to no session: its result takes no parts", t.ID)
		}
		if _, err := a.db.WriteSessionBlob(ctx, t.Session, sqlstore.ResultBlob(t.ID, p.Name), io.LimitReader(body, p.Size), p.Size); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// TaskLogs answers POST /api/v1/runner/tasks/{id}/logs.
func (a *API) TaskLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFrom(ctx)
	var lines []silo.LogLine
	if err := httpjson.Decode(w, r, &lines); err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	if len(lines) > silo.MaxLogLinesPerPost {
		httpjson.Error(w, r, a.Logger, silo.Errorf(silo.EINVALID, "at most %d log lines per request", silo.MaxLogLinesPerPost))
		return
	}
	a.cleanLogLines(r.PathValue("id"), lines)
	if err := a.db.AppendTaskLogs(ctx, rn.ID, r.PathValue("id"), lines); err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// cleanLogLines bounds and tidies a runner's log lines: truncated, valid
// UTF-8, a known level, a time not in the future.
func (a *API) cleanLogLines(taskID string, lines []silo.LogLine) {
	now := a.Clock.Now()
	for i := range lines {
		l := &lines[i]
		l.TaskID = taskID
		if len(l.Message) > silo.MaxLogLineBytes {
			l.Message = strings.ToValidUTF8(l.Message[:silo.MaxLogLineBytes], "") + " …(truncated)"
		}
		if !utf8.ValidString(l.Message) {
			l.Message = strings.ToValidUTF8(l.Message, "?")
		}
		l.Message = strings.Map(printable, l.Message)
		switch l.Level {
		case "DEBUG", "INFO", "WARN", "ERROR":
		default:
			l.Level = "INFO"
		}
		if l.Time.IsZero() || l.Time.After(now.Add(time.Minute)) {
			l.Time = now
		}
	}
}

// printable replaces control characters (tabs aside) in a runner's log
// line with "?", as invalid UTF-8 is: they would garble terminals and
// pages, and PostgreSQL cannot store a NUL. The line never grows.
func printable(r rune) rune {
	if r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)) {
		return '?'
	}
	return r
}

// printableLines is a runner's multi-line text (a task's error) as it is
// stored and shown: valid UTF-8, line breaks kept, other control
// characters replaced as printable does.
func printableLines(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' {
			return r
		}
		return printable(r)
	}, strings.ToValidUTF8(s, "?"))
}

// TaskProgress answers POST /api/v1/runner/tasks/{id}/progress.
func (a *API) TaskProgress(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFrom(ctx)
	var p silo.TaskProgress
	if err := httpjson.Decode(w, r, &p); err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	if p.Done < 0 || p.Total < 0 || len(p.Unit) > 64 {
		httpjson.Error(w, r, a.Logger, silo.Errorf(silo.EINVALID, "progress: done and total must be ≥ 0 and the unit at most 64 bytes"))
		return
	}
	if err := silo.CheckText("unit", p.Unit, false); err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	if err := a.db.SetTaskProgress(ctx, rn.ID, r.PathValue("id"), p); err != nil {
		httpjson.Error(w, r, a.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
