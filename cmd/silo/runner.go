package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server"
)

const runnerUsage = `Usage: silo runner --server URL --token T [--storage-root DIR] [--vcpu N] [--memory SIZE] [--ca-file PEM]
                   [--policy FILE|URI] [--state-dir DIR]

Runs a task-runner agent: it connects out to the server (no inbound port;
HTTPS_PROXY and NO_PROXY are honoured), pulls tasks, runs them next to the
data within --vcpu and --memory, and sends back only results and logs.
SIGTERM or Ctrl-C stops it cleanly.

--policy pins the data owner's policy: rules by storage prefix, each a floor
of privacy controls no server, admin or custodian can loosen (see
docs/privacy.md). It is a local file or an object in the runner's own
storage (s3://<bucket>/<key>, azure://<container>/<blob> in the runner's
account, file:///<path>), read once at start with the runner's credentials
and checked. Without it the controls the server sends are the floor.
Either way controls bind the data's location, not a dataset's name, and
the runner keeps its own privacy ledger.

--state-dir is where the runner keeps that record: the controls bound to
each location and the epsilon spent on it. It must survive restarts. The
default is .silo under a local --storage-root; for an s3:// or azure://
storage root, .silo/runner-state/ in that bucket or container (the
runner's identity must be allowed to write there), so that the record
outlives the machine; else silo/runner-state in the user's configuration
directory.

Flags may also come from the environment: SILO_SERVER, SILO_RUNNER_TOKEN,
SILO_STORAGE_ROOT, SILO_VCPU, SILO_MEMORY, SILO_CA_FILE, SILO_POLICY,
SILO_STATE_DIR; SILO_LOG_LEVEL sets the log level (debug, info, warn, error).
`

func cmdRunner(ctx context.Context, args []string, s streams) int {
	fs := flag.NewFlagSet("silo runner", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := runner.Config{SetMemoryLimit: true}
	fs.StringVar(&cfg.ServerURL, "server", os.Getenv("SILO_SERVER"), "server URL")
	fs.StringVar(&cfg.Token, "token", os.Getenv("SILO_RUNNER_TOKEN"), "runner token")
	fs.StringVar(&cfg.StorageRoot, "storage-root", os.Getenv("SILO_STORAGE_ROOT"), "directory of the runner's data")
	vcpu := fs.String("vcpu", envOr("SILO_VCPU", "0"), "vCPUs to use (0: all)")
	memory := fs.String("memory", envOr("SILO_MEMORY", "1GiB"), "memory to use, e.g. 4GiB or 512MiB")
	fs.StringVar(&cfg.CAFile, "ca-file", os.Getenv("SILO_CA_FILE"), "PEM bundle of extra CAs to trust")
	policyFile := fs.String("policy", os.Getenv("SILO_POLICY"), "the data owner's policy (JSON): a file, or s3://, azure:// or file:/// URI")
	fs.StringVar(&cfg.StateDir, "state-dir", os.Getenv("SILO_STATE_DIR"), "where the runner keeps its privacy record and ledger")
	logFormat := fs.String("log-format", envOr("SILO_LOG_FORMAT", "text"), "text or json")
	if code, done := parseFlags(fs, args, runnerUsage, s); done {
		return code
	}
	var err error
	if cfg.VCPU, err = strconv.Atoi(*vcpu); err != nil || cfg.VCPU < 0 {
		fmt.Fprintf(s.Stderr, "silo runner: --vcpu %q must be a whole number\n", *vcpu)
		return 2
	}
	if cfg.MemoryMB, err = parseMemoryMB(*memory); err != nil {
		fmt.Fprintf(s.Stderr, "silo runner: --memory: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(envOr("SILO_LOG_LEVEL", "info"))); err != nil {
		fmt.Fprintf(s.Stderr, "silo runner: SILO_LOG_LEVEL: %v\n", err)
		return 2
	}
	opts := &slog.HandlerOptions{Level: level}
	if *logFormat == "json" {
		cfg.Logger = slog.New(slog.NewJSONHandler(s.Stderr, opts))
	} else {
		cfg.Logger = slog.New(slog.NewTextHandler(s.Stderr, opts))
	}
	if err := cloudStorageRoot(&cfg); err != nil {
		fmt.Fprintf(s.Stderr, "silo runner: --storage-root: %v\n", err)
		return 2
	}
	if *policyFile != "" {
		// After the storage root, which says whose Azure account azure://
		// names.
		if cfg.Policy, err = runner.LoadPolicyAt(ctx, *policyFile, cfg.Storage); err != nil {
			fmt.Fprintf(s.Stderr, "silo runner: --policy: %v\n", err)
			return 2
		}
	}
	agent, err := runner.New(cfg)
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo runner: %v\n", err)
		return 2
	}
	if err := agent.Run(ctx); err != nil {
		fmt.Fprintf(s.Stderr, "silo runner: %v\n", err)
		return 1
	}
	return 0
}

// cloudStorageRoot reads a cloud runner's storage root, which its bundle
// gives as the runner's storage path: s3://<bucket>[/prefix] (the runner
// reads S3 with the AWS default credential chain, so nothing else is
// needed) or azure://<storage account>/<container>[/prefix] (the runner
// reads that account, whose containers hold its datasets, with
// azidentity's default credential). Without --state-dir the runner keeps
// its state under the root's .silo/runner-state/. A plain directory is a
// local runner's root and stays as it is.
func cloudStorageRoot(cfg *runner.Config) error {
	root := cfg.StorageRoot
	switch {
	case strings.HasPrefix(root, "s3://"):
		cfg.StorageRoot, cfg.CloudRoot = "", root
	case strings.HasPrefix(root, "azure://"):
		account, container, _ := strings.Cut(strings.TrimPrefix(root, "azure://"), "/")
		if account == "" {
			return fmt.Errorf("%s names no storage account: use azure://<storage account>/<container>", root)
		}
		if container == "" && cfg.StateDir == "" {
			return fmt.Errorf("%s names no container, where the runner keeps its privacy record: use azure://<storage account>/<container> (or give --state-dir DIR)", root)
		}
		cfg.StorageRoot = ""
		cfg.Storage.Azure.AccountName = account
		if container != "" {
			cfg.CloudRoot = "azure://" + container
		}
	case strings.HasPrefix(root, "file://"):
		cfg.StorageRoot = strings.TrimPrefix(root, "file://")
	}
	return nil
}

// parseMemoryMB reads sizes such as 4GiB, 4G, 512MiB, 512M or a plain number
// of megabytes.
func parseMemoryMB(s string) (int, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	for _, u := range []struct {
		suffix string
		mb     int
	}{{"GIB", 1024}, {"GB", 1024}, {"G", 1024}, {"MIB", 1}, {"MB", 1}, {"M", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mb
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size such as 4GiB or 512MiB", s)
	}
	return n * mult, nil
}

// launchChild starts a local runner as a child process running this same
// binary. The child gets its token through the environment (not argv, which
// other users of the machine can read) and dies with the server.
func launchChild(ctx context.Context, l server.LocalLaunch) (func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.StorageRoot, 0o700); err != nil {
		return nil, fmt.Errorf("create storage root %s: %w", l.StorageRoot, err)
	}
	// #nosec G204 -- runs this same binary with arguments it built
	cmd := exec.Command(self, "runner", "--server", l.ServerURL, "--storage-root", l.StorageRoot,
		"--vcpu", strconv.Itoa(l.VCPU), "--memory", strconv.Itoa(l.MemoryMB)+"MiB")
	cmd.Env = append(os.Environ(), "SILO_RUNNER_TOKEN="+l.Token)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	go func() {
		select {
		case <-ctx.Done():
			stop()
		case <-done:
		}
	}()
	return stop, nil
}
