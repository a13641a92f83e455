package store

import (
	"context"
	"fmt"

	"zhianhub/crypto"
	"zhianhub/crypto/fieldenc"
)

// DataKeys stores the wrapped data keys of the field encryption in table
// data_key. It implements fieldenc.Repo.
type DataKeys struct {
	q Querier
}

// NewDataKeys returns the data-key repository on q.
func NewDataKeys(q Querier) *DataKeys { return &DataKeys{q: q} }

var _ fieldenc.Repo = (*DataKeys)(nil)

// ListDataKeys implements fieldenc.Repo.
func (d *DataKeys) ListDataKeys(ctx context.Context) ([]fieldenc.WrappedKey, error) {
	rows, err := d.q.Query(ctx, `SELECT purpose, no, wrapped, kek_id FROM data_key ORDER BY purpose, no`)
	if err != nil {
		return nil, fmt.Errorf("store: list data keys: %w", err)
	}
	defer rows.Close()
	var out []fieldenc.WrappedKey
	for rows.Next() {
		var k fieldenc.WrappedKey
		var no int64
		var kek string
		if err := rows.Scan(&k.Purpose, &no, &k.Wrapped, &kek); err != nil {
			return nil, fmt.Errorf("store: list data keys: %w", err)
		}
		k.No, k.KEK = uint32(no), crypto.KeyID(kek)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list data keys: %w", err)
	}
	return out, nil
}

// InsertDataKey implements fieldenc.Repo: an existing (purpose, no) is kept.
func (d *DataKeys) InsertDataKey(ctx context.Context, k fieldenc.WrappedKey) (bool, error) {
	tag, err := d.q.Exec(ctx, `INSERT INTO data_key (purpose, no, wrapped, kek_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (purpose, no) DO NOTHING`, k.Purpose, int64(k.No), k.Wrapped, string(k.KEK))
	if err != nil {
		return false, fmt.Errorf("store: insert data key: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
