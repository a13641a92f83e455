package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zhianhub/crypto/keystore"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/logs"
	"zhianhub/store/storetest"
)

// TestAuditArchiveCommands archives the chain through the CLI, then checks
// that the chain still verifies across the cut and that the archive
// verifies offline.
func TestAuditArchiveCommands(t *testing.T) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	ks, err := keystore.Load(keys, keystore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	w, err := audit.NewWriter(pool, audit.WriterConfig{Signer: ks.Signer(), CheckpointEvery: 5})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 23 {
		if _, err := w.Append(ctx, audit.Entry{Actor: "officer1", Action: "person.read", Object: "p", Result: "ok", Detail: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "archive")
	env := map[string]string{"ZHIANHUB_DATABASE_URL": dbURL, "ZHIANHUB_KEYS_DIR": keys, "ZHIANHUB_AUDIT_ARCHIVE_DIR": dir}

	// With the default retention (3 years) nothing is old enough.
	code, out, errs := runCLI(t, "", env, "audit", "archive")
	if code != 0 || !strings.Contains(out, "nothing to archive") {
		t.Fatalf("archive with the default retention: %d %s %s", code, out, errs)
	}
	time.Sleep(10 * time.Millisecond)
	code, out, errs = runCLI(t, "", env, "audit", "archive", "--older-than", "1ms")
	if code != 0 || !strings.Contains(out, "archived entries 1-") {
		t.Fatalf("archive: %d %s %s", code, out, errs)
	}
	t.Logf("audit archive: %s", strings.TrimSpace(out))
	code, out, errs = runCLI(t, "", env, "audit", "verify")
	if code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("verify after archiving: %d %s %s", code, out, errs)
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "*.manifest.json"))
	if len(manifests) != 1 {
		t.Fatalf("manifests %v", manifests)
	}
	code, out, errs = runCLI(t, "", env, "audit", "verify-archive", manifests[0])
	if code != 0 || !strings.Contains(out, "archive OK") {
		t.Fatalf("verify-archive: %d %s %s", code, out, errs)
	}
	t.Logf("audit verify-archive: %s", strings.TrimSpace(out))

	// A changed archive is refused with the broken-chain status.
	file := strings.TrimSuffix(manifests[0], ".manifest.json")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(data), `"officer1"`, `"officer2"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, "", env, "audit", "verify-archive", manifests[0])
	if code != exitChainBroken {
		t.Fatalf("verify-archive of a changed file: exit %d %s", code, errs)
	}
}

// TestLogsArchiveCommands archives the operation and system logs through
// the CLI (file and signed manifest first, then deletion) and verifies an
// archive offline; a changed archive is refused.
func TestLogsArchiveCommands(t *testing.T) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	old := time.Now().Add(-200 * 24 * time.Hour)
	var ops []logs.OperationRecord
	for i := range 7 {
		ops = append(ops, logs.OperationRecord{At: old.Add(time.Duration(i) * time.Minute), RequestID: "r", User: "officer1", Method: "GET", Route: "/r", Path: "/r", Status: 200})
	}
	ops = append(ops, logs.OperationRecord{At: time.Now(), RequestID: "new", User: "officer1", Method: "GET", Route: "/r", Path: "/r", Status: 200})
	if err := logs.Insert(ctx, pool, []logs.SystemRecord{{At: old, Level: 0, Msg: "zhianhub ready"}}, ops); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "logs")
	env := map[string]string{"ZHIANHUB_DATABASE_URL": dbURL, "ZHIANHUB_KEYS_DIR": keys, "ZHIANHUB_LOG_ARCHIVE_DIR": dir}
	code, out, errs := runCLI(t, "", env, "logs", "archive")
	if code != 0 || !strings.Contains(out, "operation_log: archived rows 1-7 (7 rows)") || !strings.Contains(out, "system_log: archived rows 1-1 (1 rows)") {
		t.Fatalf("logs archive: %d %s %s", code, out, errs)
	}
	t.Logf("logs archive: %s", strings.TrimSpace(out))
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM operation_log`).Scan(&left); err != nil || left != 1 {
		t.Fatalf("%d operation records left, want the new one (%v)", left, err)
	}
	code, out, _ = runCLI(t, "", env, "logs", "archive")
	if code != 0 || !strings.Contains(out, "operation_log: nothing older than 4320h") {
		t.Fatalf("second archive: %d %s", code, out)
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "operation_log-*.manifest.json"))
	if len(manifests) != 1 {
		t.Fatalf("manifests %v", manifests)
	}
	code, out, errs = runCLI(t, "", env, "logs", "verify-archive", manifests[0])
	if code != 0 || !strings.Contains(out, "archive OK: operation_log rows 1-7 (7)") {
		t.Fatalf("verify-archive: %d %s %s", code, out, errs)
	}
	file := strings.TrimSuffix(manifests[0], ".manifest.json")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(data), `"officer1"`, `"officer2"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "", env, "logs", "verify-archive", manifests[0]); code != exitChainBroken {
		t.Fatalf("verify-archive of a changed file: exit %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, "", env, "logs"); code != 2 || !strings.Contains(errs, "usage: zhianhub logs") {
		t.Fatalf("usage: %d %s", code, errs)
	}
}
