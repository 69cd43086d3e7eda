package server

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/orchestrator"
	"github.com/silofl/silo/internal/sqlstore"
)

// The runner protocol: routes the agents call with their runner token. They
// dial out only: the server never connects to a runner.

// agentPrefix is where the runner protocol's routes live.
const agentPrefix = "/api/v1/runner/"

// agentRoutes declares the routes agents call.
func (s *Server) agentRoutes() []Route {
	return []Route{
		{Method: "POST", Path: "/api/v1/runner/heartbeat", Access: AccessRunner, Summary: "Agent heartbeat: resources and version; marks the runner online", In: silo.Heartbeat{}, Out: silo.HeartbeatReply{}, Handler: s.handleHeartbeat},
		{Method: "GET", Path: "/api/v1/runner/tasks", Access: AccessRunner, Summary: "Long-poll for the next task (?wait=25s): a frames body (the task as a JSON line, then its binary parts), or 204 when none came; the X-Silo-Have header lists part digests the runner holds", Handler: s.handlePollTask},
		{Method: "POST", Path: "/api/v1/runner/tasks/{id}/result", Access: AccessRunner, Summary: "Report a task's result as a frames body (the result as a JSON line with its log lines, then its binary parts); with ?next=25s the answer (200 once the result is taken) goes on with the runner's next task, if one comes", Handler: s.handleTaskResult},
		{Method: "GET", Path: "/api/v1/runner/tasks/{id}/parts/{part}", Access: AccessRunner, Summary: "One binary part of a task the runner is running", Handler: s.handleTaskPart},
		{Method: "POST", Path: "/api/v1/runner/tasks/{id}/logs", Access: AccessRunner, Summary: "Append task log lines", In: []silo.LogLine{}, Handler: s.handleTaskLogs},
		{Method: "POST", Path: "/api/v1/runner/tasks/{id}/progress", Access: AccessRunner, Summary: "Report how far a running task is (done of total units); the session shows its step's progress", In: silo.TaskProgress{}, Handler: s.handleTaskProgress},
	}
}

type runnerKey struct{}

func runnerFromContext(ctx context.Context) *sqlstore.StoredRunner {
	r, _ := ctx.Value(runnerKey{}).(*sqlstore.StoredRunner)
	return r
}

// authenticateRunner resolves a runner token.
func (s *Server) authenticateRunner(r *http.Request) (*sqlstore.StoredRunner, error) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !strings.HasPrefix(secret, silo.RunnerTokenPrefix) {
		return nil, silo.Errorf(silo.EUNAUTHORIZED, "runner routes take a runner token (%s…): see 'silo runners token NAME'", silo.RunnerTokenPrefix)
	}
	return s.db.FindRunnerByTokenHash(r.Context(), hashSecret(strings.TrimSpace(secret)))
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	var hb silo.Heartbeat
	if err := decodeJSON(w, r, &hb); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	if hb.ProtocolVersion != silo.ProtocolVersion {
		side := "the runner"
		if hb.ProtocolVersion > silo.ProtocolVersion {
			side = "the server"
		}
		err := silo.Errorf(silo.ECONFLICT, "protocol version mismatch: the agent speaks %d, the server %d; upgrade %s to the same Silo release", hb.ProtocolVersion, silo.ProtocolVersion, side)
		s.beats.forget(rn.ID)
		s.markRunnerFailed(ctx, rn.Name, err.Message)
		writeError(w, r, s.Logger, err)
		return
	}
	if len(hb.AgentVersion) > 64 || len(hb.Hostname) > 255 || len(hb.RunningTasks) > 1024 || len(hb.Sessions) > 1024 || hb.VCPU < 0 || hb.MemoryMB < 0 || hb.Policy != nil && len(hb.Policy.Rules) > maxPolicyRules {
		writeError(w, r, s.Logger, silo.Errorf(silo.EINVALID, "heartbeat fields out of range"))
		return
	}
	status := silo.RunnerOnline
	if !s.beats.touch(rn.ID, rn.Name, hb, s.now()) {
		var err error
		if status, err = s.recordHeartbeat(ctx, rn.ID, rn.Name, hb); err != nil {
			writeError(w, r, s.Logger, err)
			return
		}
	}
	reply := silo.HeartbeatReply{Runner: rn.Name, Status: status, ProtocolVersion: silo.ProtocolVersion, HeartbeatInterval: s.HeartbeatInterval.String()}
	// Tasks the server thinks are running but the agent does not know
	// were lost in a restart: fail them now rather than wait forever. Tasks
	// the agent runs that the server no longer wants are cancelled. One
	// read tells both; nothing is written unless a task was lost.
	running, err := s.db.RunningTasks(ctx, rn.ID)
	if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	claimedBefore := s.now().Add(-2 * s.HeartbeatInterval)
	wanted := map[string]bool{}
	lost := false
	for _, t := range running {
		wanted[t.ID] = true
		lost = lost || (t.StartedAt.Before(claimedBefore) && !slices.Contains(hb.RunningTasks, t.ID))
	}
	if lost {
		s.failLostTasks(ctx, rn, hb.RunningTasks, claimedBefore)
	}
	for _, id := range hb.RunningTasks {
		if !wanted[id] {
			reply.CancelTasks = append(reply.CancelTasks, id)
		}
	}
	reply.EndedSessions = s.endedSessions(ctx, rn.Name, hb.Sessions)
	writeJSON(w, http.StatusOK, reply)
}

// maxPolicyRules bounds the rules of a runner's policy the server keeps.
const maxPolicyRules = 1000

// endedSessions returns the sessions among ids whose local state the
// runner may remove: those that ended, and any it has no part in (it learns
// nothing of other runners' sessions). A store error keeps the state.
func (s *Server) endedSessions(ctx context.Context, runner string, ids []string) []string {
	var out []string
	for _, id := range ids {
		ss, err := s.db.FindSession(ctx, id)
		if silo.ErrorCode(err) == silo.ENOTFOUND {
			out = append(out, id)
			continue
		} else if err != nil {
			s.Logger.Warn("sessions of a heartbeat", "session", id, "err", err)
			continue
		}
		if ss.Status.Done() || !slices.ContainsFunc(ss.Clients, func(c sqlstore.SessionClient) bool { return c.Runner == runner }) {
			out = append(out, id)
		}
	}
	return out
}

func (s *Server) handleTaskProgress(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	var p silo.TaskProgress
	if err := decodeJSON(w, r, &p); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	if p.Done < 0 || p.Total < 0 || len(p.Unit) > 64 {
		writeError(w, r, s.Logger, silo.Errorf(silo.EINVALID, "progress: done and total must be ≥ 0 and the unit at most 64 bytes"))
		return
	}
	if err := silo.CheckText("unit", p.Unit, false); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	if err := s.db.SetTaskProgress(ctx, rn.ID, r.PathValue("id"), p); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// failLostTasks fails the runner's tasks its agent no longer runs and
// wakes their sessions.
func (s *Server) failLostTasks(ctx context.Context, rn *sqlstore.StoredRunner, running []string, claimedBefore time.Time) {
	lost, err := s.db.FailLostTasks(ctx, rn.ID, running, claimedBefore, orchestrator.LostTask)
	if err != nil {
		s.Logger.Warn("fail lost tasks", "runner", rn.Name, "err", err)
		return
	}
	if len(lost) == 0 {
		return
	}
	s.Logger.Warn("tasks lost in a runner restart", "runner", rn.Name, "tasks", lost)
	for _, id := range lost {
		if t, err := s.db.FindTaskHead(ctx, id); err == nil && t.Session != "" {
			s.engine.Wake(t.Session)
		}
	}
}

// markRunnerFailed records a reason a person must act on.
func (s *Server) markRunnerFailed(ctx context.Context, name, reason string) {
	_, err := s.db.UpdateRunner(ctx, name, func(r *sqlstore.StoredRunner) error {
		r.Status, r.StatusReason = silo.RunnerFailed, reason
		return nil
	})
	if err != nil {
		s.Logger.Warn("mark runner failed", "runner", name, "err", err)
	}
}

// MaxPollWait bounds a long-poll, below common proxy idle timeouts.
const MaxPollWait = 60 * time.Second

func (s *Server) handlePollTask(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	wait, err := waitParam(r, "wait", 25*time.Second)
	if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	t, err := s.nextTask(ctx, rn, wait)
	if err != nil && ctx.Err() != nil {
		return // the agent hung up (stopping, or its network cut)
	} else if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	if t == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", silo.FramesContentType)
	if sent, err := s.writeTask(ctx, w, r, t); !sent {
		s.undeliverable(ctx, t, err)
		w.WriteHeader(http.StatusNoContent)
	} else if err != nil {
		// The task is claimed but did not arrive whole: the runner's next
		// heartbeat shows it lost, and it is queued again.
		s.Logger.Warn("send task", "runner", rn.Name, "task", t.ID, "err", err)
	}
}

// undeliverable fails a claimed task the server could not even start to
// send (its parts are gone: the session moved on or ended).
// A store that failed on the way (a dropped connection) fails nothing: the
// task goes back in the queue for the runner's next poll.
func (s *Server) undeliverable(ctx context.Context, t *silo.Task, cause error) {
	ctx = context.WithoutCancel(ctx)
	s.Logger.Warn("task not sent", "task", t.ID, "session", t.Session, "err", cause)
	if silo.ErrorCode(cause) == silo.EINTERNAL {
		if _, err := s.db.UnclaimTask(ctx, t.ID); err != nil {
			s.Logger.Warn("put an unsent task back in the queue", "task", t.ID, "err", err)
		}
		return
	}
	if _, err := s.db.FailTask(ctx, t.ID, "the server could not send this task: "+silo.ErrorMessage(cause)); err != nil {
		s.Logger.Warn("fail an unsent task", "task", t.ID, "err", err)
	}
	if t.Session != "" {
		s.engine.Wake(t.Session)
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
func (s *Server) nextTask(ctx context.Context, rn *sqlstore.StoredRunner, wait time.Duration) (*silo.Task, error) {
	return s.nextTaskAfter(ctx, rn, wait, nil, true)
}

// nextTaskAfter is nextTask after a look that found nothing queued (look
// false) since woken was taken: the first claim is skipped.
func (s *Server) nextTaskAfter(ctx context.Context, rn *sqlstore.StoredRunner, wait time.Duration, woken <-chan struct{}, look bool) (*silo.Task, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		// Take the wake channel before looking, so a task queued between
		// the look and the wait is not missed.
		if woken == nil || look {
			woken = s.wake.channel(rn.ID)
			t, err := s.db.ClaimTask(ctx, rn.ID)
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
		if s.db.Dialect() == "postgres" && !s.db.Listening() {
			recheck = time.After(2 * time.Second)
		}
		h := s.wake.ready(rn.ID)
		select {
		case t := <-h.task:
			if t != nil {
				return t, nil
			}
			continue // let go: look again
		case <-woken:
		case <-recheck:
		case <-deadline.C:
			return s.wake.leave(ctx, rn.ID, h), nil
		case <-ctx.Done():
			return s.wake.leave(ctx, rn.ID, h), ctx.Err()
		}
		if t := s.wake.leave(ctx, rn.ID, h); t != nil {
			return t, nil
		}
		woken = nil
	}
}

// writeTask sends a claimed task as a frames body: its JSON, then each part
// the runner does not already hold (by the digests it listed), streamed
// from the session's blobs. It reports whether it wrote anything.
func (s *Server) writeTask(ctx context.Context, w io.Writer, r *http.Request, t *silo.Task) (bool, error) {
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
	infos, err := s.db.SessionBlobInfos(ctx, t.Session, names)
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
		if err := s.db.CopySessionBlob(ctx, t.Session, t.Inputs[i].Blob, w); err != nil {
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

func (s *Server) handleTaskResult(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	next, err := waitParam(r, "next", 0)
	if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	// Whose task it is, and whether it still wants a result, is settled
	// before a byte of the body is read: another runner's task, or a
	// replayed result, costs the server nothing.
	head, err := s.db.FindTaskHead(ctx, r.PathValue("id"))
	if err != nil || head.RunnerID != rn.ID {
		writeError(w, r, s.Logger, silo.Errorf(silo.ENOTFOUND, "no task %s for this runner", r.PathValue("id")))
		return
	}
	if head.Status != silo.TaskRunning {
		writeError(w, r, s.Logger, silo.Errorf(silo.ECONFLICT, "task %s is %s, not running: its result was not accepted", head.ID, head.Status))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != silo.FramesContentType {
		writeError(w, r, s.Logger, silo.Errorf(silo.EINVALID, "a task result is a frames body (Content-Type: %s), not %s: upgrade the runner", silo.FramesContentType, ct))
		return
	}
	limit := cmp.Or(head.MaxResult, maxPartsDefault)
	if r.ContentLength > limit+maxResultHeader {
		writeError(w, r, s.Logger, bodyTooLarge(&http.MaxBytesError{Limit: limit + maxResultHeader}))
		return
	}
	body := bufio.NewReader(http.MaxBytesReader(w, r.Body, limit+maxResultHeader))
	var res silo.TaskResult
	if err := silo.ReadFrameHeader(body, maxResultHeader, &res); err != nil {
		if errors.Is(err, silo.ErrFrameHeaderTooLarge) || isMaxBytes(err) {
			err = bodyTooLarge(&http.MaxBytesError{Limit: maxResultHeader})
		} else {
			err = silo.Errorf(silo.EINVALID, "task result: %v", err)
		}
		writeError(w, r, s.Logger, err)
		return
	}
	if err := silo.CheckParts(res.Parts, limit); err != nil {
		if silo.ErrorCode(err) == silo.EINVALID && strings.Contains(silo.ErrorMessage(err), "limit") {
			err = fmt.Errorf("%w%w", err, errTooLarge)
		}
		writeError(w, r, s.Logger, err)
		return
	}
	parts, err := s.readParts(ctx, head, body, res.Parts)
	if err != nil {
		if isMaxBytes(err) {
			err = bodyTooLarge(err)
		}
		writeError(w, r, s.Logger, err)
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
	s.cleanLogLines(head.ID, res.Logs)
	// Taken before the result is, the wake channel cannot miss a task
	// queued after the store said none was.
	woken := s.wake.channel(rn.ID)
	t, queued, err := s.db.FinishTaskNext(ctx, rn.ID, head.ID, res, parts)
	if err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	s.Logger.Debug("task finished", "runner", rn.Name, "task", t.ID, "type", t.Type, "status", t.Status)
	if t.Session != "" {
		s.engine.Wake(t.Session)
	}
	if t.Type == silo.TaskConnect {
		if err := s.datasetConnected(ctx, t); err != nil {
			writeError(w, r, s.Logger, err)
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
	nt, err := s.nextTaskAfter(ctx, rn, next, woken, queued)
	if err != nil || nt == nil {
		return
	}
	if sent, err := s.writeTask(ctx, w, r, nt); !sent {
		s.undeliverable(ctx, nt, err)
	} else if err != nil {
		s.Logger.Warn("send task", "runner", rn.Name, "task", nt.ID, "err", err)
	}
}

// readParts reads a result's parts: small ones into memory, to be stored
// with the result; large ones streamed into the session's blobs now.
func (s *Server) readParts(ctx context.Context, t *sqlstore.TaskHead, body io.Reader, list []silo.Part) (map[string][]byte, error) {
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
		if _, err := s.db.WriteSessionBlob(ctx, t.Session, sqlstore.ResultBlob(t.ID, p.Name), io.LimitReader(body, p.Size), p.Size); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

func (s *Server) handleTaskPart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	t, err := s.db.FindTask(ctx, r.PathValue("id"))
	if err != nil || t.Runner != rn.Name || t.Status != silo.TaskRunning {
		writeError(w, r, s.Logger, silo.Errorf(silo.ENOTFOUND, "no running task %s for this runner", r.PathValue("id")))
		return
	}
	i := slices.IndexFunc(t.Inputs, func(in silo.PartBlob) bool { return in.Part == r.PathValue("part") })
	if i < 0 {
		writeError(w, r, s.Logger, silo.Errorf(silo.ENOTFOUND, "task %s has no part %s", t.ID, r.PathValue("part")))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := s.db.CopySessionBlob(ctx, t.Session, t.Inputs[i].Blob, w); err != nil {
		s.Logger.Warn("send task part", "task", t.ID, "part", t.Inputs[i].Part, "err", err)
	}
}

func (s *Server) handleTaskLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rn := runnerFromContext(ctx)
	var lines []silo.LogLine
	if err := decodeJSON(w, r, &lines); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	if len(lines) > silo.MaxLogLinesPerPost {
		writeError(w, r, s.Logger, silo.Errorf(silo.EINVALID, "at most %d log lines per request", silo.MaxLogLinesPerPost))
		return
	}
	s.cleanLogLines(r.PathValue("id"), lines)
	if err := s.db.AppendTaskLogs(ctx, rn.ID, r.PathValue("id"), lines); err != nil {
		writeError(w, r, s.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// cleanLogLines bounds and tidies a runner's log lines: truncated, valid
// UTF-8, a known level, a time not in the future.
func (s *Server) cleanLogLines(taskID string, lines []silo.LogLine) {
	now := s.now()
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

// waker wakes long-polls when a task is queued for their runner, and hands
// tasks a driver queued claimed to the polls ready to take them.
type waker struct {
	mu     sync.Mutex
	ch     map[int64]chan struct{}
	offers map[int64][]*handoff
}

// handoff is a long-poll ready to take a task handed to it.
type handoff struct {
	task chan *silo.Task // a task, or nil to look again; buffered
	mu   sync.Mutex
	gone bool // the poll's request ended: it takes nothing more
}

func (k *waker) channel(runnerID int64) <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ch == nil {
		k.ch = map[int64]chan struct{}{}
	}
	c, ok := k.ch[runnerID]
	if !ok {
		c = make(chan struct{})
		k.ch[runnerID] = c
	}
	return c
}

func (k *waker) notify(runnerID int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.ch[runnerID]; ok {
		close(c)
		delete(k.ch, runnerID)
	}
}

// notifyAll wakes every long-poll: notices may have been missed.
func (k *waker) notifyAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, c := range k.ch {
		close(c)
		delete(k.ch, id)
	}
}

// ready offers a waiting poll of the runner to take a task handed to it.
func (k *waker) ready(runnerID int64) *handoff {
	h := &handoff{task: make(chan *silo.Task, 1)}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.offers == nil {
		k.offers = map[int64][]*handoff{}
	}
	k.offers[runnerID] = append(k.offers[runnerID], h)
	return h
}

// claim takes the runner's longest-waiting ready poll, if any, and returns
// how to hand it a task (nil: none after all, look again), which reports
// whether the poll took it.
func (k *waker) claim(runnerID int64) func(*silo.Task) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	list := k.offers[runnerID]
	if len(list) == 0 {
		return nil
	}
	h := list[0]
	if len(list) == 1 {
		delete(k.offers, runnerID)
	} else {
		k.offers[runnerID] = list[1:]
	}
	return func(t *silo.Task) bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.gone {
			return false
		}
		h.task <- t // buffered, and sent at most once
		return t != nil
	}
}

// leave ends a poll's offer: it returns a task handed to it meanwhile. A
// poll already claimed waits for its task, unless its request ended.
func (k *waker) leave(ctx context.Context, runnerID int64, h *handoff) *silo.Task {
	k.mu.Lock()
	list := k.offers[runnerID]
	if i := slices.Index(list, h); i >= 0 {
		if len(list) == 1 {
			delete(k.offers, runnerID)
		} else {
			k.offers[runnerID] = slices.Delete(slices.Clone(list), i, i+1)
		}
		k.mu.Unlock()
		return nil
	}
	k.mu.Unlock()
	select {
	case t := <-h.task:
		return t
	case <-ctx.Done():
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone = true
	select {
	case t := <-h.task:
		return t // handed over before the request ended: it is lost with it
	default:
		return nil
	}
}

// heartbeatFlush is how often heartbeats kept in memory are written.
const heartbeatFlush = time.Second

// CheckRunners marks online runners that missed three heartbeats offline.
// Heartbeats kept in memory are written first.
func (s *Server) CheckRunners(ctx context.Context) error {
	if err := s.flushHeartbeats(ctx); err != nil {
		return err
	}
	cutoff := s.now().Add(-3 * s.HeartbeatInterval)
	names, err := s.db.MarkStaleRunnersOffline(ctx, cutoff.UnixMicro(), fmt.Sprintf("no heartbeat since %s (3 intervals of %s)", cutoff.Format(time.RFC3339), s.HeartbeatInterval))
	s.beats.forgetNames(names)
	for _, n := range names {
		s.Logger.Warn("runner offline", "runner", n)
		s.auditAs(ctx, "system", "runner.status", n+": online → offline", silo.OutcomeSuccess, "missed heartbeats")
	}
	if len(names) > 0 {
		s.engine.WakeAll() // their sessions drop them from the current step
	}
	return err
}

// Run does the server's background work until ctx ends: watching runner
// heartbeats and removing expired sign-ins.
func (s *Server) Run(ctx context.Context) {
	s.runMu.Lock()
	s.runCtx = ctx
	s.runMu.Unlock()
	s.configureEngine()
	// Other replicas' tasks and results wake this one's long-polls and
	// drivers at once.
	s.db.Listen(ctx, sqlstore.Listener{Task: s.wake.notify, Session: s.engine.Wake, Connected: func() {
		s.wake.notifyAll()
		s.engine.WakeAll()
	}})
	s.engine.Start(ctx)
	tick := time.NewTicker(s.HeartbeatInterval)
	defer tick.Stop()
	sweep := time.NewTicker(time.Hour)
	defer sweep.Stop()
	flush := time.NewTicker(heartbeatFlush)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			s.local.stopAll()
			if err := s.flushHeartbeats(context.WithoutCancel(ctx)); err != nil {
				s.Logger.Warn("record heartbeats", "err", err)
			}
			return
		case <-flush.C:
			if err := s.flushHeartbeats(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.Logger.Warn("record heartbeats", "err", err)
			}
		case <-tick.C:
			if err := s.CheckRunners(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.Logger.Warn("check runners", "err", err)
			}
			s.engine.Resume(ctx) // sessions whose driver (another replica) died
		case <-sweep.C:
			if _, err := s.db.DeleteExpiredLogins(ctx); err != nil {
				s.Logger.Warn("remove expired sign-ins", "err", err)
			}
		}
	}
}
