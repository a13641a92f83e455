package audit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"zhianhub/store/audit"
	"zhianhub/store/audit/audittest"
	"zhianhub/store/storetest"
)

// auditQuerySeed is the chain the query benchmark reads: 1,000,000 entries
// (ZHIANHUB_BENCH_AUDIT_ROWS) over a year, 30% by "system", the rest by
// 2,000 users.
func auditQuerySeed() audittest.Seed {
	return audittest.Seed{N: envInt("ZHIANHUB_BENCH_AUDIT_ROWS", 1_000_000), Start: time.Date(2025, 11, 27, 0, 0, 0, 0, time.UTC),
		Span: 365 * 24 * time.Hour, Users: 2000}
}

// latencies are the durations of queries.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

func msf(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// BenchmarkAuditQuery measures the auditor's query of the audit log by
// user and time range (audit.List, the code of GET /api/v1/audit) over a
// chain of 1,000,000 entries, and prints p50/p95/p99 against the target
// p95 < 200 ms.
//
// Method: a fresh database is filled with audittest.Fill (outside the
// measurement). Then ZHIANHUB_BENCH_QUERIES (default 1000) queries run one
// after the other, each for a user drawn at random among the 2,000 and a
// time range of 1, 7, 30, 90 or 365 days at a random place in the year,
// asking for the first page (100 entries); every fourth also asks for the
// next page with the cursor. Each List call is one sample. For comparison
// it also prints, untargeted, the same for the busiest actor ("system",
// 300,000 entries) and for a time range alone.
//
//	go test -run '^$' -bench BenchmarkAuditQuery -benchtime=1x -timeout 10m ./store/audit/
func BenchmarkAuditQuery(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	pool := storetest.NewPool(b)
	seed := auditQuerySeed()
	start := time.Now()
	audittest.Fill(b, ctx, pool, seed)
	fmt.Printf("audit query: seeded %d entries in %.1fs\n", seed.N, time.Since(start).Seconds())
	queries := envInt("ZHIANHUB_BENCH_QUERIES", 1000)
	rng := rand.New(rand.NewPCG(1, 2))
	days := []int{1, 7, 30, 90, 365}
	criteria := func(actor string, withActor bool) audit.Criteria {
		span := time.Duration(days[rng.IntN(len(days))]) * 24 * time.Hour
		from := seed.Start.Add(time.Duration(rng.Int64N(int64(seed.Span - span + 1))))
		c := audit.Criteria{From: from, To: from.Add(span)}
		if withActor {
			c.Actor = actor
		}
		return c
	}
	run := func(name string, n int, next func() audit.Criteria) latencies {
		var lat latencies
		rows := 0
		for i := range n {
			f := audit.ListFilter{Criteria: next(), Limit: 100}
			for page := 0; page < 1 || (page < 2 && i%4 == 0); page++ {
				t0 := time.Now()
				recs, err := audit.List(ctx, pool, f)
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatalf("%s: %v", name, err)
				}
				rows += len(recs)
				if len(recs) < f.Limit {
					break
				}
				f.After = recs[len(recs)-1].Seq
			}
		}
		if rows == 0 {
			b.Fatalf("%s: no query found anything", name)
		}
		return lat
	}

	b.ResetTimer()
	users := run("by user", queries, func() audit.Criteria { return criteria(audittest.User(rng.IntN(seed.Users)), true) })
	b.StopTimer()
	system := run("system", queries/5, func() audit.Criteria { return criteria("system", true) })
	ranges := run("range", queries/5, func() audit.Criteria { return criteria("", false) })

	fmt.Printf("audit query by user and time range over %d entries (%d queries, %d pages): p50 %s p95 %s p99 %s max %s (target p95 < 200ms)\n",
		seed.N, queries, len(users), msf(users.pct(50)), msf(users.pct(95)), msf(users.pct(99)), msf(users.pct(100)))
	fmt.Printf("  for comparison: actor \"system\" (30%% of the entries) p50 %s p95 %s; time range alone p50 %s p95 %s\n",
		msf(system.pct(50)), msf(system.pct(95)), msf(ranges.pct(50)), msf(ranges.pct(95)))
	b.ReportMetric(float64(users.pct(50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(users.pct(95).Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(users.pct(99).Microseconds())/1000, "p99-ms")
}
