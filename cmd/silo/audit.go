package main

import (
	"context"
	"fmt"

	"github.com/silofl/silo/client"
)

const auditUsage = `
Usage: silo audit list [--since 24h|2026-01-02T15:04:05Z] [--limit N]

Prints the audit log, newest first (admins): time, actor, action, target and
outcome of every change.

  --since   only entries from this long ago (a duration such as 24h) or
            from this time (RFC 3339)
  --limit   at most this many entries
`

func cmdAudit(ctx context.Context, args []string, s streams) int {
	return runGroup(ctx, s, "audit", auditUsage, map[string]subcommand{
		"list": auditList,
	}, args)
}

func auditList(ctx context.Context, c *cmd, args []string) error {
	since := c.flags.String("since", "", "duration or RFC 3339 time")
	limit := c.flags.Int("limit", 0, "maximum number of entries")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit must be a positive number")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	entries, err := cl.ListAudit(ctx, client.AuditQuery{Since: *since, Limit: *limit})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(entries)
	}
	if len(entries) == 0 {
		if *since != "" {
			fmt.Fprintf(c.Stdout, "No audit entries since %s. Try a longer --since.\n", *since)
		} else {
			fmt.Fprintln(c.Stdout, "No audit entries yet: they appear as users, tokens and the workspace change.")
		}
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tTARGET\tOUTCOME\tDETAIL")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05 MST"), e.Actor, e.Action, orDash(e.Target), e.Outcome, e.Detail)
	}
	return tw.Flush()
}
