package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

const workspaceUsage = `
Usage: silo workspace SUBCOMMAND

Shows or changes the workspace and its billing information.

  show      show the workspace
  set [--name N] [--billing-contact C] [--billing-email E]
      [--billing-address A] [--plan P]
            change the given fields (admins); an empty value clears one.
            The name is used in storage names: 3-32 lowercase letters,
            digits and dashes. Plans: community, team, enterprise
`

func cmdWorkspace(ctx context.Context, args []string, s streams) int {
	return runGroup(ctx, s, "workspace", workspaceUsage, map[string]subcommand{
		"show": workspaceShow,
		"set":  workspaceSet,
	}, args)
}

func workspaceShow(ctx context.Context, c *cmd, args []string) error {
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	w, err := cl.Workspace(ctx)
	if err != nil {
		return err
	}
	return c.printWorkspace(w)
}

func workspaceSet(ctx context.Context, c *cmd, args []string) error {
	// Only the flags given are sent, so "set --plan team" leaves the rest
	// alone, and "--billing-address ''" clears the address.
	var u client.WorkspaceUpdate
	fields := map[string]**string{
		"name":            &u.Name,
		"billing-contact": &u.BillingContact,
		"billing-email":   &u.BillingEmail,
		"billing-address": &u.BillingAddress,
		"plan":            &u.Plan,
	}
	values := map[string]*string{}
	for name := range fields {
		values[name] = c.flags.String(name, "", "")
	}
	if _, err := c.parse(args); err != nil {
		return err
	}
	changed := false
	c.flags.Visit(func(f *flag.Flag) {
		if p, ok := fields[f.Name]; ok {
			*p = values[f.Name]
			changed = true
		}
	})
	if !changed {
		return usagef("nothing to change: give at least one of --name, --billing-contact, --billing-email, --billing-address, --plan")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	w, err := cl.UpdateWorkspace(ctx, u)
	if err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintln(c.Stdout, "Updated the workspace.")
	}
	return c.printWorkspace(w)
}

func (c *cmd) printWorkspace(w *silo.Workspace) error {
	if c.json {
		return c.printJSON(w)
	}
	tw := c.table()
	fmt.Fprintf(tw, "Name:\t%s\n", orDash(w.Name))
	fmt.Fprintf(tw, "Plan:\t%s\n", orDash(w.Plan))
	fmt.Fprintf(tw, "Billing contact:\t%s\n", orDash(w.BillingContact))
	fmt.Fprintf(tw, "Billing email:\t%s\n", orDash(w.BillingEmail))
	fmt.Fprintf(tw, "Billing address:\t%s\n", orDash(w.BillingAddress))
	fmt.Fprintf(tw, "Updated:\t%s\n", fmtTime(w.UpdatedAt))
	return tw.Flush()
}
