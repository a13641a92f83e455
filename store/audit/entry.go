// Package audit keeps the hub's audit log: an append-only chain of entries in
// PostgreSQL, each carrying the SM3 hash of its predecessor, sealed at
// intervals by SM2-signed checkpoints.
//
// Writer appends entries with group commit: concurrent Appends are gathered
// into batches, each written in one transaction that locks the single-row
// audit_head, so several hub processes extend one chain. Verify re-reads the
// whole chain and names the first entry that does not check out.
//
// # What the chain protects against
//
// The tables are append-only by trigger, but an attacker with full rights on
// the database (a DBA, a stolen superuser password) can change anything. Such
// an attacker cannot sign checkpoints: the SM2 key is held by the hub (or its
// cipher machine). Verify then detects:
//
//   - any change to any column of an entry (the hash no longer matches, or,
//     if hashes were recomputed, a signed checkpoint no longer matches);
//   - a deleted, inserted or moved entry anywhere before the last checkpoint;
//   - a forged or altered checkpoint (bad signature, unknown key, or a hash
//     that is not the entry's), and missing checkpoints: each checkpoint
//     signs max_gap, a promise that the next one comes at most that many
//     entries later, and the first entry always carries one.
//
// What such an attacker can do undetected is cut the chain back: delete every
// entry after some checkpoint c (and the checkpoints after it), rewrite
// audit_head, and optionally append up to max_gap-1 forged entries after c.
// The entries sealed by c stay authentic, but the tail after c, however long
// it was, is lost without a trace in the database itself. Rewriting an entry
// in the middle while keeping the entries after it is not possible without
// the key. The checkpoint interval (CheckpointEvery entries, at most
// CheckpointInterval) bounds the unsealed tail of a healthy chain; to detect
// a cut-back, keep the latest checkpoint (Report.LastCheckpoint) outside the
// database (log shipping, a WORM store, a peer) and compare it with the next
// Verify.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// HashSize is the size of an SM3 hash.
const HashSize = 32

// Hash is an entry hash.
type Hash = [HashSize]byte

// ErrInvalidEntry reports an entry that Append refuses.
var ErrInvalidEntry = errors.New("audit: invalid entry")

// Entry is one audit record: who (Actor, in Unit, acting as Role) did what
// (Action on Object) with which outcome (Result, Reason).
type Entry struct {
	// At is when it happened; the writer's clock when zero. Stored, hashed
	// and returned in UTC with microsecond precision.
	At time.Time
	// Actor is required: a user id, a node code, or "system".
	Actor string
	// Unit is the actor's organizational unit (公安机关机构代码).
	Unit string
	// Role is the role the actor acted in.
	Role string
	// Action is required, e.g. "message.receive", "person.query".
	Action string
	// Object is what was acted on, e.g. a message id or a record number.
	Object string
	// Result is required, e.g. "ok", "denied", "error", or an error code.
	Result string
	// Reason explains Result.
	Reason string
	// CorrelationID ties the entry to a message or request ("" when none).
	CorrelationID string
	// Detail is marshalled with encoding/json and must give a JSON object
	// (nil or null give {}); stored as jsonb, hashed as CanonicalJSON.
	Detail any
}

// prepared is an entry ready to be chained: validated, canonical, with the
// part of the canonical encoding that does not depend on its seq.
type prepared struct {
	at     time.Time
	fields [8]string // actor, unit, role, action, object, result, reason, correlation_id
	detail string    // canonical JSON
	tail   []byte
}

func prepare(e Entry, now func() time.Time) (prepared, error) {
	var p prepared
	at := e.At
	if at.IsZero() {
		at = now()
	}
	at = canonicalTime(at)
	if y := at.Year(); y < 1 || y > 9999 {
		return p, fmt.Errorf("%w: time %s out of range", ErrInvalidEntry, at)
	}
	p.at = at
	p.fields = [8]string{e.Actor, e.Unit, e.Role, e.Action, e.Object, e.Result, e.Reason, e.CorrelationID}
	names := [8]string{"actor", "unit", "role", "action", "object", "result", "reason", "correlation id"}
	for i, s := range p.fields {
		required := i == 0 || i == 3 || i == 5
		if err := checkText(names[i], s, required); err != nil {
			return p, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
		}
	}
	var doc []byte
	switch d := e.Detail.(type) {
	case nil:
		doc = []byte("{}")
	case json.RawMessage:
		doc = d
	default:
		var err error
		if doc, err = json.Marshal(d); err != nil {
			return p, fmt.Errorf("%w: detail: %v", ErrInvalidEntry, err)
		}
	}
	canon, err := CanonicalJSON(doc)
	if err != nil {
		return p, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if len(canon) > MaxDetailSize {
		return p, fmt.Errorf("%w: detail is longer than %d bytes", ErrInvalidEntry, MaxDetailSize)
	}
	p.detail = string(canon)
	f := p.fields
	p.tail = entryTail(at, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], p.detail)
	return p, nil
}
