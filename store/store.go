// Package store opens the hub's PostgreSQL connection pool and owns the
// database schema: the embedded goose migrations in migrations/ are applied by
// Migrate.
//
// The sub-packages journal (message journal) and audit (tamper-evident audit
// chain) work on the schema created here; storetest gives other packages' tests
// a fresh, migrated database of their own.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Querier is the part of a connection the store packages need. It is satisfied
// by *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn and pgx.Tx, so that a caller can
// make journal and audit writes part of its own transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	_ Querier = (*pgxpool.Pool)(nil)
	_ Querier = (*pgxpool.Conn)(nil)
	_ Querier = (*pgx.Conn)(nil)
	_ Querier = (pgx.Tx)(nil)
)

// DefaultApplicationName is reported to PostgreSQL (pg_stat_activity) unless
// the database URL or PoolConfig names another.
const DefaultApplicationName = "zhianhub"

// PoolConfig tunes the connection pool. A non-zero field overrides the database
// URL; a zero field keeps what the URL says (pool_max_conns, connect_timeout,
// application_name...) or, failing that, the default named on the field or the
// pgxpool default.
type PoolConfig struct {
	// MaxConns is the maximum number of connections.
	MaxConns int32
	// MinConns is the number of connections kept open when idle.
	MinConns int32
	// MaxConnLifetime closes connections older than this.
	MaxConnLifetime time.Duration
	// MaxConnIdleTime closes connections idle for longer than this.
	MaxConnIdleTime time.Duration
	// HealthCheckPeriod is how often idle connections are checked.
	HealthCheckPeriod time.Duration
	// ConnectTimeout bounds establishing one connection. Default
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ApplicationName is reported to the server. Default
	// DefaultApplicationName.
	ApplicationName string
}

// DefaultConnectTimeout applies when neither PoolConfig nor the database URL
// (connect_timeout) sets one.
const DefaultConnectTimeout = 10 * time.Second

// Validate reports a configuration error.
func (c PoolConfig) Validate() error {
	var errs []error
	if c.MaxConns < 0 {
		errs = append(errs, errors.New("MaxConns must not be negative"))
	}
	if c.MinConns < 0 {
		errs = append(errs, errors.New("MinConns must not be negative"))
	}
	if c.MaxConns > 0 && c.MinConns > c.MaxConns {
		errs = append(errs, fmt.Errorf("MinConns (%d) must not exceed MaxConns (%d)", c.MinConns, c.MaxConns))
	}
	for name, d := range map[string]time.Duration{
		"MaxConnLifetime":   c.MaxConnLifetime,
		"MaxConnIdleTime":   c.MaxConnIdleTime,
		"HealthCheckPeriod": c.HealthCheckPeriod,
		"ConnectTimeout":    c.ConnectTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: invalid pool config: %w", err)
	}
	return nil
}

// Open creates a connection pool for databaseURL (a postgres:// URL or a
// keyword/value connection string) and checks that the server answers.
func Open(ctx context.Context, databaseURL string, cfg PoolConfig) (*pgxpool.Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("store: parse database url: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if cfg.MinConns > 0 {
		pc.MinConns = cfg.MinConns
	}
	if pc.MinConns > pc.MaxConns {
		return nil, fmt.Errorf("store: invalid pool config: MinConns (%d) exceeds MaxConns (%d)", pc.MinConns, pc.MaxConns)
	}
	if cfg.MaxConnLifetime > 0 {
		pc.MaxConnLifetime = cfg.MaxConnLifetime
	}
	if cfg.MaxConnIdleTime > 0 {
		pc.MaxConnIdleTime = cfg.MaxConnIdleTime
	}
	if cfg.HealthCheckPeriod > 0 {
		pc.HealthCheckPeriod = cfg.HealthCheckPeriod
	}
	switch {
	case cfg.ConnectTimeout > 0:
		pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	case pc.ConnConfig.ConnectTimeout == 0:
		pc.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	switch {
	case cfg.ApplicationName != "":
		pc.ConnConfig.RuntimeParams["application_name"] = cfg.ApplicationName
	case pc.ConnConfig.RuntimeParams["application_name"] == "":
		pc.ConnConfig.RuntimeParams["application_name"] = DefaultApplicationName
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("store: create pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect to %s/%s: %w", pc.ConnConfig.Host, pc.ConnConfig.Database, err)
	}
	return pool, nil
}
