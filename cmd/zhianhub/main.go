// Command zhianhub is the integration hub of the Shanghai public-order
// management system: it routes sealed messages between the Ministry bus, the
// city feedback bus, the unified platforms and internal modules.
//
// Usage:
//
//	zhianhub serve            run the hub
//	zhianhub migrate          apply database migrations
//	zhianhub keys gen|show|rotate
//	zhianhub envelope open|seal
//	zhianhub audit verify
//	zhianhub audit archive [--older-than D] [--dir DIR]
//	zhianhub audit verify-archive MANIFEST
//	zhianhub trace [--json] ID
//	zhianhub version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

// command is one subcommand. run gets the arguments after the subcommand name.
type command struct {
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv carries the process environment so that commands are testable
// without touching globals.
type cliEnv struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// exitError carries a specific process exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func commands() map[string]command {
	return map[string]command{
		"serve":    {"run the hub", runServe},
		"migrate":  {"apply database migrations", runMigrate},
		"keys":     {"generate, show or rotate node keys (gen|show|rotate)", runKeys},
		"envelope": {"open or seal a secure envelope (open|seal)", runEnvelope},
		"audit":    {"verify, archive and verify-archive the audit chain", runAudit},
		"logs":     {"archive and verify-archive the system and operation logs", runLogs},
		"sim":      {"run a bus simulator (mps)", runSim},
		"dlq":      {"list, show, replay or resolve dead letters", runDLQ},
		"trace":    {"the timeline of a request id, message id or key-person number", runTrace},
		"admins":   {"grant, revoke or list the administrators' roles (grant|revoke|list)", runAdmins},
		"file":     {"file a key-person record up to the Ministry (file <kind> FILE)", runFile},
		"modules":  {"the internal modules' RabbitMQ users and permissions from the module ACL (plan|apply)", runModules},
		"version":  {"print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	env := &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	code := run(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, env *cliEnv, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "zhianhub: unknown command %q\n", args[0])
		usage(env.stderr, cmds)
		return 2
	}
	if err := cmd.run(ctx, env, args[1:]); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintln(env.stderr, ee.err.Error())
			}
			return ee.code
		}
		fmt.Fprintf(env.stderr, "zhianhub %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: zhianhub <command> [flags]")
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
}

func runVersion(_ context.Context, env *cliEnv, _ []string) error {
	fmt.Fprintf(env.stdout, "zhianhub %s\n", Version)
	return nil
}
