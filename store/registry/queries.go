package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
	"zhianhub/transforms"
)

// GetPerson returns the decrypted record of personNo, or an error wrapping
// ErrNotFound.
func (r *Registry) GetPerson(ctx context.Context, q store.Querier, personNo string) (*PersonRecord, error) {
	p, err := scanPerson(q.QueryRow(ctx, `SELECT `+personCols+` FROM person WHERE person_no = $1`, personNo))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: person %s", ErrNotFound, personNo)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: get person %s: %w", personNo, err)
	}
	return r.decrypt(p)
}

// FindByIDNo returns the records whose ID number equals idNo after
// normalization (transforms.NormalizeIDNo), looked up by blind index, in
// personNo order; none is not an error.
func (r *Registry) FindByIDNo(ctx context.Context, q store.Querier, idNo string) ([]PersonRecord, error) {
	want := transforms.NormalizeIDNo(idNo)
	if want == "" {
		return nil, fmt.Errorf("%w: empty ID number", ErrInvalid)
	}
	rows, err := q.Query(ctx, `SELECT `+personCols+` FROM person WHERE id_no_bidx = $1 ORDER BY person_no`, r.idNoIndex(want))
	if err != nil {
		return nil, fmt.Errorf("registry: find by ID number: %w", err)
	}
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*personRow, error) { return scanPerson(row) })
	if err != nil {
		return nil, fmt.Errorf("registry: find by ID number: %w", err)
	}
	out := []PersonRecord{}
	for _, p := range found {
		rec, err := r.decrypt(p)
		if err != nil {
			return nil, err
		}
		if transforms.NormalizeIDNo(rec.IDNo) == want { // a blind index is not proof
			out = append(out, *rec)
		}
	}
	return out, nil
}

// History returns the history of personNo, oldest first, or an error
// wrapping ErrNotFound for an unknown person.
func (r *Registry) History(ctx context.Context, q store.Querier, personNo string) ([]HistoryEntry, error) {
	if err := exists(ctx, q, personNo); err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT id, person_no, coalesce(msg_id::text, ''), direction, node, kind, at, fields,
		detail::text, recorded_at FROM person_history WHERE person_no = $1 ORDER BY id`, personNo)
	if err != nil {
		return nil, fmt.Errorf("registry: history of %s: %w", personNo, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (HistoryEntry, error) {
		var h HistoryEntry
		var detail string
		err := row.Scan(&h.ID, &h.PersonNo, &h.MsgID, &h.Direction, &h.Node, &h.Kind, &h.At, &h.Fields, &detail, &h.RecordedAt)
		h.Detail = []byte(detail)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("registry: history of %s: %w", personNo, err)
	}
	return out, nil
}

func exists(ctx context.Context, q store.Querier, personNo string) error {
	var ok bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM person WHERE person_no = $1)`, personNo).Scan(&ok); err != nil {
		return fmt.Errorf("registry: person %s: %w", personNo, err)
	}
	if !ok {
		return fmt.Errorf("%w: person %s", ErrNotFound, personNo)
	}
	return nil
}

const controlCols = `control_no, person_no, level, measures, regions, valid_from, valid_to, basis, state,
	closed_at, coalesce(close_reason, ''), opened_by_msg::text, coalesce(closed_by_msg::text, ''), created_at, updated_at`

func scanControl(row pgx.CollectableRow) (ControlRecord, error) {
	var c ControlRecord
	err := row.Scan(&c.ControlNo, &c.PersonNo, &c.Level, &c.Measures, &c.Regions, &c.ValidFrom, &c.ValidTo, &c.Basis,
		&c.State, &c.ClosedAt, &c.CloseReason, &c.OpenedByMsg, &c.ClosedByMsg, &c.CreatedAt, &c.UpdatedAt)
	return c, err
}

func collectControls(rows pgx.Rows, err error) ([]ControlRecord, error) {
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, scanControl)
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []ControlRecord{}
	}
	return out, nil
}

// Controls returns the controls of personNo in validFrom order, or an error
// wrapping ErrNotFound for an unknown person.
func (r *Registry) Controls(ctx context.Context, q store.Querier, personNo string) ([]ControlRecord, error) {
	if err := exists(ctx, q, personNo); err != nil {
		return nil, err
	}
	out, err := collectControls(q.Query(ctx, `SELECT `+controlCols+` FROM control WHERE person_no = $1
		ORDER BY valid_from, control_no`, personNo))
	if err != nil {
		return nil, fmt.Errorf("registry: controls of %s: %w", personNo, err)
	}
	return out, nil
}

// ExpireClosedReason is the close reason of a control closed at expiry.
const ExpireClosedReason = "布控期限已届满，由记录持有方关闭（不自动延期）"

// ExpireControls closes every open control whose validTo is before now with
// state EXPIRED (closed at now, one history row each, direction
// DirectionLocal) and returns them in validTo order, for the caller to
// report to the operators and audit. A control is never extended.
func (r *Registry) ExpireControls(ctx context.Context, q store.Querier, now time.Time) ([]ControlRecord, error) {
	// Rows are locked in control_no order, as a cancellation locks them.
	out, err := collectControls(q.Query(ctx, `WITH due AS (
			SELECT control_no FROM control WHERE state = 'OPEN' AND valid_to < $1 ORDER BY control_no FOR UPDATE),
		closed AS (
			UPDATE control c SET state = 'EXPIRED', closed_at = $1, close_reason = $2, updated_at = $3
			FROM due WHERE c.control_no = due.control_no RETURNING c.*),
		hist AS (
			INSERT INTO person_history (person_no, msg_id, direction, node, kind, at, fields, detail, recorded_at)
			SELECT person_no, NULL, 'local', '', $4, $1, '{state}',
				jsonb_build_object('controlNo', control_no, 'validTo', valid_to), $3
			FROM closed)
		SELECT `+controlCols+` FROM closed ORDER BY valid_to, control_no`,
		now, ExpireClosedReason, r.now(), HistoryKindExpired))
	if err != nil {
		return nil, fmt.Errorf("registry: expire controls: %w", err)
	}
	return out, nil
}

// ExpiringControls returns the open controls whose validTo is at most within
// from now (those already past and not yet closed by ExpireControls
// included), in validTo order.
func (r *Registry) ExpiringControls(ctx context.Context, q store.Querier, within time.Duration) ([]ControlRecord, error) {
	if within < 0 {
		return nil, fmt.Errorf("%w: negative window %s", ErrInvalid, within)
	}
	out, err := collectControls(q.Query(ctx, `SELECT `+controlCols+` FROM control WHERE state = 'OPEN' AND valid_to <= $1
		ORDER BY valid_to, control_no`, r.now().Add(within)))
	if err != nil {
		return nil, fmt.Errorf("registry: expiring controls: %w", err)
	}
	return out, nil
}

// OverdueReviews returns the active persons whose review date (复核期限) is
// before the calendar date of asOf (in the configured zone), oldest review
// date first, masked.
func (r *Registry) OverdueReviews(ctx context.Context, q store.Querier, asOf time.Time) ([]PersonSummary, error) {
	day := asOf.In(r.loc).Format(time.DateOnly)
	rows, err := q.Query(ctx, `SELECT `+personCols+` FROM person WHERE state = 'ACTIVE' AND review_by < $1::date
		ORDER BY review_by, person_no`, day)
	if err != nil {
		return nil, fmt.Errorf("registry: overdue reviews: %w", err)
	}
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*personRow, error) { return scanPerson(row) })
	if err != nil {
		return nil, fmt.Errorf("registry: overdue reviews: %w", err)
	}
	out := make([]PersonSummary, 0, len(found))
	for _, p := range found {
		rec, err := r.decrypt(p)
		if err != nil {
			return nil, err
		}
		out = append(out, rec.Summary())
	}
	return out, nil
}

const taskCols = `task_no, person_no, items, assigned_unit, deadline, note, state, issued_msg_id::text,
	coalesce(signed_unit, ''), coalesce(signed_officer, ''), signed_at, coalesce(sign_msg_id::text, ''), created_at, updated_at`

func scanTask(row pgx.CollectableRow) (TaskRecord, error) {
	var t TaskRecord
	err := row.Scan(&t.TaskNo, &t.PersonNo, &t.Items, &t.AssignedUnit, &t.Deadline, &t.Note, &t.State, &t.IssuedMsgID,
		&t.SignedUnit, &t.SignedOfficer, &t.SignedAt, &t.SignMsgID, &t.CreatedAt, &t.UpdatedAt)
	return t, err
}

// GetTask returns task taskNo, or an error wrapping ErrNotFound.
func (r *Registry) GetTask(ctx context.Context, q store.Querier, taskNo string) (*TaskRecord, error) {
	rows, err := q.Query(ctx, `SELECT `+taskCols+` FROM task WHERE task_no = $1`, taskNo)
	if err != nil {
		return nil, fmt.Errorf("registry: get task %s: %w", taskNo, err)
	}
	t, err := pgx.CollectExactlyOneRow(rows, scanTask)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: task %s", ErrNotFound, taskNo)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: get task %s: %w", taskNo, err)
	}
	return &t, nil
}

// Validate reports whether the filter can be used.
func (f TaskFilter) Validate() error {
	var errs []error
	if f.State != "" && f.State != TaskIssued && f.State != TaskSigned {
		errs = append(errs, fmt.Errorf("state %q", f.State))
	}
	if f.Unit != "" && !digits(f.Unit, 12) {
		errs = append(errs, fmt.Errorf("unit %q is not 12 digits", f.Unit))
	}
	if f.Limit < 0 || f.Limit > MaxTaskLimit {
		errs = append(errs, fmt.Errorf("limit %d not in 0-%d", f.Limit, MaxTaskLimit))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: task filter: %w", ErrInvalid, err)
	}
	return nil
}

// ListTasks returns the tasks selected by f in taskNo order, at most
// f.Limit (default DefaultTaskLimit); pass the last taskNo as f.After for
// the next page.
func (r *Registry) ListTasks(ctx context.Context, q store.Querier, f TaskFilter) ([]TaskRecord, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if f.Limit == 0 {
		f.Limit = DefaultTaskLimit
	}
	// Only the filter's own conditions go into the query: "($1 = '' OR
	// state = $1)" keeps a cached generic plan from using the unit and
	// state indexes (the same fix as exchange.ListFilings).
	where, args := []string{"task_no > $1"}, []any{f.After}
	if f.State != "" {
		args = append(args, f.State)
		where = append(where, fmt.Sprintf("state = $%d", len(args)))
	}
	if f.Unit != "" {
		args = append(args, f.Unit)
		where = append(where, fmt.Sprintf("assigned_unit = $%d", len(args)))
	}
	args = append(args, f.Limit)
	rows, err := q.Query(ctx, `SELECT `+taskCols+` FROM task WHERE `+strings.Join(where, " AND ")+
		fmt.Sprintf(` ORDER BY task_no LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("registry: list tasks: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanTask)
	if err != nil {
		return nil, fmt.Errorf("registry: list tasks: %w", err)
	}
	if out == nil {
		out = []TaskRecord{}
	}
	return out, nil
}
