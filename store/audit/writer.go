package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: writer closed")

// WriterConfig configures a Writer.
type WriterConfig struct {
	// BatchSize is the most entries written in one transaction. Default 256.
	BatchSize int
	// MaxDelay is how long a batch waits for more entries once its first
	// entry is queued, counted from that entry's Append. Entries that queue
	// while the previous batch commits have usually waited that long
	// already, so under load batches are written back to back. Default 2ms;
	// a negative value means no wait.
	MaxDelay time.Duration
	// CheckpointEvery is the most entries between two checkpoints: each
	// checkpoint promises (and signs) that the next one comes at most this
	// many entries later. Default 1000.
	CheckpointEvery int64
	// CheckpointInterval is the most time an entry stays without a
	// checkpoint while the writer runs. Default 1 minute.
	CheckpointInterval time.Duration
	// WriteTimeout bounds one batch transaction. Default 30s.
	WriteTimeout time.Duration
	// Signer signs checkpoints. Required.
	Signer crypto.Signer
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger reports failures that reach no caller (periodic checkpoints).
	// Default slog.Default().
	Logger *slog.Logger
}

func (c *WriterConfig) setDefaults() {
	if c.BatchSize == 0 {
		c.BatchSize = 256
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = 2 * time.Millisecond
	}
	if c.MaxDelay < 0 {
		c.MaxDelay = 0
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 1000
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Minute
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration error. It is called by NewWriter after the
// defaults are applied.
func (c WriterConfig) Validate() error {
	var errs []error
	if c.BatchSize < 1 {
		errs = append(errs, errors.New("BatchSize must be positive"))
	}
	if c.CheckpointEvery < 1 {
		errs = append(errs, errors.New("CheckpointEvery must be positive"))
	}
	if c.CheckpointInterval <= 0 {
		errs = append(errs, errors.New("CheckpointInterval must be positive"))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("WriteTimeout must be positive"))
	}
	if c.Signer == nil {
		errs = append(errs, errors.New("Signer is required"))
	} else if !crypto.ValidKeyID(string(c.Signer.KeyID())) {
		errs = append(errs, fmt.Errorf("Signer has an invalid key id %q", c.Signer.KeyID()))
	}
	if c.Now == nil {
		errs = append(errs, errors.New("Now is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("audit: invalid writer config: %w", err)
	}
	return nil
}

// Writer appends entries to the audit chain with group commit. It is safe for
// concurrent use, and several Writers (in one or several processes) may write
// to the same database: they serialize on the audit_head row.
type Writer struct {
	pool *pgxpool.Pool
	cfg  WriterConfig

	reqs    chan *request
	closing chan struct{}
	stopped chan struct{}

	runCtx    context.Context
	cancelRun context.CancelFunc

	closeOnce sync.Once
	closeErr  error // set by the run loop before stopped closes
}

type request struct {
	entry  prepared
	queued time.Time
	done   chan result // buffered: the loop never blocks on it
}

type result struct {
	seq int64
	err error
}

// NewWriter starts a writer on pool. Close it to flush and stop.
func NewWriter(pool *pgxpool.Pool, cfg WriterConfig) (*Writer, error) {
	if pool == nil {
		return nil, errors.New("audit: nil pool")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		pool:      pool,
		cfg:       cfg,
		reqs:      make(chan *request),
		closing:   make(chan struct{}),
		stopped:   make(chan struct{}),
		runCtx:    ctx,
		cancelRun: cancel,
	}
	go w.run()
	return w, nil
}

// Append adds e to the chain and returns its seq once the batch holding it
// is committed. If the batch fails, Append returns its error (wrapped); the
// entry is then not in the chain unless the failure was in the commit
// acknowledgement itself (a lost connection), which PostgreSQL cannot tell
// apart.
//
// If ctx ends first Append returns ctx's error, but an entry already handed
// to the batch is still written.
func (w *Writer) Append(ctx context.Context, e Entry) (int64, error) {
	p, err := prepare(e, w.cfg.Now)
	if err != nil {
		return 0, err
	}
	req := &request{entry: p, queued: time.Now(), done: make(chan result, 1)}
	select {
	case <-w.closing:
		return 0, ErrClosed
	default:
	}
	select {
	case w.reqs <- req:
	case <-w.closing:
		return 0, ErrClosed
	case <-ctx.Done():
		return 0, fmt.Errorf("audit: append: %w", ctx.Err())
	}
	select {
	case r := <-req.done:
		return r.seq, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("audit: append (the entry may still be written): %w", ctx.Err())
	}
}

// Close stops accepting entries, writes those already queued, seals the chain
// with a final checkpoint if entries are unsealed, and stops. If ctx ends
// first, the batch in progress is abandoned (its Appends fail) and Close
// returns ctx's error. Close may be called more than once.
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() { close(w.closing) })
	select {
	case <-w.stopped:
		return w.closeErr
	case <-ctx.Done():
		w.cancelRun()
		<-w.stopped
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}

func (w *Writer) run() {
	defer close(w.stopped)
	defer w.cancelRun()
	ticker := time.NewTicker(w.cfg.CheckpointInterval)
	defer ticker.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case req := <-w.reqs:
			w.writeBatch(w.collect(req, timer))
		case <-ticker.C:
			// The next batch or tick retries.
			if err := w.checkpoint(false); err != nil {
				w.cfg.Logger.Error("audit: periodic checkpoint failed", slog.Any("error", err))
			}
		case <-w.closing:
			// Appends racing with Close either got in above or see closing.
			for {
				select {
				case req := <-w.reqs:
					w.writeBatch(w.collect(req, timer))
					continue
				default:
				}
				break
			}
			w.closeErr = w.checkpoint(true)
			return
		}
	}
}

// collect gathers a batch starting with first: whatever is queued, then what
// arrives until first has waited MaxDelay or the batch is full.
func (w *Writer) collect(first *request, timer *time.Timer) []*request {
	batch := make([]*request, 1, w.cfg.BatchSize)
	batch[0] = first
	deadline := first.queued.Add(w.cfg.MaxDelay)
	for len(batch) < w.cfg.BatchSize {
		select {
		case req := <-w.reqs:
			batch = append(batch, req)
			continue
		default:
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		timer.Reset(wait)
		select {
		case req := <-w.reqs:
			batch = append(batch, req)
			timer.Stop()
			continue
		case <-timer.C:
		case <-w.closing:
			timer.Stop()
		}
		break
	}
	return batch
}

func (w *Writer) writeBatch(batch []*request) {
	first, err := w.commitBatch(batch)
	for i, req := range batch {
		if err != nil {
			req.done <- result{err: err}
		} else {
			req.done <- result{seq: first + int64(i)}
		}
	}
}

// head is the audit_head row.
type head struct {
	lastSeq       int64
	lastHash      []byte
	checkpointSeq int64
	checkpointAt  *time.Time
	checkpointGap int64
}

const lockHeadSQL = `SELECT last_seq, last_hash, checkpoint_seq, checkpoint_at, checkpoint_gap
FROM audit_head WHERE id FOR UPDATE`

const insertEntriesSQL = `INSERT INTO audit_entry
    (seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail, prev_hash, hash)
SELECT seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail::jsonb, prev_hash, hash
FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[], $13::bytea[])
     AS u(seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail, prev_hash, hash)`

const insertCheckpointsSQL = `INSERT INTO audit_checkpoint (seq, hash, at, key_id, max_gap, signature)
SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::timestamptz[], $4::text[], $5::bigint[], $6::bytea[])`

const updateHeadSQL = `UPDATE audit_head
SET last_seq = $1, last_hash = $2, checkpoint_seq = $3, checkpoint_at = $4, checkpoint_gap = $5
WHERE id`

// checkpoints accumulates the checkpoints of one transaction.
type checkpoints struct {
	seq  []int64
	hash [][]byte
	at   []time.Time
	key  []string
	gap  []int64
	sig  [][]byte
}

func (c *checkpoints) add(w *Writer, h *head, seq int64, hash Hash, at time.Time) error {
	gap := w.cfg.CheckpointEvery
	key := w.cfg.Signer.KeyID()
	sig, err := w.cfg.Signer.Sign(CheckpointText(seq, hash, at, key, gap))
	if err != nil {
		return fmt.Errorf("sign checkpoint %d: %w", seq, err)
	}
	c.seq = append(c.seq, seq)
	c.hash = append(c.hash, hash[:])
	c.at = append(c.at, at)
	c.key = append(c.key, string(key))
	c.gap = append(c.gap, gap)
	c.sig = append(c.sig, sig)
	h.checkpointSeq, h.checkpointAt, h.checkpointGap = seq, &at, gap
	return nil
}

func (c *checkpoints) queue(b *pgx.Batch) {
	if len(c.seq) > 0 {
		b.Queue(insertCheckpointsSQL, c.seq, c.hash, c.at, c.key, c.gap, c.sig)
	}
}

// commitBatch writes batch in one transaction and returns the seq of its
// first entry.
func (w *Writer) commitBatch(batch []*request) (int64, error) {
	ctx, cancel := context.WithTimeout(w.runCtx, w.cfg.WriteTimeout)
	defer cancel()
	var first int64
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		now := canonicalTime(w.cfg.Now())
		n := len(batch)
		var (
			seqs          = make([]int64, n)
			ats           = make([]time.Time, n)
			cols          [8][]string
			details       = make([]string, n)
			prevs, hashes = make([][]byte, n), make([][]byte, n)
			cps           checkpoints
			prev          Hash  = Hash(h.lastHash)
			seq           int64 = h.lastSeq
		)
		for i := range cols {
			cols[i] = make([]string, n)
		}
		first = seq + 1
		for i, req := range batch {
			seq++
			e := &req.entry
			hash := entryHash(prev, seq, e.tail)
			seqs[i], ats[i], details[i] = seq, e.at, e.detail
			for c := range cols {
				cols[c][i] = e.fields[c]
			}
			prevs[i], hashes[i] = append([]byte(nil), prev[:]...), append([]byte(nil), hash[:]...)
			// Keep the promise of the checkpoint in force, and our own.
			if seq-h.checkpointSeq >= min(h.checkpointGap, w.cfg.CheckpointEvery) {
				if err := cps.add(w, &h, seq, hash, now); err != nil {
					return err
				}
			}
			prev = hash
		}
		if h.checkpointSeq < seq && h.checkpointAt != nil && now.Sub(*h.checkpointAt) >= w.cfg.CheckpointInterval {
			if err := cps.add(w, &h, seq, prev, now); err != nil {
				return err
			}
		}
		b := &pgx.Batch{}
		b.Queue(insertEntriesSQL, seqs, ats, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5],
			cols[6], cols[7], details, prevs, hashes)
		cps.queue(b)
		b.Queue(updateHeadSQL, seq, prev[:], h.checkpointSeq, h.checkpointAt, h.checkpointGap)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("audit: write batch of %d: %w", len(batch), err)
	}
	return first, nil
}

// checkpoint seals the end of the chain if it is unsealed and either force is
// set or the last checkpoint is older than CheckpointInterval.
func (w *Writer) checkpoint(force bool) error {
	ctx, cancel := context.WithTimeout(w.runCtx, w.cfg.WriteTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		now := canonicalTime(w.cfg.Now())
		if h.lastSeq == h.checkpointSeq ||
			!force && h.checkpointAt != nil && now.Sub(*h.checkpointAt) < w.cfg.CheckpointInterval {
			return nil
		}
		var cps checkpoints
		if err := cps.add(w, &h, h.lastSeq, Hash(h.lastHash), now); err != nil {
			return err
		}
		b := &pgx.Batch{}
		cps.queue(b)
		b.Queue(updateHeadSQL, h.lastSeq, h.lastHash, h.checkpointSeq, h.checkpointAt, h.checkpointGap)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("audit: checkpoint: %w", err)
	}
	return nil
}

func lockHead(ctx context.Context, tx pgx.Tx) (head, error) {
	var h head
	err := tx.QueryRow(ctx, lockHeadSQL).Scan(&h.lastSeq, &h.lastHash, &h.checkpointSeq, &h.checkpointAt, &h.checkpointGap)
	if err != nil {
		return h, fmt.Errorf("lock audit_head: %w", err)
	}
	if len(h.lastHash) != HashSize {
		return h, fmt.Errorf("audit_head: last_hash has %d bytes", len(h.lastHash))
	}
	return h, nil
}
