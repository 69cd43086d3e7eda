// Package sqlstore persists Silo's state with database/sql, on an embedded
// SQLite file (modernc.org/sqlite, the default) or on PostgreSQL (pgx). Both
// run the same hand-written SQL, written with ? placeholders and rewritten
// for PostgreSQL, and the same contract tests.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/silofl/silo"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// dialect is the seam between the two databases: a handful of words of DDL and
// how rows are locked for a read-check-write transaction.
type dialect int

const (
	sqliteDialect dialect = iota
	postgresDialect
)

func (d dialect) String() string {
	if d == postgresDialect {
		return "postgres"
	}
	return "sqlite"
}

// DB is the store. Create it with New, then Open it.
type DB struct {
	// DSN is a postgres:// or postgresql:// URL, or a path to an SQLite file
	// (optionally prefixed with sqlite://).
	DSN    string
	Clock  silo.Clock
	Logger *slog.Logger

	dialect dialect
	// SQLite allows one writer at a time, so writes go through a pool of one
	// connection (no SQLITE_BUSY between our own writers) while reads use
	// several. On PostgreSQL both are the same pool.
	rdb, wdb *sql.DB

	stmts map[stmtKey]*sql.Stmt // read-only once open

	auth      authCache
	idle      idleRunners
	finishes  finishBatch
	listening atomic.Bool
}

// Prepared statements. SQLite parses every statement it is given, and the
// hot paths — a task's claim and result, a session's step, heartbeats —
// run the same few statements thousands of times a second, so on SQLite
// the statements declared with prepared are prepared on both pools when
// the store opens, and each connection keeps its prepared copy. They are
// prepared then, not on first use: preparing takes a connection, and the
// write pool's only one may be the caller's own transaction. pgx keeps a
// cache of prepared statements on each connection itself, so on
// PostgreSQL they go as text.
type stmtKey struct {
	pool  *sql.DB
	query string
}

// preparedTexts lists the statements prepared when a store opens.
var preparedTexts []string

// prepared declares a hot statement (a package-level variable's value) and
// returns its text.
func prepared(query string) string {
	preparedTexts = append(preparedTexts, query)
	return query
}

// prepare prepares the declared statements on both SQLite pools.
func (db *DB) prepare(ctx context.Context) error {
	if db.dialect != sqliteDialect {
		return nil
	}
	db.stmts = map[stmtKey]*sql.Stmt{}
	for _, q := range preparedTexts {
		for _, pool := range []*sql.DB{db.wdb, db.rdb} {
			st, err := pool.PrepareContext(ctx, db.inList(q))
			if err != nil {
				return fmt.Errorf("prepare %q: %w", q, err)
			}
			db.stmts[stmtKey{pool, q}] = st
		}
	}
	return nil
}

// stmt returns query prepared on pool, or nil to run it as text.
func (db *DB) stmt(pool *sql.DB, query string) *sql.Stmt {
	return db.stmts[stmtKey{pool, query}]
}

// inList is SQL that matches an expression against a list of strings
// given as one parameter (listArg), so a statement with a list keeps one
// text and can be prepared: json_each over a JSON array on SQLite, ANY of
// an array on PostgreSQL. Write it as IN_LIST(expr) in a statement's text,
// which sqlText rewrites for the dialect.
func (db *DB) listArg(values []string) any {
	if db.dialect == postgresDialect {
		return values
	}
	b, _ := json.Marshal(values) // strings: never fails
	return string(b)
}

// inList rewrites each IN_LIST(expr) of query for the dialect.
func (db *DB) inList(query string) string {
	if !strings.Contains(query, "IN_LIST(") {
		return query
	}
	repl := "$1 IN (SELECT value FROM json_each(?))"
	if db.dialect == postgresDialect {
		repl = "$1 = ANY(?)"
	}
	return inListRE.ReplaceAllString(query, repl)
}

var inListRE = regexp.MustCompile(`IN_LIST\(([a-z_.]+)\)`)

// execTx runs a statement in a write transaction.
func (db *DB) execTx(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := db.stmt(db.wdb, query); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, db.q(db.inList(query)), args...)
}

// queryRowTx reads one row in a write transaction.
func (db *DB) queryRowTx(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st := db.stmt(db.wdb, query); st != nil {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, db.q(db.inList(query)), args...)
}

// queryTx reads rows in a write transaction.
func (db *DB) queryTx(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st := db.stmt(db.wdb, query); st != nil {
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, db.q(db.inList(query)), args...)
}

// execW runs a statement on its own on the write pool.
func (db *DB) execW(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := db.stmt(db.wdb, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return db.wdb.ExecContext(ctx, db.q(db.inList(query)), args...)
}

// queryRowR reads one row from the read pool.
func (db *DB) queryRowR(ctx context.Context, query string, args ...any) *sql.Row {
	if st := db.stmt(db.rdb, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.rdb.QueryRowContext(ctx, db.q(db.inList(query)), args...)
}

// queryR reads rows from the read pool.
func (db *DB) queryR(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := db.stmt(db.rdb, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.rdb.QueryContext(ctx, db.q(db.inList(query)), args...)
}

// New returns a DB for dsn with default clock and logger.
func New(dsn string) *DB {
	return &DB{DSN: dsn, Logger: slog.Default()}
}

// Dialect names the database in use: "sqlite" or "postgres".
func (db *DB) Dialect() string { return db.dialect.String() }

// Open connects and applies pending migrations.
func (db *DB) Open(ctx context.Context) error {
	if db.Logger == nil {
		db.Logger = slog.Default()
	}
	var err error
	if strings.HasPrefix(db.DSN, "postgres://") || strings.HasPrefix(db.DSN, "postgresql://") {
		db.dialect = postgresDialect
		if db.wdb, err = sql.Open("pgx", db.DSN); err != nil {
			return fmt.Errorf("open postgres: %w", err)
		}
		db.wdb.SetMaxOpenConns(20)
		db.rdb = db.wdb
	} else {
		db.dialect = sqliteDialect
		path := strings.TrimPrefix(db.DSN, "sqlite://")
		if path == "" {
			return fmt.Errorf("open sqlite: empty database path")
		}
		q := "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
		if db.wdb, err = sql.Open("sqlite", "file:"+filepath.ToSlash(path)+q+"&_txlock=immediate"); err != nil {
			return fmt.Errorf("open sqlite %s: %w", path, err)
		}
		db.wdb.SetMaxOpenConns(1)
		if db.rdb, err = sql.Open("sqlite", "file:"+filepath.ToSlash(path)+q+"&_pragma=query_only(1)"); err != nil {
			return fmt.Errorf("open sqlite %s: %w", path, err)
		}
		db.rdb.SetMaxOpenConns(8)
		// Kept open, with the statements prepared on them.
		db.rdb.SetMaxIdleConns(8)
	}
	if err := db.wdb.PingContext(ctx); err != nil {
		_ = db.Close()
		return fmt.Errorf("connect to %s database: %w", db.dialect, err)
	}
	if err := db.migrate(ctx); err != nil {
		_ = db.Close()
		return err
	}
	if err := db.prepare(ctx); err != nil {
		_ = db.Close()
		return err
	}
	return nil
}

// Close closes the connection pools.
func (db *DB) Close() error {
	var errs []error
	for _, st := range db.stmts {
		errs = append(errs, st.Close())
	}
	if db.wdb != nil {
		errs = append(errs, db.wdb.Close())
	}
	if db.rdb != nil && db.rdb != db.wdb {
		errs = append(errs, db.rdb.Close())
	}
	return errors.Join(errs...)
}

// Ping checks the database answers; /healthz uses it.
func (db *DB) Ping(ctx context.Context) error { return db.rdb.PingContext(ctx) }

// migrate applies, in order and each in its own transaction, the embedded
// migrations not yet recorded in schema_migrations. A file named
// NNNN_name.sql applies to both databases; NNNN_name.sqlite.sql or
// NNNN_name.postgres.sql to one.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.wdb.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := filepath.Base(name)
		parts := strings.Split(strings.TrimSuffix(base, ".sql"), ".")
		if len(parts) == 2 && parts[1] != db.dialect.String() {
			continue
		}
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number", base)
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		if err := db.applyMigration(ctx, version, base, db.ddl(string(body))); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
	}
	return nil
}

func (db *DB) applyMigration(ctx context.Context, version int, name, body string) error {
	tx, err := db.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if db.dialect == postgresDialect {
		// Two replicas starting together must not both migrate.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(727001)`); err != nil {
			return err
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), version).Scan(&n); err != nil {
		return err
	} else if n > 0 {
		return nil
	}
	if db.dialect == sqliteDialect {
		// The SQLite driver runs one statement per Exec.
		for _, stmt := range splitSQL(body) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%w in %q", err, stmt)
			}
		}
	} else if _, err := tx.ExecContext(ctx, body); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`), version, name, db.now().UnixMicro()); err != nil {
		return err
	}
	db.Logger.Info("applied migration", "name", name, "database", db.dialect.String())
	return tx.Commit()
}

// splitSQL splits a migration into statements at semicolons that end a line,
// except inside BEGIN…END trigger bodies.
func splitSQL(body string) []string {
	var out []string
	var cur strings.Builder
	depth := 0
	for _, line := range strings.Split(body, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		up := strings.ToUpper(t)
		if strings.HasSuffix(up, " BEGIN") || up == "BEGIN" {
			depth++
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasPrefix(up, "END;") || up == "END;" {
			depth--
		}
		if depth == 0 && strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// ddl replaces the dialect words of a migration.
func (db *DB) ddl(s string) string {
	if db.dialect == postgresDialect {
		return strings.NewReplacer("@ID@", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "@BLOB@", "BYTEA").Replace(s)
	}
	return strings.NewReplacer("@ID@", "INTEGER PRIMARY KEY AUTOINCREMENT", "@BLOB@", "BLOB").Replace(s)
}

// q rewrites ? placeholders to $1, $2… for PostgreSQL. Queries never contain a
// literal question mark.
func (db *DB) q(query string) string {
	if db.dialect != postgresDialect {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (db *DB) now() time.Time { return db.Clock.Now() }

// tx runs fn in a write transaction, rolling back on error. On PostgreSQL
// lockKey, when non-zero, takes a transaction-scoped advisory lock first so
// read-check-write invariants (the last admin) hold across replicas; SQLite
// transactions already exclude each other (BEGIN IMMEDIATE).
func (db *DB) tx(ctx context.Context, lockKey int64, fn func(*sql.Tx) error) error {
	tx, err := db.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if lockKey != 0 && db.dialect == postgresDialect {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Advisory lock keys.
const (
	lockUsers  int64 = 727100
	lockTokens int64 = 727101
)

// isUniqueViolation reports whether err is a unique-constraint failure in
// either database.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "SQLSTATE 23505")
}

// Times are stored as Unix microseconds (BIGINT) so both databases compare and
// sort them the same way.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }
