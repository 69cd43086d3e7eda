package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"

	"github.com/silofl/silo"
	"github.com/silofl/silo/model"
)

func sessionPath(id string) string { return "/api/v1/sessions/" + url.PathEscape(id) }

// CreateSession creates a session from its JSON config: training (type
// hfl) or record linkage (type prl).
// The server checks it against the datasets' schemas and privacy controls.
func (c *Client) CreateSession(ctx context.Context, config json.RawMessage) (*silo.Session, error) {
	var s silo.Session
	if err := c.upload(ctx, "/api/v1/sessions", "application/json", bytes.NewReader(config), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListSessions lists sessions, newest first.
func (c *Client) ListSessions(ctx context.Context) ([]*silo.Session, error) {
	return list[silo.Session](ctx, c, "/api/v1/sessions", nil)
}

// GetSession shows a session: status, last completed round, latest metrics.
func (c *Client) GetSession(ctx context.Context, id string) (*silo.Session, error) {
	return get[silo.Session](ctx, c, sessionPath(id))
}

// SessionMetrics returns every round's federated and per-client metrics of
// a training session (see LinkageMetrics for record linkage).
func (c *Client) SessionMetrics(ctx context.Context, id string) (*silo.SessionMetrics, error) {
	return get[silo.SessionMetrics](ctx, c, sessionPath(id)+"/metrics")
}

// LinkageMetrics returns a record linkage (prl) session's overlap per
// dataset: n_records, n_overlapped_records, frac_overlapped.
func (c *Client) LinkageMetrics(ctx context.Context, id string) (*silo.LinkageMetrics, error) {
	return get[silo.LinkageMetrics](ctx, c, sessionPath(id)+"/metrics")
}

// CancelSession cancels a pending or running session.
func (c *Client) CancelSession(ctx context.Context, id string) (*silo.Session, error) {
	return send[silo.Session](ctx, c, http.MethodPost, sessionPath(id)+"/cancel", nil)
}

// DownloadModel writes a session's final (or best) model document to w.
func (c *Client) DownloadModel(ctx context.Context, id string, best bool, w io.Writer) error {
	path := sessionPath(id) + "/model"
	if best {
		path += "?best=true"
	}
	return c.download(ctx, path, w)
}

// LoadModel downloads a session's model and loads it, ready to Predict.
func (c *Client) LoadModel(ctx context.Context, id string, best bool) (*model.Document, error) {
	var buf bytes.Buffer
	if err := c.DownloadModel(ctx, id, best, &buf); err != nil {
		return nil, err
	}
	return model.Load(&buf)
}

// PredictRequest asks for predictions on a registered dataset.
type PredictRequest struct {
	Session string `json:"session"`
	Dataset string `json:"dataset"`
	Best    bool   `json:"best,omitempty"`
	Format  string `json:"format,omitempty"` // csv (default) or parquet
}

// Predict runs a session's model on a dataset's runner, which writes the
// predictions to its own storage; the result says how many rows and where.
func (c *Client) Predict(ctx context.Context, req PredictRequest) (*silo.PredictOutput, error) {
	return send[silo.PredictOutput](ctx, c, http.MethodPost, "/api/v1/predictions", req)
}
