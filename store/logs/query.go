package logs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
)

// MaxLimit bounds one page.
const MaxLimit = 1000

// SystemFilter selects system records. Zero fields select everything.
type SystemFilter struct {
	From, To  time.Time // [From, To)
	MinLevel  *slog.Level
	Component string
	RequestID string
	MessageID string
	Text      string // substring of the message, case-insensitive
	Before    int64  // keyset paging, newest first: ids below Before
	Limit     int    // default 100, at most MaxLimit
}

// where builds the shared part of the filters.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, v any) {
	w.args = append(w.args, v)
	w.conds = append(w.conds, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(w.args))))
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func (w *where) page(from, to time.Time, before int64, limit int) string {
	if !from.IsZero() {
		w.add("at >= ?", from)
	}
	if !to.IsZero() {
		w.add("at < ?", to)
	}
	if before > 0 {
		w.add("id < ?", before)
	}
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxLimit)
	w.args = append(w.args, limit)
	return fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(w.args))
}

// likeEscape escapes LIKE's wildcards in s.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// System returns the system records f selects, newest first.
func System(ctx context.Context, q store.Querier, f SystemFilter) ([]SystemRecord, error) {
	var w where
	if f.MinLevel != nil {
		w.add("level >= ?", int16(*f.MinLevel))
	}
	if f.Component != "" {
		w.add("component = ?", f.Component)
	}
	if f.RequestID != "" {
		w.add("request_id = ?", f.RequestID)
	}
	if f.MessageID != "" {
		w.add("message_id = ?", f.MessageID)
	}
	if f.Text != "" {
		w.add("msg ILIKE '%' || ? || '%'", likeEscape(f.Text))
	}
	tail := w.page(f.From, f.To, f.Before, f.Limit)
	rows, err := q.Query(ctx, `SELECT id, at, level, msg, component, request_id, message_id, instance, attrs FROM system_log`+w.sql()+tail, w.args...)
	if err != nil {
		return nil, fmt.Errorf("logs: system: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SystemRecord, error) {
		var s SystemRecord
		var level int16
		err := r.Scan(&s.ID, &s.At, &level, &s.Msg, &s.Component, &s.RequestID, &s.MessageID, &s.Instance, &s.Attrs)
		s.Level = slog.Level(level)
		if len(s.Attrs) == 0 {
			s.Attrs = nil
		}
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("logs: system: %w", err)
	}
	return out, nil
}

// Operation log levels, derived from the answer's status: error (5xx),
// warn (4xx), info (the rest).
func OperationLevel(status int) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelError
	case status >= 400:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// OperationFilter selects operation records. Zero fields select everything.
type OperationFilter struct {
	From, To  time.Time
	User      string
	Units     []string // any of these units
	Method    string
	Route     string // the route pattern, exactly
	RequestID string
	MinLevel  *slog.Level // by OperationLevel of the status
	Before    int64
	Limit     int
}

// Operation returns the operation records f selects, newest first.
func Operation(ctx context.Context, q store.Querier, f OperationFilter) ([]OperationRecord, error) {
	var w where
	if f.User != "" {
		w.add("user_id = ?", f.User)
	}
	if len(f.Units) > 0 {
		w.add("unit = ANY(?)", f.Units)
	}
	if f.Method != "" {
		w.add("method = ?", f.Method)
	}
	if f.Route != "" {
		w.add("route = ?", f.Route)
	}
	if f.RequestID != "" {
		w.add("request_id = ?", f.RequestID)
	}
	if f.MinLevel != nil {
		switch {
		case *f.MinLevel >= slog.LevelError:
			w.add("status >= ?", 500)
		case *f.MinLevel >= slog.LevelWarn:
			w.add("status >= ?", 400)
		}
	}
	tail := w.page(f.From, f.To, f.Before, f.Limit)
	rows, err := q.Query(ctx, `SELECT id, at, request_id, user_id, unit, roles, auth_method, method, route, path, status, duration_us, remote
		FROM operation_log`+w.sql()+tail, w.args...)
	if err != nil {
		return nil, fmt.Errorf("logs: operation: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OperationRecord, error) {
		var o OperationRecord
		var status int16
		var us int64
		err := r.Scan(&o.ID, &o.At, &o.RequestID, &o.User, &o.Unit, &o.Roles, &o.AuthMethod, &o.Method, &o.Route, &o.Path, &status, &us, &o.Remote)
		o.Status, o.Duration = int(status), time.Duration(us)*time.Microsecond
		o.DurationMS = float64(us) / 1000
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("logs: operation: %w", err)
	}
	return out, nil
}
