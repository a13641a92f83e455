// Package logs keeps the hub's log management (日志管理): the system log
// (the hub's own events, fed from its slog records by Handler) and the
// operation log (one row per API call of an identified user), their
// queries with filters and levels, and their retention (archive with a
// signed SM3 manifest first, then delete).
//
// Writes go through a Writer: records are queued in memory and inserted in
// batches by one goroutine, so that logging never waits for the database.
// The queue is bounded. A full queue drops system records (they are still
// on the process's standard error, which is the log of record for the
// operators' collectors) and makes operation records wait up to
// Config.BlockFor before dropping them; every drop is counted (Dropped)
// and reported on standard error once per flush.
//
// The audit chain (store/audit) stays the record of who read or changed
// personal data and of every administrative action; the operation log is
// the complete list of API calls, and links to the audit through the
// request id (the correlation id of both).
package logs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/store/audit"
)

// SystemRecord is one row of the system log.
type SystemRecord struct {
	ID        int64          `json:"id"`
	At        time.Time      `json:"at"`
	Level     slog.Level     `json:"level"`
	Msg       string         `json:"msg"`
	Component string         `json:"component,omitempty"`
	RequestID string         `json:"requestId,omitempty"`
	MessageID string         `json:"messageId,omitempty"`
	Instance  string         `json:"instance,omitempty"`
	Attrs     map[string]any `json:"attrs,omitempty"`
}

// OperationRecord is one row of the operation log: an API call.
type OperationRecord struct {
	ID         int64         `json:"id"`
	At         time.Time     `json:"at"`
	RequestID  string        `json:"requestId"`
	User       string        `json:"user"`
	Unit       string        `json:"unit,omitempty"`
	Roles      string        `json:"roles,omitempty"`
	AuthMethod string        `json:"authMethod,omitempty"`
	Method     string        `json:"method"`
	Route      string        `json:"route"`
	Path       string        `json:"path"`
	Status     int           `json:"status"`
	Duration   time.Duration `json:"-"`
	DurationMS float64       `json:"durationMs"`
	Remote     string        `json:"remote,omitempty"`
}

// Config configures a Writer.
type Config struct {
	// Buffer is the most records queued; default 8192.
	Buffer int
	// Batch is the most records per insert; default 512.
	Batch int
	// FlushInterval bounds how long a record waits in the queue; default
	// 500ms.
	FlushInterval time.Duration
	// BlockFor is how long an operation record waits for room in a full
	// queue before it is dropped; default 1s.
	BlockFor time.Duration
	// Instance names this process in the system log (host:pid).
	Instance string
	// Errors receives the writer's own failures. It must not write to this
	// Writer (use the handler the system log tees from). Default: discard.
	Errors *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Buffer == 0 {
		c.Buffer = 8192
	}
	if c.Batch == 0 {
		c.Batch = 512
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 500 * time.Millisecond
	}
	if c.BlockFor == 0 {
		c.BlockFor = time.Second
	}
	if c.Errors == nil {
		c.Errors = slog.New(slog.DiscardHandler)
	}
}

// Validate reports an unusable setting.
func (c Config) Validate() error {
	if c.Buffer < 1 || c.Batch < 1 || c.FlushInterval <= 0 || c.BlockFor < 0 {
		return errors.New("logs: Buffer, Batch and FlushInterval must be positive, BlockFor not negative")
	}
	return nil
}

// Writer queues records and inserts them in batches once Start gave it a
// pool. Records queued before Start wait (up to Buffer of them): the
// process logs before its database is open.
type Writer struct {
	cfg     Config
	sys     chan SystemRecord
	ops     chan OperationRecord
	dropped atomic.Int64
	started atomic.Bool
	closed  chan struct{}
	once    sync.Once
	done    chan struct{}
}

// NewWriter returns a writer; Start starts it.
func NewWriter(cfg Config) (*Writer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Writer{cfg: cfg, sys: make(chan SystemRecord, cfg.Buffer), ops: make(chan OperationRecord, cfg.Buffer),
		closed: make(chan struct{}), done: make(chan struct{})}, nil
}

// System queues a system record; it never blocks (a full queue drops it).
func (w *Writer) System(r SystemRecord) {
	if r.Instance == "" {
		r.Instance = w.cfg.Instance
	}
	select {
	case <-w.closed:
		w.dropped.Add(1)
		return
	default:
	}
	select {
	case w.sys <- r:
	default:
		w.dropped.Add(1)
	}
}

// Operation queues an operation record, waiting up to Config.BlockFor for
// room (or until ctx ends).
func (w *Writer) Operation(ctx context.Context, r OperationRecord) {
	select {
	case <-w.closed:
		w.dropped.Add(1)
		return
	default:
	}
	select {
	case w.ops <- r:
		return
	default:
	}
	t := time.NewTimer(w.cfg.BlockFor)
	defer t.Stop()
	select {
	case w.ops <- r:
	case <-w.closed:
		w.dropped.Add(1)
	case <-t.C:
		w.dropped.Add(1)
	case <-ctx.Done():
		w.dropped.Add(1)
	}
}

// Dropped returns how many records were dropped so far.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

// Start inserts the queued records into pool's database until Close.
func (w *Writer) Start(pool *pgxpool.Pool) {
	if !w.started.CompareAndSwap(false, true) {
		return
	}
	go w.run(pool)
}

// Close stops accepting records, inserts what is queued (until ctx ends)
// and stops. Without Start it only stops accepting.
func (w *Writer) Close(ctx context.Context) error {
	w.once.Do(func() { close(w.closed) })
	if !w.started.Load() {
		return nil
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("logs: close: %w", ctx.Err())
	}
}

func (w *Writer) run(pool *pgxpool.Pool) {
	defer close(w.done)
	t := time.NewTicker(w.cfg.FlushInterval)
	defer t.Stop()
	var reported int64
	for {
		stopping := false
		select {
		case <-t.C:
		case <-w.closed:
			stopping = true
		}
		// Drain everything queued, a batch at a time.
		for {
			sys, ops := w.take()
			if len(sys) == 0 && len(ops) == 0 {
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := insert(ctx, pool, sys, ops); err != nil {
				w.dropped.Add(int64(len(sys) + len(ops)))
				w.cfg.Errors.Error("log records could not be stored", "err", err, "system", len(sys), "operation", len(ops))
			}
			cancel()
		}
		if d := w.dropped.Load(); d != reported {
			w.cfg.Errors.Warn("log records dropped", "dropped_total", d, "since_last_report", d-reported)
			reported = d
		}
		if stopping {
			return
		}
	}
}

// take returns up to Batch queued records of each log.
func (w *Writer) take() (sys []SystemRecord, ops []OperationRecord) {
	sys = drain(w.sys, w.cfg.Batch)
	ops = drain(w.ops, w.cfg.Batch)
	return sys, ops
}

// drain takes up to n values from ch without waiting.
func drain[T any](ch <-chan T, n int) []T {
	var out []T
	for len(out) < n {
		select {
		case v := <-ch:
			out = append(out, v)
		default:
			return out
		}
	}
	return out
}

// Insert writes records now, in one transaction (tests and tools; the hub
// goes through a Writer).
func Insert(ctx context.Context, pool *pgxpool.Pool, sys []SystemRecord, ops []OperationRecord) error {
	return insert(ctx, pool, sys, ops)
}

func insert(ctx context.Context, pool *pgxpool.Pool, sys []SystemRecord, ops []OperationRecord) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if len(sys) > 0 {
			n := len(sys)
			at, level, msg, comp, req, mid, inst, attrs := make([]time.Time, n), make([]int16, n), make([]string, n), make([]string, n),
				make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			for i, r := range sys {
				a := []byte("{}")
				if len(r.Attrs) > 0 {
					b, err := json.Marshal(r.Attrs)
					if err != nil {
						b, _ = json.Marshal(map[string]string{"unencodable": err.Error()})
					}
					a = b
				}
				at[i], level[i], msg[i], comp[i], req[i], mid[i], inst[i], attrs[i] =
					r.At, int16(r.Level), audit.Text(r.Msg, 2000), r.Component, audit.Text(r.RequestID, 64), audit.Text(r.MessageID, 64), r.Instance, string(a)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO system_log (at, level, msg, component, request_id, message_id, instance, attrs)
				SELECT * FROM unnest($1::timestamptz[], $2::smallint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])`,
				at, level, msg, comp, req, mid, inst, attrs); err != nil {
				return fmt.Errorf("system log: %w", err)
			}
		}
		if len(ops) > 0 {
			n := len(ops)
			at, req, user, unit, roles, am, method, route, path, remote := make([]time.Time, n), make([]string, n), make([]string, n),
				make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			status, dur := make([]int16, n), make([]int64, n)
			for i, r := range ops {
				at[i], req[i], user[i], unit[i], roles[i], am[i], method[i], route[i], path[i], remote[i] =
					r.At, r.RequestID, r.User, r.Unit, r.Roles, r.AuthMethod, r.Method, r.Route, audit.Text(r.Path, 512), r.Remote
				status[i], dur[i] = int16(r.Status), r.Duration.Microseconds()
			}
			if _, err := tx.Exec(ctx, `INSERT INTO operation_log (at, request_id, user_id, unit, roles, auth_method, method, route, path, remote, status, duration_us)
				SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::smallint[], $12::bigint[])`,
				at, req, user, unit, roles, am, method, route, path, remote, status, dur); err != nil {
				return fmt.Errorf("operation log: %w", err)
			}
		}
		return nil
	})
}
