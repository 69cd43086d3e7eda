package silo

import "time"

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeFailed  = "failed"
)

// AuditEntry is one line of the append-only audit log: who did what to what,
// and how it ended.
type AuditEntry struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Target  string    `json:"target"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
}

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	Since  time.Time
	Before int64 // entries with ID below this, for paging; 0 for none
	Limit  int
	// Narrowing, each ignored when empty: the actor exactly (an email,
	// runner:NAME or system), actions starting with Action ("dataset."
	// or "dataset.register"), targets containing Target, and the outcome.
	Actor, Action, Target, Outcome string
}
