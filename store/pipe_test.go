package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"zhianhub/store"
	"zhianhub/store/storetest"
)

func TestPipe(t *testing.T) {
	dbURL := storetest.NewEmptyDatabase(t)
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{MaxConns: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := pool.Exec(ctx, `CREATE TABLE t (k int PRIMARY KEY, v text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	count := func(t *testing.T) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	reset := func(t *testing.T) {
		t.Helper()
		if _, err := pool.Exec(ctx, `TRUNCATE t`); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("reads see held writes, in order", func(t *testing.T) {
		reset(t)
		err := store.BeginPipe(ctx, pool, func(p *store.Pipe) error {
			for k := 1; k <= 3; k++ {
				if err := store.ExecLater(ctx, p, `INSERT INTO t VALUES ($1, 'a')`, k); err != nil {
					return err
				}
			}
			p.ExecLater(`UPDATE t SET v = 'b' WHERE k = 2`)
			if p.Held() != 4 {
				t.Errorf("held %d writes, want 4", p.Held())
			}
			// QueryRow carries the held writes.
			var v string
			if err := p.QueryRow(ctx, `SELECT v FROM t WHERE k = 2`).Scan(&v); err != nil {
				return err
			}
			if v != "b" || p.Held() != 0 {
				t.Errorf("read %q with %d held, want b and 0", v, p.Held())
			}
			// Query carries them too.
			p.ExecLater(`DELETE FROM t WHERE k = 1`)
			rows, err := p.Query(ctx, `SELECT k FROM t ORDER BY k`)
			if err != nil {
				return err
			}
			ks, err := pgx.CollectRows(rows, pgx.RowTo[int32])
			if err != nil {
				return err
			}
			if len(ks) != 2 || ks[0] != 2 || ks[1] != 3 {
				t.Errorf("keys %v, want [2 3]", ks)
			}
			// Exec carries them and returns its own tag.
			p.ExecLater(`INSERT INTO t VALUES (4, 'c')`)
			tag, err := p.Exec(ctx, `UPDATE t SET v = 'd' WHERE k >= 3`)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 2 {
				t.Errorf("update affected %d rows, want 2", tag.RowsAffected())
			}
			// Left held: Commit sends it.
			p.ExecLater(`INSERT INTO t VALUES (5, 'e')`)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := count(t); n != 4 {
			t.Fatalf("%d rows committed, want 4 (2, 3, 4, 5)", n)
		}
	})

	t.Run("a failed held write surfaces at the next statement", func(t *testing.T) {
		reset(t)
		err := store.BeginPipe(ctx, pool, func(p *store.Pipe) error {
			p.ExecLater(`INSERT INTO t VALUES (1, 'a')`)
			p.ExecLater(`INSERT INTO t VALUES (1, 'again')`)
			var n int
			return p.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n)
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" || !strings.Contains(err.Error(), "held-back write") {
			t.Fatalf("err = %v, want the unique violation of the held write", err)
		}
		if n := count(t); n != 0 {
			t.Fatalf("%d rows after the failed transaction", n)
		}
	})

	t.Run("a failed held write fails the commit", func(t *testing.T) {
		reset(t)
		err := store.BeginPipe(ctx, pool, func(p *store.Pipe) error {
			p.ExecLater(`INSERT INTO t VALUES (1, 'a')`)
			p.ExecLater(`INSERT INTO t VALUES (2, NULL)`)
			return nil
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23502" {
			t.Fatalf("err = %v, want the not-null violation", err)
		}
		if n := count(t); n != 0 {
			t.Fatalf("%d rows after the failed commit", n)
		}
	})

	t.Run("rollback drops held writes", func(t *testing.T) {
		reset(t)
		stop := errors.New("stop")
		err := store.BeginPipe(ctx, pool, func(p *store.Pipe) error {
			p.ExecLater(`INSERT INTO t VALUES (1, 'a')`)
			return stop
		})
		if !errors.Is(err, stop) {
			t.Fatalf("err = %v", err)
		}
		if n := count(t); n != 0 {
			t.Fatalf("%d rows after rollback", n)
		}
	})

	t.Run("ExecLater on a plain querier runs at once", func(t *testing.T) {
		reset(t)
		if err := store.ExecLater(ctx, pool, `INSERT INTO t VALUES (1, 'a')`); err != nil {
			t.Fatal(err)
		}
		if n := count(t); n != 1 {
			t.Fatalf("%d rows, want 1", n)
		}
		if err := store.ExecLater(ctx, pool, `INSERT INTO t VALUES (1, 'a')`); err == nil {
			t.Fatal("duplicate insert gave no error")
		}
	})
}
