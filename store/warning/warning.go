// Package warning keeps the warnings (信息预警) the internal modules issue
// to the responsible units, their lifecycle and their overdue escalation
// (督办).
//
// A warning arrives as a warning.issued event (Issue, called by the route
// that consumes zhian.events, in its transaction): it is stored in state
// issued and a reminder goes to the responsible unit's inbox in the same
// transaction. The unit then signs it, starts handling it and finishes it
// with a result, or transfers it to another unit:
//
//	issued ─sign→ signed ─start→ in_progress ─finish→ done | false_alarm
//	issued, signed, in_progress, transferred ─transfer→ transferred (new unit)
//	transferred ─sign (by the new unit)→ signed → …
//
// Each step locks the warning, checks the state machine (Next), records the
// step (warning_step), stages its audit entry and enqueues its internal
// event to the outbox (exchange.Enqueue; the relay publishes it to
// zhian.events), all in one transaction: sign publishes warning.signed,
// finish warning.feedback. Start and transfer have no event contract and
// publish none. Final outcomes (finish, transfer) are also filed to the
// city bureau through Config.Feedback in the same transaction.
//
// Decisions:
//
//   - The data scope of a warning is every unit that was responsible for
//     it (holders): after a transfer the old unit still sees what it
//     handed over, the new unit sees it and gets it in its inbox. Only a
//     caller whose scope covers the responsible unit now may act on it
//     (ErrNotResponsible otherwise).
//   - A transfer keeps the deadline: a deadline is never extended, neither
//     by a transfer nor by the sweep.
//   - Overdue escalation (Sweep): an open warning past its deadline is
//     marked escalated once (escalated_at), and its responsible unit and
//     that unit's parent get an inbox item; the step is recorded and
//     audited. Rows are claimed with FOR UPDATE SKIP LOCKED, so sweeps in
//     several hub processes never escalate one warning twice.
//   - Warnings carry a person number at most (the contract has no ID
//     number, name or address, nor any field of ethnicity, religion or
//     health); nothing here filters or counts people by such data.
package warning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/contracts/events"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/exchange"
	"zhianhub/store/inbox"
)

// Warning is one stored warning.
type Warning struct {
	WarningID string
	Level     int
	Category  string
	Title     string
	Content   string
	PersonNo  string
	// Unit is the responsible unit now; Holders every unit that was
	// responsible, in order.
	Unit      string
	Holders   []string
	Deadline  time.Time
	IssuedAt  time.Time
	Source    string // the publishing module
	MessageID string // of the warning.issued event
	State     string

	SignedUnit    string
	SignedOfficer string
	SignedAt      *time.Time
	Result        string // a finish's result (Results)
	Detail        string
	FinishedAt    *time.Time
	EscalatedAt   *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Overdue reports whether the warning is open and past its deadline at now.
func (w Warning) Overdue(now time.Time) bool { return Open(w.State) && now.After(w.Deadline) }

// Step is one step of a warning's lifecycle.
type Step struct {
	Action    string // issue, sign, start, finish, transfer, escalate
	FromState string
	ToState   string
	Unit      string
	Actor     string
	Officer   string
	ToUnit    string
	Note      string
	At        time.Time
}

// Feedback is a disposition for the city feedback bus (feedback-bus.md):
// refType warning, refNo the warningId.
type Feedback struct {
	RefType string // "warning"
	RefNo   string
	Unit    string // the reporting unit
	Officer string
	Result  string // FeedbackDone, FeedbackUnverified, FeedbackFalseAlarm, FeedbackTransferred, FeedbackInProgress
	Detail  string
	At      time.Time
	// Actor is who acted (user id); CorrelationID the request that did it.
	Actor         string
	CorrelationID string
}

// FeedbackFiler files a Feedback to the city bureau in the caller's
// transaction (the city-bus adapter's outbox).
type FeedbackFiler interface {
	FileFeedback(ctx context.Context, tx pgx.Tx, f Feedback) error
}

// Units is the part of the unit tree the lifecycle needs
// (*auth.UnitTree).
type Units interface {
	Contains(code string) bool
	Parent(code string) string
	Name(code string) string
}

// DefaultEventFrom is the from of the events the hub publishes for warning
// steps (the portal is part of the hub).
const DefaultEventFrom = "zhianhub"

// Config configures the Service.
type Config struct {
	Pool  *pgxpool.Pool
	Units Units
	// Now is the clock of the steps and the sweep. Default time.Now.
	Now func() time.Time
	// EventsExchange receives the steps' events; default
	// events.EventsExchange.
	EventsExchange string
	// EventFrom is the events' from; default DefaultEventFrom.
	EventFrom string
	// Feedback files final outcomes to the city bureau. nil: not sent
	// (New logs that once).
	Feedback FeedbackFiler
	// Notify wakes the outbox relay after a commit; AuditNotify the audit
	// writer. Both optional.
	Notify      func()
	AuditNotify func()
	Logger      *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.EventsExchange == "" {
		c.EventsExchange = events.EventsExchange
	}
	if c.EventFrom == "" {
		c.EventFrom = DefaultEventFrom
	}
	if c.Notify == nil {
		c.Notify = func() {}
	}
	if c.AuditNotify == nil {
		c.AuditNotify = func() {}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a missing dependency.
func (c Config) Validate() error {
	var errs []error
	if c.Pool == nil {
		errs = append(errs, errors.New("warning: Config.Pool is required"))
	}
	if c.Units == nil {
		errs = append(errs, errors.New("warning: Config.Units is required"))
	}
	return errors.Join(errs...)
}

// Service is the warnings' lifecycle.
type Service struct{ cfg Config }

// New returns the service.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Feedback == nil {
		cfg.Logger.Info("warning dispositions are not filed to the city feedback bus (no feedback filer configured)")
	}
	return &Service{cfg: cfg}, nil
}

// Now returns the service's clock.
func (s *Service) Now() time.Time { return s.cfg.Now() }

var shanghai = time.FixedZone("CST", 8*3600)

func eventTime(t time.Time) string { return t.In(shanghai).Format("2006-01-02T15:04:05.000Z07:00") }

// Issue is the data of a warning.issued event.
type Issue struct {
	WarningID string    `json:"warningId"`
	Level     int       `json:"level"`
	Category  string    `json:"category"`
	Title     string    `json:"title"`
	Content   string    `json:"content"`
	PersonNo  string    `json:"personNo"`
	Unit      string    `json:"unit"`
	Deadline  time.Time `json:"deadline"`
	IssuedAt  time.Time `json:"issuedAt"`
}

// Issue stores a warning issued by module source in event messageID, in
// the caller's transaction, and delivers its reminder to the unit's inbox.
// It returns false when the warning (or the event) is known already: a
// redelivery, which has no effect. A unit not in the unit tree is an
// *InvalidError (nobody would see the warning).
func (s *Service) Issue(ctx context.Context, tx pgx.Tx, messageID, source string, in Issue) (bool, error) {
	if !s.cfg.Units.Contains(in.Unit) {
		return false, invalid("unit：责任单位 %s 不在单位树中", in.Unit)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO warning (warning_id, level, category, title, content, person_no, unit, holders,
			deadline, issued_at, source, message_id, state)
		VALUES ($1, $2, $3, $4, $5, $6, $7, ARRAY[$7], $8, $9, $10, $11, 'issued')
		ON CONFLICT DO NOTHING`,
		in.WarningID, in.Level, in.Category, in.Title, in.Content, in.PersonNo, in.Unit, in.Deadline, in.IssuedAt, source, messageID)
	if err != nil {
		return false, fmt.Errorf("warning: issue %s: %w", in.WarningID, err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	now := s.cfg.Now()
	if err := addStep(ctx, tx, in.WarningID, Step{Action: "issue", ToState: Issued, Unit: in.Unit, Actor: source, At: now}); err != nil {
		return false, err
	}
	if _, err := inbox.Deliver(ctx, tx, inbox.Item{RecipientKind: inbox.ToUnit, Recipient: in.Unit, Kind: "warning",
		Ref: in.WarningID, Title: clipTitle("预警：" + in.Title), Body: "请于 " + in.Deadline.In(shanghai).Format("2006-01-02 15:04") + " 前签收并反馈",
		Level: in.Level}); err != nil {
		return false, err
	}
	if err := audit.Stage(ctx, tx, audit.Entry{Actor: source, Action: "warning.issue", Object: in.WarningID, Result: "ok",
		CorrelationID: messageID, Detail: map[string]any{"unit": in.Unit, "level": in.Level, "category": in.Category}}); err != nil {
		return false, err
	}
	return true, nil
}

func clipTitle(s string) string {
	if utf8.RuneCountInString(s) <= 200 {
		return s
	}
	return string([]rune(s)[:199]) + "…"
}

func addStep(ctx context.Context, q store.Querier, id string, st Step) error {
	_, err := q.Exec(ctx, `INSERT INTO warning_step (warning_id, action, from_state, to_state, unit, actor, officer, to_unit, note, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		id, st.Action, st.FromState, st.ToState, st.Unit, st.Actor, st.Officer, st.ToUnit, st.Note, st.At)
	if err != nil {
		return fmt.Errorf("warning: step %s of %s: %w", st.Action, id, err)
	}
	return nil
}

const columns = `warning_id, level, category, title, content, person_no, unit, holders, deadline, issued_at, source, message_id::text,
	state, signed_unit, signed_officer, signed_at, result, detail, finished_at, escalated_at, created_at, updated_at`

func scan(r pgx.Row) (Warning, error) {
	var w Warning
	var level int16
	err := r.Scan(&w.WarningID, &level, &w.Category, &w.Title, &w.Content, &w.PersonNo, &w.Unit, &w.Holders, &w.Deadline, &w.IssuedAt,
		&w.Source, &w.MessageID, &w.State, &w.SignedUnit, &w.SignedOfficer, &w.SignedAt, &w.Result, &w.Detail, &w.FinishedAt,
		&w.EscalatedAt, &w.CreatedAt, &w.UpdatedAt)
	w.Level = int(level)
	return w, err
}

// Get returns one warning; scope (the units the caller sees; nil = all)
// must contain one of its holders, else ErrNotFound.
func Get(ctx context.Context, q store.Querier, id string, scope []string) (Warning, error) {
	return get(ctx, q, id, scope, false)
}

func get(ctx context.Context, q store.Querier, id string, scope []string, lock bool) (Warning, error) {
	sql := `SELECT ` + columns + ` FROM warning WHERE warning_id = $1 AND ($2::text[] IS NULL OR holders && $2)`
	if lock {
		sql += ` FOR UPDATE`
	}
	w, err := scan(q.QueryRow(ctx, sql, id, scope))
	if errors.Is(err, pgx.ErrNoRows) {
		return Warning{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Warning{}, fmt.Errorf("warning: get %s: %w", id, err)
	}
	return w, nil
}

// Steps returns the steps of a warning, oldest first.
func Steps(ctx context.Context, q store.Querier, id string) ([]Step, error) {
	rows, err := q.Query(ctx, `SELECT action, from_state, to_state, unit, actor, officer, to_unit, note, at
		FROM warning_step WHERE warning_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("warning: steps of %s: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Step, error) {
		var s Step
		return s, r.Scan(&s.Action, &s.FromState, &s.ToState, &s.Unit, &s.Actor, &s.Officer, &s.ToUnit, &s.Note, &s.At)
	})
	if err != nil {
		return nil, fmt.Errorf("warning: steps of %s: %w", id, err)
	}
	return out, nil
}

// MaxLimit bounds a page of List.
const MaxLimit = 1000

// Filter selects warnings.
type Filter struct {
	// Scope is the units the caller sees: a warning is listed when one of
	// its holders is in it. nil lists every warning; empty none.
	Scope []string
	State string // "" = any
	Level int    // 0 = any
	// Overdue: nil any; true open and past the deadline at Now; false the
	// others.
	Overdue *bool
	Now     time.Time
	// Before pages: warnings with a warningId lower than this (newest
	// first); "" from the start.
	Before string
	Limit  int // default 100, at most MaxLimit
}

// List returns the warnings f selects, by warningId descending.
func List(ctx context.Context, q store.Querier, f Filter) ([]Warning, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, MaxLimit)
	if f.Scope != nil && len(f.Scope) == 0 {
		return nil, nil
	}
	where := []string{"($1::text[] IS NULL OR holders && $1)"}
	args := []any{f.Scope}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args))))
	}
	if f.State != "" {
		add("state = $?", f.State)
	}
	if f.Level != 0 {
		add("level = $?", f.Level)
	}
	if f.Overdue != nil {
		cond := "state NOT IN ('done', 'false_alarm') AND deadline < $?"
		if !*f.Overdue {
			cond = "NOT (" + cond + ")"
		}
		add(cond, f.Now)
	}
	if f.Before != "" {
		add("warning_id < $?", f.Before)
	}
	args = append(args, f.Limit)
	sql := `SELECT ` + columns + ` FROM warning WHERE ` + strings.Join(where, " AND ") +
		fmt.Sprintf(` ORDER BY warning_id DESC LIMIT $%d`, len(args))
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("warning: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Warning, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("warning: list: %w", err)
	}
	return out, nil
}

// Actor is who takes a step.
type Actor struct {
	User string // user id, for the audit
	Unit string // the user's unit
	Role string
	// Officer is the officer's number (6-8 digits), for the events and the
	// city feedback.
	Officer string
	// Scope is the units the actor sees (nil: all). The actor may take a
	// step when the responsible unit is in it.
	Scope []string
	// CorrelationID ties the audit entry to the request.
	CorrelationID string
}

func (a Actor) sees(unit string) bool {
	if a.Scope == nil {
		return true
	}
	for _, u := range a.Scope {
		if u == unit {
			return true
		}
	}
	return false
}

func validOfficer(s string) bool {
	if len(s) < 6 || len(s) > 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Sign signs the warning for the actor's unit (issued or transferred →
// signed) and publishes warning.signed.
func (s *Service) Sign(ctx context.Context, id string, a Actor) (Warning, error) {
	return s.step(ctx, id, a, ActSign, "", "", "")
}

// Start starts the handling (signed → in_progress).
func (s *Service) Start(ctx context.Context, id string, a Actor) (Warning, error) {
	return s.step(ctx, id, a, ActStart, "", "", "")
}

// Finish records the outcome (in_progress → done, or false_alarm for
// ResultFalseAlarm) with the unit's account (1-1000 characters),
// publishes warning.feedback and files the city feedback.
func (s *Service) Finish(ctx context.Context, id string, a Actor, result, detail string) (Warning, error) {
	return s.step(ctx, id, a, ActFinish, result, detail, "")
}

// Transfer hands the warning to unit toUnit (→ transferred), whose inbox
// gets it; reason (1-1000 characters) says why. The deadline stays.
func (s *Service) Transfer(ctx context.Context, id string, a Actor, toUnit, reason string) (Warning, error) {
	return s.step(ctx, id, a, ActTransfer, "", reason, toUnit)
}

// MaxDetail bounds a finish's account and a transfer's reason, in
// characters (the content of warning.feedback).
const MaxDetail = 1000

func checkDetail(what, s string) error {
	if strings.TrimSpace(s) == "" {
		return invalid("%s：不能为空", what)
	}
	if utf8.RuneCountInString(s) > MaxDetail {
		return invalid("%s：不能超过 %d 个字符", what, MaxDetail)
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r >= 0x7f && r <= 0x9f {
			return invalid("%s：不能含控制字符", what)
		}
	}
	return nil
}

func (s *Service) step(ctx context.Context, id string, a Actor, action, result, detail, toUnit string) (Warning, error) {
	if !validOfficer(a.Officer) {
		return Warning{}, invalid("officer：须为 6-8 位数字的警号")
	}
	switch action {
	case ActFinish:
		if err := checkDetail("detail", detail); err != nil {
			return Warning{}, err
		}
	case ActTransfer:
		if err := checkDetail("reason", detail); err != nil {
			return Warning{}, err
		}
		if !s.cfg.Units.Contains(toUnit) {
			return Warning{}, invalid("unit：接收单位 %s 不在单位树中", toUnit)
		}
	}
	var out Warning
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		w, err := get(ctx, tx, id, a.Scope, true)
		if err != nil {
			return err
		}
		if !a.sees(w.Unit) {
			return fmt.Errorf("%w: %s is with unit %s", ErrNotResponsible, id, w.Unit)
		}
		next, err := Next(w.State, action, result)
		if err != nil {
			return err
		}
		if action == ActTransfer && toUnit == w.Unit {
			return invalid("unit：不能移交给当前责任单位")
		}
		now := s.cfg.Now()
		st := Step{Action: action, FromState: w.State, ToState: next, Unit: w.Unit, Actor: a.User, Officer: a.Officer, At: now}
		// The events of a user's step carry the request's correlation id
		// (AMQP correlation_id, outbox corr): the action, its audit entry
		// and the messages it caused trace as one. Without one (a job),
		// they name the warning.issued message.
		corr := w.MessageID
		if a.CorrelationID != "" {
			corr = a.CorrelationID
		}
		var evs []exchange.Out
		switch action {
		case ActSign:
			_, err = tx.Exec(ctx, `UPDATE warning SET state = $2, signed_unit = $3, signed_officer = $4, signed_at = $5, updated_at = $5
				WHERE warning_id = $1`, id, next, w.Unit, a.Officer, now)
			evs = append(evs, s.event(events.KindWarningSigned, corr, a.User, now, map[string]any{
				"warningId": id, "unit": w.Unit, "officer": a.Officer, "signedAt": eventTime(now)}))
		case ActStart:
			_, err = tx.Exec(ctx, `UPDATE warning SET state = $2, updated_at = $3 WHERE warning_id = $1`, id, next, now)
		case ActFinish:
			st.Note = result
			_, err = tx.Exec(ctx, `UPDATE warning SET state = $2, result = $3, detail = $4, finished_at = $5, updated_at = $5
				WHERE warning_id = $1`, id, next, result, detail, now)
			evs = append(evs, s.event(events.KindWarningFeedback, corr, a.User, now, map[string]any{
				"warningId": id, "unit": w.Unit, "officer": a.Officer, "result": result, "content": detail, "feedbackAt": eventTime(now)}))
		case ActTransfer:
			st.ToUnit, st.Note = toUnit, detail
			_, err = tx.Exec(ctx, `UPDATE warning SET state = $2, unit = $3,
					holders = CASE WHEN $3 = ANY(holders) THEN holders ELSE holders || $3 END, updated_at = $4
				WHERE warning_id = $1`, id, next, toUnit, now)
			if err == nil {
				_, err = inbox.Deliver(ctx, tx, inbox.Item{RecipientKind: inbox.ToUnit, Recipient: toUnit, Kind: "warning", Ref: id,
					Title: clipTitle("预警（移交）：" + w.Title), Body: "由 " + unitLabel(s.cfg.Units, w.Unit) + " 移交：" + detail +
						"；时限 " + w.Deadline.In(shanghai).Format("2006-01-02 15:04"), Level: w.Level})
			}
		}
		if err != nil {
			return fmt.Errorf("warning: %s %s: %w", action, id, err)
		}
		if err := addStep(ctx, tx, id, st); err != nil {
			return err
		}
		if err := exchange.EnqueueAll(ctx, tx, evs); err != nil {
			return err
		}
		if fr := FeedbackResult(action, result); fr != "" && s.cfg.Feedback != nil {
			if err := s.cfg.Feedback.FileFeedback(ctx, tx, Feedback{RefType: "warning", RefNo: id, Unit: w.Unit, Officer: a.Officer,
				Result: fr, Detail: feedbackDetail(action, detail, toUnit), At: now,
				Actor: a.User, CorrelationID: a.CorrelationID}); err != nil {
				return fmt.Errorf("warning: city feedback of %s: %w", id, err)
			}
		}
		d := map[string]any{"from": w.State, "to": next, "unit": w.Unit, "officer": a.Officer}
		if result != "" {
			d["result"] = result
		}
		if toUnit != "" {
			d["toUnit"] = toUnit
		}
		if err := audit.Stage(ctx, tx, audit.Entry{At: now, Actor: a.User, Unit: a.Unit, Role: a.Role, Action: "warning." + action,
			Object: id, Result: "ok", Reason: auditReason(action, detail), CorrelationID: a.CorrelationID, Detail: d}); err != nil {
			return err
		}
		out, err = get(ctx, tx, id, nil, false)
		return err
	})
	if err != nil {
		return Warning{}, err
	}
	s.cfg.Notify()
	s.cfg.AuditNotify()
	return out, nil
}

func auditReason(action, detail string) string {
	if action == ActTransfer {
		return detail
	}
	return ""
}

func feedbackDetail(action, detail, toUnit string) string {
	if action == ActTransfer {
		return "移交至 " + toUnit + "：" + detail
	}
	return detail
}

func unitLabel(u Units, code string) string {
	if n := u.Name(code); n != "" {
		return n + "（" + code + "）"
	}
	return code
}

// event builds an internal event for the outbox; corr is the correlation
// id of the request that caused it, or the id of the warning.issued event.
func (s *Service) event(kind, corr, actor string, now time.Time, data map[string]any) exchange.Out {
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	b, _ := json.Marshal(map[string]any{"messageId": id.String(), "kind": kind, "from": s.cfg.EventFrom,
		"occurredAt": eventTime(now), "data": data}) // plain values: cannot fail
	return exchange.Out{ID: id.String(), Kind: kind, Exchange: s.cfg.EventsExchange, RoutingKey: kind, Corr: corr, Payload: b, Actor: actor}
}
