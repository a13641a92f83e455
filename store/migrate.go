package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationLockID is the key of the session-level advisory lock that
// serializes migrators (pg_advisory_lock). It is "zhianhub" in ASCII.
const MigrationLockID int64 = 0x7a6869616e687562

// MigrationTable is the goose version table.
const MigrationTable = "goose_db_version"

// Migrations returns the embedded migration files (NNNNN_name.sql).
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // cannot happen: the directory is embedded
	}
	return sub
}

// Migrate applies the pending embedded migrations to the database at
// databaseURL. It is safe to run again (goose records applied versions) and
// safe to run from several processes at once: the migrator holds a
// session-level advisory lock (MigrationLockID) while it checks and applies
// versions, so a second process waits and then finds nothing to do.
func Migrate(ctx context.Context, databaseURL string) error {
	cc, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("store: migrate: parse database url: %w", err)
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = DefaultApplicationName + "-migrate"
	}
	db := stdlib.OpenDB(*cc)
	defer db.Close()

	p, err := goose.NewProvider(goose.DialectPostgres, db, Migrations(),
		goose.WithSessionLocker(advisoryLocker{id: MigrationLockID}),
		goose.WithTableName(MigrationTable),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	for _, r := range results {
		slog.Default().DebugContext(ctx, "store: migration applied",
			slog.Int64("version", r.Source.Version),
			slog.String("file", r.Source.Path),
			slog.Duration("took", r.Duration))
	}
	return nil
}

// advisoryLocker is a goose session locker that waits on a blocking
// pg_advisory_lock instead of polling, so a second migrator proceeds as soon
// as the first one is done. It gives up when ctx ends.
type advisoryLocker struct {
	id int64
}

var _ lock.SessionLocker = advisoryLocker{}

func (l advisoryLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", l.id); err != nil {
		return fmt.Errorf("acquire migration lock: %w", err)
	}
	return nil
}

func (l advisoryLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var unlocked bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", l.id).Scan(&unlocked); err != nil {
		return fmt.Errorf("release migration lock: %w", err)
	}
	if !unlocked {
		return errors.New("release migration lock: lock was not held")
	}
	return nil
}
