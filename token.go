package silo

import (
	"strings"
	"time"
)

// MaxScopedTokenTTL is the longest a scoped token may live.
const MaxScopedTokenTTL = 30 * 24 * time.Hour

// TokenPrefix starts every access token secret, so leaked tokens are easy to
// recognise in logs and by secret scanners.
const TokenPrefix = "silo_"

// Token is an access token for the CLI, SDK and scripts. Its secret is shown
// once, at creation; the store keeps only a SHA-256 hash.
type Token struct {
	ID         string       `json:"id"`
	UserID     int64        `json:"user_id"`
	UserEmail  string       `json:"user_email,omitempty"`
	Name       string       `json:"name"`
	Scopes     []Permission `json:"scopes,omitempty"`
	CreatedAt  time.Time    `json:"created_at"`
	ExpiresAt  *time.Time   `json:"expires_at,omitempty"`
	LastUsedAt *time.Time   `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time   `json:"revoked_at,omitempty"`
	// ParentID is the scoped token this one was created with, if any: it
	// expires no later than its parent and is revoked with it.
	ParentID string `json:"parent_id,omitempty"`
	Hash     string `json:"-"`
	// Secret is set only in the response that creates the token.
	Secret string `json:"token,omitempty"`
}

// Active reports whether t may authenticate at now.
func (t *Token) Active(now time.Time) bool {
	return t.RevokedAt == nil && (t.ExpiresAt == nil || now.Before(*t.ExpiresAt))
}

// TokenRequest is what a user asks for when creating a token.
type TokenRequest struct {
	Name   string       `json:"name"`
	Scopes []Permission `json:"scopes,omitempty"`
	// ExpiresIn is a Go duration ("720h"); empty means no expiry, except for
	// scoped tokens which default to and may not exceed 30 days.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// Validate checks the request against the holder's own permissions and
// returns the expiry (nil for none).
func (r *TokenRequest) Validate(now time.Time, held []Permission) (*time.Time, error) {
	r.Name = strings.TrimSpace(r.Name)
	if r.Name == "" {
		r.Name = "token"
	}
	if len(r.Name) > 64 {
		return nil, FieldErrorf("name", "token name must be at most 64 characters")
	}
	if err := CheckText("name", r.Name, false); err != nil {
		return nil, err
	}
	for _, s := range r.Scopes {
		if !ValidPermission(s) {
			return nil, FieldErrorf("scopes", "unknown scope %q: a scope is a permission, one of %s", s, permList(AllPermissions()))
		}
		if !containsPerm(held, s) {
			return nil, FieldErrorf("scopes", "scope %q is not one of your own permissions; a token can only carry permissions you hold: %s", s, permList(held))
		}
	}
	var ttl time.Duration
	if r.ExpiresIn != "" {
		d, err := time.ParseDuration(r.ExpiresIn)
		if err != nil || d <= 0 {
			return nil, FieldErrorf("expires_in", "expiry %q is not a positive duration such as 24h or 720h", r.ExpiresIn)
		}
		ttl = d
	}
	if len(r.Scopes) > 0 {
		if ttl == 0 {
			ttl = MaxScopedTokenTTL
		}
		if ttl > MaxScopedTokenTTL {
			return nil, FieldErrorf("expires_in", "a scoped token lives at most 30 days (720h); ask for less")
		}
	}
	if ttl == 0 {
		return nil, nil
	}
	t := now.Add(ttl)
	return &t, nil
}

func containsPerm(ps []Permission, p Permission) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// permList writes permissions for a message, comma-separated.
func permList(ps []Permission) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return strings.Join(out, ", ")
}
