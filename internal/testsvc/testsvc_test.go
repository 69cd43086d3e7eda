package testsvc

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestPostgresFreshWritableDatabase(t *testing.T) {
	dsn := Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	var tables int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("new database has %d tables, want 0", tables)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresDatabasesAreDistinct(t *testing.T) {
	if a, b := Postgres(t), Postgres(t); a == b {
		t.Fatalf("two calls returned the same database %s", a)
	}
}

func TestRequireSkipsByDefault(t *testing.T) {
	t.Setenv("SILO_REQUIRE_SERVICES", "")
	var inner *testing.T
	t.Run("absent", func(t *testing.T) {
		inner = t
		Require(t, "demo service is absent")
		t.Error("Require returned instead of skipping")
	})
	if !inner.Skipped() || inner.Failed() {
		t.Fatalf("subtest skipped=%v failed=%v, want skipped and not failed", inner.Skipped(), inner.Failed())
	}
}
