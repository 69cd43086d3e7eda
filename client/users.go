package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/silofl/silo"
)

// userPath is the URL path of the user with email; the email is escaped so
// addresses with unusual characters still name one path segment.
func userPath(email string) string { return "/api/v1/users/" + url.PathEscape(email) }

// ListUsers returns every user of the workspace. It needs the users:read
// permission (admins).
func (c *Client) ListUsers(ctx context.Context) ([]*silo.User, error) {
	return list[silo.User](ctx, c, "/api/v1/users", nil)
}

// GetUser returns the user with email.
func (c *Client) GetUser(ctx context.Context, email string) (*silo.User, error) {
	return get[silo.User](ctx, c, userPath(email))
}

// UserUpdate changes some of a user's attributes; nil fields stay as they are.
type UserUpdate struct {
	Roles    []silo.Role `json:"roles,omitempty"`
	Disabled *bool       `json:"disabled,omitempty"`
	Name     *string     `json:"name,omitempty"`
}

// UpdateUser applies u to the user with email and returns the result. The
// server refuses (silo.ECONFLICT) a change that would leave the workspace
// without an active admin.
func (c *Client) UpdateUser(ctx context.Context, email string, u UserUpdate) (*silo.User, error) {
	return send[silo.User](ctx, c, http.MethodPatch, userPath(email), u)
}

// SetUserRoles replaces the roles of the user with email.
func (c *Client) SetUserRoles(ctx context.Context, email string, roles ...silo.Role) (*silo.User, error) {
	if len(roles) == 0 {
		// An empty list would be omitted from the request and change nothing;
		// say so instead of silently succeeding.
		return nil, silo.FieldErrorf("roles", "at least one role is required: admin, model_builder or data_custodian")
	}
	return c.UpdateUser(ctx, email, UserUpdate{Roles: roles})
}

// RemoveUser deletes the user with email. Their access tokens stop working.
func (c *Client) RemoveUser(ctx context.Context, email string) error {
	return c.do(ctx, http.MethodDelete, userPath(email), nil, nil, nil)
}
