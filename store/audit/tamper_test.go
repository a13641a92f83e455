package audit

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/crypto"
	"zhianhub/store/storetest"
)

// tamperer plays a DBA with full rights but without the signing key.
type tamperer struct {
	t   *testing.T
	ctx context.Context
	tx  pgx.Tx
}

func (m *tamperer) exec(sql string, args ...any) {
	m.t.Helper()
	if _, err := m.tx.Exec(m.ctx, sql, args...); err != nil {
		m.t.Fatalf("%s: %v", sql, err)
	}
}

func (m *tamperer) hash(seq int64) []byte {
	m.t.Helper()
	var h []byte
	if err := m.tx.QueryRow(m.ctx, `SELECT hash FROM audit_entry WHERE seq = $1`, seq).Scan(&h); err != nil {
		m.t.Fatal(err)
	}
	return h
}

// rechain recomputes prev_hash and hash of every entry from seq on, and
// points the head at the new end: what an attacker does to hide an edit.
func (m *tamperer) rechain(from int64) {
	m.t.Helper()
	prev := Hash{}
	if from > 1 {
		prev = Hash(m.hash(from - 1))
	}
	for _, e := range m.entries(from, 1<<62) {
		h := m.rehash(e, prev)
		prev = h
	}
	m.exec(`UPDATE audit_head SET last_seq = (SELECT max(seq) FROM audit_entry), last_hash = $1`, prev[:])
}

// rehashOnly recomputes the hash of the entry at seq from its content and
// stored prev_hash, and nothing else.
func (m *tamperer) rehashOnly(seq int64) {
	m.t.Helper()
	e := m.entries(seq, seq)[0]
	m.rehash(e, Hash(e.prev))
}

func (m *tamperer) rehash(e storedEntry, prev Hash) Hash {
	m.t.Helper()
	tail, err := e.tail()
	if err != nil {
		m.t.Fatal(err)
	}
	h := entryHash(prev, e.seq, tail)
	m.exec(`UPDATE audit_entry SET prev_hash = $2, hash = $3 WHERE seq = $1`, e.seq, prev[:], h[:])
	return h
}

func (m *tamperer) entries(from, to int64) []storedEntry {
	m.t.Helper()
	rows, err := m.tx.Query(m.ctx, `SELECT seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail::text, prev_hash
		FROM audit_entry WHERE seq BETWEEN $1 AND $2 ORDER BY seq`, from, to)
	if err != nil {
		m.t.Fatal(err)
	}
	var entries []storedEntry
	for rows.Next() {
		var e storedEntry
		f := &e.fields
		if err := rows.Scan(&e.seq, &e.at, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &e.detail, &e.prev); err != nil {
			m.t.Fatal(err)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		m.t.Fatal(err)
	}
	return entries
}

// insert writes a well-formed entry at seq, linked to the entry before it.
func (m *tamperer) insert(seq int64, e Entry) {
	m.t.Helper()
	p, err := prepare(e, time.Now)
	if err != nil {
		m.t.Fatal(err)
	}
	prev := Hash(m.hash(seq - 1))
	h := entryHash(prev, seq, p.tail)
	f := p.fields
	m.exec(`INSERT INTO audit_entry (seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13)`,
		seq, p.at, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], p.detail, prev[:], h[:])
}

// shift moves the entries from seq on one place up, freeing seq.
func (m *tamperer) shift(from int64) {
	m.exec(`UPDATE audit_entry SET seq = seq + 1000000 WHERE seq >= $1`, from)
	m.exec(`UPDATE audit_entry SET seq = seq - 1000000 + 1 WHERE seq >= 1000000`)
}

const payloadCols = `at, actor, unit, role, action, object, result, reason, correlation_id, detail`

// swap exchanges the given columns of two entries.
func (m *tamperer) swap(a, b int64, cols string) {
	m.exec(`UPDATE audit_entry x SET (`+cols+`) = (SELECT `+cols+` FROM audit_entry y
		WHERE y.seq = CASE x.seq WHEN $1::bigint THEN $2::bigint ELSE $1::bigint END) WHERE x.seq IN ($1, $2)`, a, b)
}

func (m *tamperer) resign(seq int64, signer crypto.Signer) {
	m.t.Helper()
	var (
		cp Checkpoint
		h  []byte
	)
	if err := m.tx.QueryRow(m.ctx, `SELECT hash, at, max_gap FROM audit_checkpoint WHERE seq = $1`, seq).Scan(&h, &cp.At, &cp.MaxGap); err != nil {
		m.t.Fatal(err)
	}
	sig, err := signer.Sign(CheckpointText(seq, Hash(h), cp.At, signer.KeyID(), cp.MaxGap))
	if err != nil {
		m.t.Fatal(err)
	}
	m.exec(`UPDATE audit_checkpoint SET key_id = $2, signature = $3 WHERE seq = $1`, seq, string(signer.KeyID()), sig)
}

// TestTamper builds a chain of 22 entries with a checkpoint every 5 entries
// (at 1, 6, 11, 16 and 21; entry 22 is not sealed yet), then tampers with it
// in a transaction, runs Verify inside that transaction, and rolls back.
func TestTamper(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	keys := newKeys(t)
	w := newWriter(t, pool, WriterConfig{Signer: keys.signer, CheckpointEvery: 5})
	for i := 1; i <= 22; i++ {
		if _, err := w.Append(ctx, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	base := mustVerifyOK(t, ctx, pool, keys)
	if base.Entries != 22 || base.Checkpoints != 5 || base.LastCheckpoint.Seq != 21 {
		t.Fatalf("base chain: %+v", base)
	}
	mallory, err := crypto.GenerateSM2()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		tamper   func(m *tamperer)
		wantOK   bool // an attack the chain cannot show (see the package doc)
		wantSeq  int64
		wantKind Kind
	}{
		// Modified columns, hash left alone.
		{name: "update actor", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 8`) }, wantSeq: 8, wantKind: KindModified},
		{name: "update unit", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET unit = '310000000001' WHERE seq = 8`) }, wantSeq: 8, wantKind: KindModified},
		{name: "update role", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET role = 'admin' WHERE seq = 8`) }, wantSeq: 8, wantKind: KindModified},
		{name: "update action", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET action = 'noop' WHERE seq = 8`) }, wantSeq: 8, wantKind: KindModified},
		{name: "update object", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET object = 'x' WHERE seq = 8`) }, wantSeq: 8, wantKind: KindModified},
		{name: "update result", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET result = 'denied' WHERE seq = 8`) }, wantSeq: 8, wantKind: KindModified},
		{name: "update reason", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET reason = 'because' WHERE seq = 8`) }, wantSeq: 8, wantKind: KindModified},
		{name: "update correlation id", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET correlation_id = '' WHERE seq = 8`) }, wantSeq: 8, wantKind: KindModified},
		{name: "update at by 1µs", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_entry SET at = at + interval '1 microsecond' WHERE seq = 8`)
		}, wantSeq: 8, wantKind: KindModified},
		{name: "update detail", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET detail = detail || '{"i": 999}' WHERE seq = 8`) }, wantSeq: 8, wantKind: KindModified},
		{name: "update detail number form only", tamper: func(m *tamperer) {
			// 1.25 -> 1.250 is the same JSON value: not a change.
			m.exec(`UPDATE audit_entry SET detail = jsonb_set(detail, '{ratio}', '1.250') WHERE seq = 8`)
		}, wantOK: true},
		{name: "update prev_hash", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_entry SET prev_hash = set_byte(prev_hash, 0, get_byte(prev_hash, 0) # 1) WHERE seq = 8`)
		}, wantSeq: 8, wantKind: KindModified},
		{name: "update hash", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_entry SET hash = set_byte(hash, 31, get_byte(hash, 31) # 1) WHERE seq = 8`)
		}, wantSeq: 8, wantKind: KindModified},
		{name: "update first entry", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 1`) }, wantSeq: 1, wantKind: KindModified},
		{name: "update sealed entry", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 11`) }, wantSeq: 11, wantKind: KindModified},
		{name: "update last entry", tamper: func(m *tamperer) { m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 22`) }, wantSeq: 22, wantKind: KindModified},

		// Modified with a recomputed hash.
		{name: "rehash one entry only", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 8`)
			m.rehashOnly(8)
		}, wantSeq: 8, wantKind: KindModified},
		{name: "rehash one sealed entry only", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 6`)
			m.rehashOnly(6)
		}, wantSeq: 6, wantKind: KindCheckpoint},
		{name: "rehash the entry after a sealed one", tamper: func(m *tamperer) {
			// Entry 6 is sealed, so entry 7 (self-consistent, not linked) is the culprit.
			m.exec(`UPDATE audit_entry SET actor = 'mallory', prev_hash = $1 WHERE seq = 7`, m.hash(3))
			m.rehashOnly(7)
		}, wantSeq: 7, wantKind: KindModified},
		{name: "rehash the last entry", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 22`)
			m.rehashOnly(22)
		}, wantSeq: 22, wantKind: KindHead},
		{name: "recompute the whole chain", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 8`)
			m.rechain(8)
		}, wantSeq: 11, wantKind: KindCheckpoint},
		{name: "recompute the chain and drop later checkpoints", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 8`)
			m.rechain(8)
			m.exec(`DELETE FROM audit_checkpoint WHERE seq > 6`)
			m.exec(`UPDATE audit_head SET checkpoint_seq = 6`)
		}, wantSeq: 11, wantKind: KindCheckpoint},
		{name: "recompute the chain from a sealed entry", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 6`)
			m.rechain(6)
		}, wantSeq: 6, wantKind: KindCheckpoint},

		// Deleted entries.
		{name: "delete middle", tamper: func(m *tamperer) { m.exec(`DELETE FROM audit_entry WHERE seq = 8`) }, wantSeq: 8, wantKind: KindDeleted},
		{name: "delete sealed middle", tamper: func(m *tamperer) { m.exec(`DELETE FROM audit_entry WHERE seq = 11`) }, wantSeq: 11, wantKind: KindDeleted},
		{name: "delete first", tamper: func(m *tamperer) { m.exec(`DELETE FROM audit_entry WHERE seq = 1`) }, wantSeq: 1, wantKind: KindDeleted},
		{name: "delete last", tamper: func(m *tamperer) { m.exec(`DELETE FROM audit_entry WHERE seq = 22`) }, wantSeq: 22, wantKind: KindDeleted},
		{name: "delete sealed last entries and rewrite head", tamper: func(m *tamperer) {
			m.exec(`DELETE FROM audit_entry WHERE seq >= 21`)
			m.exec(`UPDATE audit_head SET last_seq = 20, last_hash = $1`, m.hash(20))
		}, wantSeq: 21, wantKind: KindDeleted},
		{name: "delete everything", tamper: func(m *tamperer) { m.exec(`DELETE FROM audit_entry`) }, wantSeq: 1, wantKind: KindDeleted},
		{name: "limitation: truncate the unsealed tail and rewrite head", tamper: func(m *tamperer) {
			m.exec(`DELETE FROM audit_entry WHERE seq = 22`)
			m.exec(`UPDATE audit_head SET last_seq = 21, last_hash = $1`, m.hash(21))
		}, wantOK: true},
		{name: "limitation: cut back to a checkpoint", tamper: func(m *tamperer) {
			m.exec(`DELETE FROM audit_entry WHERE seq > 18`)
			m.exec(`DELETE FROM audit_checkpoint WHERE seq > 16`)
			m.exec(`UPDATE audit_entry SET actor = 'mallory' WHERE seq = 18`)
			m.rechain(18)
			m.exec(`UPDATE audit_head SET checkpoint_seq = 16`)
		}, wantOK: true},

		// Inserted entries.
		{name: "insert in the middle", tamper: func(m *tamperer) {
			m.shift(9)
			m.insert(9, entry(99))
		}, wantSeq: 9, wantKind: KindInserted},
		{name: "insert at the end", tamper: func(m *tamperer) { m.insert(23, entry(99)) }, wantSeq: 23, wantKind: KindInserted},
		{name: "insert before a checkpoint and recompute", tamper: func(m *tamperer) {
			m.shift(20)
			m.insert(20, entry(99))
			m.rechain(21)
		}, wantSeq: 21, wantKind: KindCheckpoint},
		{name: "limitation: append to the unsealed tail and rewrite head", tamper: func(m *tamperer) {
			m.insert(23, entry(99))
			m.exec(`UPDATE audit_head SET last_seq = 23, last_hash = $1`, m.hash(23))
		}, wantOK: true},

		// Reordered entries.
		{name: "swap two rows", tamper: func(m *tamperer) { m.swap(8, 13, payloadCols+", prev_hash, hash") }, wantSeq: 8, wantKind: KindReordered},
		{name: "swap adjacent rows", tamper: func(m *tamperer) { m.swap(8, 9, payloadCols+", prev_hash, hash") }, wantSeq: 8, wantKind: KindReordered},
		{name: "swap contents, keep hashes", tamper: func(m *tamperer) { m.swap(8, 13, payloadCols) }, wantSeq: 8, wantKind: KindReordered},
		{name: "swap across a checkpoint", tamper: func(m *tamperer) { m.swap(3, 22, payloadCols+", prev_hash, hash") }, wantSeq: 3, wantKind: KindReordered},

		// Checkpoints.
		{name: "forge a signature", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_checkpoint SET signature = set_byte(signature, length(signature) - 1, get_byte(signature, length(signature) - 1) # 1) WHERE seq = 11`)
		}, wantSeq: 11, wantKind: KindCheckpoint},
		{name: "sign with an unknown key", tamper: func(m *tamperer) { m.resign(11, mallory) }, wantSeq: 11, wantKind: KindCheckpoint},
		{name: "checkpoint names another hash", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_checkpoint SET hash = $1 WHERE seq = 11`, m.hash(10))
		}, wantSeq: 11, wantKind: KindCheckpoint},
		{name: "checkpoint time changed", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_checkpoint SET at = at - interval '1 hour' WHERE seq = 16`)
		}, wantSeq: 16, wantKind: KindCheckpoint},
		{name: "checkpoint promise widened", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_checkpoint SET max_gap = 1000 WHERE seq = 6`)
		}, wantSeq: 6, wantKind: KindCheckpoint},
		{name: "delete a checkpoint", tamper: func(m *tamperer) { m.exec(`DELETE FROM audit_checkpoint WHERE seq = 11`) }, wantSeq: 11, wantKind: KindCheckpoint},
		{name: "delete the last checkpoint", tamper: func(m *tamperer) { m.exec(`DELETE FROM audit_checkpoint WHERE seq = 21`) }, wantSeq: 21, wantKind: KindCheckpoint},
		{name: "delete the first checkpoint", tamper: func(m *tamperer) { m.exec(`DELETE FROM audit_checkpoint WHERE seq = 1`) }, wantSeq: 1, wantKind: KindCheckpoint},
		{name: "move a checkpoint", tamper: func(m *tamperer) {
			m.exec(`UPDATE audit_checkpoint SET seq = 12, hash = (SELECT hash FROM audit_entry WHERE seq = 12) WHERE seq = 11`)
		}, wantSeq: 11, wantKind: KindCheckpoint},

		// Head.
		{name: "head hash changed", tamper: func(m *tamperer) { m.exec(`UPDATE audit_head SET last_hash = $1`, m.hash(21)) }, wantSeq: 22, wantKind: KindHead},
		{name: "head deleted", tamper: func(m *tamperer) { m.exec(`DELETE FROM audit_head`) }, wantSeq: 22, wantKind: KindHead},
		{name: "head points past the end", tamper: func(m *tamperer) { m.exec(`UPDATE audit_head SET last_seq = 30`) }, wantSeq: 23, wantKind: KindDeleted},
		{name: "head names a later checkpoint", tamper: func(m *tamperer) { m.exec(`UPDATE audit_head SET checkpoint_seq = 22`) }, wantSeq: 22, wantKind: KindCheckpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			m := &tamperer{t: t, ctx: ctx, tx: tx}
			m.exec(`SET LOCAL zhianhub.audit_archive = 'on'`)
			tt.tamper(m)
			r, err := Verify(ctx, tx, keys.lookup)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantOK {
				if !r.OK {
					t.Fatalf("want the chain to verify (a documented limit), got %v", r.FirstBad)
				}
				return
			}
			if r.OK || r.FirstBad == nil {
				t.Fatalf("tampering not detected: %+v", r)
			}
			if r.FirstBad.Seq != tt.wantSeq || r.FirstBad.Kind != tt.wantKind || r.FirstBad.Detail == "" {
				t.Fatalf("first bad = %v, want seq %d %s", r.FirstBad, tt.wantSeq, tt.wantKind)
			}
			t.Logf("%v", r.FirstBad)
		})
	}
	// Rolled back: the chain is intact.
	mustVerifyOK(t, ctx, pool, keys)
}

func TestVerifyArguments(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	if _, err := Verify(ctx, pool, nil); err == nil {
		t.Fatal("nil key function accepted")
	}
}
