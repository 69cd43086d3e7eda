package sqlstore

import "context"

// ExecForTest runs raw SQL, so tests can prove the database itself refuses
// what the store's API never offers.
func (db *DB) ExecForTest(ctx context.Context, query string) error {
	_, err := db.wdb.ExecContext(ctx, query)
	return err
}
