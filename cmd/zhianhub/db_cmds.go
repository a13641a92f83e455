package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"zhianhub/adapters/secplatform"
	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/crypto"
	"zhianhub/crypto/keystore"
	"zhianhub/store"
	"zhianhub/store/audit"
)

// exitChainBroken is the exit status of `audit verify` for a broken chain.
const exitChainBroken = 4

// loadConfig reads the configuration named by --config or ZHIANHUB_CONFIG.
func loadConfig(env *cliEnv, path string) (config.Config, error) {
	cfg, err := config.Load(path, env.getenv)
	if err != nil {
		return cfg, &exitError{code: 2, err: err}
	}
	return cfg, nil
}

func runMigrate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "migrate")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *cfgPath)
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx, cfg.Database.URL); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "database migrated")
	return nil
}

func runAudit(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return &exitError{code: 2, err: errors.New("usage: zhianhub audit verify [--config FILE]")}
	}
	fs := newFlagSet(env, "audit verify")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *cfgPath)
	if err != nil {
		return err
	}
	ks, err := loadKeystore(cfg)
	if err != nil {
		return err
	}
	pool, err := store.Open(ctx, cfg.Database.URL, store.PoolConfig{})
	if err != nil {
		return err
	}
	defer pool.Close()
	rep, err := audit.Verify(ctx, pool, func(id crypto.KeyID) (crypto.Verifier, bool) { return ks.SelfVerifier(id) })
	if err != nil {
		return err
	}
	if !rep.OK {
		broken := fmt.Errorf("audit chain BROKEN at seq %d (%s): %s; %d entries and %d checkpoints checked out before it",
			rep.FirstBad.Seq, rep.FirstBad.Kind, rep.FirstBad.Detail, rep.Entries, rep.Checkpoints)
		// A security event: staged, chained after the head by the running
		// hub, and forwarded to the security-protection platform.
		if err := audit.Stage(ctx, pool, audit.Entry{Actor: "system", Action: secplatform.ActionChainBreak, Object: strconv.FormatInt(rep.FirstBad.Seq, 10),
			Result: "broken", Reason: broken.Error(), Detail: map[string]any{"seq": rep.FirstBad.Seq, "kind": rep.FirstBad.Kind}}); err != nil {
			broken = errors.Join(broken, fmt.Errorf("the security event was not recorded: %w", err))
		}
		return &exitError{code: exitChainBroken, err: broken}
	}
	fmt.Fprintf(env.stdout, "audit chain OK: %d entries, %d checkpoints, last seq %d hash %s\n",
		rep.Entries, rep.Checkpoints, rep.LastSeq, hex.EncodeToString(rep.LastHash[:]))
	if cp := rep.LastCheckpoint; cp != nil {
		fmt.Fprintf(env.stdout, "last checkpoint: seq %d hash %s at %s key %s (keep this line outside the database to detect a later cut-back)\n",
			cp.Seq, hex.EncodeToString(cp.Hash[:]), cp.At.Format("2006-01-02T15:04:05.000Z07:00"), cp.KeyID)
	}
	return nil
}

// loadKeystore loads the node's keys as the configuration says; production
// requires passphrase-protected private keys.
func loadKeystore(cfg config.Config) (*keystore.Store, error) {
	pass, err := readPassphrase(cfg.Keys.PassphraseFile)
	if err != nil {
		return nil, err
	}
	return keystore.Load(cfg.Keys.Dir, keystore.LoadOptions{
		Passphrase:       pass,
		RequireEncrypted: cfg.Mode == config.ModeProduction,
	})
}
