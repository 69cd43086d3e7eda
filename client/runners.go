package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/silofl/silo"
)

func runnerPath(name string) string { return "/api/v1/runners/" + url.PathEscape(name) }

// ListRunners lists every task runner by name (deregistered ones too when
// asked), a page at a time.
func (c *Client) ListRunners(ctx context.Context, deregistered bool) ([]*silo.Runner, error) {
	all := []*silo.Runner{} // none is an empty list, not null
	after := ""
	for {
		page, err := c.ListRunnersPage(ctx, RunnerPage{Deregistered: deregistered, After: after})
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < MaxRunnersPage {
			return all, nil
		}
		after = page[len(page)-1].Name
	}
}

// MaxRunnersPage is the most runners one page of a listing holds, and the
// size of a page when RunnerPage.Limit is 0.
const MaxRunnersPage = 1000

// RunnerPage selects a page of runners.
type RunnerPage struct {
	Deregistered bool   // include deregistered runners
	After        string // the runners whose name sorts after this one
	Limit        int    // 1 to MaxRunnersPage; 0 is MaxRunnersPage
}

// ListRunnersPage lists one page of task runners by name. A page with
// fewer than its limit is the last; the next starts after the last name
// of this one.
func (c *Client) ListRunnersPage(ctx context.Context, p RunnerPage) ([]*silo.Runner, error) {
	q := url.Values{}
	if p.Deregistered {
		q.Set("deregistered", "true")
	}
	if p.After != "" {
		q.Set("after", p.After)
	}
	if p.Limit != 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	return list[silo.Runner](ctx, c, "/api/v1/runners", q)
}

// RegisterRunner registers a task runner. For a local runner the result
// carries its token, shown this once.
func (c *Client) RegisterRunner(ctx context.Context, spec silo.RunnerSpec) (*silo.Runner, error) {
	return send[silo.Runner](ctx, c, http.MethodPost, "/api/v1/runners", spec)
}

// GetRunner shows one task runner.
func (c *Client) GetRunner(ctx context.Context, name string) (*silo.Runner, error) {
	return get[silo.Runner](ctx, c, runnerPath(name))
}

// EditRunner changes a runner: fields set in patch (a JSON object of
// RunnerSpec fields) replace the stored ones.
func (c *Client) EditRunner(ctx context.Context, name string, patch map[string]any) (*silo.Runner, error) {
	return send[silo.Runner](ctx, c, http.MethodPatch, runnerPath(name), patch)
}

// DeregisterRunner retires a runner; its token stops working at once.
func (c *Client) DeregisterRunner(ctx context.Context, name string) (*silo.Runner, error) {
	return send[silo.Runner](ctx, c, http.MethodDelete, runnerPath(name), nil)
}

// RotateRunnerToken gives a runner a new token (in the result, shown once);
// the old one stops working.
func (c *Client) RotateRunnerToken(ctx context.Context, name string) (*silo.Runner, error) {
	return send[silo.Runner](ctx, c, http.MethodPost, runnerPath(name)+"/token", nil)
}

// ProvisionRunner creates or verifies a cloud runner's storage again.
func (c *Client) ProvisionRunner(ctx context.Context, name string) (*silo.Runner, error) {
	return send[silo.Runner](ctx, c, http.MethodPost, runnerPath(name)+"/provision", nil)
}

// StartRunner asks the server to start a local runner as its child process.
func (c *Client) StartRunner(ctx context.Context, name string) (*silo.Runner, error) {
	return send[silo.Runner](ctx, c, http.MethodPost, runnerPath(name)+"/start", nil)
}

// StopRunner stops a local runner the server started.
func (c *Client) StopRunner(ctx context.Context, name string) (*silo.Runner, error) {
	return send[silo.Runner](ctx, c, http.MethodPost, runnerPath(name)+"/stop", nil)
}

// RunnerTasks lists a runner's recent tasks, newest first.
func (c *Client) RunnerTasks(ctx context.Context, name string) ([]*silo.Task, error) {
	return list[silo.Task](ctx, c, runnerPath(name)+"/tasks", nil)
}

// QueueDiagnostics queues a diagnostics task on a runner: it checks the
// runner's storage and resources and reads no data.
func (c *Client) QueueDiagnostics(ctx context.Context, name string, vcpu, memoryMB int) (*silo.Task, error) {
	return send[silo.Task](ctx, c, http.MethodPost, runnerPath(name)+"/tasks", map[string]any{"type": silo.TaskDiagnostics, "vcpu": vcpu, "memory_mb": memoryMB})
}

// RunnerLogs returns task log lines of a runner (of one task when taskID is
// set) with ids above after, oldest first.
func (c *Client) RunnerLogs(ctx context.Context, name, taskID string, after int64) ([]*silo.LogLine, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if taskID != "" {
		q.Set("task", taskID)
	}
	return list[silo.LogLine](ctx, c, runnerPath(name)+"/logs", q)
}

// CancelRunnerTask cancels a queued or running diagnostics task.
func (c *Client) CancelRunnerTask(ctx context.Context, runner, taskID string) (*silo.Task, error) {
	var t silo.Task
	err := c.do(ctx, http.MethodPost, runnerPath(runner)+"/tasks/"+url.PathEscape(taskID)+"/cancel", nil, nil, &t)
	return &t, err
}

// DownloadRunnerBundle writes a runner's deployment bundle (a zip) to w.
// serverURL is the URL the deployed runner dials; "" uses the server's
// --public-url, which a cloud runner needs to be reachable from its network.
func (c *Client) DownloadRunnerBundle(ctx context.Context, name, serverURL string, w io.Writer) error {
	path := runnerPath(name) + "/bundle"
	if serverURL != "" {
		path += "?" + url.Values{"server_url": {serverURL}}.Encode()
	}
	return c.download(ctx, path, w)
}

// download streams a non-JSON response body (a file) to w.
func (c *Client) download(ctx context.Context, path string, w io.Writer) error {
	resp, err := c.raw(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// upload sends body as a non-JSON request body and decodes the JSON answer.
func (c *Client) upload(ctx context.Context, path, contentType string, body io.Reader, out any) error {
	resp, err := c.raw(ctx, http.MethodPost, path, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("unexpected response from %s to POST %s: %w", c.baseURL, path, err)
	}
	return nil
}

// raw sends a request with a non-JSON body and returns a successful
// response, whose body the caller closes.
func (c *Client) raw(ctx context.Context, method, path, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return nil, fmt.Errorf("silo server URL %q: %w", c.baseURL, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", c.UserAgent)
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("could not reach the Silo server at %s: %w", c.baseURL, unwrapURLError(err))
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return resp, nil
}
