package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/httpjson"
)

func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request) {
	f, err := s.AuditFilter(r.URL.Query())
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	entries, err := s.db.ListAudit(r.Context(), f)
	if err != nil {
		httpjson.Error(w, r, s.Logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, nonNil(entries))
}

// AuditFilter parses ?since= (RFC 3339 time or a duration back from now),
// ?limit= and ?before=.
func (s *Server) AuditFilter(q url.Values) (silo.AuditFilter, error) {
	var f silo.AuditFilter
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			f.Since = s.now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			f.Since = t
		} else {
			return f, silo.FieldErrorf("since", "since %q is neither a duration (24h) nor a time (2026-01-02T15:04:05Z)", v)
		}
	}
	limit, err := limitParam(q, 1000)
	if err != nil {
		return f, err
	}
	f.Limit = limit
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return f, silo.FieldErrorf("before", "before %q must be an audit entry id", v)
		}
		f.Before = n
	}
	f.Actor = strings.TrimSpace(q.Get("actor"))
	f.Action = strings.TrimSpace(q.Get("action"))
	f.Target = strings.TrimSpace(q.Get("target"))
	f.Outcome = strings.TrimSpace(q.Get("outcome"))
	for _, v := range []struct{ name, val string }{{"actor", f.Actor}, {"action", f.Action}, {"target", f.Target}} {
		if len(v.val) > 256 {
			return f, silo.FieldErrorf(v.name, "%s filter is longer than 256 characters", v.name)
		}
	}
	switch f.Outcome {
	case "", silo.OutcomeSuccess, silo.OutcomeFailed, silo.OutcomeDenied:
	default:
		return f, silo.FieldErrorf("outcome", "outcome %q: use %s, %s or %s", f.Outcome, silo.OutcomeSuccess, silo.OutcomeFailed, silo.OutcomeDenied)
	}
	return f, nil
}
