package audit

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store/storetest"
)

func TestArchive(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newWriter(t, pool, WriterConfig{Signer: keys.signer, CheckpointEvery: 10, BatchSize: 4})
	dir := t.TempDir()
	appendN := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			if _, err := w.Append(ctx, entry(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(0, 45)
	cfg := ArchiveConfig{Pool: pool, Writer: w, Dir: dir, Before: time.Now().Add(time.Hour), Signer: keys.signer, Keys: keys.lookup}

	// Nothing older than an hour ago.
	old := cfg
	old.Before = time.Now().Add(-time.Hour)
	if _, err := Archive(ctx, old); !errors.Is(err, ErrNothingToArchive) {
		t.Fatalf("archive of nothing: %v", err)
	}

	res, err := Archive(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 1 || res.To < 30 || res.To > 45 || res.Entries != res.To || res.Checkpoints < 3 {
		t.Fatalf("archive %+v", res)
	}
	// What stays verifies from the anchor, and names the cut.
	r := mustVerifyOK(t, ctx, pool, keys)
	if r.ArchivedThrough != res.To || r.LastSeq != res.ArchiveEntry || r.Entries != res.ArchiveEntry-res.To {
		t.Fatalf("after the cut: %+v (archive %+v)", r, res)
	}
	var left int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry WHERE seq <= $1`, res.To).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d archived entries left in the database (%v)", left, err)
	}
	// The archive checks out offline.
	m, err := VerifyArchive(res.Manifest, keys.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if m.From != 1 || m.To != res.To || m.Entries != res.Entries {
		t.Fatalf("manifest %+v", m)
	}

	// More entries, a second archive: the chain goes on verifying, and the
	// second archive starts where the first ended.
	appendN(100, 40)
	res2, err := Archive(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res2.From != res.To+1 {
		t.Fatalf("second archive %+v after %+v", res2, res)
	}
	r = mustVerifyOK(t, ctx, pool, keys)
	if r.ArchivedThrough != res2.To {
		t.Fatalf("after the second cut: %+v", r)
	}
	if _, err := VerifyArchive(res2.Manifest, keys.lookup); err != nil {
		t.Fatal(err)
	}

	t.Run("tampered archive", func(t *testing.T) {
		data, err := os.ReadFile(res.File)
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Replace(data, []byte(`"result":"ok"`), []byte(`"result":"no"`), 1)
		if err := os.WriteFile(res.File, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(res.File, data, 0o600)
		if _, err := VerifyArchive(res.Manifest, keys.lookup); err == nil || !strings.Contains(err.Error(), "entry") {
			t.Fatalf("tampered archive: %v", err)
		}
	})

	t.Run("tampered manifest", func(t *testing.T) {
		data, err := os.ReadFile(res.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Replace(data, []byte(`"from": 1,`), []byte(`"from": 2,`), 1)
		if bytes.Equal(bad, data) {
			t.Fatal("test did not change the manifest")
		}
		if err := os.WriteFile(res.Manifest, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(res.Manifest, data, 0o600)
		if _, err := VerifyArchive(res.Manifest, keys.lookup); err == nil {
			t.Fatal("a manifest changed after signing verified")
		}
	})

	t.Run("prefix deleted without an archive", func(t *testing.T) {
		// A DBA cuts further, at the next checkpoint, the way Archive does
		// but without writing an archive or its entry.
		appendN(300, 15)
		var next int64
		if err := pool.QueryRow(ctx, `SELECT min(seq) FROM audit_checkpoint WHERE seq > $1`, res2.To).Scan(&next); err != nil {
			t.Fatal(err)
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		for _, q := range []string{`SET LOCAL zhianhub.audit_archive = 'on'`, `DELETE FROM audit_entry WHERE seq <= $1`, `DELETE FROM audit_checkpoint WHERE seq < $1`} {
			var err error
			if strings.Contains(q, "$1") {
				_, err = tx.Exec(ctx, q, next)
			} else {
				_, err = tx.Exec(ctx, q)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		r, err := Verify(ctx, tx, keys.lookup)
		if err != nil {
			t.Fatal(err)
		}
		if r.OK || r.FirstBad.Kind != KindDeleted || !strings.Contains(r.FirstBad.Detail, "no audit.archive entry names that cut") {
			t.Fatalf("unarchived cut: %+v %v", r, r.FirstBad)
		}
	})

	t.Run("anchor removed", func(t *testing.T) {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL zhianhub.audit_archive = 'on'`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM audit_checkpoint WHERE seq = $1`, res2.To); err != nil {
				return err
			}
			r, err := Verify(ctx, tx, keys.lookup)
			if err != nil {
				return err
			}
			if r.OK || r.FirstBad.Kind != KindDeleted {
				t.Errorf("without its anchor: %+v %v", r, r.FirstBad)
			}
			return errors.New("roll back")
		})
		if err == nil || err.Error() != "roll back" {
			t.Fatal(err)
		}
	})

	t.Run("broken chain is not archived", func(t *testing.T) {
		appendN(200, 30)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL zhianhub.audit_archive = 'on'`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE audit_entry SET reason = 'rewritten' WHERE seq = (SELECT max(seq) - 3 FROM audit_entry)`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Archive(ctx, cfg); err == nil || !strings.Contains(err.Error(), "broken") {
			t.Fatalf("archive of a broken chain: %v", err)
		}
	})
}
