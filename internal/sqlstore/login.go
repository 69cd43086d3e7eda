package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/silofl/silo"
)

// CreateLogin stores a browser sign-in.
func (db *DB) CreateLogin(ctx context.Context, l *silo.Login) error {
	l.CreatedAt = db.now()
	_, err := db.wdb.ExecContext(ctx, db.q(`INSERT INTO logins (hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
		l.Hash, l.UserID, l.CSRF, micros(l.CreatedAt), micros(l.ExpiresAt))
	return err
}

// FindLogin returns the unexpired sign-in whose cookie secret hashes to hash.
func (db *DB) FindLogin(ctx context.Context, hash string) (*silo.Login, error) {
	var l silo.Login
	var created, expires int64
	err := db.rdb.QueryRowContext(ctx, db.q(`SELECT hash, user_id, csrf, created_at, expires_at FROM logins WHERE hash = ? AND expires_at > ?`), hash, micros(db.now())).
		Scan(&l.Hash, &l.UserID, &l.CSRF, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.EUNAUTHORIZED, "your sign-in has expired: sign in again")
	} else if err != nil {
		return nil, err
	}
	l.CreatedAt, l.ExpiresAt = fromMicros(created), fromMicros(expires)
	return &l, nil
}

// DeleteLogin signs a browser out.
func (db *DB) DeleteLogin(ctx context.Context, hash string) error {
	_, err := db.wdb.ExecContext(ctx, db.q(`DELETE FROM logins WHERE hash = ?`), hash)
	return err
}

// DeleteExpiredLogins removes sign-ins past their expiry.
func (db *DB) DeleteExpiredLogins(ctx context.Context) (int64, error) {
	res, err := db.wdb.ExecContext(ctx, db.q(`DELETE FROM logins WHERE expires_at <= ?`), micros(db.now()))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
