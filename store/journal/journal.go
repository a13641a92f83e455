// Package journal records every message the hub receives or sends, with its
// raw envelope bytes, its current state and the history of its states.
//
// A message is identified by its envelope id and its direction: the hub may
// both receive and send a message with the same id (it relays), and a message
// that arrives twice is a duplicate of the first, recorded as an event on the
// existing row (StateReceivedAgain), never as a second row.
//
// Writes take a store.Querier so that callers can journal inside their own
// transaction; reads use the journal's pool.
package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/store"
)

// Direction tells whether the hub received or sent a message.
type Direction string

const (
	// In is a message the hub received.
	In Direction = "in"
	// Out is a message the hub sent.
	Out Direction = "out"
)

// Valid reports whether d is In or Out.
func (d Direction) Valid() bool { return d == In || d == Out }

// State is the state of a message in the journal.
type State string

// Inbound states.
const (
	// StateReceived: the envelope was taken from the bus and stored.
	StateReceived State = "received"
	// StateOpened: signature checked and payload decrypted.
	StateOpened State = "opened"
	// StateRejected: refused with an error code (answered by a receipt).
	StateRejected State = "rejected"
	// StateDeadLettered: unusable and not answerable (envelope rules 1-2);
	// kept with its raw bytes and reason.
	StateDeadLettered State = "dead_lettered"
	// StateApplied: the payload took effect.
	StateApplied State = "applied"
	// StateFlagged: needs a human (security event, manual review).
	StateFlagged State = "flagged"
)

// Outbound states.
const (
	// StateQueued: sealed and waiting to be sent.
	StateQueued State = "queued"
	// StateSent: handed to the bus.
	StateSent State = "sent"
	// StateConfirmed: the bus confirmed delivery.
	StateConfirmed State = "confirmed"
	// StateReceipted: the recipient's receipt arrived.
	StateReceipted State = "receipted"
)

// StateReceivedAgain is an event, never a message's current state: Record
// found the (id, direction) already journaled (a duplicate or a resend).
const StateReceivedAgain State = "received_again"

var states = map[State]bool{
	StateReceived: true, StateOpened: true, StateRejected: true,
	StateDeadLettered: true, StateApplied: true, StateFlagged: true,
	StateQueued: true, StateSent: true, StateConfirmed: true, StateReceipted: true,
}

// Valid reports whether s is a state a message can be in.
func (s State) Valid() bool { return states[s] }

var (
	// ErrNotFound reports an unknown (id, direction).
	ErrNotFound = errors.New("journal: message not found")
	// ErrInvalid reports an argument the journal refuses.
	ErrInvalid = errors.New("journal: invalid argument")
)

// Message is one journaled message.
type Message struct {
	ID        uuid.UUID
	Direction Direction
	// Kind is the envelope kind; empty when unknown (dead letter).
	Kind string
	// Peer is the other node's code (sender of an inbound, recipient of an
	// outbound message); empty when unknown.
	Peer string
	// Raw is the envelope exactly as received or sent.
	Raw []byte
	// State is the current state; Record stores it as the initial state.
	State State
	// Code and Reason are the last error code and reason ("" when none).
	Code   string
	Reason string
	// CorrelationID is the envelope's corr ("" when none, stored as NULL).
	CorrelationID string
	// CreatedAt and UpdatedAt are set by the database.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Event is one entry of a message's history.
type Event struct {
	ID        int64
	MessageID uuid.UUID
	Direction Direction
	State     State
	At        time.Time
	Code      string
	Reason    string
	// Raw holds the bytes of a duplicate (StateReceivedAgain) when they differ
	// from the message's Raw; nil otherwise.
	Raw []byte
}

// Journal reads and writes the message journal.
type Journal struct {
	pool *pgxpool.Pool
}

// New returns a journal reading through pool.
func New(pool *pgxpool.Pool) *Journal {
	return &Journal{pool: pool}
}

const recordSQL = `
WITH now AS (
    SELECT clock_timestamp() AS t
), ins AS (
    INSERT INTO message (id, direction, kind, peer, raw, state, last_code, last_reason, correlation_id, created_at, updated_at)
    SELECT $1::uuid, $2::text, $3::text, $4::text, $5::bytea, $6::text, $7::text, $8::text, NULLIF($9::text, ''), t, t
    FROM now
    ON CONFLICT (id, direction) DO NOTHING
    RETURNING id, direction, state, created_at
), dup AS (
    SELECT m.id, m.direction, CASE WHEN m.raw = $5::bytea THEN NULL ELSE $5::bytea END AS raw
    FROM message m
    WHERE m.id = $1::uuid AND m.direction = $2::text AND NOT EXISTS (SELECT 1 FROM ins)
)
INSERT INTO message_event (message_id, direction, state, at, code, reason, raw)
SELECT id, direction, state, created_at, $7::text, $8::text, NULL FROM ins
UNION ALL
SELECT id, direction, 'received_again', (SELECT t FROM now), $7::text, $8::text, raw FROM dup
RETURNING state = 'received_again'`

// Record journals m with its initial state m.State. If (m.ID, m.Direction) is
// already journaled, Record does not fail: it leaves the message and its
// state as they are, appends a StateReceivedAgain event (with m.Code,
// m.Reason, and m.Raw when it differs from the stored bytes) and reports
// duplicate = true.
//
// Text fields are stored as valid UTF-8: invalid sequences and NUL characters
// (which PostgreSQL text cannot hold) become U+FFFD. Raw is stored exactly.
func (j *Journal) Record(ctx context.Context, q store.Querier, m Message) (duplicate bool, err error) {
	return record(ctx, q, m)
}

func record(ctx context.Context, q store.Querier, m Message) (duplicate bool, err error) {
	if err := checkMessage(m); err != nil {
		return false, err
	}
	raw := m.Raw
	if raw == nil {
		raw = []byte{}
	}
	args := []any{m.ID, string(m.Direction), text(m.Kind), text(m.Peer), raw, string(m.State),
		text(m.Code), text(m.Reason), text(m.CorrelationID)}
	// No row comes back only when a concurrent Record of the same message
	// committed after this statement's snapshot was taken: ON CONFLICT saw
	// the row, the snapshot did not. Run again with a fresh snapshot (read
	// committed; under repeatable read the conflict already failed).
	for range 3 {
		err = q.QueryRow(ctx, recordSQL, args...).Scan(&duplicate)
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	if err != nil {
		return false, fmt.Errorf("journal: record %s %s: %w", m.Direction, m.ID, err)
	}
	return duplicate, nil
}

const transitionSQL = `
WITH upd AS (
    UPDATE message
    SET state = $3, last_code = $4, last_reason = $5, updated_at = clock_timestamp()
    WHERE id = $1 AND direction = $2
    RETURNING id, direction, updated_at
)
INSERT INTO message_event (message_id, direction, state, at, code, reason)
SELECT id, direction, $3, updated_at, $4, $5 FROM upd`

// Transition moves the message (id, direction) to state, recording code and
// reason as its last code and reason, and appends an event. It returns an
// error wrapping ErrNotFound when the message is not journaled (in q's view).
// The journal does not police the order of states: that is the caller's
// state machine.
func (j *Journal) Transition(ctx context.Context, q store.Querier, id uuid.UUID, direction Direction, state State, code, reason string) error {
	if err := checkTransition(direction, state); err != nil {
		return err
	}
	tag, err := q.Exec(ctx, transitionSQL, id, string(direction), string(state), text(code), text(reason))
	if err != nil {
		return fmt.Errorf("journal: transition %s %s to %s: %w", direction, id, state, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s %s", ErrNotFound, direction, id)
	}
	return nil
}

// checkMessage refuses a message Record cannot journal.
func checkMessage(m Message) error {
	if m.ID == uuid.Nil {
		return fmt.Errorf("%w: nil message id", ErrInvalid)
	}
	return checkTransition(m.Direction, m.State)
}

// checkTransition refuses a direction or state the journal does not know.
func checkTransition(direction Direction, state State) error {
	if !direction.Valid() {
		return fmt.Errorf("%w: direction %q", ErrInvalid, direction)
	}
	if !state.Valid() {
		return fmt.Errorf("%w: state %q", ErrInvalid, state)
	}
	return nil
}

// Get returns the message (id, direction), or an error wrapping ErrNotFound.
func (j *Journal) Get(ctx context.Context, id uuid.UUID, direction Direction) (Message, error) {
	var (
		m    Message
		dir  string
		st   string
		corr *string
	)
	err := j.pool.QueryRow(ctx, `
		SELECT id, direction, kind, peer, raw, state, last_code, last_reason, correlation_id, created_at, updated_at
		FROM message WHERE id = $1 AND direction = $2`, id, string(direction),
	).Scan(&m.ID, &dir, &m.Kind, &m.Peer, &m.Raw, &st, &m.Code, &m.Reason, &corr, &m.CreatedAt, &m.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Message{}, fmt.Errorf("%w: %s %s", ErrNotFound, direction, id)
	}
	if err != nil {
		return Message{}, fmt.Errorf("journal: get %s %s: %w", direction, id, err)
	}
	m.Direction, m.State = Direction(dir), State(st)
	if corr != nil {
		m.CorrelationID = *corr
	}
	return m, nil
}

// Events returns the history of the message (id, direction), oldest first. It
// returns an error wrapping ErrNotFound when the message is not journaled.
func (j *Journal) Events(ctx context.Context, id uuid.UUID, direction Direction) ([]Event, error) {
	rows, err := j.pool.Query(ctx, `
		SELECT id, message_id, direction, state, at, code, reason, raw
		FROM message_event WHERE message_id = $1 AND direction = $2 ORDER BY id`, id, string(direction))
	if err != nil {
		return nil, fmt.Errorf("journal: events %s %s: %w", direction, id, err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var (
			e      Event
			dir, s string
		)
		err := row.Scan(&e.ID, &e.MessageID, &dir, &s, &e.At, &e.Code, &e.Reason, &e.Raw)
		e.Direction, e.State = Direction(dir), State(s)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("journal: events %s %s: %w", direction, id, err)
	}
	if len(events) == 0 {
		// Every journaled message has at least its initial event.
		return nil, fmt.Errorf("%w: %s %s", ErrNotFound, direction, id)
	}
	return events, nil
}

// text makes s storable in a PostgreSQL text column: valid UTF-8 without NUL.
func text(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}
