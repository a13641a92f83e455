package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto"
)

// Archival moves the old part of the chain to a file, and only then out of
// the database:
//
//  1. the whole chain is verified (a broken chain is not archived);
//  2. the cut is the last checkpoint whose entry is older than the
//     retention limit, so that what stays starts right after a signed
//     checkpoint;
//  3. the entries up to the cut and their checkpoints are written to
//     audit-<from>-<to>.jsonl in the archive directory, and a manifest
//     (entry range, SM3 of the file, first prev_hash, the anchor
//     checkpoint) signed with the node's SM2 key beside it; both are synced
//     to disk;
//  4. an "audit.archive" entry naming the cut and the file's SM3 is appended
//     to the chain;
//  5. the entries up to the cut and the checkpoints before it are deleted in
//     one transaction; the checkpoint at the cut stays as the anchor.
//
// Verify then checks the remaining chain from the anchor: its signature,
// the first entry's link to it, and an audit.archive entry that names it
// (a prefix deleted any other way is reported as deleted). VerifyArchive
// checks an archive file against its manifest, offline.

// ActionArchive is the audit action of an archival.
const ActionArchive = "audit.archive"

// ArchiveFormat names the archive format in the manifest.
const ArchiveFormat = "zhianhub-audit-archive/1"

// ErrNothingToArchive reports that no checkpoint is old enough to cut at.
var ErrNothingToArchive = errors.New("audit: nothing old enough to archive")

// ArchiveConfig configures Archive.
type ArchiveConfig struct {
	Pool *pgxpool.Pool
	// Writer appends the audit.archive entry.
	Writer *Writer
	// Dir receives the archive files; created when missing.
	Dir string
	// Before: entries at or after it stay.
	Before time.Time
	// Signer signs the manifest (the node's signing key).
	Signer crypto.Signer
	// Keys verify the chain before the cut.
	Keys KeyFunc
	// Actor of the audit.archive entry; default "system".
	Actor string
}

// ArchiveResult describes an archive.
type ArchiveResult struct {
	From, To     int64 // entry range
	Entries      int64
	Checkpoints  int64
	File         string // path of the .jsonl file
	Manifest     string // path of the manifest
	SM3          Hash   // of the file
	ArchiveEntry int64  // seq of the audit.archive entry
}

// Manifest is the signed description of an archive file.
type Manifest struct {
	Format        string     `json:"format"`
	From          int64      `json:"from"`
	To            int64      `json:"to"`
	Entries       int64      `json:"entries"`
	Checkpoints   int64      `json:"checkpoints"`
	File          string     `json:"file"`
	SM3           string     `json:"sm3"`
	FirstPrevHash string     `json:"first_prev_hash"`
	LastHash      string     `json:"last_hash"`
	Anchor        archivedCp `json:"anchor"`
	CreatedAt     time.Time  `json:"created_at"`
	KeyID         string     `json:"key_id"`
}

type signedManifest struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature string          `json:"signature"` // base64 DER SM2 over Manifest's compact JSON
}

// archivedEntry is one line of an archive file.
type archivedEntry struct {
	Seq           int64           `json:"seq"`
	At            time.Time       `json:"at"`
	Actor         string          `json:"actor"`
	Unit          string          `json:"unit"`
	Role          string          `json:"role"`
	Action        string          `json:"action"`
	Object        string          `json:"object"`
	Result        string          `json:"result"`
	Reason        string          `json:"reason"`
	CorrelationID string          `json:"correlation_id"`
	Detail        json.RawMessage `json:"detail"`
	PrevHash      string          `json:"prev_hash"`
	Hash          string          `json:"hash"`
	Checkpoint    *archivedCp     `json:"checkpoint,omitempty"`
}

type archivedCp struct {
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"`
	At        time.Time `json:"at"`
	KeyID     string    `json:"key_id"`
	MaxGap    int64     `json:"max_gap"`
	Signature string    `json:"signature"`
}

// Archive archives the chain up to the last checkpoint older than
// cfg.Before (see the package comment above). It returns
// ErrNothingToArchive when there is none past the current anchor.
func Archive(ctx context.Context, cfg ArchiveConfig) (ArchiveResult, error) {
	if cfg.Pool == nil || cfg.Writer == nil || cfg.Signer == nil || cfg.Keys == nil || cfg.Dir == "" {
		return ArchiveResult{}, errors.New("audit: archive: Pool, Writer, Signer, Keys and Dir are required")
	}
	if cfg.Actor == "" {
		cfg.Actor = "system"
	}
	rep, err := Verify(ctx, cfg.Pool, cfg.Keys)
	if err != nil {
		return ArchiveResult{}, err
	}
	if !rep.OK {
		return ArchiveResult{}, fmt.Errorf("audit: archive: the chain is broken (%s): not archived", rep.FirstBad)
	}
	var from, to int64
	err = cfg.Pool.QueryRow(ctx, `SELECT coalesce((SELECT min(seq) FROM audit_entry), 0),
		coalesce((SELECT max(c.seq) FROM audit_checkpoint c JOIN audit_entry e ON e.seq = c.seq WHERE e.at < $1), 0)`,
		cfg.Before).Scan(&from, &to)
	if err != nil {
		return ArchiveResult{}, fmt.Errorf("audit: archive: find the cut: %w", err)
	}
	if to == 0 || to < from || to > rep.LastSeq {
		return ArchiveResult{}, ErrNothingToArchive
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return ArchiveResult{}, fmt.Errorf("audit: archive: %w", err)
	}
	res := ArchiveResult{From: from, To: to}
	name := fmt.Sprintf("audit-%012d-%012d.jsonl", from, to)
	res.File = filepath.Join(cfg.Dir, name)
	res.Manifest = res.File + ".manifest.json"
	m, err := writeArchive(ctx, cfg.Pool, res.File, from, to)
	if err != nil {
		return ArchiveResult{}, err
	}
	m.File, m.CreatedAt, m.KeyID = name, time.Now().UTC().Truncate(time.Microsecond), string(cfg.Signer.KeyID())
	if err := WriteSignedManifest(res.Manifest, m, cfg.Signer); err != nil {
		return ArchiveResult{}, err
	}
	res.Entries, res.Checkpoints = m.Entries, m.Checkpoints
	sum, _ := hex.DecodeString(m.SM3)
	copy(res.SM3[:], sum)
	if err := SyncDir(cfg.Dir); err != nil {
		return ArchiveResult{}, err
	}
	res.ArchiveEntry, err = cfg.Writer.Append(ctx, Entry{Actor: cfg.Actor, Action: ActionArchive, Object: name, Result: "ok",
		Reason: fmt.Sprintf("entries %d-%d archived before deletion", from, to),
		Detail: map[string]any{"from": from, "to": to, "entries": m.Entries, "file": name, "sm3": m.SM3, "before": cfg.Before.UTC()}})
	if err != nil {
		return ArchiveResult{}, fmt.Errorf("audit: archive: record the archival (nothing deleted): %w", err)
	}
	err = pgx.BeginFunc(ctx, cfg.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL zhianhub.audit_archive = 'on'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_entry WHERE seq <= $1`, to); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM audit_checkpoint WHERE seq < $1`, to)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("audit: archive: delete the archived rows (the archive is written; run again): %w", err)
	}
	return res, nil
}

// writeArchive streams entries from..to with their checkpoints to path and
// returns the manifest's content part.
func writeArchive(ctx context.Context, pool *pgxpool.Pool, path string, from, to int64) (Manifest, error) {
	m := Manifest{Format: ArchiveFormat, From: from, To: to}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return m, fmt.Errorf("audit: archive: %w", err)
	}
	defer f.Close()
	h := sm3.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<16)
	// Read in a repeatable-read snapshot: the rows do not move meanwhile
	// (only this archival deletes, and only after this).
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT e.seq, e.at, e.actor, e.unit, e.role, e.action, e.object, e.result, e.reason,
				e.correlation_id, e.detail::text, e.prev_hash, e.hash, c.seq, c.hash, c.at, c.key_id, c.max_gap, c.signature
			FROM audit_entry e LEFT JOIN audit_checkpoint c ON c.seq = e.seq
			WHERE e.seq BETWEEN $1 AND $2 ORDER BY e.seq`, from, to)
		if err != nil {
			return err
		}
		defer rows.Close()
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for rows.Next() {
			var a archivedEntry
			var detail string
			var prev, hsh []byte
			var cSeq, cGap *int64
			var cHash, cSig []byte
			var cAt *time.Time
			var cKey *string
			if err := rows.Scan(&a.Seq, &a.At, &a.Actor, &a.Unit, &a.Role, &a.Action, &a.Object, &a.Result, &a.Reason,
				&a.CorrelationID, &detail, &prev, &hsh, &cSeq, &cHash, &cAt, &cKey, &cGap, &cSig); err != nil {
				return err
			}
			a.At = a.At.UTC()
			a.Detail, a.PrevHash, a.Hash = json.RawMessage(detail), hex.EncodeToString(prev), hex.EncodeToString(hsh)
			if cSeq != nil && cAt != nil && cKey != nil && cGap != nil {
				a.Checkpoint = &archivedCp{Seq: *cSeq, Hash: hex.EncodeToString(cHash), At: cAt.UTC(), KeyID: *cKey, MaxGap: *cGap,
					Signature: base64.StdEncoding.EncodeToString(cSig)}
				m.Checkpoints++
			}
			if m.Entries == 0 {
				m.FirstPrevHash = a.PrevHash
			}
			if a.Seq != from+m.Entries {
				return fmt.Errorf("entry %d is missing", from+m.Entries)
			}
			m.Entries++
			m.LastHash = a.Hash
			if a.Seq == to {
				if a.Checkpoint == nil {
					return fmt.Errorf("no checkpoint at the cut %d", to)
				}
				m.Anchor = *a.Checkpoint
			}
			if err := enc.Encode(&a); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err == nil && m.Entries != to-from+1 {
		err = fmt.Errorf("%d entries read, %d expected", m.Entries, to-from+1)
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		os.Remove(path)
		return m, fmt.Errorf("audit: archive: write %s: %w", path, err)
	}
	m.SM3 = hex.EncodeToString(h.Sum(nil))
	return m, nil
}

// WriteSignedManifest writes manifest m (any JSON value) to a new file at
// path, signed with signer over its compact JSON: {"manifest": m,
// "signature": base64 DER}. Archives of other tables (operation and system
// logs) use the same form; ReadSignedManifest checks it.
func WriteSignedManifest(path string, m any, signer crypto.Signer) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	sig, err := signer.Sign(body)
	if err != nil {
		return fmt.Errorf("audit: archive: sign the manifest: %w", err)
	}
	out, err := json.MarshalIndent(signedManifest{Manifest: body, Signature: base64.StdEncoding.EncodeToString(sig)}, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	if _, err := f.Write(append(out, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("audit: archive: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: archive: %w", err)
	}
	return f.Close()
}

// ReadSignedManifest reads a manifest written by WriteSignedManifest into
// m, then checks its signature with the key keyID(m) names. It returns an
// error when the file does not parse, the key is unknown or the signature
// does not verify; m is filled in any case as far as it parsed.
func ReadSignedManifest(path string, m any, keyID func() string, keys KeyFunc) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var sm signedManifest
	if err := json.Unmarshal(raw, &sm); err != nil {
		return fmt.Errorf("archive manifest: %w", err)
	}
	if err := json.Unmarshal(sm.Manifest, m); err != nil {
		return fmt.Errorf("archive manifest: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(sm.Signature)
	if err != nil {
		return fmt.Errorf("archive manifest signature: %w", err)
	}
	ver, ok := keys(crypto.KeyID(keyID()))
	if !ok {
		return fmt.Errorf("archive manifest signed by unknown key %s", keyID())
	}
	// Signed compact; the file shows it indented.
	var body bytes.Buffer
	if err := json.Compact(&body, sm.Manifest); err != nil {
		return fmt.Errorf("archive manifest: %w", err)
	}
	if err := ver.Verify(body.Bytes(), sig); err != nil {
		return fmt.Errorf("archive manifest: %w", err)
	}
	return nil
}

// SyncDir makes the entries of directory dir durable (a new archive and
// its manifest) before anything is deleted; the log archives share it.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: archive: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit: archive: sync %s: %w", dir, err)
	}
	return nil
}

// VerifyArchive checks an archive against its manifest (the path of the
// .manifest.json file): the manifest's signature by a key keys knows, the
// file's SM3, every entry's hash and link from the manifest's first
// prev_hash, every checkpoint's signature and hash, and the anchor
// checkpoint at the last entry. It returns the manifest.
func VerifyArchive(manifestPath string, keys KeyFunc) (Manifest, error) {
	var m Manifest
	if err := ReadSignedManifest(manifestPath, &m, func() string { return m.KeyID }, keys); err != nil {
		return m, fmt.Errorf("audit: %w", err)
	}
	if m.Format != ArchiveFormat {
		return m, fmt.Errorf("audit: archive manifest: not %s", ArchiveFormat)
	}
	f, err := os.Open(filepath.Join(filepath.Dir(manifestPath), filepath.Base(m.File)))
	if err != nil {
		return m, err
	}
	defer f.Close()
	h := sm3.New()
	if err := verifyArchiveLines(io.TeeReader(f, h), m, keys); err != nil {
		return m, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SM3 {
		return m, fmt.Errorf("audit: archive %s: SM3 %s, manifest says %s", m.File, got, m.SM3)
	}
	return m, nil
}

func verifyArchiveLines(r io.Reader, m Manifest, keys KeyFunc) error {
	prev, err := hex.DecodeString(m.FirstPrevHash)
	if err != nil || len(prev) != HashSize {
		return fmt.Errorf("audit: archive manifest: bad first_prev_hash")
	}
	v := &verifier{keys: keys, lastCp: Checkpoint{MaxGap: 1}}
	v.report.LastSeq, v.report.LastHash = m.From-1, Hash(prev)
	if m.From > 1 {
		// The previous archive sealed the entry before this one; the
		// promise of its checkpoint was checked there.
		v.lastCp = Checkpoint{Seq: m.From - 1, MaxGap: m.Anchor.MaxGap + m.Entries + 1}
	}
	dec := json.NewDecoder(r)
	var n int64
	for {
		var a archivedEntry
		if err := dec.Decode(&a); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("audit: archive line %d: %w", n+1, err)
		}
		e := storedEntry{seq: a.Seq, at: a.At, fields: [8]string{a.Actor, a.Unit, a.Role, a.Action, a.Object, a.Result, a.Reason, a.CorrelationID},
			detail: string(a.Detail)}
		e.prev, _ = hex.DecodeString(a.PrevHash)
		e.hash, _ = hex.DecodeString(a.Hash)
		if c := a.Checkpoint; c != nil {
			cHash, _ := hex.DecodeString(c.Hash)
			cSig, _ := base64.StdEncoding.DecodeString(c.Signature)
			cAt, cKey, cGap, cSeq := c.At, c.KeyID, c.MaxGap, c.Seq
			e.cpSeq, e.cpHash, e.cpAt, e.cpKey, e.cpGap, e.cpSig = &cSeq, cHash, &cAt, &cKey, &cGap, cSig
		}
		v.headSeq = a.Seq
		v.check(&e)
		if v.problem != nil {
			return fmt.Errorf("audit: archive %s: %s", m.File, v.problem)
		}
		if v.pending != nil {
			return fmt.Errorf("audit: archive %s: %s", m.File, v.pending)
		}
		n++
	}
	switch {
	case n != m.Entries || v.report.LastSeq != m.To:
		return fmt.Errorf("audit: archive %s: %d entries up to %d, manifest says %d up to %d", m.File, n, v.report.LastSeq, m.Entries, m.To)
	case hex.EncodeToString(v.report.LastHash[:]) != m.LastHash || m.Anchor.Seq != m.To || m.Anchor.Hash != m.LastHash:
		return fmt.Errorf("audit: archive %s: the last entry is not the manifest's anchor", m.File)
	case v.lastCp.Seq != m.To:
		return fmt.Errorf("audit: archive %s: no valid checkpoint at the last entry %d", m.File, m.To)
	}
	return nil
}
