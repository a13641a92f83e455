// Package storetest gives tests a PostgreSQL database of their own, migrated
// to the current schema and dropped when the test ends.
//
// The server is reached through the admin URL in ZHIANHUB_TEST_ADMIN_URL
// (default DefaultAdminURL); the role must be allowed to create databases.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/store"
)

// AdminURLEnv names the environment variable holding the admin URL.
const AdminURLEnv = "ZHIANHUB_TEST_ADMIN_URL"

// DefaultAdminURL is used when AdminURLEnv is unset or empty.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// DatabasePrefix starts the name of every database made here.
const DatabasePrefix = "zhianhub_t_"

// setupTimeout bounds creating, migrating and dropping one database.
const setupTimeout = 60 * time.Second

// AdminURL returns the admin URL tests connect with.
func AdminURL() string {
	if u := os.Getenv(AdminURLEnv); u != "" {
		return u
	}
	return DefaultAdminURL
}

// NewDatabase creates a fresh database zhianhub_t_<random>, applies the
// migrations (store.Migrate) and returns its URL. The database is dropped WITH
// (FORCE) when the test and its cleanups end.
func NewDatabase(t testing.TB) string {
	t.Helper()
	dbURL := NewEmptyDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := store.Migrate(ctx, dbURL); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return dbURL
}

// NewEmptyDatabase is NewDatabase without the migrations.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminURL()
	name := DatabasePrefix + randomSuffix(t)
	dbURL, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("storetest: %s: %v", AdminURLEnv, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("storetest: create database %s: %v (is PostgreSQL running? see /work/shared/specs/local-services.md)", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("storetest: drop database %s: %v", name, err)
		}
	})
	return dbURL
}

// NewPool returns a pool on a fresh migrated database (NewDatabase), closed
// when the test ends (before the database is dropped).
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return OpenPool(t, NewDatabase(t), store.PoolConfig{})
}

// OpenPool opens a pool on dbURL with cfg and closes it when the test ends.
// Use it for a second "process" on the same database.
func OpenPool(t testing.TB, dbURL string, cfg store.PoolConfig) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	pool, err := store.Open(ctx, dbURL, cfg)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// KeyringNode is the node code of the key store Keyring generates.
const KeyringNode = "310000000000"

// Keyring returns a field-encryption keyring on pool's data_key table, its
// data keys wrapped by a throwaway key store (node KeyringNode, no
// passphrase) generated in t.TempDir(). Tests that must share the keys with
// another process, or whose data_key table holds keys already, open their
// key store themselves (fieldenc.Open).
func Keyring(t testing.TB, pool *pgxpool.Pool) *fieldenc.Keyring {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := keystore.Generate(dir, KeyringNode, nil); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	ks, err := keystore.Load(dir, keystore.LoadOptions{})
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	kr, err := fieldenc.Open(ctx, store.NewDataKeys(pool), ks)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return kr
}

func adminExec(ctx context.Context, adminURL, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns connString with its database replaced by name. It
// accepts URLs and keyword/value strings, like pgx.
func withDatabase(connString, name string) (string, error) {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", fmt.Errorf("parse admin url: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In a keyword/value string a later keyword overrides an earlier one.
	return connString + " dbname=" + name, nil
}

func randomSuffix(t testing.TB) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("storetest: random name: %v", err)
	}
	return hex.EncodeToString(b[:])
}
