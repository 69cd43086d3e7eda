package client

import (
	"context"
	"net/http"

	"github.com/silofl/silo"
)

// Workspace returns the workspace and its billing information.
func (c *Client) Workspace(ctx context.Context) (*silo.Workspace, error) {
	return get[silo.Workspace](ctx, c, "/api/v1/workspace")
}

// WorkspaceUpdate changes some of the workspace's fields; nil fields stay as
// they are, and a pointer to "" clears an optional field.
type WorkspaceUpdate struct {
	Name           *string `json:"name,omitempty"`
	BillingContact *string `json:"billing_contact,omitempty"`
	BillingEmail   *string `json:"billing_email,omitempty"`
	BillingAddress *string `json:"billing_address,omitempty"`
	Plan           *string `json:"plan,omitempty"`
}

// UpdateWorkspace applies u and returns the workspace as stored. It needs
// the workspace:manage permission (admins).
func (c *Client) UpdateWorkspace(ctx context.Context, u WorkspaceUpdate) (*silo.Workspace, error) {
	return send[silo.Workspace](ctx, c, http.MethodPatch, "/api/v1/workspace", u)
}
