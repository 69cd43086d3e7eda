package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

const usersUsage = `
Usage: silo users SUBCOMMAND

Manages the people in the workspace (Workspace Administrators only).

  list                                  list users
  invite EMAIL --role R[,R] [--expires 168h]
                                        invite someone; prints the single-use link
  invites                               list invitations and their status
  revoke-invite ID                      make an invitation link unusable
  set-roles EMAIL R[,R]                 replace a user's roles
  disable EMAIL                         stop a user from signing in or using tokens
  enable EMAIL                          let a disabled user back in
  remove EMAIL                          delete a user

Roles: admin, model_builder, data_custodian. The workspace always keeps at
least one active admin.
`

func cmdUsers(ctx context.Context, args []string, s streams) int {
	return runGroup(ctx, s, "users", usersUsage, map[string]subcommand{
		"list":          usersList,
		"invite":        usersInvite,
		"invites":       usersInvites,
		"revoke-invite": usersRevokeInvite,
		"set-roles":     usersSetRoles,
		"disable":       func(ctx context.Context, c *cmd, args []string) error { return usersSetDisabled(ctx, c, args, true) },
		"enable":        func(ctx context.Context, c *cmd, args []string) error { return usersSetDisabled(ctx, c, args, false) },
		"remove":        usersRemove,
	}, args)
}

func usersList(ctx context.Context, c *cmd, args []string) error {
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	users, err := cl.ListUsers(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(users)
	}
	if len(users) == 0 {
		fmt.Fprintln(c.Stdout, "No users yet. Invite one with: silo users invite EMAIL --role model_builder")
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "EMAIL\tNAME\tROLES\tSTATUS\tCREATED")
	for _, u := range users {
		status := "active"
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Email, orDash(u.Name), joinRoles(u.Roles), status, fmtTime(u.CreatedAt))
	}
	return tw.Flush()
}

func usersInvite(ctx context.Context, c *cmd, args []string) error {
	var roles listFlag
	c.flags.Var(&roles, "role", "roles, comma-separated or repeated")
	expires := c.flags.String("expires", "", "how long the link stays valid (default 168h)")
	pos, err := c.parse(args, "EMAIL")
	if err != nil {
		return err
	}
	if len(roles) == 0 {
		return usagef("--role is required: one or more of admin, model_builder, data_custodian")
	}
	rs, err := silo.ParseRoles(roles)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	inv, err := cl.InviteUser(ctx, client.InviteRequest{Email: pos[0], Roles: rs, ExpiresIn: *expires})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(inv)
	}
	fmt.Fprintf(c.Stdout, "Invited %s as %s; the invitation expires %s.\n", inv.Email, joinRoles(inv.Roles), fmtTime(inv.ExpiresAt))
	if inv.Link != "" {
		// Mail may not be configured, so the link is always printed: it is
		// the only time anyone sees it.
		fmt.Fprintf(c.Stdout, "Send them this link (it works once and is not shown again):\n\n  %s\n", inv.Link)
	}
	return nil
}

func usersInvites(ctx context.Context, c *cmd, args []string) error {
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	invs, err := cl.ListInvites(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(invs)
	}
	if len(invs) == 0 {
		fmt.Fprintln(c.Stdout, "No invitations yet. Invite someone with: silo users invite EMAIL --role model_builder")
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "ID\tEMAIL\tROLES\tSTATUS\tEXPIRES\tINVITED BY")
	for _, inv := range invs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", inv.ID, inv.Email, joinRoles(inv.Roles), orDash(inv.Status), fmtTime(inv.ExpiresAt), orDash(inv.CreatedBy))
	}
	return tw.Flush()
}

func usersRevokeInvite(ctx context.Context, c *cmd, args []string) error {
	pos, err := c.parse(args, "ID")
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id <= 0 {
		return usagef("invitation ID %q is not a number; see: silo users invites", pos[0])
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	inv, err := cl.RevokeInvite(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(inv)
	}
	fmt.Fprintf(c.Stdout, "Revoked the invitation for %s.\n", inv.Email)
	return nil
}

func usersSetRoles(ctx context.Context, c *cmd, args []string) error {
	pos, err := c.parse(args, "EMAIL", "ROLE...")
	if err != nil {
		return err
	}
	roles, err := silo.ParseRoles(pos[1:])
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	u, err := cl.SetUserRoles(ctx, pos[0], roles...)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(u)
	}
	fmt.Fprintf(c.Stdout, "%s now has the roles: %s.\n", u.Email, joinRoles(u.Roles))
	return nil
}

func usersSetDisabled(ctx context.Context, c *cmd, args []string, disabled bool) error {
	pos, cl, err := c.connect(args, "EMAIL")
	if err != nil {
		return err
	}
	u, err := cl.UpdateUser(ctx, pos[0], client.UserUpdate{Disabled: &disabled})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(u)
	}
	if disabled {
		fmt.Fprintf(c.Stdout, "Disabled %s: they can no longer sign in or use their tokens. Undo with: silo users enable %s\n", u.Email, u.Email)
	} else {
		fmt.Fprintf(c.Stdout, "Enabled %s.\n", u.Email)
	}
	return nil
}

func usersRemove(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "EMAIL")
	if err != nil {
		return err
	}
	if err := cl.RemoveUser(ctx, pos[0]); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(map[string]any{"email": pos[0], "removed": true})
	}
	fmt.Fprintf(c.Stdout, "Removed %s.\n", pos[0])
	return nil
}
