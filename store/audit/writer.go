package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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
	// MaxDelay is how long a batch waits for more entries, counted from its
	// first entry's Append. A batch that fills up, or that has waited while
	// the previous one committed, is written at once, so under load batches
	// go back to back. Default 2ms; negative means no wait.
	MaxDelay time.Duration
	// CheckpointEvery is the most entries between two checkpoints: each
	// checkpoint promises (and signs) that the next one comes at most this
	// many entries later. Default 1000.
	CheckpointEvery int64
	// CheckpointInterval bounds the time an entry stays without a
	// checkpoint: a batch written when the last checkpoint is older seals
	// itself, and an idle writer checks every CheckpointInterval, so while
	// the writer runs no entry waits more than twice this. Default 1 minute.
	CheckpointInterval time.Duration
	// WriteTimeout bounds one batch transaction. Default 30s.
	WriteTimeout time.Duration
	// PendingBatchSize is the most staged entries (see Stage) chained in
	// one transaction. Default 1024.
	PendingBatchSize int
	// PendingPoll is how often the chainer looks for staged entries; Notify
	// and ChainPending make it look at once. Default 200ms; negative means
	// no polling (only Notify, ChainPending, NewWriter and Close chain).
	PendingPoll time.Duration
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
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 1000
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Minute
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.PendingBatchSize == 0 {
		c.PendingBatchSize = 1024
	}
	if c.PendingPoll == 0 {
		c.PendingPoll = 200 * time.Millisecond
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
	if c.PendingBatchSize < 1 {
		errs = append(errs, errors.New("PendingBatchSize must be positive"))
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

// Writer appends entries to the audit chain with group commit, and chains the
// entries staged with Stage. It is safe for concurrent use, and several
// Writers (in one or several processes) may write to the same database: they
// serialize on the audit_head row.
//
// Appends join the open batch; one goroutine takes batches in order and
// writes each in one transaction, then releases all the batch's Appends at
// once. While it writes, the next batch fills up. A batch costs one round
// trip and one commit when this writer wrote the previous one (see
// commitBatch), four otherwise.
//
// The same goroutine is the chainer: every PendingPoll, on Notify, on
// ChainPending, when started (entries staged before a crash) and at Close,
// it moves staged entries from audit_pending into the chain, up to
// PendingBatchSize per transaction, in pending id order (chainPending).
// Append batches go first when both are due.
type Writer struct {
	pool *pgxpool.Pool
	cfg  WriterConfig

	mu     sync.Mutex
	open   *batch   // the batch Appends join, nil if none
	full   []*batch // batches that reached BatchSize, oldest first
	closed bool

	wake   chan struct{} // cap 1: a batch was opened or filled
	notify chan struct{} // cap 1: entries were staged (Notify)

	chainReq chan *chainRequest // ChainPending calls
	closing  chan struct{}      // closed by Close
	stopped  chan struct{}      // closed when the run loop ends

	runCtx    context.Context
	cancelRun context.CancelFunc

	closeOnce sync.Once
	closeErr  error // set by the run loop before stopped closes

	// head is the head as this writer left it, nil when unknown. Only the
	// run loop uses it.
	head *head
	// afterPendingRead, when set, runs between the chainer's unlocked read
	// and its write (tests).
	afterPendingRead atomic.Pointer[func()]
}

// batch is a group of entries written in one transaction.
type batch struct {
	entries []prepared
	opened  time.Time     // when its first entry was appended
	done    chan struct{} // closed when first and err are set
	first   int64
	err     error
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
		wake:      make(chan struct{}, 1),
		notify:    make(chan struct{}, 1),
		chainReq:  make(chan *chainRequest),
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
// If ctx ends first Append returns ctx's error, but an entry already queued
// is still written.
func (w *Writer) Append(ctx context.Context, e Entry) (int64, error) {
	p, err := prepare(e, w.cfg.Now)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("audit: append: %w", err)
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return 0, ErrClosed
	}
	b := w.open
	if b == nil {
		b = &batch{entries: make([]prepared, 0, min(w.cfg.BatchSize, 64)), opened: time.Now(), done: make(chan struct{})}
		w.open = b
		w.signal()
	}
	i := int64(len(b.entries))
	b.entries = append(b.entries, p)
	if len(b.entries) >= w.cfg.BatchSize {
		w.full = append(w.full, b)
		w.open = nil
		w.signal()
	}
	w.mu.Unlock()

	select {
	case <-b.done:
		if b.err != nil {
			return 0, b.err
		}
		return b.first + i, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("audit: append (the entry may still be written): %w", ctx.Err())
	}
}

// signal wakes the run loop; w.mu is held.
func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Close stops accepting entries, writes those already queued, chains the
// staged entries (until a batch of them comes out short: entries staged by
// transactions that commit during Close may be left for the next Writer),
// seals the chain with a final checkpoint if entries are unsealed, and stops.
// If ctx ends first, the batch in progress is abandoned (its Appends fail)
// and Close returns ctx's error. Close may be called more than once.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
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
	var poll <-chan time.Time
	if w.cfg.PendingPoll > 0 {
		t := time.NewTicker(w.cfg.PendingPoll)
		defer t.Stop()
		poll = t.C
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var (
		closing    bool
		pendingDue = true // entries staged while no writer ran
		reqs       []*chainRequest
	)
	for {
		b, wait := w.next(closing)
		if b != nil {
			w.write(b)
			continue
		}
		if closing {
			// No Append can queue any more, and the queue is empty.
			break
		}
		if pendingDue || len(reqs) > 0 {
			n, err := w.chainPending()
			if err != nil {
				w.cfg.Logger.Error("audit: chaining staged entries failed", slog.Any("error", err))
			}
			// Go on while batches come out full, Appends first.
			pendingDue = err == nil && n >= w.cfg.PendingBatchSize
			for _, r := range reqs {
				r.n += n
				if !pendingDue {
					r.reply <- chainResult{r.n, err}
				}
			}
			if !pendingDue {
				reqs = reqs[:0]
			}
			continue
		}
		var timeout <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			timeout = timer.C
		}
		select {
		case <-w.wake:
		case <-timeout:
		case <-ticker.C:
			// On failure the next batch or tick tries again.
			if err := w.checkpoint(false); err != nil {
				w.cfg.Logger.Error("audit: periodic checkpoint failed", slog.Any("error", err))
			}
		case <-poll:
			pendingDue = true
		case <-w.notify:
			pendingDue = true
		case r := <-w.chainReq:
			reqs = append(reqs, r)
		case <-w.closing:
			closing = true
		}
		timer.Stop()
	}
	// Drain the staged entries, then seal.
	var drained int
	var drainErr error
	for {
		n, err := w.chainPending()
		drained += n
		if err != nil {
			drainErr = fmt.Errorf("audit: close: chain staged entries: %w", err)
			break
		}
		if n < w.cfg.PendingBatchSize {
			break
		}
	}
	for _, r := range reqs {
		r.reply <- chainResult{r.n + drained, drainErr}
	}
	w.closeErr = errors.Join(drainErr, w.checkpoint(true))
}

// next returns the batch to write now, if any; otherwise how long until the
// open batch is due (0: nothing is open).
func (w *Writer) next(closing bool) (*batch, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.full) > 0 {
		b := w.full[0]
		w.full[0] = nil
		w.full = w.full[1:]
		return b, 0
	}
	if w.open == nil {
		return nil, 0
	}
	wait := time.Until(w.open.opened.Add(w.cfg.MaxDelay))
	if closing || wait <= 0 {
		b := w.open
		w.open = nil
		return b, 0
	}
	return nil, wait
}

func (w *Writer) write(b *batch) {
	b.first, b.err = w.commitBatch(b.entries)
	close(b.done)
}

// head is the audit_head row.
type head struct {
	lastSeq       int64
	lastHash      Hash
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

// appendSQL is the fast path: one statement (one round trip, one implicit
// transaction) that moves the head from the state this writer last saw to
// the new end, and inserts the batch and its checkpoints only if the head
// moved. The UPDATE takes the head's row lock like SELECT ... FOR UPDATE
// does; a writer that waited for it re-checks the condition against the
// committed row (read committed), so a head moved by another writer makes the
// statement change nothing.
const appendSQL = `WITH head AS (
    UPDATE audit_head
    SET last_seq = $14, last_hash = $15, checkpoint_seq = $16, checkpoint_at = $17, checkpoint_gap = $18
    WHERE id AND last_seq = $19 AND last_hash = $20 AND checkpoint_seq = $21
    RETURNING last_seq
), entries AS (
    INSERT INTO audit_entry
        (seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail, prev_hash, hash)
    SELECT seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail::jsonb, prev_hash, hash
    FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[], $13::bytea[])
         AS u(seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail, prev_hash, hash)
    WHERE EXISTS (SELECT FROM head)
), checkpoints AS (
    INSERT INTO audit_checkpoint (seq, hash, at, key_id, max_gap, signature)
    SELECT * FROM unnest($22::bigint[], $23::bytea[], $24::timestamptz[], $25::text[], $26::bigint[], $27::bytea[])
    WHERE EXISTS (SELECT FROM head)
)
SELECT count(*) FROM head`

// chained is a batch with its place in the chain computed.
type chained struct {
	first   int64
	seqs    []int64
	ats     []time.Time
	cols    [8][]string
	details []string
	prevs   [][]byte
	hashes  [][]byte
	cps     checkpoints
	head    head // after the batch
}

func (c *chained) entryArgs() []any {
	return []any{c.seqs, c.ats, c.cols[0], c.cols[1], c.cols[2], c.cols[3], c.cols[4], c.cols[5],
		c.cols[6], c.cols[7], c.details, c.prevs, c.hashes}
}

func (h *head) args() []any {
	return []any{h.lastSeq, h.lastHash[:], h.checkpointSeq, h.checkpointAt, h.checkpointGap}
}

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

func (c *checkpoints) args() []any {
	return []any{c.seq, c.hash, c.at, c.key, c.gap, c.sig}
}

// chain places batch after h: it assigns seqs, computes hashes and signs the
// checkpoints that are due.
func (w *Writer) chain(h head, batch []prepared) (*chained, error) {
	now := canonicalTime(w.cfg.Now())
	n := len(batch)
	c := &chained{
		first:   h.lastSeq + 1,
		seqs:    make([]int64, n),
		ats:     make([]time.Time, n),
		details: make([]string, n),
		prevs:   make([][]byte, n),
		hashes:  make([][]byte, n),
	}
	for i := range c.cols {
		c.cols[i] = make([]string, n)
	}
	hashes := make([]byte, 2*HashSize*n) // one allocation for all prev and hash values
	prev, seq := h.lastHash, h.lastSeq
	for i := range batch {
		seq++
		e := &batch[i]
		hash := entryHash(prev, seq, e.tail)
		c.seqs[i], c.ats[i], c.details[i] = seq, e.at, e.detail
		for k := range c.cols {
			c.cols[k][i] = e.fields[k]
		}
		c.prevs[i] = append(hashes[2*HashSize*i:2*HashSize*i:2*HashSize*i+HashSize], prev[:]...)
		c.hashes[i] = append(hashes[2*HashSize*i+HashSize:2*HashSize*i+HashSize:2*HashSize*(i+1)], hash[:]...)
		// Keep the promise of the checkpoint in force, and our own.
		if seq-h.checkpointSeq >= min(h.checkpointGap, w.cfg.CheckpointEvery) {
			if err := c.cps.add(w, &h, seq, hash, now); err != nil {
				return nil, err
			}
		}
		prev = hash
	}
	if h.checkpointSeq < seq && h.checkpointAt != nil && now.Sub(*h.checkpointAt) >= w.cfg.CheckpointInterval {
		if err := c.cps.add(w, &h, seq, prev, now); err != nil {
			return nil, err
		}
	}
	h.lastSeq, h.lastHash = seq, prev
	c.head = h
	return c, nil
}

// commitBatch writes batch in one transaction and returns the seq of its
// first entry.
//
// When the writer knows the head (it wrote the last batch and nobody wrote
// since) it takes the fast path, appendSQL. Otherwise, or when the fast path
// finds the head moved, it locks the head (SELECT ... FOR UPDATE), reads it
// and writes the batch in that transaction. Either way one transaction holds
// the head's row lock while it extends the chain, which serializes writers in
// any number of processes.
func (w *Writer) commitBatch(batch []prepared) (int64, error) {
	ctx, cancel := context.WithTimeout(w.runCtx, w.cfg.WriteTimeout)
	defer cancel()
	known := w.head
	w.head = nil // unknown until this batch is committed
	if known != nil {
		c, err := w.chain(*known, batch)
		if err != nil {
			return 0, fmt.Errorf("audit: write batch of %d: %w", len(batch), err)
		}
		args := append(c.entryArgs(), c.head.args()...)
		args = append(args, known.lastSeq, known.lastHash[:], known.checkpointSeq)
		args = append(args, c.cps.args()...)
		var moved int
		if err := w.pool.QueryRow(ctx, appendSQL, args...).Scan(&moved); err != nil {
			return 0, fmt.Errorf("audit: write batch of %d: %w", len(batch), err)
		}
		if moved == 1 {
			w.head = &c.head
			return c.first, nil
		}
		// Another writer moved the head: take the lock.
	}
	var c *chained
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		if c, err = w.chain(h, batch); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(insertEntriesSQL, c.entryArgs()...)
		if len(c.cps.seq) > 0 {
			b.Queue(insertCheckpointsSQL, c.cps.args()...)
		}
		b.Queue(updateHeadSQL, c.head.args()...)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("audit: write batch of %d: %w", len(batch), err)
	}
	w.head = &c.head
	return c.first, nil
}

// checkpoint seals the end of the chain if it is unsealed and either force is
// set or the last checkpoint is older than CheckpointInterval.
func (w *Writer) checkpoint(force bool) error {
	ctx, cancel := context.WithTimeout(w.runCtx, w.cfg.WriteTimeout)
	defer cancel()
	w.head = nil
	var after head
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		after = h
		now := canonicalTime(w.cfg.Now())
		if h.lastSeq == h.checkpointSeq ||
			!force && h.checkpointAt != nil && now.Sub(*h.checkpointAt) < w.cfg.CheckpointInterval {
			return nil
		}
		var cps checkpoints
		if err := cps.add(w, &h, h.lastSeq, h.lastHash, now); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(insertCheckpointsSQL, cps.args()...)
		b.Queue(updateHeadSQL, h.args()...)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		after = h
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: checkpoint: %w", err)
	}
	w.head = &after
	return nil
}

func lockHead(ctx context.Context, tx pgx.Tx) (head, error) {
	return scanHead(tx.QueryRow(ctx, lockHeadSQL))
}

// scanHead scans the result of lockHeadSQL.
func scanHead(row pgx.Row) (head, error) {
	var (
		h    head
		hash []byte
	)
	err := row.Scan(&h.lastSeq, &hash, &h.checkpointSeq, &h.checkpointAt, &h.checkpointGap)
	if err != nil {
		return h, fmt.Errorf("lock audit_head: %w", err)
	}
	if len(hash) != HashSize {
		return h, fmt.Errorf("audit_head: last_hash has %d bytes", len(hash))
	}
	h.lastHash = Hash(hash)
	return h, nil
}
