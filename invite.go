package silo

import "time"

// DefaultInviteTTL is how long an invitation link stays valid.
const DefaultInviteTTL = 7 * 24 * time.Hour

// Invite is a single-use invitation for an email address to join with roles.
type Invite struct {
	ID         int64      `json:"id"`
	Email      string     `json:"email"`
	Roles      []Role     `json:"roles"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	AcceptedAt *time.Time `json:"accepted_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	// Status is derived (pending, accepted, revoked, expired) and filled in by
	// the server for listings.
	Status string `json:"status,omitempty"`
	// TokenHash is the SHA-256 of the secret in the invite link.
	TokenHash string `json:"-"`
	// Link is the invitation URL; it exists only in the response that creates
	// the invite, since only the hash of its secret is stored.
	Link string `json:"link,omitempty"`
	// Emailed says the link was also mailed to the invitee (when the server
	// has mail configured); EmailError says why not, if sending failed.
	Emailed    bool   `json:"emailed,omitempty"`
	EmailError string `json:"email_error,omitempty"`
}

// Invite states, derived from the timestamps.
const (
	InvitePending  = "pending"
	InviteAccepted = "accepted"
	InviteRevoked  = "revoked"
	InviteExpired  = "expired"
)

// StatusAt returns the invite's state at now.
func (i *Invite) StatusAt(now time.Time) string {
	switch {
	case i.AcceptedAt != nil:
		return InviteAccepted
	case i.RevokedAt != nil:
		return InviteRevoked
	case !now.Before(i.ExpiresAt):
		return InviteExpired
	}
	return InvitePending
}
