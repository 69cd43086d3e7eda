package client

import (
	"context"
	"net/url"
	"strconv"

	"github.com/silofl/silo"
)

// AuditQuery selects audit entries. The zero value asks for the newest
// entries, as many as the server returns by default.
type AuditQuery struct {
	// Since is an RFC 3339 time ("2026-01-02T15:04:05Z") or a Go duration
	// back from the server's clock ("24h"). It is a string because the
	// server accepts both, and a duration avoids skew between the clocks.
	Since string
	// Before pages back: only entries with an ID below it. 0 for none.
	Before int64
	// Limit caps the number of entries; 0 means the server's default.
	Limit int
	// Actor (exact), Action (a prefix), Target (a substring) and Outcome
	// narrow the entries; empty ones do not.
	Actor, Action, Target, Outcome string
}

// ListAudit returns audit entries, newest first. It needs the audit:read
// permission (admins).
func (c *Client) ListAudit(ctx context.Context, q AuditQuery) ([]*silo.AuditEntry, error) {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Before > 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	for k, val := range map[string]string{"actor": q.Actor, "action": q.Action, "target": q.Target, "outcome": q.Outcome} {
		if val != "" {
			v.Set(k, val)
		}
	}
	return list[silo.AuditEntry](ctx, c, "/api/v1/audit", v)
}
