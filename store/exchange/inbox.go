// Package exchange keeps the state of the bus exchange in PostgreSQL: the
// inbox that de-duplicates received messages, the resequencer that applies
// them in seq order per (sender, personNo), and the outbox of everything the
// hub publishes, with the resend schedule of filings. Every function takes
// the caller's transaction, so that an effect and its receipt commit
// together.
package exchange

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
)

// ErrSeqTaken reports a held message whose (sender, personNo, seq) slot is
// taken by another message id.
var ErrSeqTaken = errors.New("exchange: seq already held by another message")

// Claim is what the inbox knows of a received (sender, id).
type Claim int

const (
	// ClaimNew: first time seen; process it.
	ClaimNew Claim = iota
	// ClaimRedelivered: the same bytes again (a broker redelivery, e.g.
	// after a crash): no effect, no answer.
	ClaimRedelivered
	// ClaimPending: a resend of a message still held by the resequencer:
	// its receipt follows when it is applied or rejected.
	ClaimPending
	// ClaimDuplicate: a resend of a message with a final outcome: answer
	// DUPLICATE with that outcome's code.
	ClaimDuplicate
)

// InboxEntry is the stored outcome of a claim.
type InboxEntry struct {
	Code   string
	Reason string
}

// ClaimInbound registers (sender, id) in the inbox as held. For a known id
// it reports what the earlier copy became; the row is locked until tx ends.
func ClaimInbound(ctx context.Context, tx store.Querier, sender, id string, rawSM3 []byte, kind, personNo string, seq int64) (Claim, InboxEntry, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO inbox (sender, id, raw_sm3, kind, person_no, seq, state)
		VALUES ($1, $2, $3, $4, $5, $6, 'held') ON CONFLICT (sender, id) DO NOTHING`,
		sender, id, rawSM3, kind, personNo, seq)
	if err != nil {
		return 0, InboxEntry{}, fmt.Errorf("exchange: claim %s/%s: %w", sender, id, err)
	}
	if tag.RowsAffected() == 1 {
		return ClaimNew, InboxEntry{}, nil
	}
	var state string
	var stored []byte
	var e InboxEntry
	err = tx.QueryRow(ctx, `SELECT state, raw_sm3, code, reason FROM inbox WHERE sender = $1 AND id = $2 FOR UPDATE`,
		sender, id).Scan(&state, &stored, &e.Code, &e.Reason)
	if err != nil {
		return 0, InboxEntry{}, fmt.Errorf("exchange: claim %s/%s: %w", sender, id, err)
	}
	return claimOf(state, stored, rawSM3), e, nil
}

// claimOf tells what a known (sender, id) is, from its inbox row (state and
// SM3 of its bytes) and the SM3 of the copy at hand.
func claimOf(state string, stored, rawSM3 []byte) Claim {
	switch {
	case bytes.Equal(stored, rawSM3):
		return ClaimRedelivered
	case state == "held":
		return ClaimPending
	default:
		return ClaimDuplicate
	}
}

// FinishInbound records the outcome of (sender, id). A final outcome is kept
// to answer resends with DUPLICATE; a non-final one (the sender should
// resend: E112-E114, E140, E199) removes the row so that a resend is
// processed afresh. The write may be held back (store.ExecLater).
func FinishInbound(ctx context.Context, tx store.Querier, sender, id, code, reason string) error {
	return FinishAll(ctx, tx, []Finish{{Sender: sender, ID: id, Code: code, Reason: reason}})
}

// FinalCode reports whether an outcome is final for its id: the same
// message would get the same answer again. Envelope-level rejections that a
// resend can cure (a fresh timestamp, the right key or recipient), a gap
// timeout and internal errors are not final.
func FinalCode(code string) bool {
	switch code {
	case "E112", "E113", "E114", "E140", "E199":
		return false
	}
	return true
}

// NextSeq returns the next expected seq of (sender, personNo), locking the
// row until tx ends so that one key is applied by one worker at a time, in
// this process or another, and whether messages of the key are held for a
// gap (in tx's view): when none are, nothing follows an applied message.
func NextSeq(ctx context.Context, tx store.Querier, sender, personNo string) (next int64, held bool, err error) {
	if err := store.ExecLater(ctx, tx, `INSERT INTO sequence_in (sender, person_no) VALUES ($1, $2) ON CONFLICT DO NOTHING`, sender, personNo); err != nil {
		return 0, false, fmt.Errorf("exchange: sequence %s/%s: %w", sender, personNo, err)
	}
	err = tx.QueryRow(ctx, `SELECT next_seq, EXISTS (SELECT 1 FROM reseq_held h WHERE h.sender = $1 AND h.person_no = $2)
		FROM sequence_in WHERE sender = $1 AND person_no = $2 FOR UPDATE`, sender, personNo).Scan(&next, &held)
	if err != nil {
		return 0, false, fmt.Errorf("exchange: sequence %s/%s: %w", sender, personNo, err)
	}
	return next, held, nil
}

// SetNextSeq stores the next expected seq of (sender, personNo). The write
// may be held back (store.ExecLater).
func SetNextSeq(ctx context.Context, tx store.Querier, sender, personNo string, next int64) error {
	return SetNextSeqs(ctx, tx, map[Key]int64{{Sender: sender, PersonNo: personNo}: next})
}

// Held is a message waiting for a gap before it to fill.
type Held struct {
	Sender   string
	PersonNo string
	Seq      int64
	ID       string
	Kind     string
	Corr     string
	TS       time.Time
	Raw      []byte
	Payload  []byte
	// Encrypted says that Payload is sealed with the field encryption
	// (additional data HeldAAD(Sender, ID)).
	Encrypted bool
	Code      string // payload validation result, "0000" when valid
	Reason    string
	HeldSince time.Time
}

// Hold stores a message that arrived ahead of a gap, held since
// h.HeldSince (the database clock when zero).
func Hold(ctx context.Context, tx store.Querier, h Held) error {
	since := &h.HeldSince
	if h.HeldSince.IsZero() {
		since = nil // the database clock
	}
	tag, err := tx.Exec(ctx, `INSERT INTO reseq_held (sender, person_no, seq, id, kind, corr, ts, raw, payload, payload_encrypted, code, reason, held_since)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13, clock_timestamp())) ON CONFLICT DO NOTHING`,
		h.Sender, h.PersonNo, h.Seq, h.ID, h.Kind, h.Corr, h.TS, h.Raw, h.Payload, h.Encrypted, h.Code, h.Reason, since)
	if err != nil {
		return fmt.Errorf("exchange: hold %s/%s/%d: %w", h.Sender, h.PersonNo, h.Seq, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s/%s seq %d", ErrSeqTaken, h.Sender, h.PersonNo, h.Seq)
	}
	return nil
}

// HeldAAD is the additional data binding an encrypted held payload to its
// message.
func HeldAAD(sender, id string) []byte { return []byte("reseq_held.payload/" + sender + "/" + id) }

const heldColumns = `sender, person_no, seq, id::text, kind, corr, ts, raw, payload, payload_encrypted, code, reason, held_since`

func scanHeld(row pgx.Row) (Held, error) {
	var h Held
	err := row.Scan(&h.Sender, &h.PersonNo, &h.Seq, &h.ID, &h.Kind, &h.Corr, &h.TS, &h.Raw, &h.Payload, &h.Encrypted, &h.Code, &h.Reason, &h.HeldSince)
	return h, err
}

// TakeHeld removes and returns the held message at seq, if any.
func TakeHeld(ctx context.Context, tx store.Querier, sender, personNo string, seq int64) (*Held, error) {
	h, err := scanHeld(tx.QueryRow(ctx, `DELETE FROM reseq_held WHERE sender = $1 AND person_no = $2 AND seq = $3 RETURNING `+heldColumns,
		sender, personNo, seq))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("exchange: take held %s/%s/%d: %w", sender, personNo, seq, err)
	}
	return &h, nil
}

// Key is an ordering key.
type Key struct {
	Sender   string
	PersonNo string
}

// StaleKeys returns up to limit keys whose oldest held message waits since
// before cutoff.
func StaleKeys(ctx context.Context, q store.Querier, cutoff time.Time, limit int) ([]Key, error) {
	rows, err := q.Query(ctx, `SELECT sender, person_no FROM reseq_held GROUP BY sender, person_no
		HAVING min(held_since) <= $1 ORDER BY min(held_since) LIMIT $2`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("exchange: stale keys: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) {
		var k Key
		return k, r.Scan(&k.Sender, &k.PersonNo)
	})
}

// TakeAllHeld removes and returns every held message of key, in seq order.
// Call it after NextSeq has locked the key.
func TakeAllHeld(ctx context.Context, tx store.Querier, k Key) ([]Held, error) {
	rows, err := tx.Query(ctx, `DELETE FROM reseq_held WHERE sender = $1 AND person_no = $2 RETURNING `+heldColumns, k.Sender, k.PersonNo)
	if err != nil {
		return nil, fmt.Errorf("exchange: take held %s/%s: %w", k.Sender, k.PersonNo, err)
	}
	held, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Held, error) { return scanHeld(r) })
	if err != nil {
		return nil, fmt.Errorf("exchange: take held %s/%s: %w", k.Sender, k.PersonNo, err)
	}
	slices.SortFunc(held, func(a, b Held) int { return cmp.Compare(a.Seq, b.Seq) })
	return held, nil
}
