package silo

import (
	"net/mail"
	"slices"
	"strings"
	"time"
)

// User is a person with access to the workspace.
type User struct {
	ID        int64     `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name,omitempty"`
	Roles     []Role    `json:"roles"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	// PasswordHash is the argon2id/bcrypt hash; it never leaves the server.
	PasswordHash string `json:"-"`
}

// HasRole reports whether u holds r.
func (u *User) HasRole(r Role) bool { return slices.Contains(u.Roles, r) }

// IsActiveAdmin reports whether u counts towards the "at least one active
// admin" rule.
func (u *User) IsActiveAdmin() bool { return !u.Disabled && u.HasRole(RoleAdmin) }

// MinPasswordLen and MaxPasswordLen bound passwords; the upper bound keeps
// hashing cost bounded for hostile input.
const (
	MinPasswordLen = 10
	MaxPasswordLen = 256
)

// NormalizeEmail validates an email address and returns it in lower case.
func NormalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", FieldErrorf("email", "email is required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || !strings.Contains(s[strings.LastIndex(s, "@")+1:], ".") {
		return "", FieldErrorf("email", "%q is not a valid email address: use the form name@example.org", s)
	}
	if len(s) > 254 {
		return "", FieldErrorf("email", "email is longer than 254 characters")
	}
	return strings.ToLower(s), nil
}

// ValidatePassword checks a new password against the password policy.
func ValidatePassword(p string) error {
	if len(p) < MinPasswordLen {
		return FieldErrorf("password", "password must be at least %d characters long", MinPasswordLen)
	}
	if len(p) > MaxPasswordLen {
		return FieldErrorf("password", "password must be at most %d characters long", MaxPasswordLen)
	}
	return nil
}

// ParseRoles parses a list of role names (as given on a command line or in a
// form), rejecting unknown ones and duplicates, and requiring at least one.
func ParseRoles(names []string) ([]Role, error) {
	var out []Role
	for _, n := range names {
		for _, part := range strings.Split(n, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			r := Role(part)
			if !slices.Contains(Roles, r) {
				return nil, FieldErrorf("roles", "unknown role %q: use one or more of admin, model_builder, data_custodian", part)
			}
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		return nil, FieldErrorf("roles", "at least one role is required: admin, model_builder or data_custodian")
	}
	slices.SortFunc(out, func(a, b Role) int { return slices.Index(Roles, a) - slices.Index(Roles, b) })
	return out, nil
}

// RoleNames returns roles as strings.
func RoleNames(roles []Role) []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = string(r)
	}
	return out
}

// ErrLastAdmin is returned when a change would leave the workspace with no
// active admin.
var ErrLastAdmin = &Error{Code: ECONFLICT, Message: "the workspace must keep at least one active admin: make another user an admin first"}
