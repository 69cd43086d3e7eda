package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/silofl/silo"
)

// CreateToken creates an access token for the client's user. The returned
// Token's Secret (JSON "token") is only available in this response.
func (c *Client) CreateToken(ctx context.Context, req silo.TokenRequest) (*silo.Token, error) {
	return send[silo.Token](ctx, c, http.MethodPost, "/api/v1/tokens", req)
}

// ListTokens returns the user's own access tokens or, with all (admins
// only), everyone's. Secrets are never included.
func (c *Client) ListTokens(ctx context.Context, all bool) ([]*silo.Token, error) {
	var q url.Values
	if all {
		q = url.Values{"all": {"true"}}
	}
	return list[silo.Token](ctx, c, "/api/v1/tokens", q)
}

// RevokeToken revokes the access token id; it stops working at once.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil, nil)
}
