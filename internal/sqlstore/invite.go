package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/silofl/silo"
)

const inviteColumns = `id, email, roles, created_by, created_at, expires_at, accepted_at, revoked_at, token_hash`

func scanInvite(s scanner) (*silo.Invite, error) {
	var i silo.Invite
	var roles string
	var created, expires int64
	var accepted, revoked sql.NullInt64
	if err := s.Scan(&i.ID, &i.Email, &roles, &i.CreatedBy, &created, &expires, &accepted, &revoked, &i.TokenHash); err != nil {
		return nil, err
	}
	i.Roles, i.CreatedAt, i.ExpiresAt = decodeRoles(roles), fromMicros(created), fromMicros(expires)
	i.AcceptedAt, i.RevokedAt = fromNullMicros(accepted), fromNullMicros(revoked)
	return &i, nil
}

// CreateInvite stores inv (its TokenHash, Email, Roles, CreatedBy and
// ExpiresAt set by the caller). An email that already has an account or a
// pending invitation is refused.
func (db *DB) CreateInvite(ctx context.Context, inv *silo.Invite) error {
	return db.tx(ctx, lockUsers, func(tx *sql.Tx) error {
		now := db.now()
		var n int
		if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM users WHERE email = ?`), inv.Email).Scan(&n); err != nil {
			return err
		} else if n > 0 {
			return silo.FieldErrorf("email", "%s already has an account: change their roles instead", inv.Email)
		}
		if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM invites WHERE email = ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?`),
			inv.Email, micros(now)).Scan(&n); err != nil {
			return err
		} else if n > 0 {
			return silo.FieldErrorf("email", "%s already has a pending invitation: revoke it first to send a new one", inv.Email)
		}
		inv.CreatedAt = now
		err := tx.QueryRowContext(ctx, db.q(`INSERT INTO invites (email, roles, created_by, created_at, expires_at, token_hash) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`),
			inv.Email, encodeRoles(inv.Roles), inv.CreatedBy, micros(inv.CreatedAt), micros(inv.ExpiresAt), inv.TokenHash).Scan(&inv.ID)
		if err != nil {
			return fmt.Errorf("insert invite: %w", err)
		}
		return nil
	})
}

// ListInvites returns every invitation, newest first.
func (db *DB) ListInvites(ctx context.Context) ([]*silo.Invite, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT `+inviteColumns+` FROM invites ORDER BY id DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*silo.Invite
	for rows.Next() {
		i, err := scanInvite(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// FindInviteByTokenHash returns the invitation whose link secret hashes to hash.
func (db *DB) FindInviteByTokenHash(ctx context.Context, hash string) (*silo.Invite, error) {
	i, err := scanInvite(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+inviteColumns+` FROM invites WHERE token_hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "this invitation link is not valid: ask your Workspace Administrator for a new one")
	}
	return i, err
}

// RevokeInvite revokes a pending invitation.
func (db *DB) RevokeInvite(ctx context.Context, id int64) (*silo.Invite, error) {
	var out *silo.Invite
	err := db.tx(ctx, 0, func(tx *sql.Tx) error {
		i, err := scanInvite(tx.QueryRowContext(ctx, db.q(`SELECT `+inviteColumns+` FROM invites WHERE id = ?`), id))
		if errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "no invitation with id %d", id)
		} else if err != nil {
			return err
		}
		now := db.now()
		if st := i.StatusAt(now); st != silo.InvitePending {
			return silo.Errorf(silo.ECONFLICT, "invitation %d is %s, not pending: nothing to revoke", id, st)
		}
		i.RevokedAt = &now
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE invites SET revoked_at = ? WHERE id = ?`), micros(now), id); err != nil {
			return err
		}
		out = i
		return nil
	})
	return out, err
}

// AcceptInvite uses the invitation whose secret hashes to hash: it creates the
// user with the invited roles and the given password hash and marks the
// invitation used, in one transaction, so a link works exactly once.
func (db *DB) AcceptInvite(ctx context.Context, hash, name, passwordHash string) (*silo.User, error) {
	var u *silo.User
	err := db.tx(ctx, lockUsers, func(tx *sql.Tx) error {
		i, err := scanInvite(tx.QueryRowContext(ctx, db.q(`SELECT `+inviteColumns+` FROM invites WHERE token_hash = ?`), hash))
		if errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "this invitation link is not valid: ask your Workspace Administrator for a new one")
		} else if err != nil {
			return err
		}
		now := db.now()
		switch i.StatusAt(now) {
		case silo.InviteAccepted:
			return silo.Errorf(silo.ECONFLICT, "this invitation has already been used: sign in instead, or ask for a new invitation")
		case silo.InviteRevoked:
			return silo.Errorf(silo.ECONFLICT, "this invitation was revoked: ask your Workspace Administrator for a new one")
		case silo.InviteExpired:
			return silo.Errorf(silo.ECONFLICT, "this invitation expired on %s: ask your Workspace Administrator for a new one", i.ExpiresAt.Format("2006-01-02 15:04 MST"))
		}
		u = &silo.User{Email: i.Email, Name: name, Roles: i.Roles, PasswordHash: passwordHash}
		if err := db.insertUser(ctx, tx, u); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, db.q(`UPDATE invites SET accepted_at = ? WHERE id = ?`), micros(now), i.ID)
		return err
	})
	return u, err
}
