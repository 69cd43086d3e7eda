package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/silofl/silo"
)

// #nosec G101 -- usage text
const tokensUsage = `
Usage: silo tokens SUBCOMMAND

Manages access tokens for the CLI, the SDK and scripts.

  create [--name N] [--scope S,...] [--expires 720h]
              create a token; its secret is printed once. A scoped token
              carries only the listed permissions (e.g. runners:read) and
              lives at most 30 days; without --scope it carries all of yours
  list [--all]
              list your tokens; admins may list everyone's with --all
  revoke ID   revoke a token; it stops working at once
`

func cmdTokens(ctx context.Context, args []string, s streams) int {
	return runGroup(ctx, s, "tokens", tokensUsage, map[string]subcommand{
		"create": tokensCreate,
		"list":   tokensList,
		"revoke": tokensRevoke,
	}, args)
}

func tokensCreate(ctx context.Context, c *cmd, args []string) error {
	name := c.flags.String("name", "", "a name to recognise the token by")
	var scopes listFlag
	c.flags.Var(&scopes, "scope", "permissions, comma-separated or repeated")
	expires := c.flags.String("expires", "", "lifetime such as 720h; default none (30 days for scoped tokens)")
	c.help = "\nScopes (permissions; a token may carry only those its owner holds):\n"
	for _, p := range silo.AllPermissions() {
		c.help += "  " + string(p) + "\n"
	}
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	req := silo.TokenRequest{Name: *name, ExpiresIn: *expires}
	for _, s := range scopes {
		req.Scopes = append(req.Scopes, silo.Permission(s))
	}
	t, err := cl.CreateToken(ctx, req)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(t)
	}
	fmt.Fprintf(c.Stdout, "Created token %s (%s; scopes: %s; expires: %s).\n\n  %s\n\n",
		t.ID, t.Name, scopeList(t.Scopes), fmtTimePtr(t.ExpiresAt, "never"), t.Secret)
	fmt.Fprintln(c.Stdout, "Copy it now: it will not be shown again. Use it with --token, $SILO_TOKEN or 'silo login --token'.")
	return nil
}

func tokensList(ctx context.Context, c *cmd, args []string) error {
	all := c.flags.Bool("all", false, "everyone's tokens (admins)")
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	tokens, err := cl.ListTokens(ctx, *all)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(tokens)
	}
	if len(tokens) == 0 {
		fmt.Fprintln(c.Stdout, "No access tokens yet. Create one with: silo tokens create --name NAME")
		return nil
	}
	now := time.Now()
	tw := c.table()
	header := "ID\tNAME\tSCOPES\tSTATUS\tCREATED\tEXPIRES\tLAST USED"
	if *all {
		header = "ID\tOWNER\tNAME\tSCOPES\tSTATUS\tCREATED\tEXPIRES\tLAST USED"
	}
	fmt.Fprintln(tw, header)
	for _, t := range tokens {
		status := "active"
		switch {
		case t.RevokedAt != nil:
			status = "revoked"
		case !t.Active(now):
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t", t.ID)
		if *all {
			fmt.Fprintf(tw, "%s\t", orDash(t.UserEmail))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(t.Name), scopeList(t.Scopes), status,
			fmtTime(t.CreatedAt), fmtTimePtr(t.ExpiresAt, "never"), fmtTimePtr(t.LastUsedAt, "never"))
	}
	return tw.Flush()
}

func tokensRevoke(ctx context.Context, c *cmd, args []string) error {
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	id := pos[0]
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.RevokeToken(ctx, id); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(map[string]any{"id": id, "revoked": true})
	}
	fmt.Fprintf(c.Stdout, "Revoked token %s.\n", id)
	if c.fromConfig && c.cfg.TokenID == id {
		fmt.Fprintln(c.Stdout, "That was the token this CLI signs in with: run 'silo login' to sign in again.")
	}
	return nil
}

// scopeList shows a token's scopes; no scopes means all of its owner's
// permissions.
func scopeList(ps []silo.Permission) string {
	if len(ps) == 0 {
		return "all"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}
