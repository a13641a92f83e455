// Package audittest fills an audit chain with synthetic entries for the
// benchmarks of the auditor's queries and exports.
package audittest

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Seed describes the synthetic entries Fill inserts: seq 1..N, their At
// spread evenly over [Start, Start+Span) in seq order. Every tenth entry
// out of ten, three are by "system" (the routes), the rest by Users users
// named u0000, u0001, ... in turn, each of one unit of Units (by user);
// eight actions in turn; result "denied" for one entry in twenty, else
// "ok".
type Seed struct {
	N     int
	Start time.Time
	Span  time.Duration
	Users int
	Units []string
}

// DefaultUnits are the units of the synthetic users.
var DefaultUnits = []string{"310000000000", "310101000000", "310104000000", "310105000000", "310106000000",
	"310107000000", "310109000000", "310110000000", "310112000000", "310113000000", "310115000000"}

// User returns the name of synthetic user i.
func User(i int) string { return fmt.Sprintf("u%04d", i) }

// At returns the At of entry seq (as Fill computes it).
func (s Seed) At(seq int64) time.Time {
	us := math.Floor(float64(s.Span.Microseconds()) * float64(seq-1) / float64(s.N))
	return s.Start.Add(time.Duration(us) * time.Microsecond)
}

// Fill inserts the entries straight into audit_entry (one INSERT ...
// SELECT over generate_series: about 20 s for 1,000,000 rows with the
// indexes of the migrations), then vacuums and analyzes the table, so the
// queries meet it as they would a table grown over time. The entries do
// not form a valid chain (their hashes are filler; audit_head is not
// moved): Fill is for benchmarks of reading, not of Verify. The database
// must hold no audit entries yet.
func Fill(tb testing.TB, ctx context.Context, pool *pgxpool.Pool, s Seed) {
	tb.Helper()
	if s.N < 1 || s.Users < 1 || s.Span <= 0 {
		tb.Fatalf("audittest: seed %+v", s)
	}
	if len(s.Units) == 0 {
		s.Units = DefaultUnits
	}
	_, err := pool.Exec(ctx, `
INSERT INTO audit_entry (seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail, prev_hash, hash)
SELECT g,
       $2::timestamptz + floor($3::float8 * (g - 1) / $1::bigint)::bigint * interval '1 microsecond',
       CASE WHEN g % 10 < 3 THEN 'system' ELSE 'u' || lpad(((g * 7919) % $4)::text, 4, '0') END,
       CASE WHEN g % 10 < 3 THEN '' ELSE ($5::text[])[1 + ((g * 7919) % $4) % cardinality($5::text[])] END,
       CASE WHEN g % 10 < 3 THEN '' ELSE 'officer' END,
       (ARRAY['person.read', 'person.search', 'filing.submit', 'message.receive', 'message.send', 'task.sign',
              'person.unmask', 'audit.read'])[1 + g % 8],
       'obj-' || (g % 50000),
       CASE WHEN g % 20 = 0 THEN 'denied' ELSE 'ok' END,
       CASE WHEN g % 20 = 0 THEN '无权限（测试数据）' ELSE '' END,
       'req-' || g,
       jsonb_build_object('i', g),
       sha256(int8send(g - 1)),
       sha256(int8send(g))
FROM generate_series(1, $1::bigint) g`, s.N, s.Start, s.Span.Microseconds(), s.Users, s.Units)
	if err != nil {
		tb.Fatalf("audittest: fill %d entries: %v", s.N, err)
	}
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) audit_entry`); err != nil {
		tb.Fatalf("audittest: vacuum: %v", err)
	}
}
