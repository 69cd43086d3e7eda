package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/silofl/silo/client"
)

const quickstartUsage = `Usage: silo quickstart [--data ./silo-quickstart] [--addr 127.0.0.1:8080]

Runs Silo on this machine with nothing to set up: a workspace server on an
embedded SQLite database, with an admin whose credentials are printed (and
kept in the data directory, so a second run prints the same ones). It stays
up until Ctrl-C.

Federated training (task runners, datasets and sessions) is not built yet.
Once it is, quickstart will also start three local runners, register sample
datasets and train a model across them.
`

// quickstartAdmin is the quickstart's admin account.
const quickstartAdmin = "admin@silo.example"

func cmdQuickstart(ctx context.Context, args []string, s streams) int {
	fs := flag.NewFlagSet("silo quickstart", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dataDir := fs.String("data", "./silo-quickstart", "data directory")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (a free port is used if it is taken)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(s.Stdout, quickstartUsage)
			return 0
		}
		fmt.Fprintf(s.Stderr, "silo quickstart: %v\n\n%s", err, quickstartUsage)
		return 2
	}
	password, err := quickstartPassword(*dataDir)
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
		return 1
	}
	// The server logs only warnings here: the quickstart prints its own story.
	log := slog.New(slog.NewTextHandler(s.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := serverConfig{Addr: *addr, DataDir: *dataDir, AdminEmail: quickstartAdmin, AdminPassword: password, Logger: log}
	rs, err := startServer(ctx, cfg)
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		fmt.Fprintf(s.Stdout, "%s is taken; using a free port instead.\n", *addr)
		cfg.Addr = "127.0.0.1:0"
		rs, err = startServer(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: %v\n", err)
		return 1
	}
	defer rs.Shutdown()

	// Check the product end to end through the public SDK, as a user would.
	c := client.New(rs.URL, "")
	if _, err := c.Health(ctx); err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: the server does not answer: %v\n", err)
		return 1
	}
	login, err := c.Login(ctx, client.LoginRequest{Email: quickstartAdmin, Password: password, TokenName: "quickstart"})
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: sign in as %s: %v (delete %s to start afresh)\n", quickstartAdmin, err, *dataDir)
		return 1
	}
	ws, err := client.New(rs.URL, login.Token).Workspace(ctx)
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo quickstart: read the workspace: %v\n", err)
		return 1
	}
	fmt.Fprintf(s.Stdout, `
Silo is running: workspace %q, data in %s (SQLite).

  Web UI    %s
  Email     %s
  Password  %s

Use the command line against it:
  silo login --server %s --email %s

Not built yet: task runners, datasets and federated training sessions. When
they are, this command will also train a model across three local runners.

Press Ctrl-C to stop.
`, ws.Name, *dataDir, rs.URL, quickstartAdmin, password, rs.URL, quickstartAdmin)
	select {
	case <-ctx.Done():
		fmt.Fprintln(s.Stdout, "\nStopping.")
		return 0
	case err := <-rs.done:
		fmt.Fprintf(s.Stderr, "silo quickstart: server stopped: %v\n", err)
		return 1
	}
}

// quickstartPassword returns the quickstart admin's password, made once and
// kept (mode 0600) in the data directory.
func quickstartPassword(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, "quickstart-admin-password")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 9)
	rand.Read(buf)
	pw := "qs-" + hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save the admin password: %w", err)
	}
	return pw, nil
}
