package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/silofl/silo"
)

// AppendAudit writes one entry to the append-only audit log.
func (db *DB) AppendAudit(ctx context.Context, e *silo.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = db.now()
	}
	err := db.wdb.QueryRowContext(ctx, db.q(`INSERT INTO audit (time, actor, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`),
		micros(e.Time), e.Actor, e.Action, e.Target, e.Outcome, e.Detail).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("append audit entry: %w", err)
	}
	return nil
}

// ListAudit returns audit entries, newest first.
func (db *DB) ListAudit(ctx context.Context, f silo.AuditFilter) ([]*silo.AuditEntry, error) {
	query := `SELECT id, time, actor, action, target, outcome, detail FROM audit WHERE 1 = 1`
	var args []any
	if !f.Since.IsZero() {
		query += ` AND time >= ?`
		args = append(args, micros(f.Since))
	}
	if f.Before > 0 {
		query += ` AND id < ?`
		args = append(args, f.Before)
	}
	if f.Actor != "" {
		query += ` AND actor = ?`
		args = append(args, f.Actor)
	}
	if f.Action != "" {
		query += ` AND action LIKE ? ESCAPE '\'`
		args = append(args, likeEscape(f.Action)+"%")
	}
	if f.Target != "" {
		query += ` AND target LIKE ? ESCAPE '\'`
		args = append(args, "%"+likeEscape(f.Target)+"%")
	}
	if f.Outcome != "" {
		query += ` AND outcome = ?`
		args = append(args, f.Outcome)
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 1000
	}
	query += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, f.Limit)
	rows, err := db.rdb.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*silo.AuditEntry
	for rows.Next() {
		var e silo.AuditEntry
		var t int64
		if err := rows.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.Target, &e.Outcome, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = fromMicros(t)
		out = append(out, &e)
	}
	return out, rows.Err()
}

// likeEscape escapes LIKE's wildcards so a filter matches them literally.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
}
