package client

import (
	"context"
	"net/http"

	"github.com/silofl/silo"
)

// LoginRequest signs in with an email address and password.
type LoginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	// TokenName names the access token the sign-in creates, so the user can
	// tell it apart in their token list (e.g. "silo CLI on laptop").
	TokenName string `json:"token_name,omitempty"`
}

// LoginResult is a successful sign-in: a new access token for the user.
type LoginResult struct {
	// Token is the access token's secret. The server keeps only its hash,
	// so this is the only time it is available.
	Token   string     `json:"token"`
	TokenID string     `json:"token_id"`
	User    *silo.User `json:"user"`
}

// Login exchanges an email address and password for a new access token. It
// needs no authentication; a wrong password is a silo.EUNAUTHORIZED error.
// Use New(baseURL, result.Token) to act as the signed-in user.
func (c *Client) Login(ctx context.Context, req LoginRequest) (*LoginResult, error) {
	return send[LoginResult](ctx, c, http.MethodPost, "/api/v1/login", req)
}

// Identity is who the client's token acts as.
type Identity struct {
	User *silo.User `json:"user"`
	// Permissions are what the token may do: the user's role permissions,
	// narrowed by the token's scopes if it has any.
	Permissions []silo.Permission `json:"permissions"`
	// TokenID is the ID of the access token in use, if one is.
	TokenID string `json:"token_id,omitempty"`
}

// Me returns the identity the client's token acts as. It is the cheapest way
// to check that a token is valid.
func (c *Client) Me(ctx context.Context) (*Identity, error) {
	return get[Identity](ctx, c, "/api/v1/me")
}
