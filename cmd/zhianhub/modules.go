package main

import (
	"context"
	"errors"
	"fmt"

	"zhianhub/adapters/moduleacl"
	"zhianhub/contracts/events"
	"zhianhub/store/audit"
)

const modulesUsage = `usage: zhianhub modules plan  [--acl FILE] [--passwords DIR]
       zhianhub modules apply [--acl FILE] [--passwords DIR] [--rabbitmqctl PATH]

Turns the module ACL (default deploy/modules.example.yaml) into RabbitMQ
users and permissions: each module gets a user of its name, vhost
permissions on its own queues, write on zhian.ingress and read on
zhian.events, and topic permissions (regular expressions on the routing key
= event kind): publish kinds on zhian.ingress, subscribe kinds on
zhian.events. plan prints the rabbitmqctl commands (passwords are read
from DIR/<module>.pass on standard input, never on the command line);
apply runs them on this host, creating a random password file for each
module without one (existing users get change_password).`

func runModules(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return &exitError{code: 2, err: errors.New(modulesUsage)}
	}
	switch args[0] {
	case "plan", "apply":
	case "-h", "--help", "help":
		fmt.Fprintln(env.stdout, modulesUsage)
		return nil
	default:
		return &exitError{code: 2, err: fmt.Errorf("zhianhub modules: unknown subcommand %q\n%s", args[0], modulesUsage)}
	}
	sub := args[0]
	fs := newFlagSet(env, "modules "+sub)
	aclPath := fs.String("acl", "deploy/modules.example.yaml", "module ACL file (YAML)")
	pwDir := fs.String("passwords", "var/modules", "directory of the modules' password files <module>.pass")
	ctl := fs.String("rabbitmqctl", "rabbitmqctl", "rabbitmqctl command (apply)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("zhianhub modules: unexpected argument %q\n%s", fs.Arg(0), modulesUsage)}
	}
	reg, err := events.NewRegistry()
	if err != nil {
		return err
	}
	acl, err := moduleacl.Load(*aclPath, reg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if sub == "plan" {
		for _, c := range acl.Plan(*pwDir, nil) {
			fmt.Fprintln(env.stdout, c.String())
		}
		return nil
	}
	ran, err := moduleacl.Apply(ctx, acl, *pwDir, moduleacl.Rabbitmqctl{Path: *ctl})
	for _, c := range ran {
		fmt.Fprintln(env.stdout, "done:", c.String())
	}
	// The broker's users and permissions are security configuration: the
	// change is audited, and so is a partial one.
	e := audit.Entry{Action: "modules.apply", Object: *aclPath, Result: "ok",
		Detail: map[string]any{"commands": len(ran), "modules": len(acl.Modules)}}
	if err != nil {
		e.Result, e.Reason = "error", err.Error()
	}
	auditAdminAction(ctx, env, e)
	return err
}
