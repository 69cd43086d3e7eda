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
const tokenColumns = `t.id, t.user_id, u.email, t.name, t.scopes, t.hash, t.created_at, t.expires_at, t.last_used_at, t.revoked_at, t.parent_id`

func scanToken(s scanner) (*silo.Token, error) {
	var t silo.Token
	var scopes string
	var created int64
	var expires, used, revoked sql.NullInt64
	if err := s.Scan(&t.ID, &t.UserID, &t.UserEmail, &t.Name, &scopes, &t.Hash, &created, &expires, &used, &revoked, &t.ParentID); err != nil {
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

// CreateToken stores t (ID, UserID, Name, Scopes, Hash, ExpiresAt and
// ParentID set by the caller). A token with a parent never outlives it: its
// expiry is capped at the parent's (t.ExpiresAt is updated), and a parent
// that is no longer active cannot have children. The check and the insert
// share a transaction with RevokeToken's cascade, so a child cannot slip in
// beside a revocation.
func (db *DB) CreateToken(ctx context.Context, t *silo.Token) error {
	t.CreatedAt = db.now()
	scopes := make([]string, len(t.Scopes))
	for i, s := range t.Scopes {
		scopes[i] = string(s)
	}
	return db.tx(ctx, lockTokens, func(tx *sql.Tx) error {
		if t.ParentID != "" {
			parent, err := scanToken(tx.QueryRowContext(ctx, db.q(`SELECT `+tokenColumns+` FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?`), t.ParentID))
			if errors.Is(err, sql.ErrNoRows) || (err == nil && !parent.Active(t.CreatedAt)) {
				return silo.Errorf(silo.EUNAUTHORIZED, "the token this request came with is no longer valid: it cannot create tokens")
			} else if err != nil {
				return err
			}
			if parent.ExpiresAt != nil && (t.ExpiresAt == nil || t.ExpiresAt.After(*parent.ExpiresAt)) {
				capped := *parent.ExpiresAt
				t.ExpiresAt = &capped
			}
		}
		_, err := tx.ExecContext(ctx, db.q(`INSERT INTO tokens (id, user_id, name, scopes, hash, created_at, expires_at, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
			t.ID, t.UserID, t.Name, strings.Join(scopes, ","), t.Hash, micros(t.CreatedAt), nullMicros(t.ExpiresAt), t.ParentID)
		if err != nil {
			return fmt.Errorf("insert token: %w", err)
		}
		return nil
	})
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

// RevokeToken revokes a token and every token minted from it (children,
// their children…); they all stop working at once.
func (db *DB) RevokeToken(ctx context.Context, id string) error {
	return db.tx(ctx, lockTokens, func(tx *sql.Tx) error {
		var revoked sql.NullInt64
		err := tx.QueryRowContext(ctx, db.q(`SELECT revoked_at FROM tokens WHERE id = ?`), id).Scan(&revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "no token with id %s", id)
		} else if err != nil {
			return err
		}
		if revoked.Valid {
			return silo.Errorf(silo.ECONFLICT, "token %s is already revoked", id)
		}
		_, err = tx.ExecContext(ctx, db.q(`WITH RECURSIVE tree (id) AS (SELECT id FROM tokens WHERE id = ? UNION SELECT t.id FROM tokens t JOIN tree ON t.parent_id = tree.id)
			UPDATE tokens SET revoked_at = ? WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL`), id, micros(db.now()))
		if err != nil {
			return fmt.Errorf("revoke token: %w", err)
		}
		return nil
	})
}

// TouchToken records that a token was used at at. Callers may skip it when
// the last recorded use is recent, to spare the writer.
func (db *DB) TouchToken(ctx context.Context, id string, at time.Time) error {
	_, err := db.wdb.ExecContext(ctx, db.q(`UPDATE tokens SET last_used_at = ? WHERE id = ?`), micros(at), id)
	return err
}
