package silo

import "time"

// LoginTTL is how long a browser sign-in lasts.
const LoginTTL = 12 * time.Hour

// Login is a signed-in browser session. The cookie carries a random secret;
// the store keeps its SHA-256 hash, so a database leak yields no live cookie.
type Login struct {
	Hash      string
	UserID    int64
	CSRF      string // per-login token every form must echo
	CreatedAt time.Time
	ExpiresAt time.Time
}
