package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/store"
)

// Staged auditing: see the package documentation.

// stageValuesMax is the most entries staged with a multi-row VALUES (one
// prepared statement per count, cheaper than arrays for both sides); more go
// through unnest (stageArraySQL).
const stageValuesMax = 16

// stageValuesSQL[n] stages n entries, 10 parameters each.
var stageValuesSQL = func() (sqls [stageValuesMax + 1]string) {
	for n := 1; n <= stageValuesMax; n++ {
		var b strings.Builder
		b.WriteString("INSERT INTO audit_pending\n    (at, actor, unit, role, action, object, result, reason, correlation_id, detail)\nVALUES ")
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			k := 10 * i
			fmt.Fprintf(&b, "($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d::text::jsonb)",
				k+1, k+2, k+3, k+4, k+5, k+6, k+7, k+8, k+9, k+10)
		}
		sqls[n] = b.String()
	}
	return sqls
}()

const stageArraySQL = `INSERT INTO audit_pending
    (at, actor, unit, role, action, object, result, reason, correlation_id, detail)
SELECT at, actor, unit, role, action, object, result, reason, correlation_id, detail::jsonb
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[])
     AS u(at, actor, unit, role, action, object, result, reason, correlation_id, detail)`

// Stage validates and canonicalizes e exactly as Append does (At, when zero,
// is the time of the call) and inserts it into audit_pending with q.
//
// Give Stage the transaction that makes the effect e records: the entry then
// commits with the effect or not at all, and a crash cannot leave the effect
// unaudited. A Writer's chainer (on this or another hub process) moves the
// committed entry into the chain within WriterConfig.PendingPoll, or at once
// after Writer.Notify. The entry's seq is not known to the caller: chain
// order is the order in which staging transactions commit (pending id order
// within what is committed), not the order of At.
//
// An invalid entry is refused with an error wrapping ErrInvalidEntry and
// nothing is inserted.
func Stage(ctx context.Context, q store.Querier, e Entry) error {
	return StageBatch(ctx, q, []Entry{e})
}

// StageBatch stages entries like Stage, in one statement and in their order
// (ascending ids). If any entry is invalid, nothing is inserted.
//
// Each call is a statement: stage all the entries of a transaction in one
// call. On a store.Pipe the statement is held back and travels with the
// next one, the COMMIT at the latest (no round trip of its own); elsewhere
// it is a round trip, unless BeginFunc or QueueStage send it with others.
func StageBatch(ctx context.Context, q store.Querier, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	var st Staging
	if err := st.Stage(entries...); err != nil {
		return err
	}
	sql, args := st.statement()
	if err := store.ExecLater(ctx, q, sql, args...); err != nil {
		return fmt.Errorf("audit: stage %d entries: %w", len(entries), err)
	}
	return nil
}

// QueueStage validates entries (as Stage does) and queues on b the statement
// that stages them, for callers that pipeline their own statements: sent
// with the others, it costs no round trip of its own. If any entry is
// invalid nothing is queued.
func QueueStage(b *pgx.Batch, entries ...Entry) error {
	var st Staging
	if err := st.Stage(entries...); err != nil {
		return err
	}
	st.queue(b)
	return nil
}

// Staging holds the entries a transaction run by BeginFunc stages: they are
// validated at once and inserted with the COMMIT.
type Staging struct {
	entries []prepared
}

// Stage validates entries as Stage (the function) does and keeps them for
// the COMMIT. If any entry is invalid none is kept, and the error wraps
// ErrInvalidEntry.
func (st *Staging) Stage(entries ...Entry) error {
	now := time.Now()
	n := len(st.entries)
	for i, e := range entries {
		p, err := canonicalize(e, func() time.Time { return now })
		if err != nil {
			st.entries = st.entries[:n]
			if len(entries) > 1 {
				err = fmt.Errorf("entry %d: %w", i, err)
			}
			return err
		}
		st.entries = append(st.entries, p)
	}
	return nil
}

// Len returns the number of entries staged.
func (st *Staging) Len() int { return len(st.entries) }

// statement returns the INSERT of the staged entries; there must be some.
func (st *Staging) statement() (string, []any) {
	n := len(st.entries)
	if n <= stageValuesMax {
		args := make([]any, 0, 10*n)
		for i := range st.entries {
			p := &st.entries[i]
			f := &p.fields
			args = append(args, p.at, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], p.detail)
		}
		return stageValuesSQL[n], args
	}
	ats := make([]time.Time, n)
	details := make([]string, n)
	var cols [8][]string
	for k := range cols {
		cols[k] = make([]string, n)
	}
	for i := range st.entries {
		p := &st.entries[i]
		ats[i], details[i] = p.at, p.detail
		for k := range cols {
			cols[k][i] = p.fields[k]
		}
	}
	return stageArraySQL, []any{ats, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], details}
}

// queue queues the INSERT of the staged entries on b, if there are any.
func (st *Staging) queue(b *pgx.Batch) {
	if len(st.entries) > 0 {
		sql, args := st.statement()
		b.Queue(sql, args...)
	}
}

// BeginFunc runs fn in a transaction on a connection of pool, like
// pgx.BeginFunc, and commits it if fn returns nil. The entries fn stages on
// st are inserted into audit_pending in the same round trip as the COMMIT
// (one pipeline), so they commit with fn's work, or not at all, without
// costing the transaction a round trip of its own.
//
// fn must not commit or roll back tx itself (savepoints, tx.Begin, are fine);
// if it does, BeginFunc returns an error and stages nothing. The error of a
// failed COMMIT or INSERT is returned wrapped; the transaction is then rolled
// back.
func BeginFunc(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx, st *Staging) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("audit: begin: %w", err)
	}
	// Release destroys a connection left in a transaction.
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("audit: begin: %w", err)
	}
	done := false
	defer func() {
		if !done && conn.Conn().PgConn().TxStatus() != 'I' {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	var st Staging
	if err := fn(tx, &st); err != nil {
		return err
	}
	switch conn.Conn().PgConn().TxStatus() {
	case 'T':
	case 'E':
		return fmt.Errorf("audit: begin func: the transaction failed (fn ignored an error); %d staged entries dropped", st.Len())
	default:
		return fmt.Errorf("audit: begin func: fn ended the transaction; %d staged entries dropped", st.Len())
	}
	b := &pgx.Batch{}
	st.queue(b)
	b.Queue("commit")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("audit: commit with %d staged entries: %w", st.Len(), err)
	}
	done = true
	return nil
}

// Notify tells the chainer that entries were just staged (and committed), so
// that it chains them now rather than at its next poll. It does not wait.
// Routine callers need not call it: the poll (PendingPoll) bounds the delay,
// and gathers more entries per chaining transaction.
func (w *Writer) Notify() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// chainResult answers a ChainPending call.
type chainResult struct {
	n   int
	err error
}

// chainRequest is a ChainPending call waiting for the run loop.
type chainRequest struct {
	n     int
	reply chan chainResult // cap 1
}

// ChainPending moves the staged entries into the chain now, one transaction
// per PendingBatchSize entries, until a batch comes out short; it returns the
// number of entries this writer chained. When it returns no error, every
// entry whose staging transaction committed before the call is in the chain
// (chained by this writer or another one).
//
// The background loop does the same on its own (PendingPoll, Notify);
// ChainPending is for callers that must see their staged entries chained
// before they go on, and for tests. If ctx ends first ChainPending returns
// ctx's error and the chaining goes on.
func (w *Writer) ChainPending(ctx context.Context) (int, error) {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	req := &chainRequest{reply: make(chan chainResult, 1)}
	select {
	case w.chainReq <- req:
	case <-w.stopped:
		return 0, ErrClosed
	case <-ctx.Done():
		return 0, fmt.Errorf("audit: chain pending: %w", ctx.Err())
	}
	select {
	case r := <-req.reply:
		return r.n, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("audit: chain pending (the chaining goes on): %w", ctx.Err())
	}
}

// pendingBatch is a batch of staged rows read for chaining.
type pendingBatch struct {
	ids     []int64
	entries []prepared
	// substituted: some entries are substitutes for invalid rows, so the
	// batch must be written from entries, not copied from audit_pending.
	substituted bool
}

const selectPendingSQL = `SELECT id, at, actor, unit, role, action, object, result, reason, correlation_id, detail::text
FROM audit_pending ORDER BY id LIMIT $1`

// With the head locked no other chainer holds pending rows, so SKIP LOCKED
// skips nothing in practice; it is there so that a chainer can never wait on,
// or chain, a row another transaction is chaining or deleting.
const lockPendingSQL = selectPendingSQL + ` FOR UPDATE SKIP LOCKED`

// asyncCommit, in the FROM list of a statement, makes its transaction commit
// without waiting for the WAL flush (synchronous_commit off, for this
// transaction only). The chainer's transactions need not wait: the staged
// entries are durable already, in audit_pending, and a chaining transaction
// lost in a PostgreSQL crash is lost as a whole (entries, deletion of the
// pending rows, head move) and done again. The next synchronous commit on
// the server, or the WAL writer within a few wal_writer_delay, makes it
// durable. Not waiting spares the journal's committers a share of the WAL
// flushes they wait for.
const asyncCommit = `(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit`

// chainFromPendingSQL writes a batch of staged rows ($1: their ids, $2:
// seqs, $3: prev hashes, $4: hashes) in one statement: it moves the head
// from the state the writer read ($10-$12) to the new end ($5-$9), the
// compare-and-swap of appendSQL, and only if it moved deletes the pending
// rows and inserts them, as deleted, into audit_entry, with the checkpoints
// ($13-$18). The entries are thus the rows the hashes were computed from
// (the triggers refuse UPDATE; a row changed anyway, with
// zhianhub.audit_archive on, between the read and this statement would show
// in Verify as a modified entry). All CTEs see one snapshot; their EXISTS
// make the head UPDATE (and its row lock) come first.
//
// A row that vanished since the writer read it (deleted by hand) would leave
// a hole in the chain: audit_pending_chained then raises serialization_failure,
// which rolls the whole statement back.
const chainFromPendingSQL = `WITH head AS (
    UPDATE audit_head
    SET last_seq = $5, last_hash = $6, checkpoint_seq = $7, checkpoint_at = $8, checkpoint_gap = $9
    WHERE id AND last_seq = $10 AND last_hash = $11 AND checkpoint_seq = $12
    RETURNING last_seq
), moved AS (
    DELETE FROM audit_pending p
    USING unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS u(id, seq, prev_hash, hash)
    WHERE p.id = u.id AND EXISTS (SELECT FROM head)
    RETURNING u.seq, p.at, p.actor, p.unit, p.role, p.action, p.object, p.result, p.reason, p.correlation_id,
              p.detail, u.prev_hash, u.hash
), entries AS (
    INSERT INTO audit_entry
        (seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail, prev_hash, hash)
    SELECT * FROM moved
), checkpoints AS (
    INSERT INTO audit_checkpoint (seq, hash, at, key_id, max_gap, signature)
    SELECT * FROM unnest($13::bigint[], $14::bytea[], $15::timestamptz[], $16::text[], $17::bigint[], $18::bytea[])
    WHERE EXISTS (SELECT FROM head)
)
SELECT audit_pending_chained((SELECT count(*) FROM head), (SELECT count(*) FROM moved), cardinality($1::bigint[]))
FROM ` + asyncCommit

// chainSQL is the fast path for a batch with substitutes: appendSQL that
// also deletes the chained pending rows ($28), in the same statement and only
// if the head moved.
const chainSQL = `WITH head AS (
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
), pending AS (
    DELETE FROM audit_pending WHERE id = ANY($28::bigint[]) AND EXISTS (SELECT FROM head)
)
SELECT count(*) FROM head, ` + asyncCommit

// readPending reads up to PendingBatchSize staged rows in id order, without
// locks, and prepares them for chaining.
func (w *Writer) readPending(ctx context.Context) (*pendingBatch, error) {
	rows, err := w.pool.Query(ctx, selectPendingSQL, w.cfg.PendingBatchSize)
	if err != nil {
		return nil, fmt.Errorf("read audit_pending: %w", err)
	}
	return w.scanPending(rows)
}

func (w *Writer) scanPending(rows pgx.Rows) (*pendingBatch, error) {
	defer rows.Close()
	pb := &pendingBatch{}
	var (
		id     int64
		at     time.Time
		f      [8]string
		detail string
	)
	for rows.Next() {
		if err := rows.Scan(&id, &at, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &detail); err != nil {
			return nil, fmt.Errorf("read audit_pending: %w", err)
		}
		e := Entry{At: at, Actor: f[0], Unit: f[1], Role: f[2], Action: f[3], Object: f[4], Result: f[5],
			Reason: f[6], CorrelationID: f[7], Detail: json.RawMessage(detail)}
		p, err := prepare(e, w.cfg.Now)
		if err != nil {
			p = w.invalidPending(id, e, err)
			pb.substituted = true
		}
		pb.ids = append(pb.ids, id)
		pb.entries = append(pb.entries, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit_pending: %w", err)
	}
	return pb, nil
}

// ActionInvalidPending is the action of the entry chained in place of a
// staged row that breaks the entry rules (it was not inserted by Stage, which
// refuses such entries): the chain must not stop on it, and must not lose the
// trace of it either. Object is "audit_pending:<id>", Reason the rule broken.
const ActionInvalidPending = "audit.pending.invalid"

func (w *Writer) invalidPending(id int64, e Entry, cause error) prepared {
	reason := strings.ToValidUTF8(strings.ReplaceAll(cause.Error(), "\x00", ""), "?")
	if len(reason) > 512 {
		reason = strings.ToValidUTF8(reason[:256], "") + "..." + strings.ToValidUTF8(reason[len(reason)-200:], "")
	}
	w.cfg.Logger.Error("audit: staged entry breaks the entry rules; chaining a substitute",
		slog.Int64("pending_id", id), slog.String("error", reason))
	corr := e.CorrelationID
	if checkText("", corr, false) != nil {
		corr = ""
	}
	sub := Entry{At: e.At, Actor: "system", Action: ActionInvalidPending, Object: "audit_pending:" + strconv.FormatInt(id, 10),
		Result: "error", Reason: reason, CorrelationID: corr}
	p, err := prepare(sub, w.cfg.Now)
	if err != nil { // At out of range
		sub.At = time.Time{}
		p, _ = prepare(sub, w.cfg.Now)
	}
	return p
}

// chainPending chains one batch of staged rows and returns its size.
//
// It first reads the batch without locks: when there is nothing to chain
// (the idle poll) that is all. When the writer knows the head it then takes
// the fast path: one statement (chainStatement) that moves the head from the
// state it knows, deletes the pending rows and inserts them as entries with
// the checkpoints, or does nothing if the head moved (another writer chained
// or appended, and may have chained these very rows) or aborts if a row
// vanished. Otherwise, or then, the slow path: one transaction locks the
// head, re-reads the batch FOR UPDATE SKIP LOCKED and runs the same
// statement. Either way the entries, the deletion of their pending rows and
// the head move commit together, under the head's row lock, so an entry is
// chained exactly once even with chainers in several processes.
func (w *Writer) chainPending() (int, error) {
	ctx, cancel := context.WithTimeout(w.runCtx, w.cfg.WriteTimeout)
	defer cancel()
	pb, err := w.readPending(ctx)
	if err != nil {
		return 0, fmt.Errorf("audit: chain pending: %w", err)
	}
	if len(pb.ids) == 0 {
		return 0, nil
	}
	if hook := w.afterPendingRead.Load(); hook != nil {
		(*hook)()
	}
	known := w.head
	w.head = nil // unknown until this batch is committed
	if known != nil {
		c, err := w.chain(*known, pb.entries)
		if err != nil {
			return 0, fmt.Errorf("audit: chain %d pending: %w", len(pb.ids), err)
		}
		sql, args := chainStatement(pb, c, known)
		var moved int
		err = w.pool.QueryRow(ctx, sql, args...).Scan(&moved)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "40001": // serialization_failure
			// Rows vanished: take the locks.
		case err != nil:
			return 0, fmt.Errorf("audit: chain %d pending: %w", len(pb.ids), err)
		case moved == 1:
			w.head = &c.head
			return len(pb.ids), nil
		}
		// Another writer moved the head: take the lock.
	}
	var (
		c *chained
		n int
	)
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		c, n = nil, 0
		b := &pgx.Batch{}
		b.Queue(lockHeadSQL)
		b.Queue(lockPendingSQL, w.cfg.PendingBatchSize)
		br := tx.SendBatch(ctx, b)
		h, err := scanHead(br.QueryRow())
		if err != nil {
			br.Close()
			return err
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return fmt.Errorf("read audit_pending: %w", err)
		}
		pb, err := w.scanPending(rows)
		if err != nil {
			br.Close()
			return err
		}
		if err := br.Close(); err != nil {
			return err
		}
		if len(pb.ids) == 0 {
			// Chained by another writer meanwhile.
			c = &chained{head: h}
			return nil
		}
		if c, err = w.chain(h, pb.entries); err != nil {
			return err
		}
		// The head and the rows are locked: the statement cannot miss.
		sql, args := chainStatement(pb, c, &h)
		var moved int
		if err := tx.QueryRow(ctx, sql, args...).Scan(&moved); err != nil {
			return err
		}
		if moved != 1 {
			return errors.New("audit_head moved under its row lock")
		}
		n = len(pb.ids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("audit: chain pending: %w", err)
	}
	w.head = &c.head
	return n, nil
}

// chainStatement returns the statement that writes pb, chained as c after
// the head from, and its arguments; it returns 1 if it moved the head, 0 if
// the head was not from (and then changes nothing).
func chainStatement(pb *pendingBatch, c *chained, from *head) (string, []any) {
	sql, args := chainFromPendingSQL, []any{pb.ids, c.seqs, c.prevs, c.hashes}
	if pb.substituted {
		// Substitutes are not in audit_pending: write the entries.
		sql, args = chainSQL, c.entryArgs()
	}
	args = append(args, c.head.args()...)
	args = append(args, from.lastSeq, from.lastHash[:], from.checkpointSeq)
	args = append(args, c.cps.args()...)
	if pb.substituted {
		args = append(args, pb.ids)
	}
	return sql, args
}
