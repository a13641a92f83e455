// Package dispatch keeps the city bus's records (feedback-bus.md): the
// dispatch orders the city bureau sends down (dispatch.order), their target
// units with each unit's state, and the history of every feedback the hub
// files up (feedback.warning|task|dispatch|lead).
//
// *Store is the routes.Registry of the city bus: the inbound route applies
// a dispatch.order through it, the filing service a feedback, each in the
// transaction that also writes the receipt or the outbox row.
//
// Decisions:
//   - Orders are idempotent on orderNo: the message that created an order
//     applied again is registry.ErrAlreadyApplied (no second effect); a
//     different message for an existing orderNo is E130.
//   - An arriving order puts one row per target unit (state delivered) and
//     one reminder in each target unit's inbox (store/inbox: kind
//     "dispatch", ref the orderNo, the order's title and level) in the same
//     transaction; inbox delivery is idempotent on (unit, dispatch:orderNo).
//   - A dispatch feedback must name an existing order (else E131 at refNo)
//     and one of its target units (else E131 at unit). A unit may report
//     in_progress any number of times, then one final result (done,
//     unverified, false_alarm, transferred); a feedback after a final one
//     is E130. Its unit row becomes submitted with the feedback's message
//     id, number and result.
//   - Feedback of the other refTypes (warning, task, lead: records of other
//     modules) is kept in the history without a check of its reference:
//     those modules check it before they file.
//   - The checks come before the writes, so a refusal leaves the
//     transaction usable (the routes.Registry contract).
//   - Feedback numbers (feedbackNo, 20 digits) assigned by the hub are
//     310000 + the Asia/Shanghai date yyyymmdd + a 6-digit serial of the
//     sequence feedback_no_seq (modulo 10^6; the unique constraint catches
//     a wrap within one day).
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/contracts"
	"zhianhub/store"
	"zhianhub/store/inbox"
	"zhianhub/store/registry"
)

// Unit states.
const (
	StateDelivered = "delivered"
	StateSubmitted = "submitted"
)

// Bus codes of the refusals.
const (
	CodeStateConflict = "E130"
	CodeUnknownRecord = "E131"
)

// StateError is a refusal of the order state (E130, E131); Reason is the
// Chinese text of the receipt or API answer.
type StateError struct {
	Code   string
	Reason string
}

func (e *StateError) Error() string      { return "dispatch: " + e.Code + " " + e.Reason }
func (e *StateError) ResultCode() string { return e.Code }
func (e *StateError) UserReason() string { return e.Reason }

// ErrNotFound reports an unknown order (or one outside the caller's units).
var ErrNotFound = errors.New("dispatch: not found")

// InboxKind is the inbox item kind of a dispatch order.
const InboxKind = "dispatch"

// Store is the dispatch-order and feedback store. It holds no state: the
// zero value is ready.
type Store struct{}

// New returns a Store.
func New() *Store { return &Store{} }

// Apply implements routes.Registry for the city bus: an inbound
// dispatch.order stores the order; an outbound feedback.* records the
// feedback. Anything else is registry.ErrInvalid (a wiring error).
func (s *Store) Apply(ctx context.Context, tx pgx.Tx, m registry.Message) error {
	switch p := m.Payload.(type) {
	case *contracts.Order:
		if m.Direction != registry.In || m.Kind != contracts.KindDispatchOrder {
			break
		}
		return s.receiveOrder(ctx, tx, m, p)
	case *contracts.Feedback:
		if m.Direction != registry.Out || m.Kind != contracts.FeedbackKind(p.RefType) {
			break
		}
		return s.recordFeedback(ctx, tx, m, p)
	}
	return fmt.Errorf("%w: %s %s with payload %T", registry.ErrInvalid, m.Direction, m.Kind, m.Payload)
}

func (s *Store) receiveOrder(ctx context.Context, tx pgx.Tx, m registry.Message, o *contracts.Order) error {
	tag, err := tx.Exec(ctx, `INSERT INTO dispatch_order (order_no, message_id, sender, title, content, level, deadline, issued_by, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		o.OrderNo, m.ID, m.Node, o.Title, o.Content, o.Level, o.Deadline, o.IssuedBy, m.At)
	if err != nil {
		return fmt.Errorf("dispatch: store order %s: %w", o.OrderNo, err)
	}
	if tag.RowsAffected() == 0 {
		var id string
		err := tx.QueryRow(ctx, `SELECT message_id::text FROM dispatch_order WHERE order_no = $1 OR message_id = $2 LIMIT 1`, o.OrderNo, m.ID).Scan(&id)
		if err != nil {
			return fmt.Errorf("dispatch: order %s: %w", o.OrderNo, err)
		}
		if id == m.ID {
			return registry.ErrAlreadyApplied
		}
		return &StateError{Code: CodeStateConflict, Reason: fmt.Sprintf("orderNo：调度指令 %s 已存在", o.OrderNo)}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO dispatch_unit (order_no, unit, state, delivered_at)
SELECT $1, u, 'delivered', $3 FROM unnest($2::text[]) AS u`, o.OrderNo, o.TargetUnits, m.At); err != nil {
		return fmt.Errorf("dispatch: units of order %s: %w", o.OrderNo, err)
	}
	items := make([]inbox.Item, len(o.TargetUnits))
	for i, u := range o.TargetUnits {
		items[i] = inbox.Item{RecipientKind: inbox.ToUnit, Recipient: u, Kind: InboxKind, Ref: o.OrderNo,
			Title: "调度指令：" + o.Title, Body: o.Content, Level: o.Level}
	}
	if _, err := inbox.Deliver(ctx, tx, items...); err != nil {
		return fmt.Errorf("dispatch: inbox of order %s: %w", o.OrderNo, err)
	}
	return nil
}

// finalResult reports a result after which a unit reports no more.
func finalResult(r string) bool { return r != "" && r != contracts.ResultInProgress }

func (s *Store) recordFeedback(ctx context.Context, tx pgx.Tx, m registry.Message, fb *contracts.Feedback) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM feedback WHERE feedback_no = $1)`, fb.FeedbackNo).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return &StateError{Code: CodeStateConflict, Reason: fmt.Sprintf("feedbackNo：反馈编号 %s 已使用", fb.FeedbackNo)}
	}
	if fb.RefType == contracts.RefDispatch {
		var result string
		err := tx.QueryRow(ctx, `SELECT result FROM dispatch_unit WHERE order_no = $1 AND unit = $2 FOR UPDATE`, fb.RefNo, fb.Unit).Scan(&result)
		if errors.Is(err, pgx.ErrNoRows) {
			var known bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM dispatch_order WHERE order_no = $1)`, fb.RefNo).Scan(&known); err != nil {
				return err
			}
			if !known {
				return &StateError{Code: CodeUnknownRecord, Reason: fmt.Sprintf("refNo：调度指令 %s 不存在", fb.RefNo)}
			}
			return &StateError{Code: CodeUnknownRecord, Reason: fmt.Sprintf("unit：单位 %s 不是调度指令 %s 的目标单位", fb.Unit, fb.RefNo)}
		}
		if err != nil {
			return err
		}
		if finalResult(result) {
			return &StateError{Code: CodeStateConflict, Reason: fmt.Sprintf("result：单位 %s 已反馈最终结果（%s），不能再次反馈", fb.Unit, result)}
		}
	}
	att, err := json.Marshal(fb.Attachments)
	if err != nil {
		return err
	}
	if fb.Attachments == nil {
		att = []byte("[]")
	}
	if _, err := tx.Exec(ctx, `INSERT INTO feedback (message_id, feedback_no, to_node, ref_type, ref_no, seq, unit, officer, result, detail, attachments, at, filed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		m.ID, fb.FeedbackNo, m.Node, fb.RefType, fb.RefNo, fb.Seq, fb.Unit, fb.Officer, fb.Result, fb.Detail, string(att), fb.At, m.At); err != nil {
		return fmt.Errorf("dispatch: record feedback %s: %w", fb.FeedbackNo, err)
	}
	if fb.RefType != contracts.RefDispatch {
		return nil
	}
	_, err = tx.Exec(ctx, `UPDATE dispatch_unit SET state = 'submitted', feedback_id = $3, feedback_no = $4, result = $5, submitted_at = $6
WHERE order_no = $1 AND unit = $2`, fb.RefNo, fb.Unit, m.ID, fb.FeedbackNo, fb.Result, m.At)
	return err
}

var shanghai = time.FixedZone("CST", 8*3600)

// NextFeedbackNo returns a new feedback number (see the package decisions).
func NextFeedbackNo(ctx context.Context, q store.Querier, now time.Time) (string, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT nextval('feedback_no_seq')`).Scan(&n); err != nil {
		return "", fmt.Errorf("dispatch: feedback number: %w", err)
	}
	return fmt.Sprintf("310000%s%06d", now.In(shanghai).Format("20060102"), n%1_000_000), nil
}

// Order is a stored order with the units the caller asked about.
type Order struct {
	OrderNo    string    `json:"orderNo"`
	MessageID  string    `json:"messageId"`
	Sender     string    `json:"sender"`
	Title      string    `json:"title"`
	Content    string    `json:"content"`
	Level      int       `json:"level"`
	Deadline   time.Time `json:"deadline"`
	IssuedBy   string    `json:"issuedBy"`
	ReceivedAt time.Time `json:"receivedAt"`
	Units      []Unit    `json:"units"`
}

// Unit is one target unit of an order and its state.
type Unit struct {
	Unit        string     `json:"unit"`
	State       string     `json:"state"`
	DeliveredAt time.Time  `json:"deliveredAt"`
	FeedbackID  string     `json:"feedbackId,omitempty"`
	FeedbackNo  string     `json:"feedbackNo,omitempty"`
	Result      string     `json:"result,omitempty"`
	SubmittedAt *time.Time `json:"submittedAt,omitempty"`
}

// Filter selects orders: those with a target unit in Units (required: the
// caller's unit scope) and, when State is set, such a unit in that state.
// Orders come newest first; After is the orderNo the previous page ended
// with.
type Filter struct {
	Units []string
	State string
	Limit int
	After string
}

const orderCols = `o.order_no, o.message_id::text, o.sender, o.title, o.content, o.level, o.deadline, o.issued_by, o.received_at`

// ListOrders returns the orders of f, each with its units in f.Units.
func ListOrders(ctx context.Context, q store.Querier, f Filter) ([]Order, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := q.Query(ctx, `SELECT `+orderCols+` FROM dispatch_order o
WHERE EXISTS (SELECT 1 FROM dispatch_unit u WHERE u.order_no = o.order_no AND u.unit = ANY($1) AND ($2 = '' OR u.state = $2))
  AND ($3 = '' OR o.order_no < $3)
ORDER BY o.order_no DESC LIMIT $4`, f.Units, f.State, f.After, f.Limit)
	if err != nil {
		return nil, err
	}
	orders, err := pgx.CollectRows(rows, scanOrder)
	if err != nil {
		return nil, err
	}
	if len(orders) == 0 {
		return orders, nil
	}
	nos := make([]string, len(orders))
	at := map[string]int{}
	for i, o := range orders {
		nos[i] = o.OrderNo
		at[o.OrderNo] = i
	}
	units, err := unitsOf(ctx, q, nos, f.Units)
	if err != nil {
		return nil, err
	}
	for _, u := range units {
		i := at[u.orderNo]
		orders[i].Units = append(orders[i].Units, u.Unit)
	}
	return orders, nil
}

// GetOrder returns an order with its units in units; an order without a
// target unit there is ErrNotFound.
func GetOrder(ctx context.Context, q store.Querier, orderNo string, units []string) (*Order, error) {
	rows, err := q.Query(ctx, `SELECT `+orderCols+` FROM dispatch_order o WHERE o.order_no = $1`, orderNo)
	if err != nil {
		return nil, err
	}
	o, err := pgx.CollectExactlyOneRow(rows, scanOrder)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	us, err := unitsOf(ctx, q, []string{orderNo}, units)
	if err != nil {
		return nil, err
	}
	if len(us) == 0 {
		return nil, ErrNotFound
	}
	for _, u := range us {
		o.Units = append(o.Units, u.Unit)
	}
	return &o, nil
}

type orderUnit struct {
	orderNo string
	Unit
}

func unitsOf(ctx context.Context, q store.Querier, orderNos, units []string) ([]orderUnit, error) {
	rows, err := q.Query(ctx, `SELECT order_no, unit, state, delivered_at, coalesce(feedback_id::text, ''), feedback_no, result, submitted_at
FROM dispatch_unit WHERE order_no = ANY($1) AND unit = ANY($2) ORDER BY order_no, unit`, orderNos, units)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderUnit, error) {
		var u orderUnit
		err := r.Scan(&u.orderNo, &u.Unit.Unit, &u.State, &u.DeliveredAt, &u.FeedbackID, &u.FeedbackNo, &u.Result, &u.SubmittedAt)
		return u, err
	})
}

func scanOrder(r pgx.CollectableRow) (Order, error) {
	var o Order
	var level int16
	err := r.Scan(&o.OrderNo, &o.MessageID, &o.Sender, &o.Title, &o.Content, &level, &o.Deadline, &o.IssuedBy, &o.ReceivedAt)
	o.Level = int(level)
	o.Units = []Unit{}
	return o, err
}

// Feedback is one feedback in the history.
type Feedback struct {
	MessageID  string    `json:"messageId"`
	FeedbackNo string    `json:"feedbackNo"`
	RefType    string    `json:"refType"`
	RefNo      string    `json:"refNo"`
	Seq        int64     `json:"seq"`
	Unit       string    `json:"unit"`
	Officer    string    `json:"officer"`
	Result     string    `json:"result"`
	Detail     string    `json:"detail"`
	At         time.Time `json:"at"`
	FiledAt    time.Time `json:"filedAt"`
}

// History returns the feedback filed about (refType, refNo), oldest first.
func History(ctx context.Context, q store.Querier, refType, refNo string) ([]Feedback, error) {
	rows, err := q.Query(ctx, `SELECT message_id::text, feedback_no, ref_type, ref_no, seq, unit, officer, result, detail, at, filed_at
FROM feedback WHERE ref_type = $1 AND ref_no = $2 ORDER BY filed_at, seq`, refType, refNo)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Feedback, error) {
		var f Feedback
		err := r.Scan(&f.MessageID, &f.FeedbackNo, &f.RefType, &f.RefNo, &f.Seq, &f.Unit, &f.Officer, &f.Result, &f.Detail, &f.At, &f.FiledAt)
		return f, err
	})
}

// ValidState reports a unit state a filter may name ("" = any).
func ValidState(s string) bool {
	return s == "" || s == StateDelivered || s == StateSubmitted
}
