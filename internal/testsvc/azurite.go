package testsvc

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Azurite's well-known development account (public, documented by Microsoft).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// azuriteStartTimeout bounds how long Azurite may take to accept connections.
const azuriteStartTimeout = 30 * time.Second

// Azurite returns a connection string for an Azurite blob service
// (Azure Blob Storage's emulator) with the devstoreaccount1 account.
//
// The service is $SILO_TEST_AZURITE (a blob endpoint such as
// http://127.0.0.1:10000/devstoreaccount1) if set, as .ci/run sets it.
// Otherwise an azurite-blob binary (on PATH, in npm's global bin directory or
// in node_modules/.bin at the repository root) is started for this test on
// a free port with its data in a temporary directory, and stopped when the
// test ends. Without either the test is skipped (see Require).
func Azurite(t testing.TB) (connectionString string) {
	t.Helper()
	if endpoint := os.Getenv("SILO_TEST_AZURITE"); endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" {
			t.Fatalf("SILO_TEST_AZURITE=%q must be a blob endpoint URL like http://127.0.0.1:10000/%s", endpoint, AzuriteAccount)
		}
		if c, err := net.DialTimeout("tcp", u.Host, 5*time.Second); err != nil {
			t.Fatalf("SILO_TEST_AZURITE=%s: %v", endpoint, err)
		} else {
			c.Close()
		}
		return azuriteConnString(strings.TrimSuffix(endpoint, "/"))
	}
	bin := azuriteBinary()
	if bin == "" {
		Require(t, "Azurite: set SILO_TEST_AZURITE or install it (npm install -g azurite)")
		return ""
	}
	// Retry in case another process takes the port between our choosing it
	// and Azurite binding it.
	var err error
	for range 3 {
		var endpoint string
		if endpoint, err = startAzurite(t, bin); err == nil {
			return azuriteConnString(endpoint)
		}
	}
	t.Fatalf("start Azurite: %v", err)
	return ""
}

func azuriteConnString(blobEndpoint string) string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;",
		AzuriteAccount, AzuriteKey, blobEndpoint)
}

// azuriteBinary finds azurite-blob, or returns "".
func azuriteBinary() string {
	if p, err := exec.LookPath("azurite-blob"); err == nil {
		return p
	}
	var dirs []string
	if root := repoRoot(); root != "" {
		dirs = append(dirs, filepath.Join(root, "node_modules", ".bin"))
	}
	if npm, err := exec.LookPath("npm"); err == nil {
		if out, err := exec.Command(npm, "root", "-g").Output(); err == nil {
			dirs = append(dirs, filepath.Join(strings.TrimSpace(string(out)), ".bin"))
		}
		if out, err := exec.Command(npm, "prefix", "-g").Output(); err == nil {
			dirs = append(dirs, filepath.Join(strings.TrimSpace(string(out)), "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "azurite-blob")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// repoRoot returns the nearest directory above the working directory with
// a go.mod, or "".
func repoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// startAzurite starts bin for t and returns its blob endpoint once it
// accepts connections.
func startAzurite(t testing.TB, bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	var out bytes.Buffer
	cmd := exec.Command(bin,
		"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
		"--location", dir, "--skipApiVersionCheck", "--disableTelemetry", "--silent")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	// Dies with the test binary even if it crashes before the cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(azuriteStartTimeout)
	for {
		select {
		case <-done:
			return "", fmt.Errorf("azurite-blob exited during startup: %s\n%s", cmd.ProcessState, out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("azurite-blob not accepting connections on %s after %s\n%s", addr, azuriteStartTimeout, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Registered after t.TempDir's cleanup, so it runs first: Azurite
	// stops before its directory is removed.
	t.Cleanup(stop)
	return "http://" + addr + "/" + AzuriteAccount, nil
}
