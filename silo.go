// Package silo holds Silo's domain: the plain types shared by the server, the
// runner, the store and the SDK, their validation rules and the error codes.
// It imports no database or HTTP code, so every other package can depend on it.
package silo

import "time"

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
