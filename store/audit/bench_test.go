package audit_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/journal"
	"zhianhub/store/storetest"
)

// benchGoroutines is the number of concurrent message handlers; override
// with ZHIANHUB_BENCH_GOROUTINES.
var benchGoroutines = func() int {
	if n, err := strconv.Atoi(os.Getenv("ZHIANHUB_BENCH_GOROUTINES")); err == nil && n > 0 {
		return n
	}
	return 8
}()

// auditMode says how a handler audits the three hops of a message.
type auditMode int

const (
	auditOff auditMode = iota
	// auditAfterCommit: after the journal transaction commits, the three hop
	// entries are appended concurrently and awaited before the message is
	// done (before it would be acknowledged).
	auditAfterCommit
	// auditSequential: each hop is appended and awaited in turn after commit.
	auditSequential
)

// BenchmarkJournalAudit measures journal throughput (Record + 2 Transitions
// in one transaction per message, 8 handlers in parallel) without and with
// each hop also appended to the audit chain (group commit, each Append a
// real committed round trip, awaited), and prints the overhead.
func BenchmarkJournalAudit(b *testing.B) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(b)
	pool := storetest.OpenPool(b, dbURL, store.PoolConfig{MaxConns: int32(2 * benchGoroutines)})
	j := journal.New(pool)
	signer, err := crypto.GenerateSM2()
	if err != nil {
		b.Fatal(err)
	}
	w, err := audit.NewWriter(pool, audit.WriterConfig{Signer: signer})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close(ctx) //nolint:errcheck

	raw := make([]byte, 2048) // a typical sealed envelope
	_, _ = rand.Read(raw)

	rates := map[auditMode]float64{}
	for _, m := range []struct {
		name string
		mode auditMode
	}{
		{"audit=off", auditOff},
		{"audit=on", auditAfterCommit},
		{"audit=on-sequential", auditSequential},
	} {
		b.Run(m.name, func(b *testing.B) {
			rates[m.mode] = runJournal(b, pool, j, w, m.mode, raw)
		})
	}
	off, on, seq := rates[auditOff], rates[auditAfterCommit], rates[auditSequential]
	if off > 0 && on > 0 {
		fmt.Printf("journal+audit: off %.0f msg/s, on %.0f msg/s, audit overhead %.1f%% (target < 20%%); "+
			"hops appended one after the other: %.0f msg/s, overhead %.1f%%\n",
			off, on, 100*(1-on/off), seq, 100*(1-seq/off))
	}
	r, err := audit.Verify(ctx, pool, func(id crypto.KeyID) (crypto.Verifier, bool) {
		return signer.Public(), id == signer.KeyID()
	})
	if err != nil || !r.OK {
		b.Fatalf("chain after the benchmark: %+v %v", r, err)
	}
}

func runJournal(b *testing.B, pool *pgxpool.Pool, j *journal.Journal, w *audit.Writer, mode auditMode, raw []byte) float64 {
	ctx := context.Background()
	b.SetParallelism((benchGoroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := handle(ctx, pool, j, w, mode, raw); err != nil {
				b.Error(err)
				return
			}
		}
	})
	rate := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(rate, "msgs/s")
	return rate
}

var hops = [3]journal.State{journal.StateReceived, journal.StateOpened, journal.StateApplied}

// handle journals one inbound message through three hops.
func handle(ctx context.Context, pool *pgxpool.Pool, j *journal.Journal, w *audit.Writer, mode auditMode, raw []byte) error {
	id := uuid.Must(uuid.NewV7())
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := j.Record(ctx, tx, journal.Message{ID: id, Direction: journal.In, Kind: "keyperson.register",
		Peer: "100000000000", Raw: raw, State: journal.StateReceived}); err != nil {
		return err
	}
	if err := j.Transition(ctx, tx, id, journal.In, journal.StateOpened, "", ""); err != nil {
		return err
	}
	if err := j.Transition(ctx, tx, id, journal.In, journal.StateApplied, "0000", ""); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	hop := func(i int) audit.Entry {
		return audit.Entry{Actor: "100000000000", Unit: "310000000000", Role: "node", Action: "message." + string(hops[i]),
			Object: id.String(), Result: "ok", CorrelationID: id.String(), Detail: map[string]any{"kind": "keyperson.register"}}
	}
	switch mode {
	case auditSequential:
		for i := range hops {
			if _, err := w.Append(ctx, hop(i)); err != nil {
				return err
			}
		}
	case auditAfterCommit:
		var wg sync.WaitGroup
		var errs [3]error
		for i := range hops {
			wg.Go(func() { _, errs[i] = w.Append(ctx, hop(i)) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
	}
	return nil
}
