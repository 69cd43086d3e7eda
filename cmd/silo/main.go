// Command silo is Silo's one binary: the workspace server, the task runner,
// and the command line for everything a user does against a server (SPEC §5).
//
// Commands that talk to a server use the public Go SDK (package client), so
// the command line can do nothing a script could not.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/silofl/silo"
)

func main() {
	// Ctrl-C and SIGTERM cancel ctx, so requests in flight and a running
	// server stop cleanly instead of being killed mid-write.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// streams are a command's standard input and outputs. Commands never touch
// os.Stdin/Stdout/Stderr directly, so tests can run them in-process.
type streams struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// A command is one top-level subcommand. Run gets the arguments after the
// command's name and returns the process exit status: 0 for success, 1 for a
// failure, 2 for a mistake in the command line.
type command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, args []string, s streams) int
}

// commands is the dispatch table, in the order `silo help` lists them. To add
// a command, add a line here and write its function in its own file.
var commands = []command{
	{"server", "run the workspace server", cmdServer},
	{"quickstart", "the whole product on one machine, end to end", cmdQuickstart},
	{"runner", "run a task-runner agent next to your data", cmdRunner},
	{"runners", "register and manage task runners", cmdRunners},
	{"datasets", "register datasets and set their privacy controls", cmdDatasets},
	{"sessions", "create and follow federated training sessions", cmdSessions},
	{"models", "download trained models and predict local files with them", cmdModels},
	{"predict", "predict a registered dataset on its runner", cmdPredict},
	{"login", "sign in to a server and remember it", cmdLogin},
	{"users", "list, invite and manage users (admins)", cmdUsers},
	{"tokens", "create, list and revoke access tokens", cmdTokens},
	{"workspace", "show or change the workspace and its billing information", cmdWorkspace},
	{"audit", "read the audit log (admins)", cmdAudit},
	{"version", "print the version", cmdVersion},
}

// run is the whole program with its environment passed in, so tests can
// drive it exactly as a user would.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s := streams{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" && findCommand(rest[0]) != nil {
			return findCommand(rest[0]).Run(ctx, []string{"-h"}, s)
		}
		printUsage(stdout)
		return 0
	case "-version", "--version":
		name = "version"
	}
	cmd := findCommand(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "silo: unknown command %q\n\n", name)
		printUsage(stderr)
		return 2
	}
	return cmd.Run(ctx, rest, s)
}

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].Name == name {
			return &commands[i]
		}
	}
	return nil
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, "Silo is a self-hosted federated learning workspace.\n\nUsage: silo COMMAND [ARGUMENTS] [FLAGS]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Name, c.Summary)
	}
	_ = tw.Flush()
	fmt.Fprint(w, connectionHelp)
	fmt.Fprint(w, "\nRun 'silo help COMMAND' or 'silo COMMAND -h' for a command's usage.\n")
}

// connectionHelp explains the flags and variables every command that talks
// to a server shares; each command's usage ends with it.
const connectionHelp = `
Commands that talk to a server take --server URL and --token T; these win
over $SILO_SERVER and $SILO_TOKEN, which win over the login saved by
'silo login' (in $SILO_CONFIG, default ~/.config/silo/config.json).
Listing and show commands take --json to print the API's objects as JSON;
with --json, errors are printed as JSON on standard error too.
`

func cmdVersion(ctx context.Context, args []string, s streams) int {
	fmt.Fprintf(s.Stdout, "silo %s\n", silo.Version)
	return 0
}

// parseFlags parses the flags of a command that takes no arguments (server,
// runner, quickstart). done says the command must stop now with code: after
// -h (0) or a mistake (2, with the usage).
func parseFlags(fs *flag.FlagSet, args []string, usage string, s streams) (code int, done bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(s.Stdout, usage)
		return 0, true
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(s.Stderr, "%s: %v\n\n%s", fs.Name(), err, usage)
		return 2, true
	}
	return 0, false
}
