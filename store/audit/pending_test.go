package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto"
	"zhianhub/store"
	"zhianhub/store/storetest"
)

// count returns the result of a count query.
func count(t testing.TB, ctx context.Context, q store.Querier, sql string) int64 {
	t.Helper()
	var n int64
	if err := q.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// objects returns the Object of every entry in seq order.
func objects(t testing.TB, ctx context.Context, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT object FROM audit_entry ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// newIdleWriter starts a writer (closed at cleanup) and waits until its
// start-up chaining pass is over, so that it chains only when told to if
// cfg.PendingPoll is negative.
func newIdleWriter(t testing.TB, ctx context.Context, pool *pgxpool.Pool, cfg WriterConfig) *Writer {
	t.Helper()
	w := newWriter(t, pool, cfg)
	if _, err := w.ChainPending(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// stageTx stages entries in a transaction of their own and commits it.
func stageTx(t testing.TB, ctx context.Context, pool *pgxpool.Pool, entries ...Entry) {
	t.Helper()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return StageBatch(ctx, tx, entries) }); err != nil {
		t.Fatal(err)
	}
}

func TestStageRollbackAndRefusals(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1})

	// Staged in a transaction that rolls back, with the effect it records.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE effect (x int)`); err != nil {
		t.Fatal(err)
	}
	if err := Stage(ctx, tx, entry(1)); err != nil {
		t.Fatal(err)
	}
	if err := StageBatch(ctx, tx, []Entry{entry(2), entry(3)}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, tx, `SELECT count(*) FROM audit_pending`); n != 3 {
		t.Fatalf("%d rows staged in the transaction", n)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, pool, `SELECT count(*) FROM audit_pending`); n != 0 {
		t.Fatalf("%d rows left after rollback", n)
	}
	if n, err := w.ChainPending(ctx); n != 0 || err != nil {
		t.Fatalf("ChainPending = %d, %v", n, err)
	}

	// Invalid entries are refused as by Append, and nothing is inserted.
	bad := entry(4)
	bad.Result = ""
	if err := Stage(ctx, pool, bad); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("Stage: err = %v", err)
	}
	if err := StageBatch(ctx, pool, []Entry{entry(5), bad}); !errors.Is(err, ErrInvalidEntry) || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("StageBatch: err = %v", err)
	}
	bad = entry(6)
	bad.Detail = []int{1}
	if err := Stage(ctx, pool, bad); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("Stage: err = %v", err)
	}
	if err := StageBatch(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, pool, `SELECT count(*) FROM audit_pending`); n != 0 {
		t.Fatalf("%d rows after refusals", n)
	}
	if r := mustVerifyOK(t, ctx, pool, keys); r.Entries != 0 || r.Pending != 0 {
		t.Fatalf("report %+v", r)
	}

	// Staged rows may be deleted (by the chainer), not updated or truncated.
	stageTx(t, ctx, pool, entry(7))
	for _, sql := range []string{`UPDATE audit_pending SET actor = 'x'`, `TRUNCATE audit_pending`} {
		_, err := pool.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Fatalf("%s: err = %v, want insufficient_privilege", sql, err)
		}
	}
}

func TestStageAndChain(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1, PendingBatchSize: 4, CheckpointEvery: 5})

	// Times going backwards, defaulted, and with nanoseconds.
	base := time.Date(2026, 11, 27, 8, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	var want []string
	for i := range 10 {
		e := entry(i)
		switch {
		case i < 6:
			e.At = base.Add(-time.Duration(i) * time.Hour)
		case i == 6:
			e.At = time.Time{}
		}
		stageTx(t, ctx, pool, e)
		want = append(want, e.Object)
	}
	batch := []Entry{entry(10), entry(11), entry(12), entry(13), entry(14)}
	stageTx(t, ctx, pool, batch...)
	for _, e := range batch {
		want = append(want, e.Object)
	}
	before := time.Now()

	r := mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != 0 || r.Pending != 15 {
		t.Fatalf("before chaining: %+v", r)
	}
	n, err := w.ChainPending(ctx)
	if err != nil || n != 15 {
		t.Fatalf("ChainPending = %d, %v", n, err)
	}
	if got := objects(t, ctx, pool); !slices.Equal(got, want) {
		t.Fatalf("chain order %v, want %v", got, want)
	}
	r = mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != 15 || r.Pending != 0 {
		t.Fatalf("after chaining: %+v", r)
	}
	// Four transactions of at most PendingBatchSize.
	if txs := count(t, ctx, pool, `SELECT count(DISTINCT xmin::text) FROM audit_entry`); txs != 4 {
		t.Fatalf("%d chaining transactions, want 4", txs)
	}
	// At is kept from staging: UTC, microseconds.
	var at1, at6, at7 time.Time
	if err := pool.QueryRow(ctx, `SELECT (SELECT at FROM audit_entry WHERE seq = 1), (SELECT at FROM audit_entry WHERE seq = 6),
		(SELECT at FROM audit_entry WHERE seq = 7)`).Scan(&at1, &at6, &at7); err != nil {
		t.Fatal(err)
	}
	if !at1.Equal(base.Truncate(time.Microsecond)) || !at6.Equal(base.Add(-5*time.Hour).Truncate(time.Microsecond)) {
		t.Fatalf("at %v, %v", at1, at6)
	}
	if at7.After(before) || before.Sub(at7) > time.Minute {
		t.Fatalf("defaulted at %v (staged before %v)", at7, before)
	}
	// The detail is stored as for Append.
	var detail string
	if err := pool.QueryRow(ctx, `SELECT detail::text FROM audit_entry WHERE seq = 2`).Scan(&detail); err != nil {
		t.Fatal(err)
	}
	if c, err := CanonicalJSON([]byte(detail)); err != nil || string(c) != `{"i":1,"kind":"keyperson.register","ratio":1.25,"tags":["a","b"]}` {
		t.Fatalf("detail %s (%s, %v)", detail, c, err)
	}
	if n, err := w.ChainPending(ctx); n != 0 || err != nil {
		t.Fatalf("ChainPending with nothing staged = %d, %v", n, err)
	}
}

// TestChainOrderIsCommitOrder: a transaction that staged first but commits
// later is chained later.
func TestChainOrderIsCommitOrder(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1})

	slow, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx) //nolint:errcheck
	if err := Stage(ctx, slow, entry(1)); err != nil {
		t.Fatal(err)
	}
	stageTx(t, ctx, pool, entry(2))
	if n, err := w.ChainPending(ctx); n != 1 || err != nil {
		t.Fatalf("ChainPending = %d, %v", n, err)
	}
	if r := mustVerifyOK(t, ctx, pool, keys); r.Pending != 0 || r.Entries != 1 {
		t.Fatalf("report %+v", r)
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := w.ChainPending(ctx); n != 1 || err != nil {
		t.Fatalf("ChainPending = %d, %v", n, err)
	}
	if got, want := objects(t, ctx, pool), []string{entry(2).Object, entry(1).Object}; !slices.Equal(got, want) {
		t.Fatalf("chain order %v, want %v", got, want)
	}
	mustVerifyOK(t, ctx, pool, keys)
}

// TestChainBackground: the loop chains on its poll, on Notify, and at start
// (entries staged while no writer ran, as after a crash).
func TestChainBackground(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	waitChained := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for count(t, ctx, pool, `SELECT count(*) FROM audit_entry`) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d entries not chained", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	stageTx(t, ctx, pool, entry(0), entry(1))
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1})
	waitChained(2) // at start

	stageTx(t, ctx, pool, entry(2))
	time.Sleep(100 * time.Millisecond)
	if n := count(t, ctx, pool, `SELECT count(*) FROM audit_entry`); n != 2 {
		t.Fatalf("chained without poll or Notify: %d entries", n)
	}
	w.Notify()
	waitChained(3)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}

	w = newWriter(t, pool, WriterConfig{Signer: keys.signer, PendingPoll: 10 * time.Millisecond})
	stageTx(t, ctx, pool, entry(3), entry(4))
	waitChained(5)
	if r := mustVerifyOK(t, ctx, pool, keys); r.Pending != 0 || r.Entries != 5 {
		t.Fatalf("report %+v", r)
	}
}

func TestCloseDrainsPending(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1, PendingBatchSize: 8})
	const n = 50
	for i := range n / 5 {
		stageTx(t, ctx, pool, entry(5*i), entry(5*i+1), entry(5*i+2), entry(5*i+3), entry(5*i+4))
	}
	if c := count(t, ctx, pool, `SELECT count(*) FROM audit_entry`); c != 0 {
		t.Fatalf("%d entries chained before Close", c)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != n || r.Pending != 0 || r.LastCheckpoint.Seq != n {
		t.Fatalf("after Close: %+v", r)
	}
	if _, err := w.ChainPending(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("ChainPending after Close: %v", err)
	}
	// Staging needs no writer: the rows wait for the next one.
	stageTx(t, ctx, pool, entry(n))
	if r := mustVerifyOK(t, ctx, pool, keys); r.Pending != 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestMixedAppendAndStage(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1, CheckpointEvery: 3})
	var want []string
	appendOne := func(i int, wantSeq int64) {
		t.Helper()
		seq, err := w.Append(ctx, entry(i))
		if err != nil || seq != wantSeq {
			t.Fatalf("Append = %d, %v; want seq %d", seq, err, wantSeq)
		}
		want = append(want, entry(i).Object)
	}
	appendOne(0, 1)
	stageTx(t, ctx, pool, entry(1), entry(2))
	want = append(want, entry(1).Object, entry(2).Object)
	if n, err := w.ChainPending(ctx); n != 2 || err != nil {
		t.Fatalf("ChainPending = %d, %v", n, err)
	}
	appendOne(3, 4)
	stageTx(t, ctx, pool, entry(4))
	want = append(want, entry(4).Object)
	w.Notify()
	// The Append after a Notify may go before or after the staged entry.
	seq, err := w.Append(ctx, entry(5))
	if err != nil || (seq != 5 && seq != 6) {
		t.Fatalf("Append = %d, %v", seq, err)
	}
	if n, err := w.ChainPending(ctx); err != nil || n > 1 {
		t.Fatalf("ChainPending = %d, %v", n, err)
	}
	want = slices.Insert(want, int(seq-1), entry(5).Object)
	if got := objects(t, ctx, pool); !slices.Equal(got, want) {
		t.Fatalf("chain %v, want %v", got, want)
	}
	if r := mustVerifyOK(t, ctx, pool, keys); r.Entries != 6 || r.Checkpoints < 2 {
		t.Fatalf("report %+v", r)
	}
}

// TestStageTwoWriters: concurrent stagers (with Appends in between) and two
// writers with their own pools, as two hub processes, chaining concurrently:
// one valid chain holding every staged entry exactly once.
func TestStageTwoWriters(t *testing.T) {
	ctx := testContext(t)
	dbURL := storetest.NewDatabase(t)
	keysA, keysB := newKeys(t), newKeys(t)
	keys := &testKeys{known: map[crypto.KeyID]crypto.Verifier{}}
	for _, k := range []*testKeys{keysA, keysB} {
		for id, v := range k.known {
			keys.known[id] = v
		}
	}
	poolA := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	poolB := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	wa := newWriter(t, poolA, WriterConfig{Signer: keysA.signer, CheckpointEvery: 7, PendingBatchSize: 16, PendingPoll: 3 * time.Millisecond})
	wb := newWriter(t, poolB, WriterConfig{Signer: keysB.signer, CheckpointEvery: 5, PendingBatchSize: 16, PendingPoll: 3 * time.Millisecond})

	const goroutines, each = 8, 30
	var (
		wg          sync.WaitGroup
		stop        = make(chan struct{})
		chainedA    atomic.Int64
		chainedB    atomic.Int64
		appended    atomic.Int64
		chainersErr atomic.Value
	)
	// Direct ChainPending calls on both sides, on top of the loops.
	var chainers sync.WaitGroup
	for _, c := range []struct {
		w *Writer
		n *atomic.Int64
	}{{wa, &chainedA}, {wb, &chainedB}} {
		chainers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n, err := c.w.ChainPending(ctx)
				if err != nil {
					chainersErr.Store(err)
					return
				}
				c.n.Add(int64(n))
			}
		})
	}
	for g := range goroutines {
		pool, w := poolA, wa
		if g%2 == 1 {
			pool, w = poolB, wb
		}
		wg.Go(func() {
			for i := range each {
				k := g*each + i
				size := 1 + k%3
				batch := make([]Entry, size)
				for j := range batch {
					batch[j] = entry(10*k + j)
				}
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return StageBatch(ctx, tx, batch) })
				if err != nil {
					t.Error(err)
					return
				}
				if k%4 == 0 {
					w.Notify()
				}
				if k%5 == 0 {
					e := entry(10*k + 9)
					if _, err := w.Append(ctx, e); err != nil {
						t.Error(err)
						return
					}
					appended.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	chainers.Wait()
	if err, _ := chainersErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*Writer{wa, wb} {
		if _, err := w.ChainPending(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Every entry exactly once.
	var staged int64
	for k := range goroutines * each {
		staged += int64(1 + k%3)
	}
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	objs := objects(t, ctx, pool)
	seen := map[string]int{}
	for _, o := range objs {
		seen[o]++
	}
	for o, c := range seen {
		if c != 1 {
			t.Errorf("%s chained %d times", o, c)
		}
	}
	if int64(len(objs)) != staged+appended.Load() || len(seen) != len(objs) {
		t.Fatalf("%d entries (%d distinct), want %d staged + %d appended", len(objs), len(seen), staged, appended.Load())
	}
	r := mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != int64(len(objs)) || r.Pending != 0 {
		t.Fatalf("report %+v", r)
	}
	signers := count(t, ctx, pool, `SELECT count(DISTINCT key_id) FROM audit_checkpoint`)
	txs := count(t, ctx, pool, `SELECT count(DISTINCT xmin::text) FROM audit_entry`)
	t.Logf("%d entries (%d staged, %d appended) in %d transactions; ChainPending chained %d on A, %d on B; %d signing keys",
		r.Entries, staged, appended.Load(), txs, chainedA.Load(), chainedB.Load(), signers)
	if signers != 2 {
		t.Fatalf("the writers did not both write: %d signing keys", signers)
	}
}

// TestInvalidPendingRow: a row inserted into audit_pending directly, breaking
// the entry rules, is chained as a substitute entry.
func TestInvalidPendingRow(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1, Logger: slog.New(slog.DiscardHandler)})
	stageTx(t, ctx, pool, entry(0))
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO audit_pending (at, actor, action, result, correlation_id, detail)
		VALUES (now(), 'x', 'y', 'ok', 'corr-bad', jsonb_build_object('n', 1e1001::numeric)) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	stageTx(t, ctx, pool, entry(2))
	if n, err := w.ChainPending(ctx); n != 3 || err != nil {
		t.Fatalf("ChainPending = %d, %v", n, err)
	}
	var action, object, result, reason, corr string
	if err := pool.QueryRow(ctx, `SELECT action, object, result, reason, correlation_id FROM audit_entry WHERE seq = 2`).
		Scan(&action, &object, &result, &reason, &corr); err != nil {
		t.Fatal(err)
	}
	if action != ActionInvalidPending || object != fmt.Sprintf("audit_pending:%d", id) || result != "error" ||
		!strings.Contains(reason, "out of range") || corr != "corr-bad" {
		t.Fatalf("substitute entry: %s %s %s %q %s", action, object, result, reason, corr)
	}
	if r := mustVerifyOK(t, ctx, pool, keys); r.Entries != 3 || r.Pending != 0 {
		t.Fatalf("report %+v", r)
	}
}

// TestChainFastPathGuard deletes a staged row between the chainer's unlocked
// read and its write: the fast path must not chain the batch with a hole (the
// head would name an entry that is not there); the slow path chains what is
// left.
func TestChainFastPathGuard(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1})
	stageTx(t, ctx, pool, entry(0))
	if n, err := w.ChainPending(ctx); n != 1 || err != nil { // the writer now knows the head
		t.Fatalf("ChainPending = %d, %v", n, err)
	}
	stageTx(t, ctx, pool, entry(1), entry(2), entry(3))
	var once sync.Once
	hook := func() {
		once.Do(func() {
			if _, err := pool.Exec(ctx, `DELETE FROM audit_pending WHERE object = $1`, entry(2).Object); err != nil {
				t.Error(err)
			}
		})
	}
	w.afterPendingRead.Store(&hook)
	if n, err := w.ChainPending(ctx); n != 2 || err != nil {
		t.Fatalf("ChainPending = %d, %v", n, err)
	}
	if got, want := objects(t, ctx, pool), []string{entry(0).Object, entry(1).Object, entry(3).Object}; !slices.Equal(got, want) {
		t.Fatalf("chain %v, want %v", got, want)
	}
	if r := mustVerifyOK(t, ctx, pool, keys); r.Entries != 3 || r.Pending != 0 {
		t.Fatalf("report %+v", r)
	}
}

func TestBeginFunc(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1})
	if _, err := pool.Exec(ctx, `CREATE TABLE effect (x int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	effects := func() int64 { return count(t, ctx, pool, `SELECT count(*) FROM effect`) }
	pending := func() int64 { return count(t, ctx, pool, `SELECT count(*) FROM audit_pending`) }

	// Committed together.
	err := BeginFunc(ctx, pool, func(tx pgx.Tx, st *Staging) error {
		if _, err := tx.Exec(ctx, `INSERT INTO effect VALUES (1)`); err != nil {
			return err
		}
		if err := st.Stage(entry(1)); err != nil {
			return err
		}
		return st.Stage(entry(2), entry(3))
	})
	if err != nil || effects() != 1 || pending() != 3 {
		t.Fatalf("commit: err %v, %d effects, %d pending", err, effects(), pending())
	}
	// Nothing staged: a plain transaction.
	if err := BeginFunc(ctx, pool, func(tx pgx.Tx, st *Staging) error {
		_, err := tx.Exec(ctx, `INSERT INTO effect VALUES (2)`)
		return err
	}); err != nil || effects() != 2 {
		t.Fatalf("no entries: %v", err)
	}

	// Rolled back together: fn fails, an entry is invalid, the effect fails
	// at COMMIT, the staging INSERT fails.
	boom := errors.New("boom")
	bad := entry(9)
	bad.Actor = ""
	if _, err := pool.Exec(ctx, `ALTER TABLE effect ADD CONSTRAINT small CHECK (x < 100) NOT VALID`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE deferred (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		fn   func(tx pgx.Tx, st *Staging) error
		want func(error) bool
	}{
		{"fn fails", func(tx pgx.Tx, st *Staging) error {
			_, _ = tx.Exec(ctx, `INSERT INTO effect VALUES (10)`)
			_ = st.Stage(entry(10))
			return boom
		}, func(err error) bool { return errors.Is(err, boom) }},
		{"invalid entry", func(tx pgx.Tx, st *Staging) error {
			_, _ = tx.Exec(ctx, `INSERT INTO effect VALUES (11)`)
			return st.Stage(entry(11), bad)
		}, func(err error) bool { return errors.Is(err, ErrInvalidEntry) }},
		{"commit fails", func(tx pgx.Tx, st *Staging) error {
			_, _ = tx.Exec(ctx, `INSERT INTO effect VALUES (12); INSERT INTO deferred VALUES (1), (1)`)
			return st.Stage(entry(12))
		}, func(err error) bool {
			var pgErr *pgconn.PgError
			return errors.As(err, &pgErr) && pgErr.Code == "23505"
		}},
		{"stage insert fails", func(tx pgx.Tx, st *Staging) error {
			_, _ = tx.Exec(ctx, `INSERT INTO effect VALUES (13)`)
			if _, err := tx.Exec(ctx, `ALTER TABLE audit_pending ADD CONSTRAINT no CHECK (actor <> 'user001')`); err != nil {
				return err
			}
			return st.Stage(entry(1)) // actor user001
		}, func(err error) bool {
			var pgErr *pgconn.PgError
			return errors.As(err, &pgErr) && pgErr.Code == "23514"
		}},
		{"fn commits", func(tx pgx.Tx, st *Staging) error {
			_, _ = tx.Exec(ctx, `INSERT INTO effect VALUES (14)`)
			_ = st.Stage(entry(14))
			return tx.Commit(ctx)
		}, func(err error) bool { return err != nil && strings.Contains(err.Error(), "fn ended the transaction") }},
		{"fn ignores an error", func(tx pgx.Tx, st *Staging) error {
			_, _ = tx.Exec(ctx, `INSERT INTO effect VALUES (1)`) // duplicate
			return st.Stage(entry(15))
		}, func(err error) bool { return err != nil && strings.Contains(err.Error(), "the transaction failed") }},
	}
	wantEffects := int64(2)
	for _, c := range cases {
		err := BeginFunc(ctx, pool, c.fn)
		if !c.want(err) {
			t.Errorf("%s: err = %v", c.name, err)
		}
		if c.name == "fn commits" {
			wantEffects++ // committed by fn, without its entry
		}
		if effects() != wantEffects || pending() != 3 {
			t.Fatalf("%s: %d effects, %d pending", c.name, effects(), pending())
		}
	}
	// The pool is still sound.
	for range 2 * int(pool.Config().MaxConns) {
		if err := BeginFunc(ctx, pool, func(tx pgx.Tx, st *Staging) error { return st.Stage(entry(20)) }); err != nil {
			t.Fatal(err)
		}
	}
	// QueueStage in a batch of the caller's.
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO effect VALUES (30)`)
	if err := QueueStage(b, entry(30), entry(31)); err != nil {
		t.Fatal(err)
	}
	if err := QueueStage(b, bad); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("QueueStage: %v", err)
	}
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	wantPending := int64(3 + 2*pool.Config().MaxConns + 2)
	if effects() != 4 || pending() != wantPending {
		t.Fatalf("after QueueStage: %d effects, %d pending", effects(), pending())
	}
	if n, err := w.ChainPending(ctx); int64(n) != wantPending || err != nil {
		t.Fatalf("ChainPending = %d, %v", n, err)
	}
	mustVerifyOK(t, ctx, pool, keys)
}

// TestStageManyAndSubstitutesFastPath stages more entries in one call than a
// VALUES list takes, and chains invalid rows through both paths.
func TestStageManyAndSubstitutesFastPath(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newIdleWriter(t, ctx, pool, WriterConfig{Signer: keys.signer, PendingPoll: -1, Logger: slog.New(slog.DiscardHandler)})
	var many []Entry
	for i := range 40 {
		many = append(many, entry(i))
	}
	stageTx(t, ctx, pool, many...)
	for round := range 2 { // slow path (head unknown), then fast path
		if _, err := pool.Exec(ctx, `INSERT INTO audit_pending (at, actor, action, result, unit) VALUES ('10000-01-01', 'x', 'y', 'ok', repeat('u', 20000))`); err != nil {
			t.Fatal(err)
		}
		stageTx(t, ctx, pool, entry(100+round))
		if _, err := w.ChainPending(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != 44 || r.Pending != 0 {
		t.Fatalf("report %+v", r)
	}
	if n := count(t, ctx, pool, `SELECT count(*) FROM audit_entry WHERE action = 'audit.pending.invalid'`); n != 2 {
		t.Fatalf("%d substitutes", n)
	}
	if got := objects(t, ctx, pool)[:40]; !slices.Equal(got, func() (o []string) {
		for _, e := range many {
			o = append(o, e.Object)
		}
		return o
	}()) {
		t.Fatalf("order of a big batch: %v", got)
	}
}
