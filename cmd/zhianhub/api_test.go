package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpsbus"
	"zhianhub/contracts"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
	"zhianhub/routes"
	"zhianhub/store/storetest"
)

const filePersonNo = "31010420261127000017"

func fileRegisterPayload(idNo string) string {
	b, _ := json.Marshal(map[string]any{
		"personNo": filePersonNo, "idType": "111", "idNo": idNo, "name": "张测试", "sex": "1", "birthDate": "1986-05-17",
		"hukouRegion": "310104", "hukouAddr": "上海市徐汇区测试路1号（虚构地址）", "categories": []string{"0201"},
		"basis": map[string]any{"docNo": "沪公徐（测）字〔2026〕第0017号", "approvedBy": "上海市公安局徐汇分局（测试）",
			"approvedAt": "2026-11-26T11:00:00.000+08:00", "legal": "《中华人民共和国禁毒法》有关规定（测试数据）"},
		"reviewBy": "2027-05-26", "unit": "310104000000", "officer": "1023456", "registeredAt": "2026-11-26T15:20:00.000+08:00",
	})
	return string(b)
}

// TestFileCLIAndAPI runs the hub (serve, in-process) on a database and bus
// exchange of the test's own, files records with `zhianhub file` (from a
// file and from standard input), sees the running hub's relay publish them
// to the Ministry in seq order, reads them back through the hub's HTTP API
// (mounted by serve), checks refusals (exit 3, code first on stderr) and
// usage errors (exit 2), and verifies the audit chain both processes wrote.
func TestFileCLIAndAPI(t *testing.T) {
	dbURL := storetest.NewEmptyDatabase(t)
	root := t.TempDir()
	keys, peers := filepath.Join(root, "keys"), filepath.Join(root, "peers")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys, "--demo-peers", peers); code != 0 {
		t.Fatal(errs)
	}
	exchange := testBus(t, "310000000000")
	conn, err := amqp.Dial(testAMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	minQueue, err := mpsbus.DeclareNodeQueue(ch, exchange, mpsbus.NodeMinistry)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.QueueDelete(minQueue, false, false, false) })
	toMinistry, err := ch.Consume(minQueue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	minKeys, err := keystore.Load(filepath.Join(peers, mpsbus.NodeMinistry), keystore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opener, err := envelope.NewOpener(envelope.OpenerConfig{Keys: minKeys, Kinds: envelope.KindSet(kindSet())})
	if err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	env := map[string]string{
		"ZHIANHUB_DATABASE_URL": dbURL,
		"ZHIANHUB_KEYS_DIR":     keys,
		"ZHIANHUB_HTTP_ADDR":    addr,
		"ZHIANHUB_AMQP_URL":     testAMQPURL,
		"ZHIANHUB_MPS_EXCHANGE": exchange,
		"USER":                  "zhang.operator",
	}
	ctx := context.Background()
	hub := startServe(t, env)
	base, logs := hub.Base, hub.Logs
	receive := func() *envelope.Message {
		t.Helper()
		select {
		case d := <-toMinistry:
			m, err := opener.Open(d.Body)
			if err != nil {
				t.Fatalf("the Ministry cannot open what the hub sent: %v", err)
			}
			return m
		case <-time.After(15 * time.Second):
			t.Fatalf("nothing published to the Ministry\n%s", logs.String())
		}
		return nil
	}
	get := func(path string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("X-Dev-User", "li.officer")
		req.Header.Set("X-Dev-Unit", "310104000000")
		req.Header.Set("X-Dev-Roles", "officer")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}

	// File a register from a file: printed result, published by the hub.
	file := filepath.Join(root, "register.json")
	if err := os.WriteFile(file, []byte(fileRegisterPayload("310104198605171356")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "", env, "file", contracts.KindRegister, file, "--actor", "cli.tester")
	if code != 0 {
		t.Fatalf("file: exit %d\n%s", code, errs)
	}
	var res routes.FileResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Kind != contracts.KindRegister || res.PersonNo != filePersonNo || res.Seq != 1 {
		t.Fatalf("file printed %q (%v)", out, err)
	}
	if m := receive(); m.ID != res.ID || m.Kind != contracts.KindRegister {
		t.Fatalf("the Ministry got %s %s, want %s", m.Kind, m.ID, res.ID)
	}

	// The hub's API shows it (masked) and the filing awaiting its receipt.
	status, p := get("/api/v1/persons/" + filePersonNo)
	if status != http.StatusOK || p["idNo"] != "310104********1356" || p["origin"] != "out" {
		t.Fatalf("GET person: %d %v", status, p)
	}
	// The relay records the send when the broker confirms, which may be
	// just after the Ministry got the message.
	var f map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		status, f = get("/api/v1/filings/" + res.ID)
		if status != http.StatusOK || f["state"] == "sent" || time.Now().After(deadline) {
			break
		}
	}
	if status != http.StatusOK || f["state"] != "sent" || f["actor"] != "cli.tester" {
		t.Fatalf("GET filing: %d %v", status, f)
	}

	// Refusals: exit 3, the code first on stderr, nothing on stdout.
	for _, tc := range []struct {
		name, kind, stdin, code string
	}{
		{"bad check character", contracts.KindRegister, fileRegisterPayload("310104198605171357"), "E121"},
		{"registered already", contracts.KindRegister, fileRegisterPayload("310104198605171356"), "E130"},
		{"not JSON", contracts.KindChange, `{"personNo":`, "E100"},
		{"receipt", "receipt", `{}`, "E102"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.stdin, env, "file", tc.kind, "-")
			if code != exitRejected || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errs)
			}
			t.Logf("stderr: %s", strings.TrimSpace(errs))
			if w := strings.Fields(errs); len(w) < 2 || w[0] != tc.code {
				t.Fatalf("stderr %q does not start with %s and a reason", errs, tc.code)
			}
		})
	}

	// A change from standard input is seq 2 (refusals took none), filed by $USER.
	change := `{"personNo":"` + filePersonNo + `","changes":{"residRegion":"310112"},"reason":"居住地变更（测试数据）","changedAt":"2026-11-27T09:15:00.000+08:00"}`
	code, out, errs = runCLI(t, change, env, "file", "--config", "", contracts.KindChange, "-")
	if code != 0 {
		t.Fatalf("file change: exit %d\n%s", code, errs)
	}
	var res2 routes.FileResult
	if err := json.Unmarshal([]byte(out), &res2); err != nil || res2.Seq != 2 {
		t.Fatalf("file change printed %q", out)
	}
	if m := receive(); m.ID != res2.ID {
		t.Fatalf("the Ministry got %s, want %s", m.ID, res2.ID)
	}
	if _, f := get("/api/v1/filings/" + res2.ID); f["actor"] != "zhang.operator" {
		t.Errorf("actor %v, want $USER", f["actor"])
	}

	// A filing through the API, answered by the Ministry, traced from the
	// API call's request id to the Ministry's receipt.
	control := `{"personNo":"` + filePersonNo + `","controlNo":"31010420261127000501","level":2,"measures":["verify","report"],` +
		`"regions":["310104"],"validFrom":"2026-11-27T10:00:00.000+08:00","validTo":"2027-02-27T10:00:00.000+08:00",` +
		`"basis":{"docNo":"沪公徐（测）字〔2026〕第0501号","approvedBy":"上海市公安局徐汇分局（测试）","approvedAt":"2026-11-27T09:00:00.000+08:00","legal":"测试数据"}}`
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/filings/"+contracts.KindControl, strings.NewReader(control))
	req.Header.Set("X-Dev-User", "li.officer")
	req.Header.Set("X-Dev-Unit", "310104000000")
	req.Header.Set("X-Dev-Roles", "officer")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var filed routes.FileResult
	json.NewDecoder(resp.Body).Decode(&filed)
	resp.Body.Close()
	requestID := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusAccepted || filed.ID == "" || requestID == "" {
		t.Fatalf("POST filing: %d %+v request id %q", resp.StatusCode, filed, requestID)
	}
	if m := receive(); m.ID != filed.ID {
		t.Fatalf("the Ministry got %s, want %s", m.ID, filed.ID)
	}
	minSealer, err := envelope.NewSealer(envelope.SealerConfig{Keys: minKeys})
	if err != nil {
		t.Fatal(err)
	}
	receipt, _ := json.Marshal(map[string]string{"ref": filed.ID, "status": "ACCEPTED", "code": "0000", "reason": "",
		"at": time.Now().Format("2006-01-02T15:04:05.000+08:00")})
	renv, rid, err := minSealer.Seal(envelope.Outgoing{Kind: "receipt", To: "310000000000", Corr: filed.ID, Payload: receipt})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(ctx, exchange, mpsbus.RoutingKey("310000000000", "receipt"), false, false,
		mpsbus.Publishing(renv, rid, "receipt", time.Now())); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, f := get("/api/v1/filings/" + filed.ID); f["state"] == "receipted" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receipt was not correlated\n%s", logs.String())
		}
	}
	// The operation and system logs are written in batches (every 500ms).
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var n int
		_ = db.QueryRow(ctx, `SELECT (SELECT count(*) FROM operation_log WHERE request_id = $1) * (SELECT count(*) FROM system_log WHERE request_id = $1)`, requestID).Scan(&n)
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API call is not in the operation and system logs")
		}
	}
	code, out, errs = runCLI(t, "", env, "trace", requestID)
	if code != 0 {
		t.Fatalf("trace: exit %d %s", code, errs)
	}
	t.Logf("zhianhub trace %s:\n%s", requestID, out)
	// In this order: the API call, the relay's send, the Ministry's
	// receipt; the correlation after it (its audit entry and journal event
	// commit together, so their order is not fixed, and the send's audit
	// entry is chained when the relay's batch commits).
	last := -1
	for _, want := range []string{
		"POST /api/v1/filings/keyperson.control → 202 by li.officer (310104000000)", // the operation log
		"filing.submit 0000 by li.officer on " + filed.ID,
		"out keyperson.control to 000000000000: sent",
		"in receipt from 000000000000: opened",
		"filing.receipt 0000 by 000000000000 on " + filed.ID,
	} {
		i := strings.Index(out, want)
		if i < 0 {
			t.Errorf("trace lacks %q", want)
			continue
		}
		if i < last {
			t.Errorf("trace has %q out of order", want)
		}
		last = i
	}
	for _, want := range []string{"message.send ok by system on " + filed.ID, "out keyperson.control to 000000000000: receipted 0000 (ACCEPTED)",
		"INFO http request"} { // the hub's access log line, from the system log
		if !strings.Contains(out, want) {
			t.Errorf("trace lacks %q", want)
		}
	}
	// A person's trace holds every filing about it, and no payload.
	code, out, errs = runCLI(t, "", env, "trace", filePersonNo)
	if code != 0 {
		t.Fatalf("trace person: exit %d %s", code, errs)
	}
	for _, want := range []string{res.ID, res2.ID, filed.ID, "keyperson.register to 000000000000", "keyperson.change to 000000000000"} {
		if !strings.Contains(out, want) {
			t.Errorf("person trace lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "310104198605171356") || strings.Contains(out, "张测试") {
		t.Errorf("person trace shows personal data:\n%s", out)
	}

	// Usage errors.
	for _, args := range [][]string{{"file"}, {"file", contracts.KindRegister}, {"file", contracts.KindRegister, "a", "b"}} {
		if code, _, errs := runCLI(t, "", env, args...); code != 2 || !strings.Contains(errs, "usage: zhianhub file") {
			t.Errorf("%v: exit %d %s", args, code, errs)
		}
	}
	if code, _, _ := runCLI(t, "", env, "file", contracts.KindRegister, filepath.Join(root, "missing.json")); code != 1 {
		t.Errorf("missing file: exit %d", code)
	}

	if code := hub.Stop(t); code != 0 {
		t.Fatalf("serve exit %d\n%s", code, logs.String())
	}
	code, out, errs = runCLI(t, "", map[string]string{"ZHIANHUB_DATABASE_URL": dbURL, "ZHIANHUB_KEYS_DIR": keys}, "audit", "verify")
	if code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("audit verify: %d %s %s", code, out, errs)
	}
}
