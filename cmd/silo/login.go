package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"golang.org/x/term"
)

const loginUsage = `
Usage: silo login --server URL (--token T | --email E [--password P])

Signs in to a Silo server and saves the server and an access token for the
other commands.

  --token T      use an existing access token (checked with the server)
  --email E      sign in with email and password; this creates an access
                 token named after this machine (see 'silo tokens list')
  --password P   the password; without it, it is asked for (not echoed) on a
                 terminal, or read as one line from standard input when piped,
                 which keeps it out of the shell history
`

func cmdLogin(ctx context.Context, args []string, s streams) int {
	c := newCmd(s, "login", loginUsage)
	return c.exit(login(ctx, c, args))
}

func login(ctx context.Context, c *cmd, args []string) error {
	email := c.flags.String("email", "", "email address")
	password := c.flags.String("password", "", "password")
	if _, err := c.parse(args); err != nil {
		return err
	}
	server, err := c.serverURL()
	if err != nil {
		if c.cfg != nil && first(c.server, os.Getenv("SILO_SERVER"), c.cfg.Server) == "" {
			return usagef("--server URL is required")
		}
		return err
	}
	token := first(c.token, os.Getenv("SILO_TOKEN"))
	switch {
	case c.token != "" && *email != "":
		return usagef("give either --token or --email, not both")
	case token == "" && *email == "":
		return usagef("give --email EMAIL (and a password) or --token TOKEN")
	}

	cfg := &config{Server: server}
	var user *silo.User
	if *email != "" {
		pw := *password
		if pw == "" {
			if pw, err = readPassword(c); err != nil {
				return err
			}
		}
		res, err := client.New(server, "").Login(ctx, client.LoginRequest{
			Email: *email, Password: pw, TokenName: cliTokenName(),
		})
		if err != nil {
			return err
		}
		cfg.Token, cfg.TokenID, user = res.Token, res.TokenID, res.User
	} else {
		me, err := client.New(server, token).Me(ctx)
		if err != nil {
			return err
		}
		cfg.Token, cfg.TokenID, user = token, me.TokenID, me.User
	}
	if user == nil {
		return fmt.Errorf("the server at %s did not say who signed in", server)
	}
	cfg.Email = user.Email
	if _, err := cfg.save(); err != nil {
		return err
	}
	if c.json {
		// Never the token: it is now in the config file, and terminal
		// output ends up in logs.
		return c.printJSON(map[string]any{"server": server, "user": user, "token_id": cfg.TokenID})
	}
	fmt.Fprintf(c.Stdout, "Signed in to %s as %s (%s).\n", server, user.Email, strings.Join(silo.RoleNames(user.Roles), ", "))
	return nil
}

// readPassword reads the password: on a terminal, prompted and not echoed;
// otherwise (piped in) the first line of standard input.
func readPassword(c *cmd) (string, error) {
	if f, ok := c.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.Stderr, "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.Stderr)
		if err != nil {
			return "", fmt.Errorf("read password from the terminal: %w", err)
		}
		return passwordOrUsage(string(b))
	}
	line, err := bufio.NewReader(c.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	return passwordOrUsage(strings.TrimRight(line, "\r\n"))
}

func passwordOrUsage(pw string) (string, error) {
	if pw == "" {
		return "", usagef("no password: pass --password or type it on standard input")
	}
	return pw, nil
}

// cliTokenName names the token an email login creates after this machine, so
// the user can tell their tokens apart and revoke a lost laptop's.
func cliTokenName() string {
	name := "silo CLI"
	if h, err := os.Hostname(); err == nil && h != "" {
		name += " on " + h
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}
