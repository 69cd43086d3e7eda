package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

// cmd is one invocation of a command such as "users invite": its streams, its
// flags, and the connection and output settings every command shares.
type cmd struct {
	streams
	name  string // "users invite", for messages
	usage string // the command's usage text, shown by -h and on usage errors
	flags *flag.FlagSet

	server, token string   // --server, --token
	json          bool     // --json
	args          []string // as given, to find --json when parsing them fails

	// help is what -h adds after the subcommand's flags: the keys of a
	// JSON file it reads, say.
	help string

	// cfg is the saved login, once client has loaded it; fromConfig says
	// whether the token in use came from it.
	cfg        *config
	fromConfig bool
}

func newCmd(s streams, name, usage string) *cmd {
	c := &cmd{streams: s, name: name, usage: usage}
	// Errors are reported by exit, in the command's own style (and as JSON
	// with --json), so the flag package itself prints nothing.
	c.flags = flag.NewFlagSet("silo "+name, flag.ContinueOnError)
	c.flags.SetOutput(io.Discard)
	c.flags.StringVar(&c.server, "server", "", "server URL")
	c.flags.StringVar(&c.token, "token", "", "access token")
	c.flags.BoolVar(&c.json, "json", false, "print JSON")
	return c
}

// usageError is a mistake in the command line itself: exit status 2, with
// the usage shown.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp asks exit to print the usage on standard output and succeed.
var errHelp = errors.New("help requested")

// parse parses args, flags and positional arguments in any order, and checks
// the positional arguments against want: their names for messages
// ("EMAIL"), the last one ending in "..." if it may repeat.
func (c *cmd) parse(args []string, want ...string) ([]string, error) {
	c.args = args
	pos, err := parseInterspersed(c.flags, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, errHelp
	} else if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	variadic := len(want) > 0 && strings.HasSuffix(want[len(want)-1], "...")
	if len(pos) < len(want) {
		return nil, usagef("missing %s", strings.TrimSuffix(want[len(pos)], "..."))
	}
	if len(pos) > len(want) && !variadic {
		return nil, usagef("unexpected argument %q", pos[len(want)])
	}
	return pos, nil
}

// parseInterspersed is fs.Parse that also accepts flags after positional
// arguments ("silo users invite a@b.org --role admin"), which the flag
// package alone stops at. A "--" ends the flags as usual.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// wantsJSON reports whether args ask for --json, for errors found before or
// while the flags are parsed.
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		switch a {
		case "-json", "--json", "-json=true", "--json=true":
			return true
		}
	}
	return false
}

// subcommand is one action of a command group, such as "users invite".
type subcommand func(ctx context.Context, c *cmd, args []string) error

// runGroup runs the subcommand named in args among subs. The subcommand may
// come after flags too ("silo users --json list").
func runGroup(ctx context.Context, s streams, group, usage string, subs map[string]subcommand, args []string) int {
	c := newCmd(s, group, usage)
	i := subcommandIndex(args)
	if i < 0 {
		for _, a := range args {
			if a == "-h" || a == "-help" || a == "--help" {
				return c.exit(errHelp)
			}
		}
		c.args = args
		return c.exit(usagef("missing subcommand"))
	}
	name := args[i]
	sub, ok := subs[name]
	if !ok {
		if name == "help" {
			return c.exit(errHelp)
		}
		c.args = args
		return c.exit(usagef("unknown subcommand %q", name))
	}
	c = newCmd(s, group+" "+name, usage)
	return c.exit(sub(ctx, c, append(slices.Clone(args[:i]), args[i+1:]...)))
}

// subcommandIndex returns the index of the first positional argument,
// skipping the values of the shared flags that take one, or -1.
func subcommandIndex(args []string) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return i + 1
			}
			return -1
		case a == "-server" || a == "--server" || a == "-token" || a == "--token":
			i++
		case strings.HasPrefix(a, "-") && a != "-":
		default:
			return i
		}
	}
	return -1
}

// exit reports err the way the user asked for (text or JSON on standard
// error) and returns the exit status.
func (c *cmd) exit(err error) int {
	if err == nil {
		return 0
	}
	var uerr *usageError
	if errors.Is(err, errHelp) {
		fmt.Fprint(c.Stdout, c.helpText())
		return 0
	}
	status := 1
	if errors.As(err, &uerr) {
		status = 2
		// The flags may not have been parsed, or not all of them.
		c.json = c.json || wantsJSON(c.args)
	}
	if c.json {
		e := &silo.Error{Code: silo.ErrorCode(err), Message: err.Error()}
		var serr *silo.Error
		if errors.As(err, &serr) {
			e.Field, e.Fields = serr.Field, serr.Fields
		} else if uerr != nil {
			e.Code = silo.EINVALID
			e.Message = "silo " + c.name + ": " + uerr.msg
		}
		b, _ := json.Marshal(map[string]*silo.Error{"error": e})
		fmt.Fprintf(c.Stderr, "%s\n", b)
		return status
	}
	if uerr != nil {
		fmt.Fprintf(c.Stderr, "silo %s: %s\n\n%s", c.name, uerr.msg, c.fullUsage())
		if strings.Contains(c.name, " ") {
			fmt.Fprintf(c.Stderr, "Run 'silo %s -h' for its flags.\n", c.name)
		}
		return status
	}
	if fields := silo.ErrorFields(err); len(fields) > 1 {
		// Every problem at once, one a line, so one attempt fixes them all.
		fmt.Fprintf(c.Stderr, "silo: %d problems:\n", len(fields))
		for _, f := range fields {
			fmt.Fprintf(c.Stderr, "  %s: %s\n", f.Field, f.Message)
		}
		return status
	}
	fmt.Fprintf(c.Stderr, "silo: %s\n", err)
	return status
}

func (c *cmd) fullUsage() string {
	return strings.TrimLeft(c.usage, "\n") + connectionHelp
}

// helpText is what -h prints: the group's usage and, for a subcommand, its
// own flags (the shared --server, --token and --json are explained in the
// usage's last paragraph) and what it adds in c.help.
func (c *cmd) helpText() string {
	var b strings.Builder
	b.WriteString(c.fullUsage())
	if !strings.Contains(c.name, " ") {
		return b.String()
	}
	var lines [][2]string
	c.flags.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "server", "token", "json":
			return
		}
		kind, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if len(f.Name) == 1 {
			left = "-" + f.Name
		}
		switch kind {
		case "":
		case "string":
			left += " VALUE"
		case "int":
			left += " N"
		case "value":
			left += " A,B"
		default:
			left += " " + strings.ToUpper(kind)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			usage += " (default " + f.DefValue + ")"
		}
		lines = append(lines, [2]string{left, usage})
	})
	if len(lines) > 0 {
		fmt.Fprintf(&b, "\nFlags of 'silo %s':\n", c.name)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, l := range lines {
			fmt.Fprintf(tw, "  %s\t%s\n", l[0], l[1])
		}
		_ = tw.Flush()
	}
	b.WriteString(c.help)
	return b.String()
}

// client returns an SDK client for the server and token chosen by the
// flags, then the environment, then the saved login.
func (c *cmd) client() (*client.Client, error) {
	server, err := c.serverURL()
	if err != nil {
		return nil, err
	}
	token := first(c.token, os.Getenv("SILO_TOKEN"))
	if token == "" && c.cfg.Server == server {
		// The saved token only ever goes to the server it was issued by:
		// pointing the CLI at another server must not leak it there.
		token, c.fromConfig = c.cfg.Token, c.cfg.Token != ""
	}
	if token == "" {
		return nil, fmt.Errorf("not signed in to %s: run 'silo login --server %s --email EMAIL', or pass --token", server, server)
	}
	cl := client.New(server, token)
	cl.UserAgent = "silo-cli/" + silo.Version
	return cl, nil
}

// connect parses args like parse and returns a client for the chosen
// server: the opening of nearly every command.
func (c *cmd) connect(args []string, want ...string) ([]string, *client.Client, error) {
	pos, err := c.parse(args, want...)
	if err != nil {
		return nil, nil, err
	}
	cl, err := c.client()
	return pos, cl, err
}

// serverURL returns the server chosen by --server, $SILO_SERVER or the saved
// login, loading the saved login on the way.
func (c *cmd) serverURL() (string, error) {
	if c.cfg == nil {
		cfg, err := loadConfig()
		if err != nil {
			return "", err
		}
		c.cfg = cfg
	}
	server := first(c.server, os.Getenv("SILO_SERVER"), c.cfg.Server)
	if server == "" {
		return "", fmt.Errorf("no server given: sign in with 'silo login --server URL --email EMAIL', or pass --server URL")
	}
	return normalizeServer(server)
}

// normalizeServer checks that s is an http(s) URL and drops a trailing
// slash, so the same server is always spelled the same way in the config.
func normalizeServer(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", &silo.Error{Code: silo.EINVALID, Field: "server", Message: fmt.Sprintf("server URL %q must look like https://silo.example.org", s)}
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// first returns the first non-empty string.
func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// listFlag is a flag that may be repeated and holds comma-separated values:
// "--role admin --role model_builder" or "--role admin,model_builder".
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// printJSON prints v indented, for scripts.
func (c *cmd) printJSON(v any) error {
	enc := json.NewEncoder(c.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table returns a writer that aligns tab-separated columns; Flush it.
func (c *cmd) table() *tabwriter.Writer {
	return tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
}

// timeLayout is how times are shown to people: to the minute, in local time.
const timeLayout = "2006-01-02 15:04 MST"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(timeLayout)
}

func fmtTimePtr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return fmtTime(*t)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinRoles(roles []silo.Role) string { return strings.Join(silo.RoleNames(roles), ",") }
