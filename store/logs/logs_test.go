package logs_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto"
	"zhianhub/store/audit"
	"zhianhub/store/logs"
	"zhianhub/store/storetest"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newWriter(t *testing.T, pool *pgxpool.Pool, cfg logs.Config) *logs.Writer {
	t.Helper()
	w, err := logs.NewWriter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if pool != nil {
		w.Start(pool)
	}
	return w
}

// TestHandlerFeedsTheSystemLog: records at or above the level reach the
// system log with their columns filled from the attributes and groups
// flattened; the inner handler gets every record it is enabled for; records
// logged before the pool is there wait for it.
func TestHandlerFeedsTheSystemLog(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	w := newWriter(t, nil, logs.Config{Instance: "host:1", FlushInterval: 20 * time.Millisecond})
	var stderr bytes.Buffer
	inner := slog.NewJSONHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelDebug})
	log := slog.New(logs.NewHandler(inner, w, logs.HandlerOptions{Level: slog.LevelInfo,
		RequestID: func(ctx context.Context) string { id, _ := ctx.Value(ctxKey{}).(string); return id }}))

	log.Debug("debug is not stored")
	log.Info("before the pool", "n", 1)
	w.Start(pool) // the database opens after the first records
	relay := log.With("component", "relay")
	relay.Warn("publish failed", "message_id", "0193a0b4-6c2e-7d41-8a55-2f3c4d5e6f70", "err", errors.New("channel closed"), "wait", 2*time.Second)
	relay.WithGroup("amqp").Error("connection lost", "host", "127.0.0.1")
	log.InfoContext(context.WithValue(ctx, ctxKey{}, "req-1"), "api request failed")
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(stderr.String(), "\n"); n != 5 {
		t.Errorf("the inner handler got %d records, want all 5:\n%s", n, stderr.String())
	}

	got, err := logs.System(ctx, pool, logs.SystemFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("system log has %d records, want 4: %+v", len(got), got)
	}
	byMsg := map[string]logs.SystemRecord{}
	for _, r := range got {
		byMsg[r.Msg] = r
		if r.Instance != "host:1" {
			t.Errorf("%q: instance %q", r.Msg, r.Instance)
		}
	}
	if r := byMsg["publish failed"]; r.Component != "relay" || r.MessageID != "0193a0b4-6c2e-7d41-8a55-2f3c4d5e6f70" || r.Level != slog.LevelWarn ||
		r.Attrs["err"] != "channel closed" || r.Attrs["wait"] != "2s" {
		t.Errorf("publish failed: %+v", r)
	}
	if r := byMsg["connection lost"]; r.Component != "relay" || r.Attrs["amqp.host"] != "127.0.0.1" || r.Level != slog.LevelError {
		t.Errorf("connection lost: %+v", r)
	}
	if r := byMsg["api request failed"]; r.RequestID != "req-1" {
		t.Errorf("api request failed: request id %q", r.RequestID)
	}
	if r := byMsg["before the pool"]; r.Attrs["n"] != float64(1) {
		t.Errorf("before the pool: %+v", r)
	}
	// After Close nothing more is taken, and it is counted.
	log.Error("after close")
	if w.Dropped() != 1 {
		t.Errorf("Dropped = %d, want 1", w.Dropped())
	}
}

type ctxKey struct{}

func TestQueries(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	sys := []logs.SystemRecord{
		{At: t0, Level: slog.LevelInfo, Msg: "zhianhub ready", Component: "hub"},
		{At: t0.Add(time.Minute), Level: slog.LevelWarn, Msg: "publish failed; retrying", Component: "relay", MessageID: "m1"},
		{At: t0.Add(2 * time.Minute), Level: slog.LevelError, Msg: "api request failed", Component: "api", RequestID: "r1"},
		{At: t0.Add(3 * time.Minute), Level: slog.LevelInfo, Msg: "100% done_x", Component: "relay"},
	}
	ops := []logs.OperationRecord{
		{At: t0, RequestID: "r0", User: "1023456", Unit: "310104000000", Method: "GET", Route: "/api/v1/persons", Path: "/api/v1/persons", Status: 200, Duration: 3 * time.Millisecond},
		{At: t0.Add(time.Minute), RequestID: "r1", User: "1023456", Unit: "310104000000", Method: "POST", Route: "/api/v1/filings/{kind}", Path: "/api/v1/filings/keyperson.register", Status: 500},
		{At: t0.Add(2 * time.Minute), RequestID: "r2", User: "2034567", Unit: "310105000000", Method: "GET", Route: "/api/v1/persons/{personNo}", Path: "/api/v1/persons/1", Status: 404},
	}
	if err := logs.Insert(ctx, pool, sys, ops); err != nil {
		t.Fatal(err)
	}
	warn, errLevel := slog.LevelWarn, slog.LevelError
	sysCases := []struct {
		name string
		f    logs.SystemFilter
		want []string
	}{
		{"all newest first", logs.SystemFilter{}, []string{"100% done_x", "api request failed", "publish failed; retrying", "zhianhub ready"}},
		{"level warn and up", logs.SystemFilter{MinLevel: &warn}, []string{"api request failed", "publish failed; retrying"}},
		{"component", logs.SystemFilter{Component: "relay"}, []string{"100% done_x", "publish failed; retrying"}},
		{"time range", logs.SystemFilter{From: t0.Add(time.Minute), To: t0.Add(3 * time.Minute)}, []string{"api request failed", "publish failed; retrying"}},
		{"request id", logs.SystemFilter{RequestID: "r1"}, []string{"api request failed"}},
		{"message id", logs.SystemFilter{MessageID: "m1"}, []string{"publish failed; retrying"}},
		{"text, case-insensitive", logs.SystemFilter{Text: "PUBLISH"}, []string{"publish failed; retrying"}},
		{"text wildcards are literal", logs.SystemFilter{Text: "0% d"}, []string{"100% done_x"}},
		{"text underscore literal", logs.SystemFilter{Text: "e_"}, []string{"100% done_x"}},
		{"limit", logs.SystemFilter{Limit: 1}, []string{"100% done_x"}},
	}
	for _, tc := range sysCases {
		t.Run("system/"+tc.name, func(t *testing.T) {
			got, err := logs.System(ctx, pool, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, r := range got {
				msgs = append(msgs, r.Msg)
			}
			if strings.Join(msgs, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", msgs, tc.want)
			}
		})
	}
	// Keyset paging walks every record once.
	first, _ := logs.System(ctx, pool, logs.SystemFilter{Limit: 2})
	rest, _ := logs.System(ctx, pool, logs.SystemFilter{Limit: 2, Before: first[1].ID})
	if len(first) != 2 || len(rest) != 2 || rest[0].ID >= first[1].ID {
		t.Errorf("paging: %+v then %+v", first, rest)
	}

	opCases := []struct {
		name string
		f    logs.OperationFilter
		want []string
	}{
		{"all", logs.OperationFilter{}, []string{"r2", "r1", "r0"}},
		{"user", logs.OperationFilter{User: "1023456"}, []string{"r1", "r0"}},
		{"units", logs.OperationFilter{Units: []string{"310105000000", "310106000000"}}, []string{"r2"}},
		{"method", logs.OperationFilter{Method: "POST"}, []string{"r1"}},
		{"route", logs.OperationFilter{Route: "/api/v1/persons"}, []string{"r0"}},
		{"warn and up (4xx, 5xx)", logs.OperationFilter{MinLevel: &warn}, []string{"r2", "r1"}},
		{"error (5xx)", logs.OperationFilter{MinLevel: &errLevel}, []string{"r1"}},
		{"request id", logs.OperationFilter{RequestID: "r2"}, []string{"r2"}},
		{"time range", logs.OperationFilter{From: t0, To: t0.Add(time.Minute)}, []string{"r0"}},
	}
	for _, tc := range opCases {
		t.Run("operation/"+tc.name, func(t *testing.T) {
			got, err := logs.Operation(ctx, pool, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range got {
				ids = append(ids, r.RequestID)
			}
			if strings.Join(ids, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", ids, tc.want)
			}
		})
	}
	got, _ := logs.Operation(ctx, pool, logs.OperationFilter{RequestID: "r0"})
	if len(got) != 1 || got[0].DurationMS != 3 || got[0].Status != 200 || got[0].Path != "/api/v1/persons" {
		t.Errorf("r0 = %+v", got)
	}
}

type keys struct {
	signer *crypto.SM2PrivateKey
}

func (k keys) lookup(id crypto.KeyID) (crypto.Verifier, bool) {
	if id != k.signer.KeyID() {
		return nil, false
	}
	return k.signer.Public(), true
}

func TestArchive(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	sk, err := crypto.GenerateSM2()
	if err != nil {
		t.Fatal(err)
	}
	k := keys{signer: sk}
	aw, err := audit.NewWriter(pool, audit.WriterConfig{Signer: sk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = aw.Close(context.Background()) })

	now := time.Now().UTC()
	var old, fresh []logs.OperationRecord
	for i := range 30 {
		old = append(old, logs.OperationRecord{At: now.Add(-200*24*time.Hour + time.Duration(i)*time.Minute), RequestID: "old", User: "u", Method: "GET", Route: "/r", Path: "/r", Status: 200})
	}
	for range 5 {
		fresh = append(fresh, logs.OperationRecord{At: now.Add(-time.Hour), RequestID: "fresh", User: "u", Method: "GET", Route: "/r", Path: "/r", Status: 200})
	}
	if err := logs.Insert(ctx, pool, nil, append(old, fresh...)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := logs.ArchiveConfig{Pool: pool, Log: logs.LogOperation, Dir: dir, Before: now.Add(-180 * 24 * time.Hour), Signer: sk, Audit: aw}

	res, err := logs.Archive(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Rows != 30 {
		t.Fatalf("archived %d rows, want 30", res.Manifest.Rows)
	}
	left, _ := logs.Operation(ctx, pool, logs.OperationFilter{})
	if len(left) != 5 || left[0].RequestID != "fresh" {
		t.Fatalf("after archival %d rows stay, want the 5 fresh ones", len(left))
	}
	if _, err := logs.Archive(ctx, cfg); !errors.Is(err, logs.ErrNothingToArchive) {
		t.Fatalf("second archival: %v, want ErrNothingToArchive", err)
	}
	m, err := logs.VerifyArchive(res.ManifestPath, k.lookup)
	if err != nil || m.Rows != 30 || m.Log != logs.LogOperation {
		t.Fatalf("VerifyArchive = %+v, %v", m, err)
	}
	// The archival is in the audit chain, before anything was deleted.
	if err := aw.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry WHERE action = $1 AND object = $2`, logs.ActionArchive, m.File).Scan(&n); err != nil || n != 1 {
		t.Fatalf("audit entries of the archival: %d (%v)", n, err)
	}

	// Tampering with the file or the manifest is detected.
	raw, _ := os.ReadFile(res.File)
	tampered := bytes.Replace(raw, []byte(`"user_id": "u"`), []byte(`"user_id": "x"`), 1)
	if bytes.Equal(raw, tampered) {
		t.Fatalf("test data: no user_id in %s", raw[:200])
	}
	if err := os.WriteFile(res.File, tampered, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := logs.VerifyArchive(res.ManifestPath, k.lookup); err == nil || !strings.Contains(err.Error(), "SM3") {
		t.Errorf("tampered file: %v, want an SM3 mismatch", err)
	}
	os.WriteFile(res.File, raw, 0o640)
	man, _ := os.ReadFile(res.ManifestPath)
	if err := os.WriteFile(res.ManifestPath, bytes.Replace(man, []byte(`"rows": 30`), []byte(`"rows": 29`), 1), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := logs.VerifyArchive(res.ManifestPath, k.lookup); err == nil || !strings.Contains(err.Error(), "signature invalid") {
		t.Errorf("tampered manifest: %v, want a signature failure", err)
	}
}
