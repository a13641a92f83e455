package api

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"zhianhub/adapters/sheet"
	"zhianhub/store/audit"
	"zhianhub/store/audit/audittest"
	"zhianhub/store/storetest"
)

// countingDiscard counts the bytes written to it.
type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkAuditExport measures an export of 100,000 audit entries
// (ZHIANHUB_BENCH_EXPORT_ROWS) selected by time range from a chain of
// 1,000,000 (ZHIANHUB_BENCH_AUDIT_ROWS), through auditTable and
// Table.WriteTo (the code of GET /api/v1/audit/export, less HTTP), as .xlsx
// and as CSV, and prints the time (target < 10 s, the limit of fixed
// reports), the bytes and the Go heap in use afterwards. The seeding
// (audittest.Fill) is outside the measurement.
//
//	go test -run '^$' -bench BenchmarkAuditExport -benchtime=1x -timeout 10m ./adapters/api/
func BenchmarkAuditExport(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	pool := storetest.NewPool(b)
	rows := benchEnvInt("ZHIANHUB_BENCH_EXPORT_ROWS", DefaultMaxExportRows)
	seed := audittest.Seed{N: benchEnvInt("ZHIANHUB_BENCH_AUDIT_ROWS", 1_000_000), Start: time.Date(2025, 11, 27, 0, 0, 0, 0, time.UTC),
		Span: 365 * 24 * time.Hour, Users: 2000}
	if rows > seed.N {
		b.Fatalf("%d rows to export from %d", rows, seed.N)
	}
	start := time.Now()
	audittest.Fill(b, ctx, pool, seed)
	fmt.Printf("audit export: seeded %d entries in %.1fs\n", seed.N, time.Since(start).Seconds())
	// The entries from seq first on, rows of them, by their time range.
	first := int64(seed.N-rows)/2 + 1
	c := audit.Criteria{From: seed.At(first), To: seed.At(first + int64(rows))}

	b.ResetTimer()
	for _, format := range []sheet.Format{sheet.XLSX, sheet.CSV} {
		t0 := time.Now()
		tab, err := auditTable(ctx, pool, c, format, DefaultMaxExportRows)
		if err != nil {
			b.Fatal(err)
		}
		built := time.Since(t0)
		out := &countingDiscard{}
		if _, err := tab.WriteTo(out); err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		n := tab.Rows()
		if err := tab.Close(); err != nil {
			b.Fatal(err)
		}
		if n != rows {
			b.Fatalf("%s: %d rows exported, want %d", format, n, rows)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("audit export of %d rows to .%s: %.2fs (query and table %.2fs, writing %.2fs), %.1f MB, Go heap in use %.0f MB (target < 10s)\n",
			n, format, took.Seconds(), built.Seconds(), (took - built).Seconds(), float64(out.n)/1e6, float64(ms.HeapInuse)/1e6)
		b.ReportMetric(took.Seconds(), string(format)+"-s")
		b.ReportMetric(float64(out.n)/1e6, string(format)+"-MB")
	}
}

func benchEnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

var _ io.Writer = (*countingDiscard)(nil)
