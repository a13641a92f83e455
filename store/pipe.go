package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Pipe is a transaction that holds back writes whose results nobody reads
// (ExecLater) and sends them in one round trip with the next statement
// that needs an answer, or at Flush or Commit. A route that runs a dozen
// small writes per message then pays a round trip (a write and a read
// system call on each side, two context switches) only for the statements
// it has to wait for.
//
// Statements still run in the order they were issued, so reads see every
// earlier write. The price: the error of a held-back write surfaces at the
// next statement (wrapped, naming the write), and the transaction is then
// aborted — callers treat it like any failure of the transaction. A Pipe is
// not safe for concurrent use, like the pgx.Tx it wraps.
type Pipe struct {
	pgx.Tx
	held []heldExec
}

type heldExec struct {
	sql  string
	args []any
}

// NewPipe wraps tx.
func NewPipe(tx pgx.Tx) *Pipe { return &Pipe{Tx: tx} }

// Deferrer is a Querier that can hold back writes; *Pipe is one.
type Deferrer interface {
	Querier
	ExecLater(sql string, args ...any)
}

// ExecLater runs sql on q now, or holds it back when q is a Deferrer. Use
// it for writes whose command tag nobody reads.
func ExecLater(ctx context.Context, q Querier, sql string, args ...any) error {
	if d, ok := q.(Deferrer); ok {
		d.ExecLater(sql, args...)
		return nil
	}
	_, err := q.Exec(ctx, sql, args...)
	return err
}

// ExecLater holds sql back until the next statement, Flush or Commit.
func (p *Pipe) ExecLater(sql string, args ...any) {
	p.held = append(p.held, heldExec{sql: sql, args: args})
}

// Held reports how many writes are held back.
func (p *Pipe) Held() int { return len(p.held) }

// send sends the held writes followed by sql (when not ""), and returns the
// batch results positioned at sql's result.
func (p *Pipe) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	for _, h := range p.held {
		b.Queue(h.sql, h.args...)
	}
	if sql != "" {
		b.Queue(sql, args...)
	}
	held := p.held
	p.held = nil
	br := p.Tx.SendBatch(ctx, b)
	for _, h := range held {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("store: held-back write %.60q: %w", h.sql, err)
		}
	}
	return br, nil
}

// Flush sends the held writes.
func (p *Pipe) Flush(ctx context.Context) error {
	if len(p.held) == 0 {
		return nil
	}
	br, err := p.send(ctx, "", nil)
	if err != nil {
		return err
	}
	return br.Close()
}

// Exec runs sql after the held writes, in the same round trip.
func (p *Pipe) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if len(p.held) == 0 {
		return p.Tx.Exec(ctx, sql, args...)
	}
	br, err := p.send(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	return tag, errors.Join(err, br.Close())
}

// QueryRow runs sql after the held writes, in the same round trip.
func (p *Pipe) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if len(p.held) == 0 {
		return p.Tx.QueryRow(ctx, sql, args...)
	}
	br, err := p.send(ctx, sql, args)
	if err != nil {
		return errRow{err}
	}
	return &batchRow{row: br.QueryRow(), br: br}
}

// Query runs sql after the held writes, in the same round trip.
func (p *Pipe) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if len(p.held) == 0 {
		return p.Tx.Query(ctx, sql, args...)
	}
	br, err := p.send(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// SendBatch sends the held writes first.
func (p *Pipe) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := p.Flush(ctx); err != nil {
		return errBatch{err}
	}
	return p.Tx.SendBatch(ctx, b)
}

// CopyFrom sends the held writes first.
func (p *Pipe) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := p.Flush(ctx); err != nil {
		return 0, err
	}
	return p.Tx.CopyFrom(ctx, table, cols, src)
}

// Begin sends the held writes, then starts a savepoint.
func (p *Pipe) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := p.Flush(ctx); err != nil {
		return nil, err
	}
	return p.Tx.Begin(ctx)
}

// Commit sends the held writes, then commits.
func (p *Pipe) Commit(ctx context.Context) error {
	if err := p.Flush(ctx); err != nil {
		_ = p.Tx.Rollback(ctx)
		return err
	}
	return p.Tx.Commit(ctx)
}

// Rollback drops the held writes and rolls back.
func (p *Pipe) Rollback(ctx context.Context) error {
	p.held = nil
	return p.Tx.Rollback(ctx)
}

// BeginPipe runs fn in a transaction on db through a Pipe and commits,
// held writes included, when fn returns nil; it rolls back otherwise.
func BeginPipe(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, fn func(p *Pipe) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	p := NewPipe(tx)
	if err := fn(p); err != nil {
		_ = p.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return p.Commit(ctx)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// batchRow closes its batch after the scan.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r *batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); cerr != nil && (err == nil || errors.Is(err, pgx.ErrNoRows)) {
		err = cerr
	}
	return err
}

// batchRows closes its batch with the rows.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow{b.err} }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }
