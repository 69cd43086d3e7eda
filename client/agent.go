package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/silofl/silo"
)

// The runner protocol, as spoken by `silo runner`. A Client made with a
// runner token (silor_…) may call these and nothing else. Tasks and results
// travel as frames bodies (silo.FramesContentType): a JSON header, then the
// binary parts it lists.

// Heartbeat reports the agent's version and resources; the reply names the
// runner and how often to report.
func (c *Client) Heartbeat(ctx context.Context, hb silo.Heartbeat) (*silo.HeartbeatReply, error) {
	return send[silo.HeartbeatReply](ctx, c, http.MethodPost, "/api/v1/runner/heartbeat", hb)
}

// Parts are a task's binary inputs or a result's binary outputs, by name.
type Parts map[string][]byte

// MaxTaskHeader bounds the JSON header of a task a runner accepts.
const MaxTaskHeader = 16 << 20

// PollTask waits up to wait for the runner's next task; it returns nil when
// none came. have lists the digests of parts the runner keeps; such parts
// come back marked Cached, without their bytes.
func (c *Client) PollTask(ctx context.Context, wait time.Duration, have []string) (*silo.Task, Parts, error) {
	return c.taskExchange(ctx, http.MethodGet, "/api/v1/runner/tasks", url.Values{"wait": {wait.String()}}, have, nil, 0, nil)
}

// NextTask asks a task's report to go on as a poll for the runner's next
// task: a round then costs a runner one request.
type NextTask struct {
	// Wait is how long to wait for a next task; Have, the digests of parts
	// the runner holds (as for PollTask).
	Wait time.Duration
	Have []string
	// Until ends the wait early (the agent is stopping): the result is
	// taken all the same, and no task comes.
	Until context.Context
}

// ReportTask sends a task's result with its binary parts: those in parts,
// held in memory, and those res.Parts lists with a Path, streamed from their
// files. With next, the server answers with the runner's next task as soon
// as there is one; an error means the result was not taken.
func (c *Client) ReportTask(ctx context.Context, taskID string, res silo.TaskResult, parts Parts, next *NextTask) (*silo.Task, Parts, error) {
	var list []silo.Part
	var files []*os.File
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	for _, p := range res.Parts {
		if p.Path == "" {
			continue
		}
		f, err := os.Open(p.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("result part %s: %w", p.Name, err)
		}
		files = append(files, f)
		fi, err := f.Stat()
		if err != nil {
			return nil, nil, fmt.Errorf("result part %s: %w", p.Name, err)
		}
		list = append(list, silo.Part{Name: p.Name, Size: fi.Size(), Path: p.Path})
	}
	for n, b := range parts {
		list = append(list, silo.Part{Name: n, Size: int64(len(b))})
	}
	slices.SortFunc(list, func(a, b silo.Part) int { return strings.Compare(a.Name, b.Name) })
	res.Parts = list
	header, err := json.Marshal(res)
	if err != nil {
		return nil, nil, err
	}
	header = append(header, '\n')
	size := int64(len(header))
	bodies := []io.Reader{bytes.NewReader(header)}
	for _, p := range list {
		size += p.Size
		if p.Path == "" {
			bodies = append(bodies, bytes.NewReader(parts[p.Name]))
			continue
		}
		i := slices.IndexFunc(files, func(f *os.File) bool { return f.Name() == p.Path })
		bodies = append(bodies, io.LimitReader(files[i], p.Size))
	}
	var q url.Values
	var have []string
	var until context.Context
	if next != nil && next.Wait > 0 {
		q, have, until = url.Values{"next": {next.Wait.String()}}, next.Have, next.Until
	}
	t, p, err := c.taskExchange(ctx, http.MethodPost, "/api/v1/runner/tasks/"+url.PathEscape(taskID)+"/result", q, have, io.MultiReader(bodies...), size, until)
	var taken *resultTaken
	if errors.As(err, &taken) {
		// The answer began (the result is taken) but the next task did not
		// arrive whole: the server sees it lost and sends it again.
		return nil, nil, nil
	}
	return t, p, err
}

// resultTaken is an error reading the task that follows a taken result.
type resultTaken struct{ err error }

func (e *resultTaken) Error() string { return "reading the next task: " + e.err.Error() }

// TaskPart fetches one part of a task the runner is running: one it was
// told it had cached but no longer has.
func (c *Client) TaskPart(ctx context.Context, taskID, part string) ([]byte, error) {
	resp, err := c.raw(ctx, http.MethodGet, "/api/v1/runner/tasks/"+url.PathEscape(taskID)+"/parts/"+url.PathEscape(part), "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// ReportProgress tells the server how far a running task is.
func (c *Client) ReportProgress(ctx context.Context, taskID string, p silo.TaskProgress) error {
	return c.do(ctx, http.MethodPost, "/api/v1/runner/tasks/"+url.PathEscape(taskID)+"/progress", nil, p, nil)
}

// SendTaskLogs appends lines to a task's log.
func (c *Client) SendTaskLogs(ctx context.Context, taskID string, lines []silo.LogLine) error {
	return c.do(ctx, http.MethodPost, "/api/v1/runner/tasks/"+url.PathEscape(taskID)+"/logs", nil, lines, nil)
}

// taskExchange sends a runner request whose answer may be a task in a
// frames body (200) or nothing (204 or an empty body). until, when not
// nil, ends the wait for the body once the answer has begun; errors after
// the answer began are *resultTaken.
func (c *Client) taskExchange(ctx context.Context, method, path string, query url.Values, have []string, body io.Reader, size int64, until context.Context) (*silo.Task, Parts, error) {
	u := c.baseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, nil, fmt.Errorf("silo server URL %q: %w", c.baseURL, err)
	}
	if body != nil {
		req.ContentLength = size
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("User-Agent", c.UserAgent)
	if body != nil {
		req.Header.Set("Content-Type", silo.FramesContentType)
	}
	if len(have) > 0 {
		req.Header.Set(silo.HaveHeader, strings.Join(have, ","))
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("could not reach the Silo server at %s: %w", c.baseURL, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return nil, nil, responseError(resp)
	}
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil, nil
	}
	if until != nil {
		stop := context.AfterFunc(until, func() { _ = resp.Body.Close() })
		defer stop()
	}
	t, parts, err := c.readTask(bufio.NewReader(resp.Body))
	if err != nil && body != nil {
		err = &resultTaken{err}
	}
	return t, parts, err
}

// readTask reads a task and its parts from a frames body; an empty body
// is no task. Parts larger than SpillAbove go to files in SpillDir.
func (c *Client) readTask(br *bufio.Reader) (*silo.Task, Parts, error) {
	if _, err := br.Peek(1); errors.Is(err, io.EOF) {
		return nil, nil, nil
	}
	var t silo.Task
	if err := silo.ReadFrameHeader(br, MaxTaskHeader, &t); err != nil {
		return nil, nil, fmt.Errorf("unexpected task from %s: %w", c.baseURL, err)
	}
	parts := Parts{}
	for i, p := range t.Parts {
		if p.Cached {
			continue
		}
		if p.Size < 0 || p.Size > silo.MaxPartBytes {
			RemovePartFiles(t.Parts)
			return nil, nil, fmt.Errorf("task %s from %s: part %s of %d bytes is over the limit", t.ID, c.baseURL, p.Name, p.Size)
		}
		if c.SpillDir != "" && p.Size > c.SpillAbove {
			path, err := spill(c.SpillDir, br, p.Size)
			if err != nil {
				RemovePartFiles(t.Parts)
				return nil, nil, fmt.Errorf("task %s from %s: part %s: %w", t.ID, c.baseURL, p.Name, err)
			}
			t.Parts[i].Path = path
			continue
		}
		b := make([]byte, p.Size)
		if _, err := io.ReadFull(br, b); err != nil {
			RemovePartFiles(t.Parts)
			return nil, nil, fmt.Errorf("task %s from %s: part %s: %w", t.ID, c.baseURL, p.Name, err)
		}
		parts[p.Name] = b
	}
	return &t, parts, nil
}

// spill copies the next size bytes of r to a new file in dir.
func spill(dir string, r io.Reader, size int64) (string, error) {
	f, err := os.CreateTemp(dir, "part-*.bin")
	if err != nil {
		return "", err
	}
	_, err = io.CopyN(f, r, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// RemovePartFiles removes the files of parts spilled to disk.
func RemovePartFiles(parts []silo.Part) {
	for _, p := range parts {
		if p.Path != "" {
			_ = os.Remove(p.Path)
		}
	}
}
