// Package testsvc gives tests real services (PostgreSQL, Chromium) instead of
// fakes, following DESIGN.md "Real services in tests": a plain `go test ./...`
// skips tests whose service is absent, and SILO_REQUIRE_SERVICES=1 (set by
// .ci/run) turns every such skip into a failure so CI cannot pass by skipping.
package testsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Require reports that a service the test needs is unavailable: it skips the
// test with a one-line reason, or fails it when SILO_REQUIRE_SERVICES=1.
func Require(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if os.Getenv("SILO_REQUIRE_SERVICES") == "1" {
		t.Fatalf("required service unavailable: %s", reason)
	}
	t.Skipf("%s", reason)
}

// Chromium returns the path of a Chromium binary: $SILO_CHROMIUM if set,
// otherwise the Debian locations.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SILO_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SILO_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Require(t, "Chromium: set SILO_CHROMIUM or install Debian chromium")
	return ""
}

// pgBin is where Debian's postgresql package puts the PostgreSQL 15 server
// binaries (they are not on PATH).
const pgBin = "/usr/lib/postgresql/15/bin"

// Postgres returns the URL of a fresh, empty database that only this test
// uses; it is dropped when the test ends.
//
// The server is $SILO_TEST_POSTGRES (an admin URL, e.g.
// postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable) if set.
// Otherwise, if PostgreSQL 15 is installed, a private cluster is started once
// per test binary. Call Main from TestMain to stop it and remove its data
// directory after the tests. Without Main the server still dies with the test
// process (it is our child with a parent-death signal), but its data directory
// stays in os.TempDir() until the next private cluster sweeps it away.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := PostgresServer(t)
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("admin DSN %q must be a postgres:// URL", admin)
	}

	name := "silo_test_" + randHex(8)
	// template0 never has connections, so parallel CREATE DATABASEs cannot
	// fail with "source database is being accessed by other users".
	if err := adminExec(admin, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if err := adminExec(admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// PostgresServer returns the admin URL of the PostgreSQL server tests use:
// $SILO_TEST_POSTGRES, or this process's private cluster (started on first
// use), or it skips (see Require). Tests that start another test process
// pass it on as SILO_TEST_POSTGRES, so both share one cluster.
func PostgresServer(t testing.TB) string {
	t.Helper()
	if admin := os.Getenv("SILO_TEST_POSTGRES"); admin != "" {
		return admin
	}
	if _, err := os.Stat(filepath.Join(pgBin, "postgres")); err != nil {
		Require(t, "PostgreSQL: set SILO_TEST_POSTGRES or install Debian postgresql (15)")
		return ""
	}
	priv.once.Do(func() { priv.dsn, priv.err = startCluster() })
	if priv.err != nil {
		t.Fatalf("start private PostgreSQL cluster: %v", priv.err)
	}
	return priv.dsn
}

// Main runs the tests and then stops the private PostgreSQL cluster, if one
// was started. Use it as: func TestMain(m *testing.M) { os.Exit(testsvc.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	priv.stop()
	return code
}

func adminExec(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// priv is the private cluster of this test process.
var priv cluster

type cluster struct {
	once sync.Once
	dsn  string
	err  error
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

const dirPrefix = "silo-pg-"

// startCluster runs initdb and a postmaster in a new directory under
// os.TempDir(). PostgreSQL refuses to run as root, so as root both run as the
// postgres user. The postmaster is our direct child (not daemonized by pg_ctl)
// so that a parent-death signal shuts it down even if the test binary
// crashes or times out without reaching Main.
func startCluster() (string, error) {
	sweepStale()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return "", err
	}
	priv.dir = dir
	// Lets sweepStale recognise the directory as abandoned once we are gone.
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", err
	}
	cred, err := serverCredential()
	if err != nil {
		return "", err
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o755); err != nil {
		return "", err
	}
	if cred != nil {
		for _, p := range []string{dir, sock} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return "", err
			}
		}
	}

	initdb := exec.Command(filepath.Join(pgBin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}

	// Retry a few times in case another process takes the port we picked
	// between choosing it and the postmaster binding it.
	for attempt := 0; ; attempt++ {
		dsn, err := startPostmaster(dir, data, sock, cred)
		if err == nil || attempt == 2 {
			return dsn, err
		}
	}
}

func startPostmaster(dir, data, sock string, cred *syscall.Credential) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(pgBin, "postgres"), "-D", data,
		"-p", strconv.Itoa(port), "-k", sock, "-F",
		"-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=200",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		Setpgid:    true,            // a terminal ^C goes to the tests, not the server
		Pdeathsig:  syscall.SIGQUIT, // immediate shutdown when we die
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()

	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			return "", fmt.Errorf("postgres exited during startup: %s\n%s", cmd.ProcessState, log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			priv.cmd, priv.done = cmd, done
			return dsn, nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return "", fmt.Errorf("postgres not ready after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop shuts the private cluster down like `pg_ctl stop -m immediate` and
// removes its directory.
func (c *cluster) stop() {
	if c.cmd != nil {
		c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// serverCredential returns the identity initdb and postgres run as: the
// postgres user when we are root, else nil (ourselves).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// sweepStale removes data directories of private clusters whose test process
// is gone (it crashed or did not use Main).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
