package client

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/silofl/silo"
)

// InviteRequest invites an email address to join the workspace with roles.
type InviteRequest struct {
	Email string      `json:"email"`
	Roles []silo.Role `json:"roles"`
	// ExpiresIn is how long the link stays valid, as a Go duration ("168h");
	// empty means the server's default of 7 days.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// InviteUser creates an invitation. The returned Invite's Link is the
// single-use accept URL; it is only available in this response.
func (c *Client) InviteUser(ctx context.Context, req InviteRequest) (*silo.Invite, error) {
	return send[silo.Invite](ctx, c, http.MethodPost, "/api/v1/invites", req)
}

// ListInvites returns every invitation with its status (pending, accepted,
// revoked or expired).
func (c *Client) ListInvites(ctx context.Context) ([]*silo.Invite, error) {
	return list[silo.Invite](ctx, c, "/api/v1/invites", nil)
}

// RevokeInvite makes the invitation id unusable and returns it.
func (c *Client) RevokeInvite(ctx context.Context, id int64) (*silo.Invite, error) {
	return send[silo.Invite](ctx, c, http.MethodDelete, "/api/v1/invites/"+strconv.FormatInt(id, 10), nil)
}

// AcceptInviteRequest accepts an invitation and sets the new user's password.
type AcceptInviteRequest struct {
	// Token is the secret of the invite: the last path segment of the
	// invite link. The whole link is accepted too.
	Token    string `json:"token"`
	Name     string `json:"name,omitempty"`
	Password string `json:"password"`
}

// AcceptInvite creates the invited user. It needs no authentication: the
// invite's secret is the credential. Sign in afterwards with Login.
func (c *Client) AcceptInvite(ctx context.Context, req AcceptInviteRequest) (*silo.User, error) {
	req.Token = InviteSecret(req.Token)
	return send[silo.User](ctx, c, http.MethodPost, "/api/v1/invites/accept", req)
}

// InviteSecret returns the secret of an invite link (".../invite/<secret>"),
// or s itself if it is already a bare secret.
func InviteSecret(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "?"); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimRight(s, "/")
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s = s[i+1:]
	}
	return s
}
