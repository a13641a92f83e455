package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
)

// Record is a chained entry as read back (List, Each).
type Record struct {
	Seq           int64
	At            time.Time
	Actor         string
	Unit          string
	Role          string
	Action        string
	Object        string
	Result        string
	Reason        string
	CorrelationID string
	Detail        json.RawMessage
}

// List limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Criteria select chained entries; every criterion set must hold. Text
// criteria match exactly (no LIKE patterns), except Action's trailing "*".
//
// The indexes (migrations 00011, 00012) serve Actor with or without a time
// range (actor, at), a time range (at), Object and CorrelationID; the
// other criteria filter what those, or the seq order, give.
//
// Known weak spot: for a criterion that matches a large share of the chain
// (the actor "system", a long time range alone) PostgreSQL may walk the
// chain in seq order and filter, not knowing that At grows with seq; a range
// late in the chain then costs a scan of the entries before it (hundreds
// of milliseconds on 1,000,000 entries, see BenchmarkAuditQuery).
type Criteria struct {
	From   time.Time // at >= From; zero: no lower bound
	To     time.Time // at < To; zero: no upper bound
	Actor  string    // "" any
	Unit   string    // "" any
	Object string    // "" any
	Action string    // "" any; a trailing "*" matches a prefix ("person.*")
	Result string    // "" any
}

// Validate reports criteria that select nothing by construction.
func (c Criteria) Validate() error {
	if !c.From.IsZero() && !c.To.IsZero() && !c.From.Before(c.To) {
		return errors.New("audit: criteria: From must be before To")
	}
	return nil
}

// where returns the WHERE clause of c after seq > $1 (args[0] is the
// cursor) and its arguments. Only the criteria set appear in the clause, so
// that the planner sees plain equalities and ranges it can use indexes for.
func (c Criteria) where(after int64) (string, []any) {
	var b strings.Builder
	args := []any{after}
	b.WriteString("seq > $1")
	add := func(cond string, v any) {
		args = append(args, v)
		b.WriteString(" AND ")
		b.WriteString(strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if !c.From.IsZero() {
		add("at >= ?", c.From)
	}
	if !c.To.IsZero() {
		add("at < ?", c.To)
	}
	if c.Actor != "" {
		add("actor = ?", c.Actor)
	}
	if c.Unit != "" {
		add("unit = ?", c.Unit)
	}
	if c.Object != "" {
		add("object = ?", c.Object)
	}
	if action, prefix := strings.CutSuffix(c.Action, "*"); prefix && action != "" {
		add("starts_with(action, ?)", action)
	} else if c.Action != "" && !prefix {
		add("action = ?", c.Action)
	}
	if c.Result != "" {
		add("result = ?", c.Result)
	}
	return b.String(), args
}

// ListFilter selects a page of chained entries for List.
type ListFilter struct {
	Criteria
	After int64 // keyset cursor: seq > After
	Limit int   // 0: DefaultListLimit; at most MaxListLimit
}

const recordCols = `seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail`

func scanRecord(row pgx.CollectableRow) (Record, error) {
	var r Record
	err := row.Scan(&r.Seq, &r.At, &r.Actor, &r.Unit, &r.Role, &r.Action, &r.Object, &r.Result, &r.Reason, &r.CorrelationID, &r.Detail)
	return r, err
}

// List returns a page of the chained entries f selects, by seq. Staged
// entries not yet chained are not listed.
func List(ctx context.Context, q store.Querier, f ListFilter) ([]Record, error) {
	if f.Limit == 0 {
		f.Limit = DefaultListLimit
	}
	if f.Limit < 0 || f.Limit > MaxListLimit || f.After < 0 {
		return nil, errors.New("audit: list: limit or cursor out of range")
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	where, args := f.where(f.After)
	args = append(args, f.Limit)
	rows, err := q.Query(ctx, `SELECT `+recordCols+` FROM audit_entry WHERE `+where+
		` ORDER BY seq LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	return out, nil
}

// Each calls fn for the chained entries c selects, by seq, at most limit
// of them (limit must be positive), streaming: memory use does not grow
// with the number of entries. fn's error stops the scan and is returned.
//
// fn's *Record is reused: it is valid during the call only.
func Each(ctx context.Context, q store.Querier, c Criteria, limit int, fn func(*Record) error) (int, error) {
	if limit < 1 {
		return 0, errors.New("audit: each: limit must be positive")
	}
	if err := c.Validate(); err != nil {
		return 0, err
	}
	where, args := c.where(0)
	args = append(args, limit)
	rows, err := q.Query(ctx, `SELECT `+recordCols+` FROM audit_entry WHERE `+where+
		` ORDER BY seq LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return 0, fmt.Errorf("audit: each: %w", err)
	}
	defer rows.Close()
	var (
		r Record
		n int
	)
	for rows.Next() {
		if err := rows.Scan(&r.Seq, &r.At, &r.Actor, &r.Unit, &r.Role, &r.Action, &r.Object, &r.Result, &r.Reason,
			&r.CorrelationID, &r.Detail); err != nil {
			return n, fmt.Errorf("audit: each: %w", err)
		}
		if err := fn(&r); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("audit: each: %w", err)
	}
	return n, nil
}
