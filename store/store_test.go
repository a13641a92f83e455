package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"zhianhub/store"
	"zhianhub/store/storetest"
)

func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	dbURL := storetest.NewEmptyDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Several "hub processes" start together on an empty database.
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = store.Migrate(ctx, dbURL) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i, err)
		}
	}
	// And again, later.
	if err := store.Migrate(ctx, dbURL); err != nil {
		t.Fatalf("re-run: %v", err)
	}

	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{MaxConns: 2})
	var applied int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	files, err := fsGlob()
	if err != nil {
		t.Fatal(err)
	}
	if applied != len(files) {
		t.Fatalf("goose_db_version has %d applied versions, want %d (one per file, no duplicates)", applied, len(files))
	}
	for _, table := range []string{"message", "message_event", "audit_entry", "audit_checkpoint", "audit_head"} {
		var exists bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil || !exists {
			t.Errorf("table %s: exists=%v err=%v", table, exists, err)
		}
	}
}

func fsGlob() ([]string, error) {
	var names []string
	entries, err := store.ReadDir()
	for _, e := range entries {
		if strings.HasSuffix(e, ".sql") {
			names = append(names, e)
		}
	}
	return names, err
}

func TestOpen(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tests := []struct {
		name    string
		url     string
		cfg     store.PoolConfig
		wantErr string
		check   func(t *testing.T, cfg store.PoolConfig, got poolFacts)
	}{
		{
			name: "defaults",
			url:  dbURL,
			check: func(t *testing.T, _ store.PoolConfig, got poolFacts) {
				if got.appName != store.DefaultApplicationName {
					t.Errorf("application_name = %q", got.appName)
				}
			},
		},
		{
			name: "explicit",
			url:  dbURL,
			cfg:  store.PoolConfig{MaxConns: 3, MinConns: 1, ApplicationName: "zhianhub-test", ConnectTimeout: 5 * time.Second},
			check: func(t *testing.T, _ store.PoolConfig, got poolFacts) {
				if got.maxConns != 3 || got.appName != "zhianhub-test" {
					t.Errorf("got %+v", got)
				}
			},
		},
		{name: "negative", url: dbURL, cfg: store.PoolConfig{MaxConns: -1}, wantErr: "MaxConns must not be negative"},
		{name: "min over max", url: dbURL, cfg: store.PoolConfig{MaxConns: 2, MinConns: 3}, wantErr: "MinConns"},
		{name: "bad url", url: "postgres://[::1", wantErr: "parse database url"},
		{name: "unknown database", url: strings.Replace(dbURL, "/zhianhub_t_", "/zhianhub_missing_", 1), wantErr: "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := store.Open(ctx, tt.url, tt.cfg)
			if tt.wantErr != "" {
				if err == nil {
					pool.Close()
					t.Fatalf("want error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			var got poolFacts
			got.maxConns = pool.Config().MaxConns
			if err := pool.QueryRow(ctx, `SELECT current_setting('application_name')`).Scan(&got.appName); err != nil {
				t.Fatal(err)
			}
			tt.check(t, tt.cfg, got)
		})
	}
}

type poolFacts struct {
	maxConns int32
	appName  string
}
