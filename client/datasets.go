package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/silofl/silo"
)

func datasetPath(name string) string { return "/api/v1/datasets/" + url.PathEscape(name) }

// ListDatasets lists the registered datasets (metadata only).
func (c *Client) ListDatasets(ctx context.Context) ([]*silo.Dataset, error) {
	return list[silo.Dataset](ctx, c, "/api/v1/datasets", nil)
}

// RegisterDataset registers a dataset; its runner then connects to it (the
// status goes from connecting to connected or error).
func (c *Client) RegisterDataset(ctx context.Context, spec silo.DatasetSpec) (*silo.Dataset, error) {
	return send[silo.Dataset](ctx, c, http.MethodPost, "/api/v1/datasets", spec)
}

// GetDataset shows one dataset.
func (c *Client) GetDataset(ctx context.Context, name string) (*silo.Dataset, error) {
	return get[silo.Dataset](ctx, c, datasetPath(name))
}

// DatasetUpdate changes a dataset; nil fields are left as they are.
type DatasetUpdate struct {
	// URI moves the dataset to other data on its runner; it connects again.
	URI         *string               `json:"uri,omitempty"`
	Description *string               `json:"description,omitempty"`
	Privacy     *silo.PrivacyControls `json:"privacy,omitempty"`
}

// UpdateDataset edits a dataset's description or privacy controls (its owner
// or an admin). A privacy change makes the runner connect again.
func (c *Client) UpdateDataset(ctx context.Context, name string, u DatasetUpdate) (*silo.Dataset, error) {
	return send[silo.Dataset](ctx, c, http.MethodPatch, datasetPath(name), u)
}

// ConnectDataset asks the runner to read the dataset's schema again.
func (c *Client) ConnectDataset(ctx context.Context, name string) (*silo.Dataset, error) {
	return send[silo.Dataset](ctx, c, http.MethodPost, datasetPath(name)+"/connect", nil)
}

// DeregisterDataset retires a dataset.
func (c *Client) DeregisterDataset(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, datasetPath(name), nil, nil, nil)
}

// AddAttachment uploads a metadata file (at most silo.MaxAttachmentBytes).
func (c *Client) AddAttachment(ctx context.Context, dataset, name, contentType string, data []byte) (*silo.Attachment, error) {
	var a silo.Attachment
	if err := c.upload(ctx, datasetPath(dataset)+"/attachments?name="+url.QueryEscape(name), contentType, bytes.NewReader(data), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// DownloadAttachment writes an attachment's content to w.
func (c *Client) DownloadAttachment(ctx context.Context, dataset string, id int64, w io.Writer) error {
	return c.download(ctx, datasetPath(dataset)+"/attachments/"+strconv.FormatInt(id, 10), w)
}
