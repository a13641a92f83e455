// Package trace follows one id through the hub: a request id, a message id
// or a key-person number. It collects what the audit chain, the message
// journal, the outbox, the inbox, the dead letters and the operation and
// system logs hold about it and
// about everything linked to it — a user action's request id names the
// filing it created (audit object), the filing's id names its sends, its
// receipt (journal correlation) and the receipt's audit entry — and returns
// one timeline.
//
// The timeline carries ids, kinds, states, codes and reasons, never
// payloads: personal data stays where the API masks it.
package trace

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"zhianhub/store"
)

// Step is one line of a timeline.
type Step struct {
	At time.Time `json:"at"`
	// Source is "audit", "journal", "outbox", "inbox", "dead_letter",
	// "operation_log" (the API call) or "system_log" (what the hub logged
	// about a followed request or message).
	Source string `json:"source"`
	// Ref is the row: the audit seq, the journal message and direction,
	// the outbox or inbox id, the dead-letter id.
	Ref string `json:"ref"`
	// What happened, e.g. "filing.submit 0000 by li.officer" or
	// "out keyperson.register to 100000000000: sent".
	What string `json:"what"`
}

// Trace is the timeline of an id.
type Trace struct {
	ID    string   `json:"id"`
	Links []string `json:"links"` // every id followed, the first being ID
	Steps []Step   `json:"steps"`
}

var (
	uuidRe   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	personRe = regexp.MustCompile(`^[0-9]{20}$`)
)

// maxLinks bounds the ids followed (a person with a long history).
const maxLinks = 500

// Of traces id on q.
func Of(ctx context.Context, q store.Querier, id string) (Trace, error) {
	if id == "" {
		return Trace{}, errors.New("trace: empty id")
	}
	t := &tracer{q: q, seen: map[string]bool{}}
	t.add(id)
	if personRe.MatchString(id) {
		if err := t.person(ctx, id); err != nil {
			return Trace{}, err
		}
	}
	// Follow the audit chain's links until nothing new turns up.
	for round := 0; round < 4 && len(t.links) < maxLinks; round++ {
		n := len(t.links)
		if err := t.auditLinks(ctx); err != nil {
			return Trace{}, err
		}
		if err := t.journalLinks(ctx); err != nil {
			return Trace{}, err
		}
		if err := t.outboxLinks(ctx); err != nil {
			return Trace{}, err
		}
		if len(t.links) == n {
			break
		}
	}
	if err := t.collect(ctx); err != nil {
		return Trace{}, err
	}
	sort.SliceStable(t.steps, func(i, j int) bool { return t.steps[i].At.Before(t.steps[j].At) })
	return Trace{ID: id, Links: t.links, Steps: t.steps}, nil
}

type tracer struct {
	q     store.Querier
	seen  map[string]bool
	links []string
	steps []Step
}

func (t *tracer) add(id string) {
	if id == "" || t.seen[id] || len(t.links) >= maxLinks {
		return
	}
	t.seen[id] = true
	t.links = append(t.links, id)
}

func (t *tracer) uuids() []string {
	var out []string
	for _, l := range t.links {
		if uuidRe.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// person adds the messages of a key person: those in its history, the
// filings about it, the messages received about it.
func (t *tracer) person(ctx context.Context, personNo string) error {
	rows, err := t.q.Query(ctx, `SELECT msg_id::text FROM person_history WHERE person_no = $1
		UNION SELECT id::text FROM outbox WHERE person_no = $1
		UNION SELECT id::text FROM inbox WHERE person_no = $1
		LIMIT 500`, personNo)
	if err != nil {
		return fmt.Errorf("trace: person %s: %w", personNo, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		t.add(id)
	}
	return rows.Err()
}

// auditLinks adds the objects and correlation ids of the audit entries
// that name a followed id.
func (t *tracer) auditLinks(ctx context.Context) error {
	rows, err := t.q.Query(ctx, `SELECT object, correlation_id FROM audit_entry
		WHERE correlation_id = ANY($1) OR object = ANY($1) LIMIT 2000`, t.links)
	if err != nil {
		return fmt.Errorf("trace: audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var object, corr string
		if err := rows.Scan(&object, &corr); err != nil {
			return err
		}
		for _, s := range []string{object, corr} {
			if uuidRe.MatchString(s) {
				t.add(s)
			}
		}
	}
	return rows.Err()
}

// journalLinks adds the messages that answer or cite a followed message
// (a receipt's correlation id is the message it answers).
func (t *tracer) journalLinks(ctx context.Context) error {
	ids := t.uuids()
	if len(ids) == 0 {
		return nil
	}
	rows, err := t.q.Query(ctx, `SELECT id::text, coalesce(correlation_id, '') FROM message
		WHERE correlation_id = ANY($1) OR id = ANY($2::uuid[]) LIMIT 2000`, ids, ids)
	if err != nil {
		return fmt.Errorf("trace: journal: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, corr string
		if err := rows.Scan(&id, &corr); err != nil {
			return err
		}
		t.add(id)
		if uuidRe.MatchString(corr) {
			t.add(corr)
		}
	}
	return rows.Err()
}

// outboxLinks adds the messages published under a followed id as their
// correlation id: the internal events and feedback a user action caused
// (their corr is the request id), receipts and events of a received
// message.
func (t *tracer) outboxLinks(ctx context.Context) error {
	rows, err := t.q.Query(ctx, `SELECT id::text FROM outbox WHERE corr = ANY($1) LIMIT 2000`, t.links)
	if err != nil {
		return fmt.Errorf("trace: outbox: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		t.add(id)
	}
	return rows.Err()
}

// collect reads the steps of every followed id.
func (t *tracer) collect(ctx context.Context) error {
	ids := t.uuids()
	queries := []struct {
		source string
		sql    string
		args   []any
	}{
		{"audit", `SELECT at, seq::text, action || ' ' || result || ' by ' || actor ||
				CASE WHEN object <> '' THEN ' on ' || object ELSE '' END ||
				CASE WHEN reason <> '' THEN ': ' || reason ELSE '' END
			FROM audit_entry WHERE correlation_id = ANY($1) OR object = ANY($1) ORDER BY seq LIMIT 5000`, []any{t.links}},
		{"journal", `SELECT e.at, e.message_id::text || ' ' || e.direction,
				e.direction || ' ' || m.kind || CASE WHEN e.direction = 'in' THEN ' from ' ELSE ' to ' END || m.peer || ': ' || e.state ||
				CASE WHEN e.code <> '' THEN ' ' || e.code ELSE '' END ||
				CASE WHEN e.reason <> '' THEN ' (' || e.reason || ')' ELSE '' END
			FROM message_event e JOIN message m ON m.id = e.message_id AND m.direction = e.direction
			WHERE e.message_id = ANY($1::uuid[]) ORDER BY e.id LIMIT 5000`, []any{ids}},
		{"outbox", `SELECT created_at, id::text, kind || ' to ' || CASE WHEN to_node <> '' THEN to_node ELSE exchange END ||
				': ' || state || ', ' || attempts || ' attempt(s)' ||
				CASE WHEN receipt_status <> '' THEN ', receipt ' || receipt_status || ' ' || receipt_code ELSE '' END ||
				CASE WHEN actor <> '' THEN ', filed by ' || actor ELSE '' END
			FROM outbox WHERE id = ANY($1::uuid[]) LIMIT 5000`, []any{ids}},
		{"inbox", `SELECT received_at, id::text, kind || ' from ' || sender || ': ' || state ||
				CASE WHEN code <> '' THEN ' ' || code ELSE '' END
			FROM inbox WHERE id = ANY($1::uuid[]) LIMIT 5000`, []any{ids}},
		{"dead_letter", `SELECT at, id::text, kind || ' ' || code || ': ' || reason ||
				CASE WHEN resolved_at IS NOT NULL THEN ' (resolved)' ELSE '' END
			FROM dead_letter WHERE message_id = ANY($1) LIMIT 5000`, []any{t.links}},
		// The user action itself (the request id of the API call).
		{"operation_log", `SELECT at, id::text, method || ' ' || path || ' → ' || status || ' by ' || user_id ||
				CASE WHEN unit <> '' THEN ' (' || unit || ')' ELSE '' END || ', ' || round(duration_us / 1000.0, 1) || ' ms'
			FROM operation_log WHERE request_id = ANY($1) ORDER BY id LIMIT 5000`, []any{t.links}},
		// What the hub logged about the request or the messages.
		{"system_log", `SELECT at, id::text, CASE level WHEN 8 THEN 'ERROR' WHEN 4 THEN 'WARN' WHEN 0 THEN 'INFO' ELSE 'DEBUG' END ||
				CASE WHEN component <> '' THEN ' [' || component || ']' ELSE '' END || ' ' || msg
			FROM system_log WHERE request_id = ANY($1) OR message_id = ANY($1) ORDER BY id LIMIT 5000`, []any{t.links}},
	}
	for _, qq := range queries {
		rows, err := t.q.Query(ctx, qq.sql, qq.args...)
		if err != nil {
			return fmt.Errorf("trace: %s: %w", qq.source, err)
		}
		for rows.Next() {
			s := Step{Source: qq.source}
			if err := rows.Scan(&s.At, &s.Ref, &s.What); err != nil {
				rows.Close()
				return fmt.Errorf("trace: %s: %w", qq.source, err)
			}
			s.At = s.At.UTC()
			t.steps = append(t.steps, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("trace: %s: %w", qq.source, err)
		}
	}
	return nil
}
