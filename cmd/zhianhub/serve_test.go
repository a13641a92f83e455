package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
	"zhianhub/store/storetest"
)

// syncBuffer is a goroutine-safe bytes.Buffer for the server's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeAndAuditVerify starts the hub with no configuration file (only
// environment variables) against real PostgreSQL and RabbitMQ, checks the
// health endpoints, stops it with a cancelled context (as SIGTERM does),
// verifies the audit chain through the CLI, then tampers with one audit row
// and checks that `audit verify` names it and exits non-zero.
func TestServeAndAuditVerify(t *testing.T) {
	dbURL := storetest.NewEmptyDatabase(t) // serve migrates at start
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	addr := freeAddr(t)
	env := map[string]string{
		"ZHIANHUB_DATABASE_URL": dbURL,
		"ZHIANHUB_KEYS_DIR":     keys,
		"ZHIANHUB_HTTP_ADDR":    addr,
		"ZHIANHUB_AMQP_URL":     testAMQPURL,
		"ZHIANHUB_MPS_EXCHANGE": testBus(t, "310000000000"),
	}
	hub := startServe(t, env)
	resp, err := http.Get(hub.Base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready map[string]any
	json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if r := fmt.Sprint(ready); !strings.Contains(r, "postgresql") || !strings.Contains(r, "rabbitmq") || !strings.Contains(r, "mps-bus") {
		t.Errorf("readyz body %v lacks the checks", ready)
	}
	resp, err = http.Get(hub.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte("go_goroutines")) || !bytes.Contains(body, []byte("zhianhub_http_requests_total")) {
		t.Errorf("metrics lack go and http series")
	}
	if code := hub.Stop(t); code != 0 {
		t.Fatalf("serve exit %d\n%s", code, hub.Logs.String())
	}
	for _, want := range []string{`"msg":"zhianhub ready"`, `"msg":"zhianhub stopped"`} {
		if !strings.Contains(hub.Logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}

	// The chain holds hub.start and hub.stop and verifies.
	verifyEnv := map[string]string{"ZHIANHUB_DATABASE_URL": dbURL, "ZHIANHUB_KEYS_DIR": keys}
	code, out, errs := runCLI(t, "", verifyEnv, "audit", "verify")
	if code != 0 || !strings.Contains(out, "audit chain OK: 2 entries") {
		t.Fatalf("verify: %d %s %s", code, out, errs)
	}

	// A DBA with full rights rewrites the result of entry 1.
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `SET LOCAL zhianhub.audit_archive = 'on'`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `UPDATE audit_entry SET result = 'error' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, "", verifyEnv, "audit", "verify")
	if code != exitChainBroken || !strings.Contains(errs, "BROKEN at seq 1 (modified)") {
		t.Fatalf("tampered chain: exit %d, stderr %s", code, errs)
	}
	t.Logf("audit verify on the tampered chain: exit %d: %s", code, strings.TrimSpace(errs))
	// The break is a security event, staged for the chain (and from there
	// for the security-protection platform).
	var reason string
	if err := pool.QueryRow(context.Background(), `SELECT reason FROM audit_pending WHERE action = 'security.chain_break'`).Scan(&reason); err != nil {
		t.Fatalf("no security.chain_break entry staged: %v", err)
	}
	if !strings.Contains(reason, "BROKEN at seq 1 (modified)") {
		t.Errorf("chain-break entry reason %q", reason)
	}
}

// TestServeVerifiesTheChain runs the hub with a 1 s verification interval,
// rewrites an audit row behind its back, and waits for the hub to audit the
// break as security.chain_break (once, although it verifies again).
func TestServeVerifiesTheChain(t *testing.T) {
	dbURL := storetest.NewEmptyDatabase(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	addr := freeAddr(t)
	env := map[string]string{
		"ZHIANHUB_DATABASE_URL":          dbURL,
		"ZHIANHUB_KEYS_DIR":              keys,
		"ZHIANHUB_HTTP_ADDR":             addr,
		"ZHIANHUB_AMQP_URL":              testAMQPURL,
		"ZHIANHUB_MPS_EXCHANGE":          testBus(t, "310000000000"),
		"ZHIANHUB_AUDIT_VERIFY_INTERVAL": "1s",
	}
	hub := startServe(t, env)
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	bg := context.Background()
	count := func() int {
		var n int
		if err := pool.QueryRow(bg, `SELECT count(*) FROM audit_entry WHERE action = 'security.chain_break'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// hub.start is entry 1: rewrite it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var n int
		if err := pool.QueryRow(bg, `SELECT count(*) FROM audit_entry`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no audit entry")
		}
	}
	if count() != 0 {
		t.Fatal("a chain break before any tampering")
	}
	err := pgx.BeginFunc(bg, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(bg, `SET LOCAL zhianhub.audit_archive = 'on'`); err != nil {
			return err
		}
		_, err := tx.Exec(bg, `UPDATE audit_entry SET result = 'error' WHERE seq = 1`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); count() == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hub did not audit the break\n%s", hub.Logs.String())
		}
	}
	time.Sleep(2500 * time.Millisecond) // two more verifications
	if n := count(); n != 1 {
		t.Fatalf("%d chain-break entries, want 1 (once per break)", n)
	}
	if !strings.Contains(hub.Logs.String(), `"msg":"audit chain BROKEN"`) {
		t.Errorf("the break is not logged")
	}
}

// TestStartAuditsChanges: a start that finds the configuration or the key
// set changed since the previous start audits config.change (the settings
// that differ) and key.change (the key ids added and removed); a start
// with nothing changed audits neither.
func TestStartAuditsChanges(t *testing.T) {
	dbURL := storetest.NewEmptyDatabase(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	env := map[string]string{"ZHIANHUB_DATABASE_URL": dbURL, "ZHIANHUB_KEYS_DIR": keys, "ZHIANHUB_HTTP_ADDR": freeAddr(t),
		"ZHIANHUB_AMQP_URL": testAMQPURL, "ZHIANHUB_MPS_EXCHANGE": testBus(t, "310000000000")}
	restart := func() {
		t.Helper()
		if code := startServe(t, env).Stop(t); code != 0 {
			t.Fatalf("serve exit %d", code)
		}
	}
	restart()
	restart() // nothing changed
	env["ZHIANHUB_LOG_SYSTEM_LEVEL"] = "warn"
	// The rotation itself is audited at once (key.rotate), by the operator.
	if code, _, errs := runCLI(t, "", map[string]string{"ZHIANHUB_DATABASE_URL": dbURL, "ZHIANHUB_KEYS_DIR": keys, "USER": "ops.li"},
		"keys", "rotate", "--dir", keys, "--kind", "sign"); code != 0 || errs != "" {
		t.Fatalf("keys rotate: %d %s", code, errs)
	}
	restart()

	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	type row struct {
		Action string
		Detail map[string]any
	}
	rows, err := pool.Query(context.Background(), `SELECT action, detail FROM audit_entry WHERE action IN ('hub.start', 'config.change', 'key.change', 'key.rotate') ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range got {
		actions = append(actions, r.Action)
	}
	if fmt.Sprint(actions) != "[hub.start hub.start key.rotate config.change key.change hub.start]" {
		t.Fatalf("entries %v", actions)
	}
	if r := got[2].Detail; r["kind"] != "sign" || r["no"] != float64(1) {
		t.Errorf("key.rotate detail %v", r)
	}
	if c := got[3].Detail; len(c) != 1 || fmt.Sprint(c["log.system_level"]) != "map[from:info to:warn]" {
		t.Errorf("config.change detail %v", c)
	}
	k := got[4].Detail
	added, _ := k["added"].(map[string]any)["self.sign"].([]any)
	removed, _ := k["removed"].(map[string]any)
	if len(added) != 1 || len(removed) != 0 {
		t.Errorf("key.change detail %v: want one new signing key added, none removed (the old one still verifies)", k)
	}
}
