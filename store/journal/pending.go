package journal

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"zhianhub/store"
)

// Pending collects the journal writes of one transaction and sends them as
// a single statement (Flush). A route that journals a batch of messages,
// each recorded and then moved on once or twice, pays one statement for the
// batch instead of two per message, and each message row is written once,
// with its final state, instead of inserted and then updated.
//
// The effect of Flush is that of the Record and Transition calls in their
// order, with two differences: times are taken from the Pending's clock when
// each call is made (not from the database's clock), and a Transition of a
// message that is not journaled is dropped rather than reported
// (ErrNotFound): use Journal.Transition where that matters.
//
// A Pending is not safe for concurrent use.
type Pending struct {
	now     func() time.Time
	entries []*pendingEntry
	byKey   map[pendingKey]*pendingEntry
	events  int
}

type pendingKey struct {
	id  uuid.UUID
	dir Direction
}

type pendingEntry struct {
	m        Message // m.State, m.Code, m.Reason: the latest
	recorded bool    // Record was called: insert the row when it is new
	changed  bool    // a Transition followed: update the row when it exists
	created  time.Time
	updated  time.Time
	events   []pendingEvent
}

type pendingEvent struct {
	state   State
	at      time.Time
	code    string
	reason  string
	raw     []byte
	initial bool // the Record event: received_again when the row exists
}

// NewPending returns an empty Pending whose events are timed by now
// (time.Now when nil).
func NewPending(now func() time.Time) *Pending {
	if now == nil {
		now = time.Now
	}
	return &Pending{now: now, byKey: map[pendingKey]*pendingEntry{}}
}

// Len reports the number of messages with pending writes.
func (p *Pending) Len() int { return len(p.entries) }

// Record journals m with its initial state m.State, as Journal.Record does:
// when (m.ID, m.Direction) is journaled already, or recorded earlier in p,
// the stored message keeps its state and gets a StateReceivedAgain event
// (with m.Raw when it differs from the stored bytes).
func (p *Pending) Record(m Message) error {
	if err := checkMessage(m); err != nil {
		return err
	}
	if m.Raw == nil {
		m.Raw = []byte{}
	}
	at := p.now()
	k := pendingKey{m.ID, m.Direction}
	if e, ok := p.byKey[k]; ok {
		ev := pendingEvent{state: StateReceivedAgain, at: at, code: m.Code, reason: m.Reason}
		if !e.recorded {
			// Transitioned first, recorded later: the row must exist
			// already, so this is a repeat of it.
			ev.initial, ev.raw = true, m.Raw
		} else if string(e.m.Raw) != string(m.Raw) {
			ev.raw = m.Raw
		}
		e.events = append(e.events, ev)
		p.events++
		return nil
	}
	e := &pendingEntry{m: m, recorded: true, created: at, updated: at}
	e.events = append(e.events, pendingEvent{state: m.State, at: at, code: m.Code, reason: m.Reason, raw: m.Raw, initial: true})
	p.entries = append(p.entries, e)
	p.byKey[k] = e
	p.events++
	return nil
}

// Transition moves (id, direction) to state, as Journal.Transition does; the
// message is recorded earlier in p or journaled already.
func (p *Pending) Transition(id uuid.UUID, direction Direction, state State, code, reason string) error {
	if err := checkTransition(direction, state); err != nil {
		return err
	}
	at := p.now()
	k := pendingKey{id, direction}
	e, ok := p.byKey[k]
	if !ok {
		e = &pendingEntry{m: Message{ID: id, Direction: direction, Raw: []byte{}}}
		p.entries = append(p.entries, e)
		p.byKey[k] = e
	}
	e.m.State, e.m.Code, e.m.Reason = state, code, reason
	e.changed, e.updated = true, at
	e.events = append(e.events, pendingEvent{state: state, at: at, code: code, reason: reason})
	p.events++
	return nil
}

// pendingSQL writes a batch: new rows are inserted with their final state;
// rows that exist already are updated when a Transition touched them; the
// events follow, the Record event of an existing row becoming
// received_again (with its bytes when they differ). CTE old reads the
// statement's snapshot, the rows as they were before it, by key from the
// batch's ids (a join or EXISTS on message itself let the planner hash or
// scan the whole table for every batch).
const pendingSQL = `
WITH m AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::text[], $8::text[],
        $9::text[], $10::bool[], $11::bool[], $12::timestamptz[], $13::timestamptz[])
        AS m(id, direction, kind, peer, raw, state, code, reason, corr, recorded, changed, created_at, updated_at)
), ins AS (
    INSERT INTO message (id, direction, kind, peer, raw, state, last_code, last_reason, correlation_id, created_at, updated_at)
    SELECT id, direction, kind, peer, raw, state, code, reason, NULLIF(corr, ''), created_at, updated_at FROM m WHERE recorded
    ON CONFLICT (id, direction) DO NOTHING
    RETURNING id, direction
), upd AS (
    UPDATE message x SET state = m.state, last_code = m.code, last_reason = m.reason, updated_at = m.updated_at
    FROM m
    WHERE x.id = m.id AND x.direction = m.direction AND m.changed
      AND NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = m.id AND ins.direction = m.direction)
    RETURNING x.id
), old AS (
    -- the rows as they were before this statement, looked up by key
    SELECT x.id, x.direction, x.raw FROM m JOIN message x ON x.id = m.id AND x.direction = m.direction
), e AS (
    SELECT * FROM unnest($14::uuid[], $15::text[], $16::text[], $17::timestamptz[], $18::text[], $19::text[], $20::bytea[], $21::bool[])
        WITH ORDINALITY AS e(id, direction, state, at, code, reason, raw, initial, n)
)
INSERT INTO message_event (message_id, direction, state, at, code, reason, raw)
SELECT e.id, e.direction,
    CASE WHEN e.initial AND i.id IS NULL THEN 'received_again' ELSE e.state END,
    e.at, e.code, e.reason,
    CASE WHEN e.initial AND i.id IS NULL AND o.raw IS DISTINCT FROM e.raw THEN e.raw
         WHEN NOT e.initial AND e.state = 'received_again' THEN e.raw END
FROM e
LEFT JOIN ins i ON i.id = e.id AND i.direction = e.direction
LEFT JOIN old o ON o.id = e.id AND o.direction = e.direction
WHERE i.id IS NOT NULL OR o.id IS NOT NULL
ORDER BY e.n`

// Flush sends the pending writes on q (store.ExecLater: with a store.Pipe
// they travel with the next statement) and empties p.
//
// In one case the effect differs from Record's: a message recorded here
// and, at the same time, by another transaction that commits while Flush
// waits for it gets no event at all (Record retries with a fresh snapshot
// and appends StateReceivedAgain). Callers that can race like that use
// FlushChecked.
func (p *Pending) Flush(ctx context.Context, q store.Querier) error {
	sql, args := p.statement()
	if sql == "" {
		return nil
	}
	if err := store.ExecLater(ctx, q, sql, args...); err != nil {
		return fmt.Errorf("journal: write %d messages: %w", len(args[0].([]string)), err)
	}
	p.reset()
	return nil
}

// FlushChecked sends the pending writes on q now and records again, with
// Record, every recorded message whose events the statement could not
// write because another transaction journaled it concurrently.
func (p *Pending) FlushChecked(ctx context.Context, q store.Querier) error {
	sql, args := p.statement()
	if sql == "" {
		return nil
	}
	rows, err := q.Query(ctx, sql+` RETURNING message_id, direction`, args...)
	if err != nil {
		return fmt.Errorf("journal: write %d messages: %w", len(p.entries), err)
	}
	written := map[pendingKey]bool{}
	for rows.Next() {
		var k pendingKey
		if err := rows.Scan(&k.id, &k.dir); err != nil {
			rows.Close()
			return fmt.Errorf("journal: write %d messages: %w", len(p.entries), err)
		}
		written[k] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("journal: write %d messages: %w", len(p.entries), err)
	}
	for _, e := range p.entries {
		if !e.recorded || written[pendingKey{e.m.ID, e.m.Direction}] {
			continue
		}
		m := e.m
		m.State, m.Code, m.Reason = e.events[0].state, e.events[0].code, e.events[0].reason
		if _, err := record(ctx, q, m); err != nil {
			return err
		}
	}
	p.reset()
	return nil
}

func (p *Pending) reset() {
	p.entries, p.byKey, p.events = nil, map[pendingKey]*pendingEntry{}, 0
}

// statement returns the statement writing p, or "" when p is empty.
func (p *Pending) statement() (string, []any) {
	if len(p.entries) == 0 {
		return "", nil
	}
	n := len(p.entries)
	ids, dirs, kinds, peers := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	raws, states, codes, reasons, corrs := make([][]byte, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	recorded, changed, created, updated := make([]bool, n), make([]bool, n), make([]time.Time, n), make([]time.Time, n)
	eids, edirs, estates := make([]string, 0, p.events), make([]string, 0, p.events), make([]string, 0, p.events)
	eats, ecodes, ereasons := make([]time.Time, 0, p.events), make([]string, 0, p.events), make([]string, 0, p.events)
	eraws, einitial := make([][]byte, 0, p.events), make([]bool, 0, p.events)
	// Ids go as text: pgx encodes a []string without reflection.
	for i, e := range p.entries {
		m := e.m
		id := m.ID.String()
		ids[i], dirs[i], kinds[i], peers[i], raws[i] = id, string(m.Direction), text(m.Kind), text(m.Peer), m.Raw
		states[i], codes[i], reasons[i], corrs[i] = string(m.State), text(m.Code), text(m.Reason), text(m.CorrelationID)
		recorded[i], changed[i], created[i], updated[i] = e.recorded, e.changed, e.created, e.updated
		for _, ev := range e.events {
			eids, edirs, estates = append(eids, id), append(edirs, string(m.Direction)), append(estates, string(ev.state))
			eats, ecodes, ereasons = append(eats, ev.at), append(ecodes, text(ev.code)), append(ereasons, text(ev.reason))
			eraws, einitial = append(eraws, ev.raw), append(einitial, ev.initial)
		}
	}
	return pendingSQL, []any{ids, dirs, kinds, peers, raws, states, codes, reasons, corrs, recorded, changed, created, updated,
		eids, edirs, estates, eats, ecodes, ereasons, eraws, einitial}
}
