package exchange

import (
	"context"
	"errors"
	"fmt"

	"zhianhub/store"
)

// The set-wise forms below do for a batch of messages, in one statement
// each, what ClaimInbound, NextSeq, SetNextSeq, Enqueue and FinishInbound do
// for one. A route that applies a batch in one transaction claims and locks
// everything first, keeps the sequence state in memory while it works, and
// writes the outcomes at the end.

// ClaimRequest is one message to claim.
type ClaimRequest struct {
	Sender   string
	ID       string
	RawSM3   []byte
	Kind     string
	PersonNo string
	Seq      int64
}

// ClaimResult is the claim of one ClaimRequest.
type ClaimResult struct {
	Claim Claim
	Prev  InboxEntry // the earlier copy's outcome when Claim is not ClaimNew
}

// ErrRepeatInBatch reports a (sender, id) requested twice in one ClaimAll:
// the second copy's claim depends on the first one's outcome, so it belongs
// in a later batch.
var ErrRepeatInBatch = errors.New("exchange: message repeated in one batch")

// ClaimAll claims every request as ClaimInbound does, in order. The
// (sender, id) pairs must be distinct (ErrRepeatInBatch). The claimed rows
// are locked until tx ends.
func ClaimAll(ctx context.Context, tx store.Querier, reqs []ClaimRequest) ([]ClaimResult, error) {
	out := make([]ClaimResult, len(reqs))
	if len(reqs) == 0 {
		return out, nil
	}
	type key struct{ sender, id string }
	at := make(map[key]int, len(reqs))
	senders, ids, sums, kinds, persons, seqs := make([]string, len(reqs)), make([]string, len(reqs)), make([][]byte, len(reqs)),
		make([]string, len(reqs)), make([]string, len(reqs)), make([]int64, len(reqs))
	for i, r := range reqs {
		k := key{r.Sender, r.ID}
		if _, dup := at[k]; dup {
			return nil, fmt.Errorf("%w: %s/%s", ErrRepeatInBatch, r.Sender, r.ID)
		}
		at[k] = i
		senders[i], ids[i], sums[i], kinds[i], persons[i], seqs[i] = r.Sender, r.ID, r.RawSM3, r.Kind, r.PersonNo, r.Seq
	}
	rows, err := tx.Query(ctx, `INSERT INTO inbox (sender, id, raw_sm3, kind, person_no, seq, state)
		SELECT s, i::uuid, r, k, p, q, 'held' FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::bigint[]) AS u(s, i, r, k, p, q)
		ON CONFLICT (sender, id) DO NOTHING
		RETURNING sender, id::text`, senders, ids, sums, kinds, persons, seqs)
	if err != nil {
		return nil, fmt.Errorf("exchange: claim %d messages: %w", len(reqs), err)
	}
	claimed := make([]bool, len(reqs))
	n := 0
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.sender, &k.id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("exchange: claim %d messages: %w", len(reqs), err)
		}
		if i, ok := at[k]; ok {
			claimed[i] = true
			n++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("exchange: claim %d messages: %w", len(reqs), err)
	}
	if n == len(reqs) {
		return out, nil // all new: ClaimNew is the zero value
	}
	var ks, ki []string
	for i, r := range reqs {
		if !claimed[i] {
			ks, ki = append(ks, r.Sender), append(ki, r.ID)
		}
	}
	rows, err = tx.Query(ctx, `SELECT b.sender, b.id::text, b.state, b.raw_sm3, b.code, b.reason
		FROM inbox b JOIN unnest($1::text[], $2::text[]) AS u(s, i) ON b.sender = u.s AND b.id = u.i::uuid
		ORDER BY b.sender, b.id FOR UPDATE OF b`, ks, ki)
	if err != nil {
		return nil, fmt.Errorf("exchange: claim %d known messages: %w", len(ks), err)
	}
	found := 0
	for rows.Next() {
		var k key
		var state string
		var stored []byte
		var e InboxEntry
		if err := rows.Scan(&k.sender, &k.id, &state, &stored, &e.Code, &e.Reason); err != nil {
			rows.Close()
			return nil, fmt.Errorf("exchange: claim known messages: %w", err)
		}
		i, ok := at[k]
		if !ok {
			continue
		}
		found++
		out[i] = ClaimResult{claimOf(state, stored, reqs[i].RawSM3), e}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("exchange: claim known messages: %w", err)
	}
	if found != len(ks) {
		// A row that conflicted and then vanished: a concurrent transaction
		// deleted it (a non-final outcome). The caller retries the batch.
		return nil, fmt.Errorf("exchange: %d of %d known messages vanished while claimed; retry", len(ks)-found, len(ks))
	}
	return out, nil
}

// SeqState is the sequence position of an ordering key.
type SeqState struct {
	Next int64 // the next expected seq
	Held bool  // messages of the key wait for a gap
}

// LockSeqs returns the state of each key, as NextSeq does, locking the keys
// in (sender, personNo) order until tx ends.
func LockSeqs(ctx context.Context, tx store.Querier, keys []Key) (map[Key]SeqState, error) {
	out := make(map[Key]SeqState, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ss, ps := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ss[i], ps[i] = k.Sender, k.PersonNo
	}
	if err := store.ExecLater(ctx, tx, `INSERT INTO sequence_in (sender, person_no)
		SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING`, ss, ps); err != nil {
		return nil, fmt.Errorf("exchange: sequences of %d keys: %w", len(keys), err)
	}
	rows, err := tx.Query(ctx, `SELECT s.sender, s.person_no, s.next_seq,
			EXISTS (SELECT 1 FROM reseq_held h WHERE h.sender = s.sender AND h.person_no = s.person_no)
		FROM sequence_in s JOIN unnest($1::text[], $2::text[]) AS u(sender, person_no) ON s.sender = u.sender AND s.person_no = u.person_no
		ORDER BY s.sender, s.person_no FOR UPDATE OF s`, ss, ps)
	if err != nil {
		return nil, fmt.Errorf("exchange: sequences of %d keys: %w", len(keys), err)
	}
	defer rows.Close()
	for rows.Next() {
		var k Key
		var st SeqState
		if err := rows.Scan(&k.Sender, &k.PersonNo, &st.Next, &st.Held); err != nil {
			return nil, fmt.Errorf("exchange: sequences: %w", err)
		}
		out[k] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("exchange: sequences: %w", err)
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("exchange: sequence %s/%s missing after its insert", k.Sender, k.PersonNo)
		}
	}
	return out, nil
}

// SetNextSeqs stores the next expected seq of each key (SetNextSeq for
// many). The write may be held back (store.ExecLater).
func SetNextSeqs(ctx context.Context, tx store.Querier, next map[Key]int64) error {
	if len(next) == 0 {
		return nil
	}
	ss, ps, ns := make([]string, 0, len(next)), make([]string, 0, len(next)), make([]int64, 0, len(next))
	for k, n := range next {
		ss, ps, ns = append(ss, k.Sender), append(ps, k.PersonNo), append(ns, n)
	}
	if err := store.ExecLater(ctx, tx, `UPDATE sequence_in s SET next_seq = u.n
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(sender, person_no, n)
		WHERE s.sender = u.sender AND s.person_no = u.person_no`, ss, ps, ns); err != nil {
		return fmt.Errorf("exchange: set %d sequences: %w", len(next), err)
	}
	return nil
}

// EnqueueAll adds ms to the outbox, due now (Enqueue for many). The write
// may be held back (store.ExecLater).
func EnqueueAll(ctx context.Context, tx store.Querier, ms []Out) error {
	if len(ms) == 0 {
		return nil
	}
	n := len(ms)
	ids, kinds, exs, keys, tos, corrs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	payloads, persons, seqs, needs, actors, encs := make([][]byte, n), make([]string, n), make([]int64, n), make([]bool, n), make([]string, n), make([]bool, n)
	for i, m := range ms {
		ids[i], kinds[i], exs[i], keys[i], tos[i], corrs[i] = m.ID, m.Kind, m.Exchange, m.RoutingKey, m.ToNode, m.Corr
		payloads[i], persons[i], seqs[i], needs[i], actors[i], encs[i] = m.Payload, m.PersonNo, m.Seq, m.NeedsReceipt, m.Actor, m.Encrypted
	}
	err := store.ExecLater(ctx, tx, `INSERT INTO outbox (id, kind, exchange, routing_key, to_node, corr, payload, payload_encrypted, person_no, seq, needs_receipt, state, actor)
		SELECT id::uuid, kind, ex, rk, to_node, corr, payload, enc, person_no, seq, needs, 'pending', actor
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::text[], $9::bigint[], $10::bool[], $11::text[], $12::bool[])
			AS u(id, kind, ex, rk, to_node, corr, payload, person_no, seq, needs, actor, enc)`,
		ids, kinds, exs, keys, tos, corrs, payloads, persons, seqs, needs, actors, encs)
	if err != nil {
		return fmt.Errorf("exchange: enqueue %d messages: %w", n, err)
	}
	return nil
}

// Finish is the outcome of one claimed message.
type Finish struct {
	Sender, ID   string
	Code, Reason string
}

// FinishAll records outcomes as FinishInbound does, for many. The writes
// may be held back (store.ExecLater).
func FinishAll(ctx context.Context, tx store.Querier, fs []Finish) error {
	var ds, di, ss, si, sc, sr []string
	for _, f := range fs {
		if FinalCode(f.Code) {
			ss, si, sc, sr = append(ss, f.Sender), append(si, f.ID), append(sc, f.Code), append(sr, f.Reason)
		} else {
			ds, di = append(ds, f.Sender), append(di, f.ID)
		}
	}
	if len(ss) > 0 {
		if err := store.ExecLater(ctx, tx, `UPDATE inbox b SET state = 'done', code = u.code, reason = u.reason, done_at = clock_timestamp()
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(sender, id, code, reason)
			WHERE b.sender = u.sender AND b.id = u.id::uuid`, ss, si, sc, sr); err != nil {
			return fmt.Errorf("exchange: finish %d messages: %w", len(ss), err)
		}
	}
	if len(ds) > 0 {
		if err := store.ExecLater(ctx, tx, `DELETE FROM inbox b USING unnest($1::text[], $2::text[]) AS u(sender, id)
			WHERE b.sender = u.sender AND b.id = u.id::uuid`, ds, di); err != nil {
			return fmt.Errorf("exchange: finish %d messages: %w", len(ds), err)
		}
	}
	return nil
}
