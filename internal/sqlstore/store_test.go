package sqlstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/internal/testsvc"
)

func TestMain(m *testing.M) { os.Exit(testsvc.Main(m)) }

// clock is a settable clock for expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// eachStore runs the contract test fn against SQLite and PostgreSQL.
func eachStore(t *testing.T, fn func(t *testing.T, db *sqlstore.DB, c *clock)) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "silo.db")
			if kind == "postgres" {
				dsn = testsvc.Postgres(t)
			}
			c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			db := sqlstore.New(dsn)
			db.Clock = c.now
			if err := db.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if db.Dialect() != kind {
				t.Fatalf("dialect = %s, want %s", db.Dialect(), kind)
			}
			fn(t, db, c)
		})
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := silo.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func mustUser(t *testing.T, db *sqlstore.DB, email string, roles ...silo.Role) *silo.User {
	t.Helper()
	u := &silo.User{Email: email, Roles: roles, PasswordHash: "h"}
	if err := db.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestMigrationsIdempotent(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		again := sqlstore.New(db.DSN)
		if err := again.Open(context.Background()); err != nil {
			t.Fatalf("reopen: %v", err)
		}
		again.Close()
	})
}

func TestUsers(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		if n, err := db.CountUsers(ctx); err != nil || n != 0 {
			t.Fatalf("CountUsers = %d, %v", n, err)
		}
		a := mustUser(t, db, "ada@example.org", silo.RoleAdmin, silo.RoleModelBuilder)
		if a.ID == 0 || !a.CreatedAt.Equal(c.now()) {
			t.Fatalf("created user = %+v", a)
		}
		err := db.CreateUser(ctx, &silo.User{Email: "ada@example.org", Roles: []silo.Role{silo.RoleAdmin}})
		wantCode(t, err, silo.EINVALID)

		got, err := db.FindUserByEmail(ctx, "ada@example.org")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Fatalf("FindUserByEmail (-want +got):\n%s", diff)
		}
		_, err = db.FindUserByID(ctx, 999)
		wantCode(t, err, silo.ENOTFOUND)

		b := mustUser(t, db, "bob@example.org", silo.RoleDataCustodian)
		users, err := db.ListUsers(ctx)
		if err != nil || len(users) != 2 || users[0].Email != "ada@example.org" || users[1].Email != "bob@example.org" {
			t.Fatalf("ListUsers = %v, %v", users, err)
		}
		b, err = db.SetUserRoles(ctx, b.ID, []silo.Role{silo.RoleDataCustodian, silo.RoleModelBuilder})
		if err != nil || !b.HasRole(silo.RoleModelBuilder) {
			t.Fatalf("SetUserRoles = %+v, %v", b, err)
		}
		if err := db.SetUserPassword(ctx, b.ID, "new"); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.FindUserByID(ctx, b.ID); got.PasswordHash != "new" {
			t.Fatalf("password hash not stored")
		}
	})
}

func TestFirstAdminOnlyOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		if err := db.CreateFirstAdmin(ctx, &silo.User{Email: "a@example.org", Roles: []silo.Role{silo.RoleAdmin}}); err != nil {
			t.Fatal(err)
		}
		err := db.CreateFirstAdmin(ctx, &silo.User{Email: "b@example.org", Roles: []silo.Role{silo.RoleAdmin}})
		wantCode(t, err, silo.ECONFLICT)
	})
}

func TestLastAdmin(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		a := mustUser(t, db, "a@example.org", silo.RoleAdmin)
		mb := mustUser(t, db, "mb@example.org", silo.RoleModelBuilder)

		_, err := db.SetUserRoles(ctx, a.ID, []silo.Role{silo.RoleModelBuilder})
		if !errors.Is(err, silo.ErrLastAdmin) {
			t.Fatalf("demote last admin: %v", err)
		}
		_, err = db.SetUserDisabled(ctx, a.ID, true)
		wantCode(t, err, silo.ECONFLICT)
		_, err = db.DeleteUser(ctx, a.ID)
		wantCode(t, err, silo.ECONFLICT)
		if got, _ := db.FindUserByID(ctx, a.ID); !got.IsActiveAdmin() {
			t.Fatalf("refused change was written: %+v", got)
		}
		// Non-admins may be removed freely.
		if _, err := db.DeleteUser(ctx, mb.ID); err != nil {
			t.Fatal(err)
		}

		// With a second admin the first may go; a disabled admin does not count.
		b := mustUser(t, db, "b@example.org", silo.RoleAdmin)
		if _, err := db.SetUserDisabled(ctx, b.ID, true); err != nil {
			t.Fatal(err)
		}
		_, err = db.DeleteUser(ctx, a.ID)
		wantCode(t, err, silo.ECONFLICT)
		if _, err := db.SetUserDisabled(ctx, b.ID, false); err != nil {
			t.Fatal(err)
		}
		if _, err := db.DeleteUser(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		_, err = db.FindUserByID(ctx, a.ID)
		wantCode(t, err, silo.ENOTFOUND)
	})
}

// Two admins demoting each other at once: exactly one succeeds.
func TestLastAdminConcurrent(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		a := mustUser(t, db, "a@example.org", silo.RoleAdmin)
		b := mustUser(t, db, "b@example.org", silo.RoleAdmin)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, u := range []*silo.User{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = db.SetUserRoles(ctx, u.ID, []silo.Role{silo.RoleModelBuilder})
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("want exactly one demotion to succeed, got %v and %v", errs[0], errs[1])
		}
		users, _ := db.ListUsers(ctx)
		admins := 0
		for _, u := range users {
			if u.IsActiveAdmin() {
				admins++
			}
		}
		if admins != 1 {
			t.Fatalf("%d active admins left, want 1", admins)
		}
	})
}

func TestInvites(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		mustUser(t, db, "admin@example.org", silo.RoleAdmin)
		inv := &silo.Invite{Email: "new@example.org", Roles: []silo.Role{silo.RoleModelBuilder, silo.RoleDataCustodian},
			CreatedBy: "admin@example.org", ExpiresAt: c.now().Add(silo.DefaultInviteTTL), TokenHash: "hash1"}
		if err := db.CreateInvite(ctx, inv); err != nil {
			t.Fatal(err)
		}
		// A second pending invite, or an invite for an existing user, is refused.
		wantCode(t, db.CreateInvite(ctx, &silo.Invite{Email: "new@example.org", Roles: inv.Roles, ExpiresAt: inv.ExpiresAt, TokenHash: "hash2"}), silo.EINVALID)
		wantCode(t, db.CreateInvite(ctx, &silo.Invite{Email: "admin@example.org", Roles: inv.Roles, ExpiresAt: inv.ExpiresAt, TokenHash: "hash3"}), silo.EINVALID)

		_, err := db.AcceptInvite(ctx, "nope", "", "pw")
		wantCode(t, err, silo.ENOTFOUND)
		u, err := db.AcceptInvite(ctx, "hash1", "New Person", "pw")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(inv.Roles, u.Roles); diff != "" || u.Email != "new@example.org" || u.Name != "New Person" {
			t.Fatalf("accepted user = %+v (%s)", u, diff)
		}
		_, err = db.AcceptInvite(ctx, "hash1", "", "pw")
		wantCode(t, err, silo.ECONFLICT) // single use

		// Expired and revoked invites cannot be used.
		exp := &silo.Invite{Email: "late@example.org", Roles: inv.Roles, ExpiresAt: c.now().Add(time.Hour), TokenHash: "hash4"}
		if err := db.CreateInvite(ctx, exp); err != nil {
			t.Fatal(err)
		}
		rev := &silo.Invite{Email: "gone@example.org", Roles: inv.Roles, ExpiresAt: c.now().Add(time.Hour), TokenHash: "hash5"}
		if err := db.CreateInvite(ctx, rev); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RevokeInvite(ctx, rev.ID); err != nil {
			t.Fatal(err)
		}
		_, err = db.RevokeInvite(ctx, rev.ID)
		wantCode(t, err, silo.ECONFLICT)
		_, err = db.AcceptInvite(ctx, "hash5", "", "pw")
		wantCode(t, err, silo.ECONFLICT)
		c.add(2 * time.Hour)
		_, err = db.AcceptInvite(ctx, "hash4", "", "pw")
		wantCode(t, err, silo.ECONFLICT)
		if _, err := db.FindUserByEmail(ctx, "late@example.org"); silo.ErrorCode(err) != silo.ENOTFOUND {
			t.Fatalf("expired invite created a user: %v", err)
		}
		// Once expired, the email may be invited again.
		if err := db.CreateInvite(ctx, &silo.Invite{Email: "late@example.org", Roles: inv.Roles, ExpiresAt: c.now().Add(time.Hour), TokenHash: "hash6"}); err != nil {
			t.Fatal(err)
		}

		list, err := db.ListInvites(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var states []string
		for _, i := range list {
			states = append(states, i.Email+":"+i.StatusAt(c.now()))
		}
		want := []string{"late@example.org:pending", "gone@example.org:revoked", "late@example.org:expired", "new@example.org:accepted"}
		if diff := cmp.Diff(want, states); diff != "" {
			t.Fatalf("ListInvites (-want +got):\n%s", diff)
		}
	})
}

func TestTokens(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		u := mustUser(t, db, "a@example.org", silo.RoleAdmin)
		v := mustUser(t, db, "v@example.org", silo.RoleModelBuilder)
		exp := c.now().Add(time.Hour)
		tok := &silo.Token{ID: "tok1", UserID: u.ID, Name: "ci", Scopes: []silo.Permission{silo.PermRunnersRead, silo.PermSessionsRead}, Hash: "h1", ExpiresAt: &exp}
		if err := db.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateToken(ctx, &silo.Token{ID: "tok2", UserID: v.ID, Name: "laptop", Hash: "h2"}); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindTokenByHash(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		tok.UserEmail = u.Email
		if diff := cmp.Diff(tok, got); diff != "" {
			t.Fatalf("FindTokenByHash (-want +got):\n%s", diff)
		}
		if !got.Active(c.now()) || got.Active(c.now().Add(2*time.Hour)) {
			t.Fatalf("expiry not honoured")
		}
		if err := db.TouchToken(ctx, "tok1", c.now()); err != nil {
			t.Fatal(err)
		}
		mine, _ := db.ListTokens(ctx, u.ID)
		all, _ := db.ListTokens(ctx, 0)
		if len(mine) != 1 || len(all) != 2 || mine[0].LastUsedAt == nil {
			t.Fatalf("ListTokens: mine=%v all=%v", mine, all)
		}
		if err := db.RevokeToken(ctx, "tok1"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, db.RevokeToken(ctx, "tok1"), silo.ECONFLICT)
		wantCode(t, db.RevokeToken(ctx, "nope"), silo.ENOTFOUND)
		if got, _ := db.FindTokenByHash(ctx, "h1"); got.Active(c.now()) {
			t.Fatalf("revoked token still active")
		}
		// Removing a user removes their tokens.
		if _, err := db.DeleteUser(ctx, v.ID); err != nil {
			t.Fatal(err)
		}
		_, err = db.FindTokenByHash(ctx, "h2")
		wantCode(t, err, silo.ENOTFOUND)
	})
}

func TestLogins(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		a := mustUser(t, db, "a@example.org", silo.RoleAdmin)
		b := mustUser(t, db, "b@example.org", silo.RoleAdmin)
		if err := db.CreateLogin(ctx, &silo.Login{Hash: "la", UserID: a.ID, CSRF: "x", ExpiresAt: c.now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateLogin(ctx, &silo.Login{Hash: "lb", UserID: b.ID, CSRF: "y", ExpiresAt: c.now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		l, err := db.FindLogin(ctx, "la")
		if err != nil || l.UserID != a.ID || l.CSRF != "x" {
			t.Fatalf("FindLogin = %+v, %v", l, err)
		}
		// Disabling a user signs them out.
		if _, err := db.SetUserDisabled(ctx, b.ID, true); err != nil {
			t.Fatal(err)
		}
		_, err = db.FindLogin(ctx, "lb")
		wantCode(t, err, silo.EUNAUTHORIZED)
		c.add(2 * time.Hour)
		_, err = db.FindLogin(ctx, "la")
		wantCode(t, err, silo.EUNAUTHORIZED)
		if n, err := db.DeleteExpiredLogins(ctx); err != nil || n != 1 {
			t.Fatalf("DeleteExpiredLogins = %d, %v", n, err)
		}
	})
}

func TestWorkspace(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		w, err := db.Workspace(ctx)
		if err != nil || w.Name != "silo" || w.Plan != "community" {
			t.Fatalf("default workspace = %+v, %v", w, err)
		}
		w.Name, w.BillingEmail, w.BillingAddress, w.Plan = "acme-health", "billing@acme.example", "1 Main St\nSpringfield", "team"
		if err := db.UpdateWorkspace(ctx, w); err != nil {
			t.Fatal(err)
		}
		got, _ := db.Workspace(ctx)
		if diff := cmp.Diff(w, got); diff != "" {
			t.Fatalf("workspace (-want +got):\n%s", diff)
		}
	})
}

func TestAuditAppendOnly(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB, c *clock) {
		ctx := context.Background()
		for i, a := range []string{"user.invite", "user.set_roles", "token.create"} {
			c.add(time.Minute)
			if err := db.AppendAudit(ctx, &silo.AuditEntry{Actor: "a@example.org", Action: a, Target: "x", Outcome: silo.OutcomeSuccess}); err != nil {
				t.Fatal(i, err)
			}
		}
		all, err := db.ListAudit(ctx, silo.AuditFilter{})
		if err != nil || len(all) != 3 || all[0].Action != "token.create" {
			t.Fatalf("ListAudit = %v, %v", all, err)
		}
		since, _ := db.ListAudit(ctx, silo.AuditFilter{Since: all[1].Time})
		if len(since) != 2 {
			t.Fatalf("ListAudit since = %d entries, want 2", len(since))
		}
		page, _ := db.ListAudit(ctx, silo.AuditFilter{Before: all[0].ID, Limit: 1})
		if len(page) != 1 || page[0].ID != all[1].ID {
			t.Fatalf("ListAudit page = %v", page)
		}
		if err := db.ExecForTest(ctx, `UPDATE audit SET outcome = 'denied'`); err == nil {
			t.Fatal("audit entry was updated")
		}
		if err := db.ExecForTest(ctx, `DELETE FROM audit`); err == nil {
			t.Fatal("audit entry was deleted")
		}
	})
}
