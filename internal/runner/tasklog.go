package runner

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

// TaskLog collects a task's log lines and streams them to the server in
// batches (every second, or at 100 lines), and mirrors them to the agent's
// own log. Messages must never contain rows of data: executors log counts,
// names and shapes only.
type TaskLog struct {
	api    *client.Client
	taskID string
	local  *slog.Logger

	mu      sync.Mutex
	pending []silo.LogLine
	timer   *time.Timer

	// The task's latest progress, sent at most once per progressEvery.
	progress     silo.TaskProgress
	progressSent bool
	progressTick *time.Timer
}

// progressEvery is how often a task's progress is sent at most.
const progressEvery = time.Second

// logSendTimeout bounds sending log lines, which must never hold a task up
// on a network that drops packets silently.
const logSendTimeout = 30 * time.Second

func newTaskLog(api *client.Client, taskID string, local *slog.Logger) *TaskLog {
	return &TaskLog{api: api, taskID: taskID, local: local.With("task", taskID)}
}

func (l *TaskLog) Info(msg string, args ...any)  { l.add(slog.LevelInfo, msg, args) }
func (l *TaskLog) Warn(msg string, args ...any)  { l.add(slog.LevelWarn, msg, args) }
func (l *TaskLog) Error(msg string, args ...any) { l.add(slog.LevelError, msg, args) }

func (l *TaskLog) add(level slog.Level, msg string, args []any) {
	l.local.Log(context.Background(), level, msg, args...)
	var b strings.Builder
	b.WriteString(msg)
	for i := 0; i+1 < len(args); i += 2 {
		fmt.Fprintf(&b, " %v=%v", args[i], args[i+1])
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// The server knows the task and takes a line without a level for INFO;
	// milliseconds are time enough.
	line := silo.LogLine{Time: time.Now().UTC().Truncate(time.Millisecond), Level: level.String(), Message: b.String()}
	if level == slog.LevelInfo {
		line.Level = ""
	}
	l.pending = append(l.pending, line)
	if len(l.pending) >= 100 {
		go l.Flush(context.Background())
	} else if l.timer == nil {
		l.timer = time.AfterFunc(time.Second, func() { l.Flush(context.Background()) })
	}
}

// take returns the pending lines and stops sending them: they go with the
// task's result instead of in a request of their own.
func (l *TaskLog) take() []silo.LogLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.pending
	l.pending = nil
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if len(lines) > silo.MaxLogLinesPerPost {
		lines = lines[len(lines)-silo.MaxLogLinesPerPost:]
	}
	return lines
}

// Flush sends the pending lines. A failed send keeps them for the next try,
// up to the server's per-request limit.
func (l *TaskLog) Flush(ctx context.Context) {
	l.mu.Lock()
	lines := l.pending
	l.pending = nil
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.mu.Unlock()
	if len(lines) == 0 || l.api == nil { // no server: the agent's own log has them
		return
	}
	ctx, cancel := context.WithTimeout(ctx, logSendTimeout)
	defer cancel()
	if err := l.api.SendTaskLogs(ctx, l.taskID, lines); err != nil {
		l.local.Warn("send task logs", "err", err)
		l.mu.Lock()
		l.pending = append(lines, l.pending...)
		if len(l.pending) > silo.MaxLogLinesPerPost {
			l.pending = l.pending[len(l.pending)-silo.MaxLogLinesPerPost:]
		}
		l.mu.Unlock()
	}
}

// Progress records how far the task is — done of total units, such as
// "records blinded" — for the server to show while the task runs. Calls may
// be frequent: the latest value is sent at most once a second.
func (l *TaskLog) Progress(done, total int64, unit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.progress = silo.TaskProgress{Done: done, Total: total, Unit: unit}
	l.progressSent = false
	if l.progressTick == nil && l.api != nil {
		l.progressTick = time.AfterFunc(progressEvery, l.sendProgress)
	}
}

func (l *TaskLog) sendProgress() {
	l.mu.Lock()
	p, sent := l.progress, l.progressSent
	l.progressSent = true
	l.mu.Unlock()
	if !sent {
		ctx, cancel := context.WithTimeout(context.Background(), logSendTimeout)
		if err := l.api.ReportProgress(ctx, l.taskID, p); err != nil {
			l.local.Debug("send task progress", "err", err)
		}
		cancel()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.progressTick != nil {
		l.progressTick.Reset(progressEvery)
	}
}

// stopProgress stops sending progress: the task ended.
func (l *TaskLog) stopProgress() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.progressTick != nil {
		l.progressTick.Stop()
		l.progressTick = nil
	}
}
