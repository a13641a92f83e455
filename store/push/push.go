// Package push keeps the smart-push rules (智能推送订阅规则): which events
// of the internal exchange become inbox items of a user or a unit. A rule
// names an event kind and optionally a category (4 digits), a unit scope
// (the event's unit must be that unit or below it; "" = the whole tree)
// and a level bound (events of level 1..MaxLevel, 1 the most urgent; 0 =
// any level, also events without one). The unit scope is checked by the
// caller against the unit tree (Candidates returns the rules matching by
// kind, category and level). Rules never look at ethnicity, religion or
// health: the events carry no such data and a rule has no field for it.
package push

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
)

// Owner kinds (as inbox recipients).
const (
	ToUser = "user"
	ToUnit = "unit"
)

// ErrNotFound reports an unknown rule.
var ErrNotFound = errors.New("push: rule not found")

// Rule is one subscription rule.
type Rule struct {
	ID        int64
	OwnerKind string // ToUser or ToUnit
	Owner     string // a user id or a unit code
	OwnerUnit string // the user's unit (a unit's rule: the unit)
	EventKind string
	Category  string // "" = any
	UnitScope string // "" = the whole tree
	MaxLevel  int    // 0 = any
	Enabled   bool
	CreatedBy string
	CreatedAt time.Time
}

const columns = `id, owner_kind, owner, owner_unit, event_kind, category, unit_scope, max_level, enabled, created_by, created_at`

func scan(r pgx.Row) (Rule, error) {
	var x Rule
	var level int16
	err := r.Scan(&x.ID, &x.OwnerKind, &x.Owner, &x.OwnerUnit, &x.EventKind, &x.Category, &x.UnitScope, &level, &x.Enabled, &x.CreatedBy, &x.CreatedAt)
	x.MaxLevel = int(level)
	return x, err
}

func collect(rows pgx.Rows, err error, what string) ([]Rule, error) {
	if err != nil {
		return nil, fmt.Errorf("push: %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Rule, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("push: %s: %w", what, err)
	}
	return out, nil
}

// Create stores an enabled rule and returns it.
func Create(ctx context.Context, q store.Querier, x Rule) (Rule, error) {
	r, err := scan(q.QueryRow(ctx, `INSERT INTO push_rule (owner_kind, owner, owner_unit, event_kind, category, unit_scope, max_level, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+columns,
		x.OwnerKind, x.Owner, x.OwnerUnit, x.EventKind, x.Category, x.UnitScope, int16(x.MaxLevel), x.CreatedBy))
	if err != nil {
		return Rule{}, fmt.Errorf("push: create: %w", err)
	}
	return r, nil
}

// Get returns rule id.
func Get(ctx context.Context, q store.Querier, id int64) (Rule, error) {
	r, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM push_rule WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Rule{}, ErrNotFound
	}
	if err != nil {
		return Rule{}, fmt.Errorf("push: get: %w", err)
	}
	return r, nil
}

// SetEnabled enables or disables rule id.
func SetEnabled(ctx context.Context, q store.Querier, id int64, enabled bool) (Rule, error) {
	r, err := scan(q.QueryRow(ctx, `UPDATE push_rule SET enabled = $2 WHERE id = $1 RETURNING `+columns, id, enabled))
	if errors.Is(err, pgx.ErrNoRows) {
		return Rule{}, ErrNotFound
	}
	if err != nil {
		return Rule{}, fmt.Errorf("push: update: %w", err)
	}
	return r, nil
}

// Delete removes rule id.
func Delete(ctx context.Context, q store.Querier, id int64) error {
	tag, err := q.Exec(ctx, `DELETE FROM push_rule WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("push: delete: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// List returns the rules of the owners (kind, owner pairs given as two
// equal-length slices), by id, after the cursor.
func List(ctx context.Context, q store.Querier, kinds, owners []string, after int64, limit int) ([]Rule, error) {
	rows, err := q.Query(ctx, `SELECT `+columns+` FROM push_rule
		WHERE (owner_kind, owner) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND id > $3
		ORDER BY id LIMIT $4`, kinds, owners, after, limit)
	return collect(rows, err, "list")
}

// Candidates returns the enabled rules of event kind whose category and
// level bound match (categories: the event's, none = only rules without a
// category; level 0 = the event has none).
func Candidates(ctx context.Context, q store.Querier, kind string, categories []string, level int) ([]Rule, error) {
	if categories == nil {
		categories = []string{}
	}
	rows, err := q.Query(ctx, `SELECT `+columns+` FROM push_rule
		WHERE enabled AND event_kind = $1 AND (category = '' OR category = ANY($2::text[]))
		AND (max_level = 0 OR ($3::int > 0 AND $3::int <= max_level))
		ORDER BY id`, kind, categories, level)
	return collect(rows, err, "candidates")
}
