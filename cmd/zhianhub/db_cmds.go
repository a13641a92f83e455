package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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

const auditUsage = `usage: zhianhub audit verify [--config FILE]
       zhianhub audit archive [--config FILE] [--older-than DURATION] [--dir DIR]
       zhianhub audit verify-archive [--config FILE] MANIFEST`

func runAudit(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "archive":
			return runAuditArchive(ctx, env, args[1:])
		case "verify-archive":
			return runAuditVerifyArchive(env, args[1:])
		}
	}
	if len(args) == 0 || args[0] != "verify" {
		return &exitError{code: 2, err: errors.New(auditUsage)}
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
		broken := errors.New(rep.Summary())
		// A security event: staged, chained after the head by the running
		// hub, and forwarded to the security-protection platform.
		if err := audit.StageChainBreak(ctx, pool, rep, audit.Entry{Actor: "system"}); err != nil {
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

// runAuditArchive archives the audit entries older than the retention (or
// --older-than) and deletes them from the database (audit.Archive).
func runAuditArchive(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "audit archive")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	olderThan := fs.Duration("older-than", 0, "archive entries older than this (default: audit.retention)")
	dir := fs.String("dir", "", "archive directory (default: audit.archive_dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *cfgPath)
	if err != nil {
		return err
	}
	if *olderThan <= 0 {
		*olderThan = cfg.Audit.Retention
	}
	if *dir == "" {
		*dir = cfg.Audit.ArchiveDir
	}
	return withAuditWriter(ctx, cfg, func(ks *keystore.Store, pool *pgxpool.Pool, w *audit.Writer) error {
		return auditArchive(ctx, env, ks, pool, w, *dir, *olderThan)
	})
}

// withAuditWriter opens the node's keys, the database and an audit writer
// for a command that records what it does, runs fn, and closes the writer
// (its entries chained) and the pool.
func withAuditWriter(ctx context.Context, cfg config.Config, fn func(*keystore.Store, *pgxpool.Pool, *audit.Writer) error) error {
	ks, err := loadKeystore(cfg)
	if err != nil {
		return err
	}
	pool, err := store.Open(ctx, cfg.Database.URL, store.PoolConfig{})
	if err != nil {
		return err
	}
	defer pool.Close()
	w, err := audit.NewWriter(pool, audit.WriterConfig{Signer: ks.Signer(), CheckpointInterval: cfg.Audit.CheckpointInterval})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = w.Close(cctx)
	}()
	return fn(ks, pool, w)
}

func auditArchive(ctx context.Context, env *cliEnv, ks *keystore.Store, pool *pgxpool.Pool, w *audit.Writer, dir string, olderThan time.Duration) error {
	res, err := audit.Archive(ctx, audit.ArchiveConfig{Pool: pool, Writer: w, Dir: dir, Before: time.Now().Add(-olderThan),
		Signer: ks.Signer(), Keys: ks.SelfVerifier, Actor: "cli"})
	if errors.Is(err, audit.ErrNothingToArchive) {
		fmt.Fprintf(env.stdout, "nothing to archive: no checkpoint older than %s\n", olderThan)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "archived entries %d-%d (%d entries, %d checkpoints) to %s\nmanifest %s (SM3 %x), recorded as audit entry %d\n",
		res.From, res.To, res.Entries, res.Checkpoints, res.File, res.Manifest, res.SM3, res.ArchiveEntry)
	return nil
}

// runAuditVerifyArchive checks an archive file against its signed manifest.
func runAuditVerifyArchive(env *cliEnv, args []string) error {
	return verifyArchiveCmd(env, "audit verify-archive", auditUsage, args, func(path string, keys audit.KeyFunc) (string, error) {
		m, err := audit.VerifyArchive(path, keys)
		return fmt.Sprintf("entries %d-%d (%d), %d checkpoints, file %s SM3 %s, signed by %s",
			m.From, m.To, m.Entries, m.Checkpoints, m.File, m.SM3, crypto.KeyID(m.KeyID).Short()), err
	})
}

// verifyArchiveCmd is `<name> [--config FILE] MANIFEST`: verify checks the
// archive of MANIFEST with the node's keys and describes it; a failure
// exits with exitChainBroken.
func verifyArchiveCmd(env *cliEnv, name, usage string, args []string, verify func(path string, keys audit.KeyFunc) (string, error)) error {
	fs := newFlagSet(env, name)
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &exitError{code: 2, err: errors.New(usage)}
	}
	cfg, err := loadConfig(env, *cfgPath)
	if err != nil {
		return err
	}
	ks, err := loadKeystore(cfg)
	if err != nil {
		return err
	}
	desc, err := verify(fs.Arg(0), ks.SelfVerifier)
	if err != nil {
		return &exitError{code: exitChainBroken, err: err}
	}
	fmt.Fprintln(env.stdout, "archive OK: "+desc)
	return nil
}
