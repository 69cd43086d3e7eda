package sqlstore

import (
	"context"
	"fmt"

	"github.com/silofl/silo"
)

// Workspace returns the workspace and its billing information.
func (db *DB) Workspace(ctx context.Context) (*silo.Workspace, error) {
	var w silo.Workspace
	var updated int64
	err := db.rdb.QueryRowContext(ctx, `SELECT name, billing_contact, billing_email, billing_address, plan, updated_at FROM workspace WHERE id = 1`).
		Scan(&w.Name, &w.BillingContact, &w.BillingEmail, &w.BillingAddress, &w.Plan, &updated)
	if err != nil {
		return nil, fmt.Errorf("read workspace: %w", err)
	}
	if updated != 0 { // never edited
		w.UpdatedAt = fromMicros(updated)
	}
	return &w, nil
}

// UpdateWorkspace stores w, which the caller has validated.
func (db *DB) UpdateWorkspace(ctx context.Context, w *silo.Workspace) error {
	w.UpdatedAt = db.now()
	_, err := db.wdb.ExecContext(ctx, db.q(`UPDATE workspace SET name = ?, billing_contact = ?, billing_email = ?, billing_address = ?, plan = ?, updated_at = ? WHERE id = 1`),
		w.Name, w.BillingContact, w.BillingEmail, w.BillingAddress, w.Plan, micros(w.UpdatedAt))
	if err != nil {
		return fmt.Errorf("update workspace: %w", err)
	}
	return nil
}
