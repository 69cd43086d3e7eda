package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/silofl/silo"
)

// The runner protocol, as spoken by `silo runner`. A Client made with a
// runner token (silor_…) may call these and nothing else.

// Heartbeat reports the agent's version and resources; the reply names the
// runner and how often to report.
func (c *Client) Heartbeat(ctx context.Context, hb silo.Heartbeat) (*silo.HeartbeatReply, error) {
	return send[silo.HeartbeatReply](ctx, c, http.MethodPost, "/api/v1/runner/heartbeat", hb)
}

// PollTask waits up to wait for the runner's next task; it returns nil, nil
// when none came.
func (c *Client) PollTask(ctx context.Context, wait time.Duration) (*silo.Task, error) {
	var t silo.Task
	if err := c.do(ctx, http.MethodGet, "/api/v1/runner/tasks", url.Values{"wait": {wait.String()}}, nil, &t); err != nil {
		return nil, err
	}
	if t.ID == "" {
		return nil, nil
	}
	return &t, nil
}

// ReportTask sends a task's result.
func (c *Client) ReportTask(ctx context.Context, taskID string, res silo.TaskResult) (*silo.Task, error) {
	return send[silo.Task](ctx, c, http.MethodPost, "/api/v1/runner/tasks/"+url.PathEscape(taskID)+"/result", res)
}

// SendTaskLogs appends lines to a task's log.
func (c *Client) SendTaskLogs(ctx context.Context, taskID string, lines []silo.LogLine) error {
	return c.do(ctx, http.MethodPost, "/api/v1/runner/tasks/"+url.PathEscape(taskID)+"/logs", nil, lines, nil)
}
