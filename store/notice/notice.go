// Package notice keeps the portal's system notices (系统公告): drafts,
// published and withdrawn notices with their audience by unit (each with
// its subtree) and role. Publishing and withdrawing are transitions of the
// stored state (draft → published → withdrawn, nothing else); the caller
// delivers or withdraws the inbox reminders in the same transaction.
package notice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
)

// States.
const (
	Draft     = "draft"
	Published = "published"
	Withdrawn = "withdrawn"
)

// Errors.
var (
	ErrNotFound = errors.New("notice: not found")
	// ErrState is a change the notice's state does not allow.
	ErrState = errors.New("notice: not allowed in this state")
)

// Notice is one notice.
type Notice struct {
	ID             int64
	State          string
	Title          string
	Body           string
	Level          int
	Unit           string   // the author's unit: who may manage it
	AudienceUnits  []string // each with the units below it
	AudienceRoles  []string // empty: every role
	CreatedBy      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	PublishedBy    string
	PublishedAt    *time.Time
	WithdrawnBy    string
	WithdrawnAt    *time.Time
	WithdrawReason string
}

const columns = `id, state, title, body, level, unit, audience_units, audience_roles, created_by, created_at, updated_at,
	published_by, published_at, withdrawn_by, withdrawn_at, withdraw_reason`

func scan(r pgx.Row) (Notice, error) {
	var n Notice
	var level int16
	err := r.Scan(&n.ID, &n.State, &n.Title, &n.Body, &level, &n.Unit, &n.AudienceUnits, &n.AudienceRoles, &n.CreatedBy,
		&n.CreatedAt, &n.UpdatedAt, &n.PublishedBy, &n.PublishedAt, &n.WithdrawnBy, &n.WithdrawnAt, &n.WithdrawReason)
	n.Level = int(level)
	return n, err
}

func one(row pgx.Row, what string) (Notice, error) {
	n, err := scan(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return Notice{}, ErrNotFound
	}
	if err != nil {
		return Notice{}, fmt.Errorf("notice: %s: %w", what, err)
	}
	return n, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Create stores a draft (Title, Body, Level, Unit, AudienceUnits,
// AudienceRoles, CreatedBy of n) and returns it.
func Create(ctx context.Context, q store.Querier, n Notice) (Notice, error) {
	return one(q.QueryRow(ctx, `INSERT INTO notice (title, body, level, unit, audience_units, audience_roles, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+columns,
		n.Title, n.Body, int16(n.Level), n.Unit, nonNil(n.AudienceUnits), nonNil(n.AudienceRoles), n.CreatedBy), "create")
}

// Get returns notice id; lock takes a row lock (in a transaction).
func Get(ctx context.Context, q store.Querier, id int64, lock bool) (Notice, error) {
	sql := `SELECT ` + columns + ` FROM notice WHERE id = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	return one(q.QueryRow(ctx, sql, id), "get")
}

// transition changes a notice in state from with set (SQL assignments
// using $2…) and returns it: ErrNotFound, or ErrState when it is not in
// state from.
func transition(ctx context.Context, q store.Querier, id int64, from, set string, args ...any) (Notice, error) {
	n, err := one(q.QueryRow(ctx, `UPDATE notice SET `+set+`, updated_at = clock_timestamp()
		WHERE id = $1 AND state = '`+from+`' RETURNING `+columns, append([]any{id}, args...)...), "update")
	if !errors.Is(err, ErrNotFound) {
		return n, err
	}
	if _, gerr := Get(ctx, q, id, false); gerr != nil {
		return Notice{}, gerr
	}
	return Notice{}, ErrState
}

// Update changes a draft's text and audience.
func Update(ctx context.Context, q store.Querier, n Notice) (Notice, error) {
	return transition(ctx, q, n.ID, Draft, `title = $2, body = $3, level = $4, audience_units = $5, audience_roles = $6`,
		n.Title, n.Body, int16(n.Level), nonNil(n.AudienceUnits), nonNil(n.AudienceRoles))
}

// Delete removes a draft.
func Delete(ctx context.Context, q store.Querier, id int64) error {
	tag, err := q.Exec(ctx, `DELETE FROM notice WHERE id = $1 AND state = 'draft'`, id)
	if err != nil {
		return fmt.Errorf("notice: delete: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	if _, err := Get(ctx, q, id, false); err != nil {
		return err
	}
	return ErrState
}

// Publish makes a draft published.
func Publish(ctx context.Context, q store.Querier, id int64, by string) (Notice, error) {
	return transition(ctx, q, id, Draft, `state = 'published', published_by = $2, published_at = clock_timestamp()`, by)
}

// Withdraw makes a published notice withdrawn.
func Withdraw(ctx context.Context, q store.Querier, id int64, by, reason string) (Notice, error) {
	return transition(ctx, q, id, Published, `state = 'withdrawn', withdrawn_by = $2, withdrawn_at = clock_timestamp(), withdraw_reason = $3`, by, reason)
}

// Filter selects notices; Before and Limit page them by id, newest first.
type Filter struct {
	State string // "" = any
	// Units, when not nil, keeps the notices whose Unit is one of them
	// (the notices a manager may manage).
	Units []string
	// Audience, when set, keeps the published notices addressed to a user
	// of Audience.Chain (their unit and the units above it) holding
	// Audience.Roles.
	Audience *Audience
	Before   int64
	Limit    int
}

// Audience is a reader of notices.
type Audience struct {
	Chain []string // the reader's unit and the units above it
	Roles []string
}

// List returns the notices f selects, newest first.
func List(ctx context.Context, q store.Querier, f Filter) ([]Notice, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	sql := `SELECT ` + columns + ` FROM notice WHERE true`
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if f.State != "" {
		sql += ` AND state = ` + arg(f.State)
	}
	if f.Units != nil {
		sql += ` AND unit = ANY(` + arg(f.Units) + `::text[])`
	}
	if f.Audience != nil {
		sql += ` AND state = 'published' AND audience_units && ` + arg(nonNil(f.Audience.Chain)) + `::text[]
			AND (audience_roles = '{}' OR audience_roles && ` + arg(nonNil(f.Audience.Roles)) + `::text[])`
	}
	if f.Before > 0 {
		sql += ` AND id < ` + arg(f.Before)
	}
	sql += ` ORDER BY id DESC LIMIT ` + arg(f.Limit)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("notice: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notice, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("notice: list: %w", err)
	}
	return out, nil
}

// Visible reports whether a published notice is addressed to a reader.
func (n Notice) Visible(a Audience) bool {
	if n.State != Published {
		return false
	}
	unit := false
	for _, u := range n.AudienceUnits {
		for _, c := range a.Chain {
			unit = unit || u == c
		}
	}
	if !unit {
		return false
	}
	if len(n.AudienceRoles) == 0 {
		return true
	}
	for _, r := range n.AudienceRoles {
		for _, h := range a.Roles {
			if r == h {
				return true
			}
		}
	}
	return false
}
