package exchange

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
)

// Outbox states.
const (
	OutPending   = "pending"   // not yet published
	OutSent      = "sent"      // published, awaiting its receipt (filings)
	OutDone      = "done"      // published, nothing awaited (receipts, events)
	OutReceipted = "receipted" // its receipt arrived
	OutFlagged   = "flagged"   // no receipt within the give-up time: for the operators
)

// Out is one message to publish.
type Out struct {
	ID         string
	Kind       string
	Exchange   string
	RoutingKey string
	ToNode     string // "" for an internal event (not sealed)
	Corr       string
	Payload    []byte
	// Encrypted says that Payload is sealed with the field encryption
	// (additional data PayloadAAD(ID)); the relay opens it to publish.
	Encrypted    bool
	PersonNo     string
	Seq          int64
	NeedsReceipt bool
	Actor        string

	// Read back by the relay and the API.
	State         string
	Attempts      int
	NextAttemptAt time.Time
	FirstSentAt   *time.Time
	LastSentAt    *time.Time
	LastError     string
	ReceiptStatus string
	ReceiptCode   string
	ReceiptReason string
	ReceiptAt     *time.Time
	CreatedAt     time.Time
}

// Enqueue adds m to the outbox, due now. The write may be held back
// (store.ExecLater).
func Enqueue(ctx context.Context, tx store.Querier, m Out) error {
	return EnqueueAll(ctx, tx, []Out{m})
}

// PayloadAAD is the additional data binding an encrypted outbox payload to
// its row.
func PayloadAAD(id string) []byte { return []byte("outbox.payload/" + id) }

const outColumns = `id::text, kind, exchange, routing_key, to_node, corr, payload, payload_encrypted, person_no, seq, needs_receipt, actor,
	state, attempts, next_attempt_at, first_sent_at, last_sent_at, last_error, receipt_status, receipt_code, receipt_reason, receipt_at, created_at`

func scanOut(r pgx.Row) (Out, error) {
	var m Out
	err := r.Scan(&m.ID, &m.Kind, &m.Exchange, &m.RoutingKey, &m.ToNode, &m.Corr, &m.Payload, &m.Encrypted, &m.PersonNo, &m.Seq, &m.NeedsReceipt, &m.Actor,
		&m.State, &m.Attempts, &m.NextAttemptAt, &m.FirstSentAt, &m.LastSentAt, &m.LastError, &m.ReceiptStatus, &m.ReceiptCode, &m.ReceiptReason, &m.ReceiptAt, &m.CreatedAt)
	return m, err
}

// ClaimDue locks and returns up to limit messages due at now (pending ones
// and filings whose resend is due), oldest first; other relays skip them.
func ClaimDue(ctx context.Context, tx store.Querier, now time.Time, limit int) ([]Out, error) {
	rows, err := tx.Query(ctx, `SELECT `+outColumns+` FROM outbox
		WHERE state IN ('pending', 'sent') AND next_attempt_at <= $1
		ORDER BY next_attempt_at, created_at LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("exchange: claim due: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Out, error) { return scanOut(r) })
	if err != nil {
		return nil, fmt.Errorf("exchange: claim due: %w", err)
	}
	return out, nil
}

// Attempt is the outcome of one publish attempt.
type Attempt struct {
	ID string
	// Published is true when the broker confirmed the message.
	Published bool
	// Err is why it was not published ("" when it was, or when it was not
	// tried, e.g. flagged).
	Err error
	// State after the attempt and when to try again.
	State         string
	NextAttemptAt time.Time
}

// RecordAttempts stores publish outcomes in one statement. The write may be
// held back (store.ExecLater).
func RecordAttempts(ctx context.Context, tx store.Querier, now time.Time, as []Attempt) error {
	if len(as) == 0 {
		return nil
	}
	ids := make([]string, len(as))
	states := make([]string, len(as))
	nexts := make([]time.Time, len(as))
	errs := make([]string, len(as))
	sent := make([]bool, len(as))
	for i, a := range as {
		ids[i], states[i], nexts[i], sent[i] = a.ID, a.State, a.NextAttemptAt, a.Published
		if a.Err != nil {
			errs[i] = a.Err.Error()
		}
	}
	err := store.ExecLater(ctx, tx, `UPDATE outbox o SET
			state = u.state,
			next_attempt_at = u.next,
			last_error = u.err,
			attempts = o.attempts + CASE WHEN u.sent THEN 1 ELSE 0 END,
			first_sent_at = CASE WHEN u.sent THEN coalesce(o.first_sent_at, $1) ELSE o.first_sent_at END,
			last_sent_at = CASE WHEN u.sent THEN $1 ELSE o.last_sent_at END
		FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::bool[]) AS u(id, state, next, err, sent)
		WHERE o.id = u.id`, now, ids, states, nexts, errs, sent)
	if err != nil {
		return fmt.Errorf("exchange: record attempts: %w", err)
	}
	return nil
}

// ErrUnknownRef reports a receipt for no message of ours.
var ErrUnknownRef = errors.New("exchange: receipt for an unknown message")

// Receipt is a received answer to one of our filings.
type Receipt struct {
	ID     string // the receipt's own envelope id
	From   string
	Ref    string
	Status string // ACCEPTED | REJECTED | DUPLICATE
	Code   string
	Reason string
	At     time.Time
}

// CorrelateReceipt records r on the filing it answers and stops its resends.
// The first receipt decides; a later one (a DUPLICATE after a resend) is
// recorded only if the message was not receipted yet. It returns the
// filing's person number and whether this receipt changed the state, or
// ErrUnknownRef.
func CorrelateReceipt(ctx context.Context, tx store.Querier, r Receipt) (Out, bool, error) {
	m, err := scanOut(tx.QueryRow(ctx, `SELECT `+outColumns+` FROM outbox WHERE id = $1 AND to_node = $2 AND needs_receipt FOR UPDATE`, r.Ref, r.From))
	if errors.Is(err, pgx.ErrNoRows) {
		return Out{}, false, fmt.Errorf("%w: %s", ErrUnknownRef, r.Ref)
	}
	if err != nil {
		return Out{}, false, fmt.Errorf("exchange: correlate %s: %w", r.Ref, err)
	}
	if m.State == OutReceipted {
		return m, false, nil
	}
	_, err = tx.Exec(ctx, `UPDATE outbox SET state = 'receipted', receipt_id = $2, receipt_status = $3, receipt_code = $4,
		receipt_reason = $5, receipt_at = $6 WHERE id = $1`, r.Ref, r.ID, r.Status, r.Code, r.Reason, r.At)
	if err != nil {
		return Out{}, false, fmt.Errorf("exchange: correlate %s: %w", r.Ref, err)
	}
	m.State, m.ReceiptStatus, m.ReceiptCode, m.ReceiptReason = OutReceipted, r.Status, r.Code, r.Reason
	return m, true, nil
}

// NextOutSeq returns and consumes the next seq this hub gives to a message
// about personNo for node to.
func NextOutSeq(ctx context.Context, tx store.Querier, to, personNo string) (int64, error) {
	var seq int64
	err := tx.QueryRow(ctx, `INSERT INTO sequence_out (to_node, person_no, next_seq) VALUES ($1, $2, 2)
		ON CONFLICT (to_node, person_no) DO UPDATE SET next_seq = sequence_out.next_seq + 1
		RETURNING next_seq - 1`, to, personNo).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("exchange: out seq %s/%s: %w", to, personNo, err)
	}
	return seq, nil
}

// Get returns one outbox message.
func Get(ctx context.Context, q store.Querier, id string) (Out, error) {
	m, err := scanOut(q.QueryRow(ctx, `SELECT `+outColumns+` FROM outbox WHERE id = $1`, id))
	if err != nil {
		return Out{}, fmt.Errorf("exchange: get %s: %w", id, err)
	}
	return m, nil
}

// Filter selects filings for operators.
type Filter struct {
	States   []string // e.g. sent (awaiting a receipt), flagged
	PersonNo string
	Limit    int
}

// ListFilings returns filings (messages that need a receipt), newest first.
// The query names only the filter's conditions: a condition that holds
// when its parameter is empty (col = $n OR $n is the empty string) cannot
// use an index in the generic plan that PostgreSQL settles on for a
// prepared statement run often (116 ms instead of 0.05 ms for one person
// at 100 000 filings).
func ListFilings(ctx context.Context, q store.Querier, f Filter) ([]Out, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	where, args := []string{"needs_receipt"}, []any{}
	if len(f.States) > 0 {
		args = append(args, f.States)
		where = append(where, fmt.Sprintf("state = ANY($%d)", len(args)))
	}
	if f.PersonNo != "" {
		args = append(args, f.PersonNo)
		where = append(where, fmt.Sprintf("person_no = $%d", len(args)))
	}
	args = append(args, f.Limit)
	rows, err := q.Query(ctx, `SELECT `+outColumns+` FROM outbox WHERE `+strings.Join(where, " AND ")+
		fmt.Sprintf(` ORDER BY created_at DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("exchange: list filings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Out, error) { return scanOut(r) })
	if err != nil {
		return nil, fmt.Errorf("exchange: list filings: %w", err)
	}
	return out, nil
}
