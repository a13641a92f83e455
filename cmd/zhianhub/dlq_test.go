package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/store"
	"zhianhub/store/deadletter"
	"zhianhub/store/storetest"
)

const testAMQPURL = "amqp://guest:guest@127.0.0.1:5672/%2f"

// dlqBus declares a uniquely named topic exchange with a queue bound to
// "to.310000000000.#", deleted when the test ends.
func dlqBus(t *testing.T) (exchange string, get func() (amqp.Delivery, bool)) {
	t.Helper()
	conn, err := amqp.Dial(testAMQPURL)
	if err != nil {
		t.Fatalf("RabbitMQ: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	exchange = "zhianhub.test.dlqcli." + hex.EncodeToString(b[:])
	queue := exchange + ".node.310000000000"
	if err := ch.ExchangeDeclare(exchange, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, "to.310000000000.#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ch.QueueDelete(queue, false, false, false)
		ch.ExchangeDelete(exchange, false, false)
	})
	get = func() (amqp.Delivery, bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			d, ok, err := ch.Get(queue, true)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				return d, true
			}
		}
		return amqp.Delivery{}, false
	}
	return exchange, get
}

// TestDLQCommands drives list, show, replay and resolve end to end against
// real PostgreSQL and RabbitMQ, then checks the audit chain.
func TestDLQCommands(t *testing.T) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	env := map[string]string{
		"ZHIANHUB_DATABASE_URL": dbURL,
		"ZHIANHUB_KEYS_DIR":     keys,
		"ZHIANHUB_AMQP_URL":     testAMQPURL,
		"USER":                  "wang.wei",
	}
	exchange, get := dlqBus(t)

	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	ks, err := keystore.Load(keys, keystore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := fieldenc.Open(ctx, store.NewDataKeys(pool), ks) // the node's data keys, as the hub opens them
	if err != nil {
		t.Fatal(err)
	}
	dl, err := deadletter.New(pool, deadletter.Config{Cipher: kr})
	if err != nil {
		t.Fatal(err)
	}
	envelope := `{"v":1,"id":"0190a0b0-0000-7000-8000-00000000000a","kind":"keyperson.register","ct":"SECRET-CIPHERTEXT"}`
	binary := []byte{0x00, 0x1b, '[', '2', 'J', 0xff, 0xfe}
	// An internal event, plain JSON with personal data: stored only encrypted.
	personal := `{"d":1,"name":"张三丰","idNo":"310101199001011234"}`
	letters := []deadletter.Letter{
		{Source: "amqp:node.310000000000", Exchange: exchange, RoutingKey: "to.310000000000.keyperson.register",
			MessageID: "0190a0b0-0000-7000-8000-00000000000a", Sender: "000000000000", Kind: "keyperson.register",
			Raw: []byte(envelope), Code: "E110", Reason: "签名无效", Security: true},
		{Source: "amqp:node.310000000000", Raw: binary, Code: "E100", Reason: "not JSON\x1b[31m", Security: true},
		{Source: "amqp:node.310000000000", Exchange: exchange, RoutingKey: "to.440000000000.receipt",
			MessageID: "0190a0b0-0000-7000-8000-00000000000c", Kind: "receipt", Raw: []byte(`{"c":1}`), Code: "E199", Reason: "peer down"},
		{Source: "amqp:node.310000000000", Exchange: exchange, RoutingKey: "to.310000000000.keyperson.change",
			MessageID: "0190a0b0-0000-7000-8000-00000000000d", Kind: "keyperson.change", Raw: []byte(personal), Code: "E199", Reason: "database down"},
	}
	ids := make([]string, len(letters))
	for i, l := range letters {
		id, err := dl.Put(ctx, pool, l)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = strconv.FormatInt(id, 10)
	}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, "", env, append([]string{"dlq"}, args...)...)
	}
	var atRest []byte
	if err := pool.QueryRow(ctx, `SELECT raw FROM dead_letter WHERE id = $1`, ids[3]).Scan(&atRest); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(atRest), "张三丰") || strings.Contains(string(atRest), "310101199001011234") {
		t.Fatalf("personal data stored in clear: %q", atRest)
	}

	// list reads no raw bytes and needs no key store; show does.
	noKeys := map[string]string{}
	for k, v := range env {
		noKeys[k] = v
	}
	noKeys["ZHIANHUB_KEYS_DIR"] = filepath.Join(t.TempDir(), "missing")
	if code, out, errs := runCLI(t, "", noKeys, "dlq", "list"); code != 0 || strings.Count(out, "\n") != 5 {
		t.Errorf("list without a key store: %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runCLI(t, "", noKeys, "dlq", "show", ids[3], "--raw"); code == 0 || strings.Contains(out, "张三丰") || !strings.Contains(errs, "missing") {
		t.Errorf("show without a key store: %d\n%s\n%s", code, out, errs)
	}

	// list: one line per letter, newest first, never the raw bytes; the
	// escape sequence in a reason is shown escaped.
	code, out, errs := cli("list")
	if code != 0 {
		t.Fatalf("list: %d %s", code, errs)
	}
	t.Logf("dlq list:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], ids[3]+" ") || !strings.HasPrefix(lines[4], ids[0]+" ") {
		t.Fatalf("list output:\n%s", out)
	}
	for _, want := range []string{"E110", "签名无效", "000000000000", "keyperson.register", "0190a0b0-0000-7000-8000-00000000000a", `not JSON\x1b[31m`, "open,security"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SECRET-CIPHERTEXT") || strings.Contains(out, "\x1b") {
		t.Errorf("list prints raw bytes or control characters:\n%q", out)
	}

	// Filters, JSON and paging.
	code, out, errs = cli("list", "--code", "E199", "--json")
	var listed []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 2 {
		t.Fatalf("list --code E199 --json: %d %s %s", code, out, errs)
	}
	if _, hasRaw := listed[0]["raw"]; hasRaw || listed[0]["code"] != "E199" {
		t.Errorf("JSON list entry %v", listed[0])
	}
	if code, out, errs = cli("list", "--limit", "1"); code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(errs, "1 of 4 shown; next page: --before "+ids[3]) {
		t.Errorf("list --limit 1: %d\n%s\n%s", code, out, errs)
	}
	if code, out, _ = cli("list", "--before", ids[1], "--security"); code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "E110") {
		t.Errorf("list --before --security:\n%s", out)
	}
	if code, out, _ = cli("list", "--since", time.Now().Add(time.Hour).Format(time.RFC3339)); code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("list --since future:\n%s", out)
	}
	if code, out, _ = cli("list", "--since", "1h"); code != 0 || strings.Count(out, "\n") != 5 {
		t.Errorf("list --since 1h:\n%s", out)
	}

	// show: every field; raw only with --raw, as text or base64.
	code, out, errs = cli("show", ids[0])
	if code != 0 {
		t.Fatalf("show: %d %s", code, errs)
	}
	for _, want := range []string{"id:", "source:", "amqp:node.310000000000", `exchange "` + exchange + `" routing key "to.310000000000.keyperson.register"`,
		"message id:", "sender:", "kind:", "code:", "E110", "reason:", "签名无效", "security:", "yes", "size:", strconv.Itoa(len(envelope)) + " bytes", "replays:", "never", "resolved:"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SECRET-CIPHERTEXT") {
		t.Errorf("show without --raw prints the raw bytes:\n%s", out)
	}
	if code, out, _ = cli("show", ids[0], "--raw"); code != 0 || !strings.Contains(out, "raw (text):\n"+envelope+"\n") {
		t.Errorf("show --raw:\n%s", out)
	}
	if code, out, _ = cli("show", ids[3], "--raw"); code != 0 || !strings.Contains(out, "raw (text):\n"+personal+"\n") ||
		!strings.Contains(out, strconv.Itoa(len(personal))+" bytes") {
		t.Errorf("show --raw of an encrypted internal event:\n%s", out)
	}
	code, out, _ = cli("show", "--raw", ids[1])
	t.Logf("dlq show --raw %s:\n%s", ids[1], out)
	if code != 0 || !strings.Contains(out, "raw (base64, not printable UTF-8):\n"+base64.StdEncoding.EncodeToString(binary)+"\n") ||
		!strings.Contains(out, "(none: cannot be replayed)") || strings.Contains(out, "\x1b") {
		t.Errorf("show --raw of binary bytes:\n%q", out)
	}
	var shown map[string]any
	if code, out, _ = cli("show", ids[0], "--json", "--raw"); code != 0 || json.Unmarshal([]byte(out), &shown) != nil ||
		shown["raw"] != base64.StdEncoding.EncodeToString([]byte(envelope)) {
		t.Errorf("show --json --raw:\n%s", out)
	}
	if code, _, errs = cli("show", "999999"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("show missing: %d %s", code, errs)
	}

	// replay: the exact bytes reach the route; failures are errors and are
	// not counted.
	if code, out, errs = cli("replay", ids[0]); code != 0 || !strings.Contains(out, "replayed "+ids[0]+" to "+exchange+" to.310000000000.keyperson.register (replay 1)") {
		t.Fatalf("replay: %d %s %s", code, out, errs)
	}
	d, ok := get()
	if !ok || string(d.Body) != envelope || d.MessageId != letters[0].MessageID || d.Type != "keyperson.register" || d.DeliveryMode != amqp.Persistent {
		t.Fatalf("replayed message: %v %q %q %q %d", ok, d.Body, d.MessageId, d.Type, d.DeliveryMode)
	}
	if code, _, errs = cli("replay", ids[2]); code != 1 || !strings.Contains(errs, "unroutable") {
		t.Errorf("replay unroutable: %d %s", code, errs)
	}
	if code, _, errs = cli("replay", ids[1]); code != 1 || !strings.Contains(errs, "no route") {
		t.Errorf("replay without route: %d %s", code, errs)
	}
	counts := func() []int {
		var c []int
		for _, id := range ids {
			n, _ := strconv.ParseInt(id, 10, 64)
			l, err := dl.Get(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			c = append(c, l.ReplayCount)
		}
		return c
	}
	if got := counts(); got[0] != 1 || got[1] != 0 || got[2] != 0 || got[3] != 0 {
		t.Errorf("replay counts %v, want [1 0 0 0]", got)
	}

	// replay --all-unresolved --code E199: one delivered, one unroutable.
	code, out, errs = cli("replay", "--all-unresolved", "--code", "E199")
	if code != 1 || !strings.Contains(out, "1 replayed, 1 failed") || !strings.Contains(errs, "failed "+ids[2]) {
		t.Errorf("replay --all-unresolved: %d\n%s\n%s", code, out, errs)
	}
	if d, ok := get(); !ok || string(d.Body) != personal {
		t.Errorf("all-unresolved replayed %v %q", ok, d.Body)
	}
	if got := counts(); got[0] != 1 || got[2] != 0 || got[3] != 1 {
		t.Errorf("replay counts %v, want [1 0 0 1]", got)
	}

	// resolve.
	if code, out, errs = cli("resolve", ids[0], "--note", "伪造签名，已报告"); code != 0 || !strings.Contains(out, "resolved "+ids[0]+" by wang.wei") {
		t.Fatalf("resolve: %d %s %s", code, out, errs)
	}
	if code, _, errs = cli("resolve", ids[0], "--note", "again"); code != 1 || !strings.Contains(errs, "already resolved") {
		t.Errorf("resolve twice: %d %s", code, errs)
	}
	if code, out, _ = cli("list", "--unresolved"); code != 0 || strings.Count(out, "\n") != 4 || strings.Contains(out, "E110") {
		t.Errorf("list --unresolved:\n%s", out)
	}
	if code, out, _ = cli("show", ids[0]); !strings.Contains(out, "by wang.wei") || !strings.Contains(out, "伪造签名，已报告") {
		t.Errorf("show resolved:\n%s", out)
	}

	// Every read of raw bytes, replay and resolve is in the audit chain,
	// which verifies.
	rows, err := pool.Query(ctx, `SELECT actor, action, object, result FROM audit_entry ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var actor, action, object, result string
		if err := rows.Scan(&actor, &action, &object, &result); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Join([]string{actor, action, object, result}, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"wang.wei deadletter.read " + ids[0] + " ok", // show --raw
		"wang.wei deadletter.read " + ids[3] + " ok",
		"wang.wei deadletter.read " + ids[1] + " ok",
		"wang.wei deadletter.read " + ids[0] + " ok", // show --json --raw
		"wang.wei dlq.replay " + ids[0] + " ok",
		"wang.wei dlq.replay " + ids[2] + " error",
		"wang.wei dlq.replay " + ids[1] + " error",
		"wang.wei dlq.replay " + ids[2] + " error",
		"wang.wei dlq.replay " + ids[3] + " ok",
		"wang.wei dlq.resolve " + ids[0] + " ok",
		"wang.wei dlq.resolve " + ids[0] + " error",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit entries:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if code, out, errs := runCLI(t, "", env, "audit", "verify"); code != 0 || !strings.Contains(out, "audit chain OK: 11 entries") {
		t.Errorf("audit verify: %d %s %s", code, out, errs)
	}
}

func TestDLQUsage(t *testing.T) {
	env := map[string]string{"ZHIANHUB_DATABASE_URL": "postgres://127.0.0.1:1/none?sslmode=disable"}
	tests := [][]string{
		{"dlq"},
		{"dlq", "frob"},
		{"dlq", "show"},
		{"dlq", "show", "abc"},
		{"dlq", "show", "1", "2"},
		{"dlq", "show", "0"},
		{"dlq", "list", "extra"},
		{"dlq", "list", "--code", "X110"},
		{"dlq", "list", "--since", "yesterday"},
		{"dlq", "list", "--until", "soon"},
		{"dlq", "list", "--limit", "0"},
		{"dlq", "list", "--limit", "5000"},
		{"dlq", "list", "--nope"},
		{"dlq", "replay"},
		{"dlq", "replay", "1", "--all-unresolved"},
		{"dlq", "replay", "1", "--code", "E199"},
		{"dlq", "replay", "--all-unresolved", "--code", "199"},
		{"dlq", "resolve", "1"},
		{"dlq", "resolve", "1", "--note", "  "},
		{"dlq", "resolve", "--note", "x"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			code, out, errs := runCLI(t, "", env, args...)
			if code != 2 || errs == "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and a message", code, out, errs)
			}
		})
	}
	if code, out, _ := runCLI(t, "", env, "dlq", "help"); code != 0 || !strings.Contains(out, "zhianhub dlq list") {
		t.Errorf("dlq help: %d %s", code, out)
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args    []string
		pos     []string
		raw     bool
		limitOK int
	}{
		{[]string{"12", "--raw"}, []string{"12"}, true, 5},
		{[]string{"--raw", "12"}, []string{"12"}, true, 5},
		{[]string{"--limit", "7", "12", "13"}, []string{"12", "13"}, false, 7},
		{[]string{"--", "--raw"}, []string{"--raw"}, false, 5},
		{nil, nil, false, 5},
	}
	for _, tt := range tests {
		e := &cliEnv{stderr: &strings.Builder{}}
		fs := newFlagSet(e, "t")
		raw := fs.Bool("raw", false, "")
		limit := fs.Int("limit", 5, "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil || strings.Join(pos, " ") != strings.Join(tt.pos, " ") || *raw != tt.raw || *limit != tt.limitOK {
			t.Errorf("%q: pos %q raw %v limit %d err %v", tt.args, pos, *raw, *limit, err)
		}
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"签名无效", "签名无效"},
		{"a\tb\nc", `a\x09b\x0ac`},
		{"\x1b[2J", `\x1b[2J`},
		{"abc\u202edef", `abc\u202edef`},
		{"x\u0085y", `x\x85y`},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for in, text := range map[string]bool{"{\"a\":1}\n": true, "签名\r\n\t": true, "a\x1bb": false, "\xff": false, "a\u202eb": false} {
		if _, ok := rawText([]byte(in)); ok != text {
			t.Errorf("rawText(%q) text = %v, want %v", in, ok, text)
		}
	}
}
