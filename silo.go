// Package silo holds Silo's domain: the plain types shared by the server, the
// runner, the store and the SDK, their validation rules and the error codes.
// It imports no database or HTTP code, so every other package can depend on it.
package silo

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
	"time"
)

// Version is the product version reported by the server and the CLI.
var Version = "0.1.0-dev"

// Clock returns the current time. Code that deals with expiry or timeouts takes
// a Clock so tests can move time without sleeping.
type Clock func() time.Time

// Now returns c(), or time.Now when c is nil, so a zero Clock is useful.
func (c Clock) Now() time.Time {
	if c == nil {
		return time.Now().UTC()
	}
	return c().UTC()
}

// RandomID returns n random bytes from crypto/rand as lower-case base32: the
// random part of IDs and secrets (n = 10 gives 80 bits).
func RandomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails: it aborts the program instead
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}
