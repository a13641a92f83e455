package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"zhianhub/store"
	"zhianhub/store/trace"
)

// runTrace prints the timeline of a request id, message id or key-person
// number: audit entries, journal events, outbox, inbox and dead letters of
// everything linked to it.
func runTrace(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "trace")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	asJSON := fs.Bool("json", false, "print the trace as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &exitError{code: 2, err: errors.New("usage: zhianhub trace [--json] ID (a request id, message id or key-person number)")}
	}
	cfg, err := loadConfig(env, *cfgPath)
	if err != nil {
		return err
	}
	pool, err := store.Open(ctx, cfg.Database.URL, store.PoolConfig{})
	if err != nil {
		return err
	}
	defer pool.Close()
	tr, err := trace.Of(ctx, pool, fs.Arg(0))
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(tr)
	}
	if len(tr.Steps) == 0 {
		return &exitError{code: 1, err: fmt.Errorf("nothing found for %s", tr.ID)}
	}
	fmt.Fprintf(env.stdout, "trace of %s: %d steps, %d linked ids\n", tr.ID, len(tr.Steps), len(tr.Links))
	for _, s := range tr.Steps {
		fmt.Fprintf(env.stdout, "%s  %-11s %-41s %s\n", s.At.Format("2006-01-02T15:04:05.000Z"), s.Source, s.Ref, printable(s.What))
	}
	return nil
}
