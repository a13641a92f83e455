// Package audit keeps the hub's audit log: an append-only chain of entries in
// PostgreSQL, each carrying the SM3 hash of its predecessor, sealed at
// intervals by SM2-signed checkpoints.
//
// Writer appends entries with group commit: concurrent Appends are gathered
// into batches, each written in one transaction that locks the single-row
// audit_head, so several hub processes extend one chain. Verify re-reads the
// whole chain and names the first entry that does not check out.
//
// # Staged auditing
//
// Append is awaited: the entry is in the chain when it returns, at the price
// of a transaction (shared by the batch) apart from the caller's. Stage (and
// StageBatch) instead insert the entry into audit_pending through the
// caller's own transaction, so it commits atomically with the effect it
// records and costs one INSERT there (BeginFunc, or QueueStage on a
// caller's pgx.Batch, sends it with the COMMIT or other statements, saving
// its round trip). The Writer's chainer moves committed staged entries into
// the chain in the background, PendingBatchSize per transaction (entries,
// checkpoints, deletion of the pending rows and the head move commit
// together under the head's row lock, so each staged entry is chained
// exactly once even with chainers in several processes). Chaining
// transactions commit asynchronously (see asyncCommit): one lost in a
// PostgreSQL crash is lost whole and done again from audit_pending.
//
// Chain order for staged entries is pending id order among the rows
// committed when the chainer reads them, that is, roughly the order in which
// the staging transactions committed: neither strictly id order (a
// transaction that took a lower id but commits later is chained later) nor
// At order (At is kept from staging). Verify does not require At to grow.
//
// A staged entry is covered by the chain only once chained: until then
// (PendingPoll, 200 ms by default, or the time until some Writer runs again
// after a crash) it sits in audit_pending, where an attacker with rights on
// the database can delete or change it undetected; the triggers refuse
// UPDATE and TRUNCATE as a guard against mistakes only. Report.Pending shows
// how many entries are waiting. A row that breaks the entry rules (possible
// only by inserting into audit_pending directly) is chained as a substitute
// entry, ActionInvalidPending, so it neither stops the chain nor vanishes.
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
	"strings"
	"sync"
	"time"
	"unicode/utf8"
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

// prepare validates and canonicalizes e (canonicalize) and encodes the
// part of the canonical entry that does not depend on its seq.
func prepare(e Entry, now func() time.Time) (prepared, error) {
	p, err := canonicalize(e, now)
	if err != nil {
		return p, err
	}
	f := &p.fields
	p.tail = entryTail(p.at, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], p.detail)
	return p, nil
}

// canonicalize applies the entry rules shared by Append and Stage: At (now()
// when zero) in UTC truncated to microseconds, within years 1-9999; Actor,
// Action and Result present; text valid UTF-8 without NUL and at most
// MaxFieldSize bytes; Detail a JSON object, kept as CanonicalJSON of at most
// MaxDetailSize bytes. It leaves p.tail nil.
func canonicalize(e Entry, now func() time.Time) (prepared, error) {
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
	canon, err := canonicalDetail(doc)
	if err != nil {
		return p, err
	}
	p.detail = canon
	return p, nil
}

// canonicalDetail returns CanonicalJSON(doc) as a string, checked against
// MaxDetailSize, through detailCache.
func canonicalDetail(doc []byte) (string, error) {
	if canon, ok := detailCache.get(doc); ok {
		return canon, nil
	}
	b, err := CanonicalJSON(doc)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if len(b) > MaxDetailSize {
		return "", fmt.Errorf("%w: detail is longer than %d bytes", ErrInvalidEntry, MaxDetailSize)
	}
	canon := string(b)
	detailCache.put(doc, canon)
	return canon, nil
}

// detailCache maps small JSON documents to their canonical form. Most
// details repeat (kind, direction, queue), and both the callers of Append
// and Stage and the chainer canonicalize each of them. CanonicalJSON is a
// function of its input bytes, so the cache changes nothing but the time.
var detailCache = canonCache{m: make(map[string]string)}

const (
	// maxCachedDetail bounds the documents detailCache keeps, in bytes.
	maxCachedDetail = 512
	// maxCanonCache is the most documents detailCache keeps; it starts over
	// when full.
	maxCanonCache = 4096
)

type canonCache struct {
	mu sync.RWMutex
	m  map[string]string
}

func (c *canonCache) get(doc []byte) (string, bool) {
	if len(doc) > maxCachedDetail {
		return "", false
	}
	c.mu.RLock()
	canon, ok := c.m[string(doc)]
	c.mu.RUnlock()
	return canon, ok
}

func (c *canonCache) put(doc []byte, canon string) {
	if len(doc) > maxCachedDetail {
		return
	}
	c.mu.Lock()
	if len(c.m) >= maxCanonCache {
		clear(c.m)
	}
	c.m[string(doc)] = canon
	c.mu.Unlock()
}

// Text makes s acceptable audit text: valid UTF-8 (invalid bytes become
// U+FFFD), no NUL, at most max bytes, cut at a rune boundary. The API, the
// authentication middleware and the command line clip what callers give
// with it before it goes into an entry.
func Text(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
