package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto"
	"zhianhub/crypto/keystore"
	"zhianhub/store/audit"
	"zhianhub/store/logs"
)

const logsUsage = `usage: zhianhub logs archive [--config FILE] [--older-than DURATION] [--dir DIR]
       zhianhub logs verify-archive [--config FILE] MANIFEST`

// runLogs manages the system and operation logs: `zhianhub logs archive`
// archives (then deletes) the records past the retention, `zhianhub logs
// verify-archive` checks an archive offline.
func runLogs(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "archive":
			return runLogsArchive(ctx, env, args[1:])
		case "verify-archive":
			return runLogsVerifyArchive(env, args[1:])
		}
	}
	return &exitError{code: 2, err: errors.New(logsUsage)}
}

func runLogsArchive(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "logs archive")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	olderThan := fs.Duration("older-than", 0, "archive records older than this (default: log.retention)")
	dir := fs.String("dir", "", "archive directory (default: log.archive_dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *cfgPath)
	if err != nil {
		return err
	}
	if *olderThan <= 0 {
		*olderThan = cfg.Log.Retention
	}
	if *dir == "" {
		*dir = cfg.Log.ArchiveDir
	}
	return withAuditWriter(ctx, cfg, func(ks *keystore.Store, pool *pgxpool.Pool, w *audit.Writer) error {
		return logsArchive(ctx, env, ks, pool, w, *dir, *olderThan)
	})
}

func logsArchive(ctx context.Context, env *cliEnv, ks *keystore.Store, pool *pgxpool.Pool, w *audit.Writer, dir string, olderThan time.Duration) error {
	before := time.Now().Add(-olderThan)
	for _, l := range []logs.Log{logs.LogOperation, logs.LogSystem} {
		res, err := logs.Archive(ctx, logs.ArchiveConfig{Pool: pool, Log: l, Dir: dir, Before: before, Signer: ks.Signer(), Audit: w, Actor: "cli"})
		switch {
		case errors.Is(err, logs.ErrNothingToArchive):
			fmt.Fprintf(env.stdout, "%s: nothing older than %s\n", l, olderThan)
		case err != nil:
			return err
		default:
			m := res.Manifest
			fmt.Fprintf(env.stdout, "%s: archived rows %d-%d (%d rows) to %s\nmanifest %s (SM3 %s)\n", l, m.FromID, m.ToID, m.Rows, res.File, res.ManifestPath, m.SM3)
		}
	}
	return nil
}

func runLogsVerifyArchive(env *cliEnv, args []string) error {
	return verifyArchiveCmd(env, "logs verify-archive", logsUsage, args, func(path string, keys audit.KeyFunc) (string, error) {
		m, err := logs.VerifyArchive(path, keys)
		return fmt.Sprintf("%s rows %d-%d (%d), file %s SM3 %s, signed by %s",
			m.Log, m.FromID, m.ToID, m.Rows, m.File, m.SM3, crypto.KeyID(m.KeyID).Short()), err
	})
}
