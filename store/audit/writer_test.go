package audit

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"zhianhub/crypto"
	"zhianhub/store"
	"zhianhub/store/storetest"
)

func TestWriterConfig(t *testing.T) {
	keys := newKeys(t)
	tests := []struct {
		name    string
		cfg     WriterConfig
		wantErr string
	}{
		{name: "defaults", cfg: WriterConfig{Signer: keys.signer}},
		{name: "no signer", cfg: WriterConfig{}, wantErr: "Signer is required"},
		{name: "negative batch", cfg: WriterConfig{Signer: keys.signer, BatchSize: -1}, wantErr: "BatchSize"},
		{name: "negative every", cfg: WriterConfig{Signer: keys.signer, CheckpointEvery: -1}, wantErr: "CheckpointEvery"},
		{name: "negative interval", cfg: WriterConfig{Signer: keys.signer, CheckpointInterval: -time.Second}, wantErr: "CheckpointInterval"},
		{name: "negative pending batch", cfg: WriterConfig{Signer: keys.signer, PendingBatchSize: -1}, wantErr: "PendingBatchSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.setDefaults()
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.BatchSize != 256 || cfg.MaxDelay != 2*time.Millisecond || cfg.CheckpointEvery != 1000 ||
					cfg.CheckpointInterval != time.Minute || cfg.Now == nil ||
					cfg.PendingBatchSize != 1024 || cfg.PendingPoll != 200*time.Millisecond {
					t.Fatalf("defaults: %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestAppendAndVerify(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newWriter(t, pool, WriterConfig{Signer: keys.signer, CheckpointEvery: 4})

	// An empty chain verifies.
	if r := mustVerifyOK(t, ctx, pool, keys); r.Entries != 0 || r.LastCheckpoint != nil {
		t.Fatalf("empty chain: %+v", r)
	}
	at := time.Date(2026, 11, 27, 8, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	for i := 1; i <= 10; i++ {
		e := entry(i)
		if i == 3 {
			e.At = at
		}
		seq, err := w.Append(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if seq != int64(i) {
			t.Fatalf("append %d got seq %d", i, seq)
		}
	}
	r := mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != 10 || r.LastSeq != 10 {
		t.Fatalf("report %+v", r)
	}
	// Checkpoints at 1 (the first entry always), then every 4.
	var cps []int64
	rows, _ := pool.Query(ctx, `SELECT seq FROM audit_checkpoint ORDER BY seq`)
	for rows.Next() {
		var s int64
		_ = rows.Scan(&s)
		cps = append(cps, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cps, []int64{1, 5, 9}) || r.Checkpoints != 3 || r.LastCheckpoint.Seq != 9 {
		t.Fatalf("checkpoints at %v, report %+v", cps, r)
	}
	// The time is stored in UTC, truncated to microseconds.
	var got time.Time
	if err := pool.QueryRow(ctx, `SELECT at FROM audit_entry WHERE seq = 3`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := at.Truncate(time.Microsecond); !got.Equal(want) {
		t.Fatalf("at = %v, want %v", got, want)
	}
	// The checkpoint signature is over the documented text.
	var (
		hash, sig []byte
		cpAt      time.Time
		keyID     string
		gap       int64
	)
	if err := pool.QueryRow(ctx, `SELECT hash, at, key_id, max_gap, signature FROM audit_checkpoint WHERE seq = 5`).
		Scan(&hash, &cpAt, &keyID, &gap, &sig); err != nil {
		t.Fatal(err)
	}
	text := string(CheckpointText(5, Hash(hash), cpAt, crypto.KeyID(keyID), gap))
	wantPrefix := "zhianhub-audit-checkpoint/v1\n5\n"
	if !strings.HasPrefix(text, wantPrefix) || strings.Count(text, "\n") != 5 || !strings.HasSuffix(text, "\n"+keyID+"\n4") {
		t.Fatalf("checkpoint text %q", text)
	}
	if err := keys.signer.Public().Verify([]byte(text), sig); err != nil {
		t.Fatal(err)
	}

	// Close seals the tail.
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if r := mustVerifyOK(t, ctx, pool, keys); r.LastCheckpoint.Seq != 10 {
		t.Fatalf("after Close the last checkpoint is %d, want 10", r.LastCheckpoint.Seq)
	}
	if _, err := w.Append(ctx, entry(11)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConcurrentAppend(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newWriter(t, pool, WriterConfig{Signer: keys.signer, CheckpointEvery: 50, BatchSize: 32})

	const goroutines, each = 40, 25
	seqs := make(chan int64, goroutines*each)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				seq, err := w.Append(ctx, entry(g*each+i))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	var got []int64
	for s := range seqs {
		got = append(got, s)
	}
	slices.Sort(got)
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("seqs not contiguous: position %d has %d", i, s)
		}
	}
	if len(got) != goroutines*each {
		t.Fatalf("%d seqs", len(got))
	}
	r := mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != goroutines*each {
		t.Fatalf("verified %d entries", r.Entries)
	}
	var batches int
	if err := pool.QueryRow(ctx, `SELECT count(DISTINCT xmin::text) FROM audit_entry`).Scan(&batches); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries in %d transactions, %d checkpoints", r.Entries, batches, r.Checkpoints)
}

// TestTwoWriters runs two writers with their own pools, as two hub processes
// would, on one database: their batches interleave in one valid chain.
func TestTwoWriters(t *testing.T) {
	ctx := testContext(t)
	dbURL := storetest.NewDatabase(t)
	keysA, keysB := newKeys(t), newKeys(t)
	keys := &testKeys{known: map[crypto.KeyID]crypto.Verifier{}}
	for _, k := range []*testKeys{keysA, keysB} {
		for id, v := range k.known {
			keys.known[id] = v
		}
	}
	wa := newWriter(t, storetest.OpenPool(t, dbURL, store.PoolConfig{}), WriterConfig{Signer: keysA.signer, CheckpointEvery: 30, BatchSize: 16})
	wb := newWriter(t, storetest.OpenPool(t, dbURL, store.PoolConfig{}), WriterConfig{Signer: keysB.signer, CheckpointEvery: 7, BatchSize: 16})

	const goroutines, each = 8, 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	owner := map[int64]string{}
	for g := range goroutines {
		w, name := wa, "a"
		if g%2 == 1 {
			w, name = wb, "b"
		}
		wg.Go(func() {
			for i := range each {
				seq, err := w.Append(ctx, entry(g*each+i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if prev, dup := owner[seq]; dup {
					t.Errorf("seq %d given to %s and %s", seq, prev, name)
				}
				owner[seq] = name
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(owner) != goroutines*each {
		t.Fatalf("%d seqs", len(owner))
	}
	// Both writers' batches ended up interleaved.
	switches := 0
	for s := int64(2); s <= int64(len(owner)); s++ {
		if owner[s] != owner[s-1] {
			switches++
		}
	}
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	r := mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != int64(len(owner)) {
		t.Fatalf("verified %d of %d", r.Entries, len(owner))
	}
	var signers int
	if err := pool.QueryRow(ctx, `SELECT count(DISTINCT key_id) FROM audit_checkpoint`).Scan(&signers); err != nil {
		t.Fatal(err)
	}
	if switches == 0 || signers != 2 {
		t.Fatalf("writers did not interleave: %d switches, %d signing keys", switches, signers)
	}
	t.Logf("%d entries, %d writer switches, %d checkpoints", r.Entries, switches, r.Checkpoints)
}

// TestCloseFlushes queues entries behind a long MaxDelay and checks that Close
// writes them at once.
func TestCloseFlushes(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newWriter(t, pool, WriterConfig{Signer: keys.signer, MaxDelay: time.Hour})

	const n = 20
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range n {
		wg.Go(func() {
			if _, err := w.Append(ctx, entry(i)); err != nil {
				t.Error(err)
				return
			}
			ok.Add(1)
		})
	}
	// Wait until all entries sit in the open batch, waiting for MaxDelay.
	deadline := time.Now().Add(30 * time.Second)
	for {
		w.mu.Lock()
		queued := 0
		if w.open != nil {
			queued = len(w.open.entries)
		}
		w.mu.Unlock()
		if queued == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entries queued", queued, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var count int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 0 {
		t.Fatalf("%d entries written before Close: MaxDelay not honoured", count)
	}
	start := time.Now()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if ok.Load() != n {
		t.Fatalf("%d of %d Appends succeeded", ok.Load(), n)
	}
	r := mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != n || r.LastCheckpoint.Seq != n {
		t.Fatalf("report %+v", r)
	}
}

// TestFailedBatch makes the database refuse a batch: every Append of it gets
// the error, nothing is written, and the writer goes on afterwards.
func TestFailedBatch(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newWriter(t, pool, WriterConfig{Signer: keys.signer, MaxDelay: 200 * time.Millisecond})
	if _, err := w.Append(ctx, entry(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'P0001'; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON audit_entry FOR EACH ROW EXECUTE FUNCTION refuse();`); err != nil {
		t.Fatal(err)
	}
	const n = 5
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = w.Append(ctx, entry(i+1)) })
	}
	wg.Wait()
	for i, err := range errs {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "P0001" || !strings.Contains(err.Error(), "audit: write batch") {
			t.Errorf("append %d: err = %v", i, err)
		}
	}
	if _, err := pool.Exec(ctx, `DROP TRIGGER refuse ON audit_entry`); err != nil {
		t.Fatal(err)
	}
	seq, err := w.Append(ctx, entry(9))
	if err != nil || seq != 2 {
		t.Fatalf("after the failure: seq %d, err %v", seq, err)
	}
	mustVerifyOK(t, ctx, pool, keys)
}

// TestCheckpointInterval checks the time-based checkpoints: a batch seals
// itself when the last checkpoint is older than CheckpointInterval, and an
// idle writer seals the tail on its tick.
func TestCheckpointInterval(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	lastCheckpoint := func() int64 {
		var s int64
		if err := pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM audit_checkpoint`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	// The real ticker (an hour) never fires here: only the fake clock moves.
	w := newWriter(t, pool, WriterConfig{Signer: keys.signer, CheckpointInterval: time.Hour, Now: now})
	steps := []struct {
		name    string
		advance time.Duration
		appends int
		want    int64
	}{
		{name: "first entry is sealed", appends: 1, want: 1},
		{name: "within the interval", advance: 30 * time.Minute, appends: 2, want: 1},
		{name: "due in the batch", advance: 40 * time.Minute, appends: 1, want: 4},
		{name: "unsealed tail", advance: time.Minute, appends: 2, want: 4},
	}
	for _, s := range steps {
		clock.Add(int64(s.advance))
		for i := range s.appends {
			if _, err := w.Append(ctx, entry(i)); err != nil {
				t.Fatal(err)
			}
		}
		if got := lastCheckpoint(); got != s.want {
			t.Fatalf("%s: last checkpoint %d, want %d", s.name, got, s.want)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lastCheckpoint(); got != 6 {
		t.Fatalf("after Close: last checkpoint %d, want 6", got)
	}

	// An idle writer with a short interval seals the tail on its tick.
	w = newWriter(t, pool, WriterConfig{Signer: keys.signer, CheckpointInterval: 50 * time.Millisecond, Now: now})
	if _, err := w.Append(ctx, entry(7)); err != nil {
		t.Fatal(err)
	}
	if got := lastCheckpoint(); got != 6 {
		t.Fatalf("before the tick: last checkpoint %d, want 6", got)
	}
	clock.Add(int64(time.Second))
	deadline := time.Now().Add(10 * time.Second)
	for lastCheckpoint() != 7 {
		if time.Now().After(deadline) {
			t.Fatal("the idle tick did not seal entry 7")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustVerifyOK(t, ctx, pool, keys)
}

// TestAppendOnly checks the triggers: no UPDATE, DELETE or TRUNCATE of the
// audit tables and no moving the head back, unless zhianhub.audit_archive is on.
func TestAppendOnly(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newWriter(t, pool, WriterConfig{Signer: keys.signer})
	for i := range 3 {
		if _, err := w.Append(ctx, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []string{
		`UPDATE audit_entry SET actor = 'x' WHERE seq = 2`,
		`DELETE FROM audit_entry WHERE seq = 3`,
		`TRUNCATE audit_entry`,
		`UPDATE audit_checkpoint SET at = now()`,
		`DELETE FROM audit_checkpoint`,
		`TRUNCATE audit_checkpoint`,
		`UPDATE audit_head SET last_seq = 1`,
		`DELETE FROM audit_head`,
	}
	for _, sql := range tests {
		t.Run(sql, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			_, err = tx.Exec(ctx, sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Fatalf("err = %v, want insufficient_privilege", err)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			tx, err = pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			if _, err := tx.Exec(ctx, `SET LOCAL zhianhub.audit_archive = 'on'`); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, sql); err != nil {
				t.Fatalf("with zhianhub.audit_archive on: %v", err)
			}
		})
	}
	mustVerifyOK(t, ctx, pool, keys)
}

// TestVerifyBigChain streams a chain larger than one batch many times over.
func TestVerifyBigChain(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newWriter(t, pool, WriterConfig{Signer: keys.signer, MaxDelay: 20 * time.Millisecond})
	const n = 5000
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Go(func() {
			for i := range n / 50 {
				if _, err := w.Append(ctx, entry(g*1000+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := mustVerifyOK(t, ctx, pool, keys)
	if r.Entries != n || r.Checkpoints < n/1000 {
		t.Fatalf("report %+v", r)
	}
}
