package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/silofl/silo"
)

// #nosec G101 -- column names, not a credential
const tokenColumns = `t.id, t.user_id, u.email, t.name, t.scopes, t.hash, t.created_at, t.expires_at, t.last_used_at, t.revoked_at`

func scanToken(s scanner) (*silo.Token, error) {
	var t silo.Token
	var scopes string
	var created int64
	var expires, used, revoked sql.NullInt64
	if err := s.Scan(&t.ID, &t.UserID, &t.UserEmail, &t.Name, &scopes, &t.Hash, &created, &expires, &used, &revoked); err != nil {
		return nil, err
	}
	for _, p := range strings.Split(scopes, ",") {
		if p != "" {
			t.Scopes = append(t.Scopes, silo.Permission(p))
		}
	}
	t.CreatedAt, t.ExpiresAt, t.LastUsedAt, t.RevokedAt = fromMicros(created), fromNullMicros(expires), fromNullMicros(used), fromNullMicros(revoked)
	return &t, nil
}

// CreateToken stores t (ID, UserID, Name, Scopes, Hash, ExpiresAt set by the caller).
func (db *DB) CreateToken(ctx context.Context, t *silo.Token) error {
	t.CreatedAt = db.now()
	scopes := make([]string, len(t.Scopes))
	for i, s := range t.Scopes {
		scopes[i] = string(s)
	}
	_, err := db.wdb.ExecContext(ctx, db.q(`INSERT INTO tokens (id, user_id, name, scopes, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		t.ID, t.UserID, t.Name, strings.Join(scopes, ","), t.Hash, micros(t.CreatedAt), nullMicros(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("insert token: %w", err)
	}
	return nil
}

// FindTokenByHash returns the token whose secret hashes to hash, active or not.
func (db *DB) FindTokenByHash(ctx context.Context, hash string) (*silo.Token, error) {
	t, err := scanToken(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+tokenColumns+` FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no such token")
	}
	return t, err
}

// FindToken returns the token with id.
func (db *DB) FindToken(ctx context.Context, id string) (*silo.Token, error) {
	t, err := scanToken(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+tokenColumns+` FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no token with id %s", id)
	}
	return t, err
}

// ListTokens returns the tokens of userID, or of everyone when userID is 0,
// newest first.
func (db *DB) ListTokens(ctx context.Context, userID int64) ([]*silo.Token, error) {
	query := `SELECT ` + tokenColumns + ` FROM tokens t JOIN users u ON u.id = t.user_id`
	var args []any
	if userID != 0 {
		query += ` WHERE t.user_id = ?`
		args = append(args, userID)
	}
	rows, err := db.rdb.QueryContext(ctx, db.q(query+` ORDER BY t.created_at DESC, t.id`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*silo.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes a token; it stops working at once.
func (db *DB) RevokeToken(ctx context.Context, id string) error {
	res, err := db.wdb.ExecContext(ctx, db.q(`UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`), micros(db.now()), id)
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := db.FindToken(ctx, id); err != nil {
			return err
		}
		return silo.Errorf(silo.ECONFLICT, "token %s is already revoked", id)
	}
	return nil
}

// TouchToken records that a token was used at at. Callers may skip it when
// the last recorded use is recent, to spare the writer.
func (db *DB) TouchToken(ctx context.Context, id string, at time.Time) error {
	_, err := db.wdb.ExecContext(ctx, db.q(`UPDATE tokens SET last_used_at = ? WHERE id = ?`), micros(at), id)
	return err
}
