package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
)

// Record is a chained entry as read back (List).
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

// ListFilter selects chained entries for List.
type ListFilter struct {
	Action string // "" any; a trailing "*" matches a prefix ("person.*")
	Actor  string // "" any
	After  int64  // keyset cursor: seq > After
	Limit  int    // 0: DefaultListLimit; at most MaxListLimit
}

// List returns chained entries by seq. Staged entries not yet chained are
// not listed.
func List(ctx context.Context, q store.Querier, f ListFilter) ([]Record, error) {
	if f.Limit == 0 {
		f.Limit = DefaultListLimit
	}
	if f.Limit < 0 || f.Limit > MaxListLimit || f.After < 0 {
		return nil, errors.New("audit: list: limit or cursor out of range")
	}
	action, prefix := f.Action, false
	if n := len(action); n > 0 && action[n-1] == '*' {
		action, prefix = action[:n-1], true
	}
	rows, _ := q.Query(ctx, `SELECT seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail
		FROM audit_entry
		WHERE seq > $1 AND ($2 = '' OR actor = $2)
		  AND ($3 = '' OR CASE WHEN $4 THEN starts_with(action, $3) ELSE action = $3 END)
		ORDER BY seq LIMIT $5`, f.After, f.Actor, action, prefix, f.Limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) {
		var r Record
		err := row.Scan(&r.Seq, &r.At, &r.Actor, &r.Unit, &r.Role, &r.Action, &r.Object, &r.Result, &r.Reason, &r.CorrelationID, &r.Detail)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	return out, nil
}
