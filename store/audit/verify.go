package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/crypto"
	"zhianhub/store"
)

// Kind names what is wrong with the chain at a Problem's seq.
type Kind string

const (
	// KindModified: the entry at Seq does not match its hash, or was rewritten
	// with a recomputed hash that the next entry does not link to.
	KindModified Kind = "modified"
	// KindDeleted: the entry at Seq is missing.
	KindDeleted Kind = "deleted"
	// KindInserted: the entry at Seq was not written by a Writer: it sits
	// between two entries that link to each other, or past the head.
	KindInserted Kind = "inserted"
	// KindReordered: the entry at Seq holds the content of another entry,
	// which is found elsewhere in the chain.
	KindReordered Kind = "reordered"
	// KindCheckpoint: the checkpoint at Seq is forged or altered (bad
	// signature, unknown key, hash other than the entry's) or missing where
	// the previous checkpoint promised one. A chain rewritten with recomputed
	// hashes shows up here: the tampering is after the previous checkpoint
	// and at or before Seq.
	KindCheckpoint Kind = "checkpoint"
	// KindHead: the audit_head row disagrees with the last entry.
	KindHead Kind = "head"
)

// Problem is the first thing found wrong in the chain.
type Problem struct {
	Seq    int64
	Kind   Kind
	Detail string
}

func (p *Problem) String() string {
	return fmt.Sprintf("seq %d: %s: %s", p.Seq, p.Kind, p.Detail)
}

// Checkpoint is a signed checkpoint.
type Checkpoint struct {
	Seq       int64
	Hash      Hash
	At        time.Time
	KeyID     crypto.KeyID
	MaxGap    int64
	Signature []byte
}

// Report is the outcome of Verify.
type Report struct {
	// Entries and Checkpoints count what checked out, in seq order, before
	// the first problem.
	Entries     int64
	Checkpoints int64
	// LastSeq and LastHash are those of the last entry that checked out.
	LastSeq  int64
	LastHash Hash
	// LastCheckpoint is the last checkpoint that checked out (nil if none).
	// Keep it outside the database to detect a later cut-back of the chain.
	LastCheckpoint *Checkpoint
	// OK is true when the whole chain checked out; otherwise FirstBad says
	// where it first goes wrong.
	OK       bool
	FirstBad *Problem
	// ArchivedThrough is the last seq archived and deleted (0 when the
	// chain starts at 1): the remaining chain starts after the signed
	// checkpoint at that seq, named by an audit.archive entry.
	ArchivedThrough int64
	// Pending counts the staged entries (audit_pending rows, see Stage) not
	// yet chained, in Verify's snapshot. They are not checked: they are not
	// in the chain yet.
	Pending int64
}

// KeyFunc returns the verifier of a checkpoint signing key, or false when the
// key is unknown.
type KeyFunc func(crypto.KeyID) (crypto.Verifier, bool)

type txBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

const verifyEntriesSQL = `
SELECT e.seq, e.at, e.actor, e.unit, e.role, e.action, e.object, e.result, e.reason,
       e.correlation_id, e.detail::text, e.prev_hash, e.hash,
       c.seq, c.hash, c.at, c.key_id, c.max_gap, c.signature
FROM audit_entry e LEFT JOIN audit_checkpoint c ON c.seq = e.seq
ORDER BY e.seq`

// Verify checks the whole audit chain: it streams the entries in seq order
// (memory use does not grow with the chain), recomputes every hash, checks
// that seqs are contiguous from 1 and each prev_hash is the previous entry's
// hash, that each checkpoint is signed by a key keys knows and names the hash
// of the entry at its seq, that checkpoints come as often as they promised,
// and that audit_head names the last entry. It does not compare the times
// (At) of entries: seq order is the order entries were chained in, which for
// staged entries is the order their transactions committed, not At order.
// It also counts the staged entries not yet chained (Report.Pending).
//
// When q can begin transactions (*pgxpool.Pool, *pgx.Conn) Verify reads
// through one REPEATABLE READ READ ONLY transaction, so concurrent writers do
// not disturb it. When q is a pgx.Tx, the caller should give it that
// isolation.
//
// The error is for failures to read the chain; a chain that does not check
// out gives a Report with OK false and FirstBad set.
func Verify(ctx context.Context, q store.Querier, keys KeyFunc) (Report, error) {
	if keys == nil {
		return Report{}, errors.New("audit: verify: nil key function")
	}
	if b, ok := q.(txBeginner); ok {
		tx, err := b.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return Report{}, fmt.Errorf("audit: verify: %w", err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
		q = tx
	}
	v := &verifier{keys: keys, lastCp: Checkpoint{MaxGap: 1}}
	if err := v.readHead(ctx, q); err != nil {
		return Report{}, err
	}
	var pending int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM audit_pending`).Scan(&pending); err != nil {
		return Report{}, fmt.Errorf("audit: verify: count audit_pending: %w", err)
	}
	if err := v.readAnchor(ctx, q); err != nil {
		return Report{}, err
	}
	if v.problem == nil {
		if err := v.stream(ctx, q); err != nil {
			return Report{}, err
		}
	}
	if v.problem == nil && v.report.ArchivedThrough > 0 && !v.archiveNamed {
		v.fail(1, KindDeleted, "entries 1-%d are missing and no %s entry names that cut", v.report.ArchivedThrough, ActionArchive)
	}
	if v.problem == nil {
		if err := v.checkEnd(ctx, q); err != nil {
			return Report{}, err
		}
	}
	r := v.report
	r.FirstBad = v.problem
	r.OK = v.problem == nil
	r.Pending = pending
	if v.lastCp.Seq > 0 {
		cp := v.lastCp
		r.LastCheckpoint = &cp
	}
	return r, nil
}

type storedEntry struct {
	seq    int64
	at     time.Time
	fields [8]string
	detail string
	prev   []byte
	hash   []byte

	cpSeq  *int64
	cpHash []byte
	cpAt   *time.Time
	cpKey  *string
	cpGap  *int64
	cpSig  []byte
}

// tail returns the canonical encoding after seq, or an error when the stored
// detail has no canonical form.
func (e *storedEntry) tail() ([]byte, error) {
	d, err := CanonicalJSON([]byte(e.detail))
	if err != nil {
		return nil, err
	}
	f := e.fields
	return entryTail(canonicalTime(e.at), f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], string(d)), nil
}

type verifier struct {
	keys KeyFunc

	headFound bool
	headSeq   int64
	headHash  []byte
	headCpSeq int64

	report  Report
	problem *Problem
	lastCp  Checkpoint // MaxGap 1 at genesis: entry 1 must carry a checkpoint

	prevPrev     []byte // prev_hash of the last good entry
	prevSealed   bool   // the last good entry carries a valid checkpoint
	pending      *Problem
	pendingPrev  Hash // the hash the entry at pending.Seq must link to
	pendingHash  []byte
	pendingCount int64

	archiveNamed bool // an audit.archive entry names ArchivedThrough
}

// readAnchor starts the check after the archived part of the chain, if
// any: the first entry's predecessor must carry a checkpoint (kept by
// Archive) whose signature holds.
func (v *verifier) readAnchor(ctx context.Context, q store.Querier) error {
	var first *int64
	if err := q.QueryRow(ctx, `SELECT min(seq) FROM audit_entry`).Scan(&first); err != nil {
		return fmt.Errorf("audit: verify: first entry: %w", err)
	}
	if first == nil || *first <= 1 {
		return nil
	}
	cut := *first - 1
	var e storedEntry
	var hash []byte
	e.seq = cut
	err := q.QueryRow(ctx, `SELECT seq, hash, at, key_id, max_gap, signature FROM audit_checkpoint WHERE seq = $1`, cut).
		Scan(&e.cpSeq, &e.cpHash, &e.cpAt, &e.cpKey, &e.cpGap, &e.cpSig)
	if errors.Is(err, pgx.ErrNoRows) {
		v.fail(1, KindDeleted, "entries 1-%d are missing and no checkpoint anchors entry %d", cut, *first)
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: verify: read the anchor checkpoint: %w", err)
	}
	hash = e.cpHash
	if len(hash) != HashSize {
		v.fail(cut, KindCheckpoint, "anchor checkpoint %d has a hash of the wrong size", cut)
		return nil
	}
	if !v.checkCheckpoint(&e, Hash(hash)) {
		return nil
	}
	v.report.Checkpoints-- // the anchor is not part of the remaining chain
	v.report.ArchivedThrough = cut
	v.report.LastSeq, v.report.LastHash = cut, Hash(hash)
	v.prevSealed = true
	return nil
}

func (v *verifier) fail(seq int64, kind Kind, format string, args ...any) {
	v.problem = &Problem{Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

func (v *verifier) readHead(ctx context.Context, q store.Querier) error {
	err := q.QueryRow(ctx, `SELECT last_seq, last_hash, checkpoint_seq FROM audit_head WHERE id`).
		Scan(&v.headSeq, &v.headHash, &v.headCpSeq)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		v.headSeq = math.MaxInt64
		return nil
	case err != nil:
		return fmt.Errorf("audit: verify: read audit_head: %w", err)
	}
	v.headFound = true
	return nil
}

func (v *verifier) stream(ctx context.Context, q store.Querier) error {
	rows, err := q.Query(ctx, verifyEntriesSQL)
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	var e storedEntry
	for rows.Next() {
		f := &e.fields
		e.cpSeq, e.cpHash, e.cpAt, e.cpKey, e.cpGap, e.cpSig = nil, nil, nil, nil, nil, nil
		if err := rows.Scan(&e.seq, &e.at, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7],
			&e.detail, &e.prev, &e.hash,
			&e.cpSeq, &e.cpHash, &e.cpAt, &e.cpKey, &e.cpGap, &e.cpSig); err != nil {
			return fmt.Errorf("audit: verify: read entry: %w", err)
		}
		if v.pending != nil {
			if v.lookAhead(&e) {
				break
			}
			continue
		}
		v.check(&e)
		if v.problem != nil && v.pending == nil {
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: verify: read entries: %w", err)
	}
	if v.pending != nil && v.problem == nil {
		v.problem = v.pending
	}
	return nil
}

// check verifies the next entry in seq order.
func (v *verifier) check(e *storedEntry) {
	seq := v.report.LastSeq + 1
	prev := v.report.LastHash
	switch {
	case e.seq != seq:
		v.fail(seq, KindDeleted, "entry %d is missing (the next entry is %d)", seq, e.seq)
		return
	case e.seq > v.headSeq:
		v.fail(seq, KindInserted, "entry %d is past audit_head (last_seq %d)", seq, v.headSeq)
		return
	case len(e.prev) != HashSize || len(e.hash) != HashSize:
		v.fail(seq, KindModified, "entry %d has a hash of the wrong size", seq)
		return
	}
	linked := bytes.Equal(e.prev, prev[:])
	tail, err := e.tail()
	if err != nil {
		v.fail(seq, KindModified, "entry %d: %v", seq, err)
		return
	}
	computed := entryHash(Hash(e.prev), seq, tail)
	selfOK := bytes.Equal(computed[:], e.hash)
	switch {
	case !linked && seq > 1 && bytes.Equal(e.prev, v.prevPrev):
		// This entry and the previous one both follow entry seq-2: the
		// previous one was slipped in between.
		v.fail(seq-1, KindInserted, "entry %d was inserted: entry %d links to entry %d", seq-1, seq, seq-2)
		return
	case !linked && selfOK && seq > 1 && !v.prevSealed:
		v.fail(seq-1, KindModified, "entry %d was rewritten with a recomputed hash: entry %d links to another hash"+
			" (or entry %d's prev_hash and hash were both replaced)", seq-1, seq, seq)
		return
	case !linked && selfOK:
		v.fail(seq, KindModified, "entry %d does not link to entry %d, which is sealed by a checkpoint", seq, seq-1)
		return
	case !linked || !selfOK:
		// Modified, unless the content sealed here turns up further on.
		what := "its hash does not match its content"
		if !linked {
			what = "its prev_hash is not the previous entry's hash"
		}
		v.pending = &Problem{Seq: seq, Kind: KindModified, Detail: fmt.Sprintf("entry %d: %s", seq, what)}
		v.pendingPrev = prev
		v.pendingHash = append([]byte(nil), e.hash...)
		return
	}

	sealed := false
	if e.cpSeq != nil {
		if !v.checkCheckpoint(e, computed) {
			return
		}
		sealed = true
	} else if seq-v.lastCp.Seq >= v.lastCp.MaxGap {
		v.fail(seq, KindCheckpoint, "no checkpoint at entry %d: the checkpoint at %d promised one within %d entries",
			seq, v.lastCp.Seq, v.lastCp.MaxGap)
		return
	}
	if e.fields[3] == ActionArchive && v.report.ArchivedThrough > 0 && !v.archiveNamed {
		var d struct{ To int64 }
		if json.Unmarshal([]byte(e.detail), &d) == nil && d.To == v.report.ArchivedThrough {
			v.archiveNamed = true
		}
	}
	v.prevPrev = append(v.prevPrev[:0], e.prev...)
	v.prevSealed = sealed
	v.report.Entries++
	v.report.LastSeq = seq
	v.report.LastHash = computed
}

func (v *verifier) checkCheckpoint(e *storedEntry, hash Hash) bool {
	seq := e.seq
	if e.cpHash == nil || e.cpAt == nil || e.cpKey == nil || e.cpGap == nil || e.cpSig == nil {
		v.fail(seq, KindCheckpoint, "checkpoint %d has empty columns", seq)
		return false
	}
	cp := Checkpoint{Seq: seq, At: e.cpAt.UTC(), KeyID: crypto.KeyID(*e.cpKey), MaxGap: *e.cpGap, Signature: e.cpSig}
	if len(e.cpHash) != HashSize || !bytes.Equal(e.cpHash, hash[:]) {
		v.fail(seq, KindCheckpoint, "checkpoint %d names another hash than entry %d's: the chain after checkpoint %d was rewritten",
			seq, seq, v.lastCp.Seq)
		return false
	}
	cp.Hash = hash
	if cp.MaxGap < 1 {
		v.fail(seq, KindCheckpoint, "checkpoint %d has max_gap %d", seq, cp.MaxGap)
		return false
	}
	ver, ok := v.keys(cp.KeyID)
	if !ok || ver == nil {
		v.fail(seq, KindCheckpoint, "checkpoint %d is signed by unknown key %s", seq, cp.KeyID.Short())
		return false
	}
	if ver.KeyID() != cp.KeyID {
		v.fail(seq, KindCheckpoint, "checkpoint %d: key function returned key %s for %s", seq, ver.KeyID().Short(), cp.KeyID.Short())
		return false
	}
	if err := ver.Verify(CheckpointText(cp.Seq, cp.Hash, cp.At, cp.KeyID, cp.MaxGap), cp.Signature); err != nil {
		v.fail(seq, KindCheckpoint, "checkpoint %d: %v", seq, err)
		return false
	}
	v.lastCp = cp
	v.report.Checkpoints++
	return true
}

// lookAhead looks for the content that belongs at the pending problem's seq
// in a later entry; it reports true when found (the problem is settled).
func (v *verifier) lookAhead(e *storedEntry) bool {
	tail, err := e.tail()
	if err != nil {
		return false
	}
	p := v.pending
	h := entryHash(v.pendingPrev, p.Seq, tail)
	if bytes.Equal(h[:], e.hash) || bytes.Equal(h[:], v.pendingHash) {
		v.fail(p.Seq, KindReordered, "the content of entry %d is stored at seq %d", p.Seq, e.seq)
		return true
	}
	return false
}

// checkEnd compares the end of a good chain with the checkpoints past it and
// with audit_head.
func (v *verifier) checkEnd(ctx context.Context, q store.Querier) error {
	last := v.report.LastSeq
	var beyond *int64
	if err := q.QueryRow(ctx, `SELECT min(seq) FROM audit_checkpoint WHERE seq > $1`, last).Scan(&beyond); err != nil {
		return fmt.Errorf("audit: verify: read checkpoints: %w", err)
	}
	switch {
	case beyond != nil:
		v.fail(last+1, KindDeleted, "entry %d is missing: the chain ends at %d but a checkpoint seals entry %d", last+1, last, *beyond)
	case !v.headFound:
		v.fail(last, KindHead, "the audit_head row is missing")
	case v.headSeq > last:
		v.fail(last+1, KindDeleted, "entry %d is missing: the chain ends at %d but audit_head names %d", last+1, last, v.headSeq)
	case !bytes.Equal(v.headHash, v.report.LastHash[:]):
		v.fail(last, KindHead, "audit_head names another hash than entry %d's", last)
	case v.headCpSeq != v.lastCp.Seq:
		v.fail(v.headCpSeq, KindCheckpoint, "audit_head names checkpoint %d but the last checkpoint is %d", v.headCpSeq, v.lastCp.Seq)
	}
	return nil
}
