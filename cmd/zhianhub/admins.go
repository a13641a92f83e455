package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/auth"
	"zhianhub/store/access"
	"zhianhub/store/audit"
)

const adminsUsage = `usage: zhianhub admins list [--config FILE]
       zhianhub admins grant  --user ID --role sysadmin|secadmin|auditor --reason TEXT [--config FILE]
       zhianhub admins revoke --user ID --role sysadmin|secadmin|auditor --reason TEXT [--config FILE]

Grants and revokes the separated administrators' roles at deployment (the
API never does). An administrator's account holds that one role and no
other. Each change is audited (role.grant, role.revoke) in its transaction,
with $USER as the actor.`

func runAdmins(ctx context.Context, env *cliEnv, args []string) (err error) {
	if len(args) == 0 {
		return &exitError{code: 2, err: errors.New(adminsUsage)}
	}
	switch args[0] {
	case "list", "grant", "revoke":
	case "-h", "--help", "help":
		fmt.Fprintln(env.stdout, adminsUsage)
		return nil
	default:
		return &exitError{code: 2, err: fmt.Errorf("zhianhub admins: unknown subcommand %q\n%s", args[0], adminsUsage)}
	}
	sub := args[0]
	fs := newFlagSet(env, "admins "+sub)
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	user := fs.String("user", "", "the administrator's user id")
	role := fs.String("role", "", "sysadmin, secadmin or auditor")
	reason := fs.String("reason", "", "why (required)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		return &exitError{code: 2, err: fmt.Errorf("zhianhub admins: "+format+"\n"+adminsUsage, a...)}
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	if sub != "list" {
		switch {
		case !auth.ValidUser(*user):
			return bad("--user %q is not a user id", *user)
		case !auth.IsAdminRole(*role):
			return bad("--role must be one of %s", strings.Join(auth.AdminRoles, ", "))
		case strings.TrimSpace(*reason) == "":
			return bad("%s needs --reason", sub)
		}
	}
	d, err := openDLQ(ctx, env, *cfgPath, dlqNeeds{audit: sub != "list"})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close(ctx)) }()
	if sub == "list" {
		gs, err := access.Grants(ctx, d.pool, "")
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tROLE\tGRANTED BY\tGRANTED AT\tREASON")
		for _, g := range gs {
			if auth.IsAdminRole(g.Role) {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.User, g.Role, g.GrantedBy, g.GrantedAt.Format(time.RFC3339), g.Reason)
			}
		}
		return tw.Flush()
	}
	why := audit.Text(strings.TrimSpace(*reason), maxAuditReason)
	var conflict string
	err = audit.BeginFunc(ctx, d.pool, func(tx pgx.Tx, st *audit.Staging) error {
		if err := access.LockUser(ctx, tx, *user); err != nil {
			return err
		}
		entry := audit.Entry{Actor: d.actor, Object: "user/" + *user, Result: "ok", Reason: why,
			Detail: map[string]any{"user": *user, "role": *role, "via": "cli", "node": d.node}}
		if sub == "revoke" {
			if _, err := access.RevokeRole(ctx, tx, *user, *role); err != nil {
				return err
			}
			entry.Action = "role.revoke"
			return st.Stage(entry)
		}
		held, err := access.Grants(ctx, tx, *user)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(held, func(g access.Grant) bool { return g.Role != *role }); i >= 0 {
			conflict = held[i].Role
			return access.ErrConflict
		}
		if err := access.GrantRole(ctx, tx, access.Grant{User: *user, Role: *role, GrantedBy: d.actor, GrantedAt: time.Now(), Reason: why}); err != nil {
			return err
		}
		entry.Action = "role.grant"
		return st.Stage(entry)
	})
	switch {
	case conflict != "":
		return fmt.Errorf("%s holds %s: an administrator's account holds no other role", *user, conflict)
	case errors.Is(err, access.ErrConflict):
		return fmt.Errorf("%s holds %s already", *user, *role)
	case errors.Is(err, access.ErrNotFound):
		return fmt.Errorf("%s does not hold %s", *user, *role)
	case err != nil:
		return err
	}
	if _, err := d.audit.ChainPending(ctx); err != nil {
		return fmt.Errorf("chain the audit entry: %w", err)
	}
	fmt.Fprintf(env.stdout, "%sed %s %s by %s\n", strings.TrimSuffix(sub, "e"), *role, *user, d.actor)
	return nil
}
