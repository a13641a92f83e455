package logs

import (
	"bufio"
	"context"
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
	"zhianhub/store/audit"
)

// Log names a log table.
type Log string

// The logs.
const (
	LogSystem    Log = "system_log"
	LogOperation Log = "operation_log"
)

// ArchiveFormat names the archive format in the manifest.
const ArchiveFormat = "zhianhub-log-archive/1"

// ActionArchive is the audit action of a log archival.
const ActionArchive = "log.archive"

// ErrNothingToArchive reports that no row is older than the cut.
var ErrNothingToArchive = errors.New("logs: nothing to archive")

// ArchiveConfig configures Archive.
type ArchiveConfig struct {
	Pool *pgxpool.Pool
	Log  Log
	// Dir receives the archive files; created when missing.
	Dir string
	// Before: rows at or after it stay.
	Before time.Time
	// Signer signs the manifest (the node's signing key).
	Signer crypto.Signer
	// Audit records the archival before anything is deleted.
	Audit *audit.Writer
	// Actor of the audit entry; default "system".
	Actor string
}

// Manifest describes an archive file.
type Manifest struct {
	Format    string    `json:"format"`
	Log       Log       `json:"log"`
	FromID    int64     `json:"from_id"`
	ToID      int64     `json:"to_id"`
	Rows      int64     `json:"rows"`
	Before    time.Time `json:"before"`
	File      string    `json:"file"`
	SM3       string    `json:"sm3"`
	CreatedAt time.Time `json:"created_at"`
	KeyID     string    `json:"key_id"`
}

// ArchiveResult describes an archive.
type ArchiveResult struct {
	Manifest     Manifest
	File         string // path of the .jsonl file
	ManifestPath string
}

// Archive moves the rows of cfg.Log older than cfg.Before to a JSON-lines
// file with a manifest signed by cfg.Signer (its SM3, the id range, the row
// count), records the archival in the audit chain, and only then deletes
// those rows. Reading, writing and deleting happen in one repeatable-read
// transaction: the rows deleted are exactly the rows written (a row
// committed meanwhile is not in the snapshot, so it is neither written nor
// deleted). When the deletion fails, the file stays and the rows too; the
// next run archives them again (a row may then be in two archives, never in
// none).
func Archive(ctx context.Context, cfg ArchiveConfig) (ArchiveResult, error) {
	if cfg.Pool == nil || cfg.Signer == nil || cfg.Audit == nil || cfg.Dir == "" || (cfg.Log != LogSystem && cfg.Log != LogOperation) {
		return ArchiveResult{}, errors.New("logs: archive: Pool, Log, Dir, Signer and Audit are required")
	}
	if cfg.Actor == "" {
		cfg.Actor = "system"
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return ArchiveResult{}, fmt.Errorf("logs: archive: %w", err)
	}
	var res ArchiveResult
	err := pgx.BeginTxFunc(ctx, cfg.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		m := Manifest{Format: ArchiveFormat, Log: cfg.Log, Before: cfg.Before.UTC()}
		if err := tx.QueryRow(ctx, `SELECT coalesce(min(id), 0), coalesce(max(id), 0), count(*) FROM `+string(cfg.Log)+` WHERE at < $1`,
			cfg.Before).Scan(&m.FromID, &m.ToID, &m.Rows); err != nil {
			return err
		}
		if m.Rows == 0 {
			return ErrNothingToArchive
		}
		stamp := time.Now().UTC().Format("20060102T150405Z")
		m.File = fmt.Sprintf("%s-%012d-%012d-%s.jsonl", cfg.Log, m.FromID, m.ToID, stamp)
		res.File = filepath.Join(cfg.Dir, m.File)
		res.ManifestPath = res.File + ".manifest.json"
		n, sum, err := writeRows(ctx, tx, cfg.Log, cfg.Before, res.File)
		if err != nil {
			return err
		}
		if n != m.Rows {
			os.Remove(res.File)
			return fmt.Errorf("%d rows written, %d counted", n, m.Rows)
		}
		m.SM3, m.CreatedAt, m.KeyID = sum, time.Now().UTC().Truncate(time.Microsecond), string(cfg.Signer.KeyID())
		if err := audit.WriteSignedManifest(res.ManifestPath, m, cfg.Signer); err != nil {
			return err
		}
		if err := audit.SyncDir(cfg.Dir); err != nil {
			return err
		}
		res.Manifest = m
		if _, err := cfg.Audit.Append(ctx, audit.Entry{Actor: cfg.Actor, Action: ActionArchive, Object: m.File, Result: "ok",
			Reason: fmt.Sprintf("%s rows %d-%d archived before deletion", cfg.Log, m.FromID, m.ToID),
			Detail: map[string]any{"log": cfg.Log, "rows": m.Rows, "from_id": m.FromID, "to_id": m.ToID, "sm3": m.SM3, "before": m.Before}}); err != nil {
			return fmt.Errorf("record the archival (nothing deleted): %w", err)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM `+string(cfg.Log)+` WHERE at < $1`, cfg.Before)
		if err != nil {
			return fmt.Errorf("delete the archived rows (the archive is written; run again): %w", err)
		}
		if tag.RowsAffected() != m.Rows {
			return fmt.Errorf("%d rows would be deleted, %d archived: nothing deleted", tag.RowsAffected(), m.Rows)
		}
		return nil
	})
	if errors.Is(err, ErrNothingToArchive) {
		return ArchiveResult{}, err
	}
	if err != nil {
		return res, fmt.Errorf("logs: archive %s: %w", cfg.Log, err)
	}
	return res, nil
}

// writeRows writes the rows of log older than before, by id, to a new file
// at path, one JSON object a line; it returns the count and the file's SM3.
func writeRows(ctx context.Context, tx pgx.Tx, log Log, before time.Time, path string) (int64, string, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sm3.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<16)
	rows, err := tx.Query(ctx, `SELECT to_jsonb(t) FROM `+string(log)+` t WHERE at < $1 ORDER BY id`, before)
	if err != nil {
		os.Remove(path)
		return 0, "", err
	}
	var n int64
	for rows.Next() {
		var line []byte
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			os.Remove(path)
			return 0, "", err
		}
		w.Write(line)
		w.WriteByte('\n')
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		os.Remove(path)
		return 0, "", err
	}
	if err := w.Flush(); err != nil {
		os.Remove(path)
		return 0, "", err
	}
	if err := f.Sync(); err != nil {
		os.Remove(path)
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// VerifyArchive checks an archive against its manifest (the path of the
// .manifest.json file): the manifest's signature by a key keys knows, the
// file's SM3, the row count, and that every row is an object whose id is
// in the manifest's range, ascending, and whose time is before the cut.
func VerifyArchive(manifestPath string, keys audit.KeyFunc) (Manifest, error) {
	var m Manifest
	if err := audit.ReadSignedManifest(manifestPath, &m, func() string { return m.KeyID }, keys); err != nil {
		return m, fmt.Errorf("logs: %w", err)
	}
	if m.Format != ArchiveFormat {
		return m, fmt.Errorf("logs: archive manifest: not %s", ArchiveFormat)
	}
	f, err := os.Open(filepath.Join(filepath.Dir(manifestPath), filepath.Base(m.File)))
	if err != nil {
		return m, err
	}
	defer f.Close()
	h := sm3.New()
	sc := bufio.NewScanner(io.TeeReader(f, h))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
	var n, last int64
	for sc.Scan() {
		var row struct {
			ID int64     `json:"id"`
			At time.Time `json:"at"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return m, fmt.Errorf("logs: archive %s line %d: %w", m.File, n+1, err)
		}
		if row.ID < m.FromID || row.ID > m.ToID || row.ID <= last || !row.At.Before(m.Before) {
			return m, fmt.Errorf("logs: archive %s line %d: row %d out of the manifest's range or order", m.File, n+1, row.ID)
		}
		last = row.ID
		n++
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("logs: archive %s: %w", m.File, err)
	}
	if n != m.Rows {
		return m, fmt.Errorf("logs: archive %s: %d rows, manifest says %d", m.File, n, m.Rows)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SM3 {
		return m, fmt.Errorf("logs: archive %s: SM3 %s, manifest says %s", m.File, got, m.SM3)
	}
	return m, nil
}
