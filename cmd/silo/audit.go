package main

import (
	"cmp"
	"context"
	"fmt"

	"github.com/silofl/silo/client"
)

const auditUsage = `
Usage: silo audit list [--since 24h|2026-01-02T15:04:05Z] [--limit N] [--before ID]
                      [--actor EMAIL] [--action PREFIX] [--target TEXT] [--outcome O]

Prints the audit log, newest first (admins): time, actor, action, target and
outcome of every change.

  --since    only entries from this long ago (a duration such as 24h) or
             from this time (RFC 3339)
  --limit    at most this many entries (default and most: 1000)
  --before   only entries older than entry ID: the next page, from the last
             ID of this one (--json shows IDs)
  --actor    only this actor's entries (an email, runner:NAME or system)
  --action   only actions starting with this (dataset. or dataset.register)
  --target   only targets containing this text
  --outcome  success, failed or denied
`

func cmdAudit(ctx context.Context, args []string, s streams) int {
	return runGroup(ctx, s, "audit", auditUsage, map[string]subcommand{
		"list": auditList,
	}, args)
}

func auditList(ctx context.Context, c *cmd, args []string) error {
	since := c.flags.String("since", "", "duration or RFC 3339 time")
	limit := c.flags.Int("limit", 0, "maximum number of entries")
	before := c.flags.Int64("before", 0, "only entries older than this entry ID")
	var q client.AuditQuery
	c.flags.StringVar(&q.Actor, "actor", "", "only this actor's entries")
	c.flags.StringVar(&q.Action, "action", "", "only actions starting with this")
	c.flags.StringVar(&q.Target, "target", "", "only targets containing this")
	c.flags.StringVar(&q.Outcome, "outcome", "", "success, failed or denied")
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
	q.Since, q.Limit, q.Before = *since, *limit, *before
	entries, err := cl.ListAudit(ctx, q)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(entries)
	}
	if len(entries) == 0 {
		if *since != "" || q.Actor != "" || q.Action != "" || q.Target != "" || q.Outcome != "" || q.Before != 0 {
			fmt.Fprintln(c.Stdout, "No audit entries match: widen the filters (a longer --since, fewer of --actor, --action, --target, --outcome, --before).")
		} else {
			fmt.Fprintln(c.Stdout, "No audit entries yet: they appear as users, tokens and the workspace change.")
		}
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "ID\tTIME\tACTOR\tACTION\tTARGET\tOUTCOME\tDETAIL")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Local().Format("2006-01-02 15:04:05 MST"), e.Actor, e.Action, orDash(e.Target), e.Outcome, e.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if want := cmp.Or(*limit, 1000); len(entries) >= want {
		fmt.Fprintf(c.Stdout, "Older entries: add --before %d.\n", entries[len(entries)-1].ID)
	}
	return nil
}
