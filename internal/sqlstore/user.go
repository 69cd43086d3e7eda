package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/silofl/silo"
)

const userColumns = `id, email, name, roles, disabled, password_hash, created_at`

func encodeRoles(roles []silo.Role) string {
	return "," + strings.Join(silo.RoleNames(roles), ",") + ","
}

func decodeRoles(s string) []silo.Role {
	var out []silo.Role
	for _, r := range strings.Split(strings.Trim(s, ","), ",") {
		if r != "" {
			out = append(out, silo.Role(r))
		}
	}
	return out
}

func scanUser(s scanner) (*silo.User, error) {
	var u silo.User
	var roles string
	var disabled int
	var created int64
	if err := s.Scan(&u.ID, &u.Email, &u.Name, &roles, &disabled, &u.PasswordHash, &created); err != nil {
		return nil, err
	}
	u.Roles, u.Disabled, u.CreatedAt = decodeRoles(roles), disabled != 0, fromMicros(created)
	return &u, nil
}

// CountUsers returns how many users exist; zero means the setup page is open.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := db.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n, err
}

// CreateUser inserts u and sets its ID and CreatedAt.
func (db *DB) CreateUser(ctx context.Context, u *silo.User) error {
	return db.tx(ctx, lockUsers, func(tx *sql.Tx) error { return db.insertUser(ctx, tx, u) })
}

// CreateFirstAdmin inserts u only if there are no users yet, so two setup
// requests racing cannot both create an admin.
func (db *DB) CreateFirstAdmin(ctx context.Context, u *silo.User) error {
	return db.tx(ctx, lockUsers, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return silo.Errorf(silo.ECONFLICT, "setup is already done: sign in with an existing account")
		}
		return db.insertUser(ctx, tx, u)
	})
}

func (db *DB) insertUser(ctx context.Context, tx *sql.Tx, u *silo.User) error {
	u.CreatedAt = db.now()
	err := tx.QueryRowContext(ctx, db.q(`INSERT INTO users (email, name, roles, disabled, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`),
		u.Email, u.Name, encodeRoles(u.Roles), boolInt(u.Disabled), u.PasswordHash, micros(u.CreatedAt)).Scan(&u.ID)
	if isUniqueViolation(err) {
		return silo.FieldErrorf("email", "a user with email %s already exists", u.Email)
	} else if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	return nil
}

// FindUserByID returns the user with id.
func (db *DB) FindUserByID(ctx context.Context, id int64) (*silo.User, error) {
	u, err := scanUser(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+userColumns+` FROM users WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no user with id %d", id)
	}
	return u, err
}

// FindUserByEmail returns the user with email (already normalised).
func (db *DB) FindUserByEmail(ctx context.Context, email string) (*silo.User, error) {
	u, err := scanUser(db.rdb.QueryRowContext(ctx, db.q(`SELECT `+userColumns+` FROM users WHERE email = ?`), email))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, silo.Errorf(silo.ENOTFOUND, "no user with email %s", email)
	}
	return u, err
}

// ListUsers returns every user, by email.
func (db *DB) ListUsers(ctx context.Context) ([]*silo.User, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY email`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*silo.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// changeUser loads a user inside a locked transaction, lets change edit it
// (or return delete=true), refuses the result if it leaves no active admin,
// and writes it.
func (db *DB) changeUser(ctx context.Context, id int64, change func(u *silo.User) (remove bool)) (*silo.User, error) {
	var out *silo.User
	err := db.tx(ctx, lockUsers, func(tx *sql.Tx) error {
		u, err := scanUser(tx.QueryRowContext(ctx, db.q(`SELECT `+userColumns+` FROM users WHERE id = ?`), id))
		if errors.Is(err, sql.ErrNoRows) {
			return silo.Errorf(silo.ENOTFOUND, "no user with id %d", id)
		} else if err != nil {
			return err
		}
		wasAdmin := u.IsActiveAdmin()
		remove := change(u)
		if wasAdmin && (remove || !u.IsActiveAdmin()) {
			var admins int
			if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM users WHERE disabled = 0 AND roles LIKE ?`), "%,admin,%").Scan(&admins); err != nil {
				return err
			}
			if admins <= 1 {
				return silo.ErrLastAdmin
			}
		}
		if remove {
			_, err = tx.ExecContext(ctx, db.q(`DELETE FROM users WHERE id = ?`), id)
		} else {
			_, err = tx.ExecContext(ctx, db.q(`UPDATE users SET name = ?, roles = ?, disabled = ?, password_hash = ? WHERE id = ?`),
				u.Name, encodeRoles(u.Roles), boolInt(u.Disabled), u.PasswordHash, id)
		}
		if err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		if u.Disabled {
			// A disabled user is signed out everywhere at once.
			if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM logins WHERE user_id = ?`), id); err != nil {
				return err
			}
		}
		out = u
		return nil
	})
	return out, err
}

// UpdateUser applies change to the user with id in one transaction; a result
// that leaves no active admin is refused and nothing is written.
func (db *DB) UpdateUser(ctx context.Context, id int64, change func(u *silo.User)) (*silo.User, error) {
	return db.changeUser(ctx, id, func(u *silo.User) bool { change(u); return false })
}

// SetUserRoles replaces a user's roles; demoting the last active admin is refused.
func (db *DB) SetUserRoles(ctx context.Context, id int64, roles []silo.Role) (*silo.User, error) {
	return db.changeUser(ctx, id, func(u *silo.User) bool { u.Roles = roles; return false })
}

// SetUserDisabled disables or re-enables a user; disabling the last active
// admin is refused.
func (db *DB) SetUserDisabled(ctx context.Context, id int64, disabled bool) (*silo.User, error) {
	return db.changeUser(ctx, id, func(u *silo.User) bool { u.Disabled = disabled; return false })
}

// SetUserPassword stores a new password hash.
func (db *DB) SetUserPassword(ctx context.Context, id int64, hash string) error {
	_, err := db.changeUser(ctx, id, func(u *silo.User) bool { u.PasswordHash = hash; return false })
	return err
}

// DeleteUser removes a user with their tokens and sign-ins; removing the last
// active admin is refused.
func (db *DB) DeleteUser(ctx context.Context, id int64) (*silo.User, error) {
	return db.changeUser(ctx, id, func(*silo.User) bool { return true })
}

// SetUserName changes a user's display name.
func (db *DB) SetUserName(ctx context.Context, id int64, name string) (*silo.User, error) {
	return db.changeUser(ctx, id, func(u *silo.User) bool { u.Name = name; return false })
}
