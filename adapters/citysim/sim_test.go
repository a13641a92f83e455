package citysim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/citybus"
	"zhianhub/adapters/citysim"
	"zhianhub/adapters/mpsbus"
	"zhianhub/adapters/mpssim"
	"zhianhub/contracts"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
)

const amqpURL = "amqp://guest:guest@127.0.0.1:5672/%2f"

// rig runs the simulator on an exchange of the test's own; the test plays
// the hub (node 310000000000) with its own keys.
type rig struct {
	t        *testing.T
	sim      *citysim.Sim
	exchange string
	ch       *amqp.Channel
	toHub    <-chan amqp.Delivery
	sealer   *envelope.Sealer // the hub's
	opener   *envelope.Opener // the hub's
	v        *contracts.Validator
}

func newRig(t *testing.T, faults map[mpssim.Fault]float64) *rig {
	t.Helper()
	root := t.TempDir()
	hubDir, cityDir := filepath.Join(root, "hub"), filepath.Join(root, "city")
	must(t, keystore.Generate(hubDir, citybus.NodeHub, nil))
	must(t, keystore.Generate(cityDir, citybus.NodeCity, nil))
	_, err := keystore.ExportPublic(hubDir, keystore.LoadOptions{}, filepath.Join(cityDir, "peers"))
	must(t, err)
	_, err = keystore.ExportPublic(cityDir, keystore.LoadOptions{}, filepath.Join(hubDir, "peers"))
	must(t, err)
	hubKeys, err := keystore.Load(hubDir, keystore.LoadOptions{})
	must(t, err)
	b := make([]byte, 4)
	rand.Read(b)
	r := &rig{t: t, exchange: "test.citysim." + hex.EncodeToString(b)}
	r.sim, err = citysim.New(citysim.Config{AMQPURL: amqpURL, Exchange: r.exchange, KeyDir: cityDir, ControlAddr: "127.0.0.1:0",
		Resend: mpssim.ResendPolicy{Initial: 300 * time.Millisecond, Max: 300 * time.Millisecond}, GapTimeout: 500 * time.Millisecond,
		Faults: faults, Seed: 7, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.sim.Run(ctx) }()
	select {
	case <-r.sim.Running():
	case <-time.After(20 * time.Second):
		t.Fatal("simulator not running")
	}
	conn, err := amqp.Dial(amqpURL)
	must(t, err)
	r.ch, err = conn.Channel()
	must(t, err)
	t.Cleanup(func() {
		cancel()
		<-done
		for _, n := range []string{citybus.NodeHub, citybus.NodeCity} {
			r.ch.QueueDelete(citybus.NodeQueue(r.exchange, n), false, false, false)
		}
		r.ch.ExchangeDelete(r.exchange, false, false)
		conn.Close()
	})
	r.toHub, err = r.ch.Consume(citybus.NodeQueue(r.exchange, citybus.NodeHub), "", true, false, false, false, nil)
	must(t, err)
	r.sealer, err = envelope.NewSealer(envelope.SealerConfig{Keys: hubKeys})
	must(t, err)
	kinds := envelope.KindSet{}
	for _, k := range contracts.CityKinds() {
		kinds[k] = true
	}
	r.opener, err = envelope.NewOpener(envelope.OpenerConfig{Keys: hubKeys, Kinds: kinds})
	must(t, err)
	r.v, err = contracts.NewValidator(contracts.Config{})
	must(t, err)
	return r
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func feedback(refNo string, seq int64, result string) map[string]any {
	return map[string]any{"feedbackNo": "31000020261127000001", "refType": "dispatch", "refNo": refNo, "seq": seq, "unit": "310104000000",
		"officer": "123456", "result": result, "detail": "已处置。", "attachments": []any{}, "at": time.Now().Format(time.RFC3339)}
}

// up seals a feedback as the hub and publishes it (id "" = new); it
// returns the id and the envelope.
func (r *rig) up(id string, payload any) (string, []byte) {
	r.t.Helper()
	p, _ := json.Marshal(payload)
	env, id, err := r.sealer.Seal(envelope.Outgoing{ID: id, Kind: contracts.KindFeedbackDispatch, To: citybus.NodeCity, Payload: p})
	must(r.t, err)
	r.publish(id, contracts.KindFeedbackDispatch, env)
	return id, env
}

func (r *rig) publish(id, kind string, env []byte) {
	r.t.Helper()
	must(r.t, r.ch.PublishWithContext(context.Background(), r.exchange, citybus.RoutingKey(citybus.NodeCity, kind), false, false,
		mpsbus.Publishing(env, id, kind, time.Now())))
}

// next returns the next message to the hub, opened.
func (r *rig) next(timeout time.Duration) (*envelope.Message, bool) {
	r.t.Helper()
	select {
	case d := <-r.toHub:
		m, err := r.opener.Open(d.Body)
		if err != nil {
			return &envelope.Message{Header: envelope.Header{ID: d.MessageId, Kind: "unopenable:" + string(envelope.CodeOf(err))}}, true
		}
		return m, true
	case <-time.After(timeout):
		return nil, false
	}
}

func (r *rig) receipt(timeout time.Duration) contracts.Receipt {
	r.t.Helper()
	m, ok := r.next(timeout)
	if !ok || m.Kind != contracts.KindReceipt {
		r.t.Fatalf("want a receipt, got %v %v", m, ok)
	}
	typed, err := r.v.ValidateCityPayload(contracts.KindReceipt, m.Payload)
	must(r.t, err)
	rc := *typed.(*contracts.Receipt)
	if m.Corr != rc.Ref {
		r.t.Errorf("receipt corr %s ref %s", m.Corr, rc.Ref)
	}
	return rc
}

// TestFeedbackReceipts: one receipt per distinct id, DUPLICATE with the
// original code for a resend, E120 naming the field for an invalid
// payload, seq order per refNo (held, then applied), E140 after the gap
// timeout, no answer to a bad signature.
func TestFeedbackReceipts(t *testing.T) {
	r := newRig(t, nil)
	id, _ := r.up("", feedback("31000020261127000001", 1, "done"))
	if rc := r.receipt(10 * time.Second); rc.Ref != id || rc.Status != "ACCEPTED" || rc.Code != "0000" {
		t.Fatalf("receipt %+v", rc)
	}
	r.up(id, feedback("31000020261127000001", 1, "done")) // the hub's resend: re-sealed, same id
	if rc := r.receipt(10 * time.Second); rc.Ref != id || rc.Status != "DUPLICATE" || rc.Code != "0000" {
		t.Fatalf("resend receipt %+v", rc)
	}
	bad, _ := r.up("", feedback("31000020261127000002", 1, "closed"))
	if rc := r.receipt(10 * time.Second); rc.Ref != bad || rc.Status != "REJECTED" || rc.Code != "E120" || !strings.HasPrefix(rc.Reason, "result：") {
		t.Fatalf("invalid feedback: %+v", rc)
	}
	second, _ := r.up("", feedback("W-1", 2, "done"))
	first, _ := r.up("", feedback("W-1", 1, "in_progress"))
	if a, b := r.receipt(10*time.Second), r.receipt(10*time.Second); a.Ref != first || b.Ref != second || a.Status != "ACCEPTED" || b.Status != "ACCEPTED" {
		t.Fatalf("reordered: %+v then %+v", a, b)
	}
	gap, _ := r.up("", feedback("W-2", 2, "done"))
	if rc := r.receipt(10 * time.Second); rc.Ref != gap || rc.Code != "E140" {
		t.Fatalf("gap: %+v", rc)
	}
	// A bad signature is not answered.
	p, _ := json.Marshal(feedback("W-3", 1, "done"))
	env, fid, err := r.sealer.Seal(envelope.Outgoing{Kind: contracts.KindFeedbackDispatch, To: citybus.NodeCity, Payload: p})
	must(t, err)
	env, err = mpssim.FlipSignatureBit(env)
	must(t, err)
	r.publish(fid, contracts.KindFeedbackDispatch, env)
	if m, ok := r.next(800 * time.Millisecond); ok {
		t.Fatalf("answered a bad signature: %+v", m.Header)
	}
	st := r.sim.Stats()
	if st.Unanswered["E110"] != 1 || st.ReceiptsSent["ACCEPTED"]["0000"] != 3 || st.ReceiptsSent["DUPLICATE"]["0000"] != 1 ||
		st.ReceiptsSent["REJECTED"]["E120"] != 1 || st.ReceiptsSent["REJECTED"]["E140"] != 1 {
		t.Errorf("stats %+v", st)
	}
	if fb := r.sim.Feedback(); len(fb) != 4 || fb[2].ID != first || fb[3].ID != second {
		t.Errorf("feedback log %+v", fb)
	}
}

// TestOrders: POST /send sends a valid order, resent with the same id until
// its receipt; faults: duplicate, invalid payload, bad signature, lost
// receipt.
func TestOrders(t *testing.T) {
	r := newRig(t, nil)
	ctl := "http://" + r.sim.ControlAddr()
	post := func(path, body string, into any) {
		t.Helper()
		resp, err := http.Post(ctl+path, "application/json", strings.NewReader(body))
		must(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		must(t, err)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
		// Compact JSON on one line: deploy/run-demo.sh reads /send's
		// "orderNo":"…" with sed.
		if path == "/send" && (!strings.Contains(string(b), `"orderNo":"`) || strings.Count(string(b), "\n") != 1) {
			t.Fatalf("POST /send answered %s, not compact JSON with orderNo", b)
		}
		must(t, json.Unmarshal(b, into))
	}
	answer := func(ref string) {
		p, _ := json.Marshal(map[string]string{"ref": ref, "status": "ACCEPTED", "code": "0000", "reason": "", "at": time.Now().Format(time.RFC3339)})
		env, id, err := r.sealer.Seal(envelope.Outgoing{Kind: contracts.KindReceipt, To: citybus.NodeCity, Corr: ref, Payload: p})
		must(t, err)
		r.publish(id, contracts.KindReceipt, env)
	}
	var sent citysim.MessageInfo
	post("/send", `{"title":"演示","targetUnits":["310101000000","310104000000"]}`, &sent)
	m, ok := r.next(10 * time.Second)
	if !ok || m.ID != sent.ID || m.Kind != contracts.KindDispatchOrder || m.From != citybus.NodeCity {
		t.Fatalf("order: %+v", m)
	}
	typed, err := r.v.ValidateCityPayload(contracts.KindDispatchOrder, m.Payload)
	must(t, err)
	if o := typed.(*contracts.Order); o.OrderNo != sent.OrderNo || o.Title != "演示" || len(o.TargetUnits) != 2 {
		t.Fatalf("order payload %+v", o)
	}
	resent, ok := r.next(5 * time.Second)
	if !ok || resent.ID != sent.ID || !bytes.Equal(resent.Payload, m.Payload) {
		t.Fatalf("resend: %+v", resent)
	}
	answer(sent.ID)
	deadline := time.Now().Add(10 * time.Second)
	for info, _ := r.sim.Message(sent.ID); info.Receipt == nil; info, _ = r.sim.Message(sent.ID) {
		if time.Now().After(deadline) {
			t.Fatal("receipt not correlated")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for drained := false; !drained; { // late resends
		_, ok := r.next(700 * time.Millisecond)
		drained = !ok
	}

	var res struct{ Injected []citysim.MessageInfo }
	post("/faults", `{"duplicate":{"inject":1},"invalidPayload":{"inject":1},"badSignature":{"inject":1}}`, &res)
	if len(res.Injected) != 3 {
		t.Fatalf("injected %+v", res.Injected)
	}
	// Orders without a receipt are resent (same bytes checked below): only
	// the first copies count.
	want := map[string][]string{"badSignature": {"E110"}, "duplicate": {"0000", "0000"}, "invalidPayload": {"E120"}}
	byID := map[string][]string{}
	enough := func() bool {
		for _, info := range res.Injected {
			if len(byID[info.ID]) < len(want[info.Fault]) {
				return false
			}
		}
		return true
	}
	for !enough() {
		m, ok := r.next(10 * time.Second)
		if !ok {
			t.Fatalf("got %v", byID)
		}
		code := "0000"
		if strings.HasPrefix(m.Kind, "unopenable:") {
			code = strings.TrimPrefix(m.Kind, "unopenable:")
		} else if _, err := r.v.ValidateCityPayload(m.Kind, m.Payload); err != nil {
			code = contracts.ErrorCode(err)
		}
		byID[m.ID] = append(byID[m.ID], code)
	}
	for _, info := range res.Injected {
		w := want[info.Fault]
		if got := byID[info.ID][:len(w)]; strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("%s: the hub gets %v, want %v", info.Fault, got, w)
		}
	}
	for _, info := range res.Injected {
		if info.Fault != "badSignature" {
			answer(info.ID)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for drained := false; !drained; {
		_, ok := r.next(700 * time.Millisecond)
		drained = !ok
	}

	// A lost receipt: the order is resent although answered.
	post("/faults", `{"lostReceipt":{"inject":1}}`, &res)
	post("/send", `{}`, &sent)
	if m, ok = r.next(10 * time.Second); !ok || m.ID != sent.ID {
		t.Fatalf("order: %+v", m)
	}
	answer(m.ID)
	if again, ok := r.next(5 * time.Second); !ok || again.ID != m.ID {
		t.Fatalf("no resend after the lost receipt: %+v", again)
	}
	answer(m.ID) // this one counts
	deadline = time.Now().Add(10 * time.Second)
	for info, _ := r.sim.Message(sent.ID); info.Receipt == nil; info, _ = r.sim.Message(sent.ID) {
		if time.Now().After(deadline) {
			t.Fatal("second receipt not correlated")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := r.sim.Stats(); st.LostReceipts != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestReorderAndScript: a reordered order goes out after the next one; a
// script's orders are completed and sent at start.
func TestReorderAndScript(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	held, err := r.sim.SendOrder(ctx, json.RawMessage(`{"title":"先发后到"}`), mpssim.FaultReorder)
	must(t, err)
	if m, ok := r.next(500 * time.Millisecond); ok {
		t.Fatalf("the reordered order was sent at once: %+v", m.Header)
	}
	next, err := r.sim.SendOrder(ctx, nil, "")
	must(t, err)
	a, _ := r.next(5 * time.Second)
	b, _ := r.next(5 * time.Second)
	if a == nil || b == nil || a.ID != next.ID || b.ID != held.ID {
		t.Fatalf("order of arrival: %v then %v, want %s then %s", a, b, next.ID, held.ID)
	}
	if _, err := r.sim.SendOrder(ctx, nil, mpssim.FaultLostReceipt); err == nil {
		t.Error("lostReceipt is not an order fault")
	}

	script := filepath.Join(t.TempDir(), "orders.jsonl")
	must(t, os.WriteFile(script, []byte("# demo\n{\"title\":\"脚本一\",\"level\":3}\n\n{\"orderNo\":\"31000020261127000077\",\"targetUnits\":[\"310105000000\"]}\n"), 0o600))
	lines, err := citysim.LoadScript(script)
	must(t, err)
	if len(lines) != 2 {
		t.Fatalf("script lines %d", len(lines))
	}
	must(t, os.WriteFile(script, []byte("{\"title\":\n"), 0o600))
	if _, err := citysim.LoadScript(script); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad script: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  citysim.Config
		want string
	}{
		{"no keys", citysim.Config{}, "key directory"},
		{"bad url", citysim.Config{KeyDir: "k", AMQPURL: "http://x"}, "AMQP URL"},
		{"bad unit", citysim.Config{KeyDir: "k", Units: []string{"3101"}}, "unit"},
		{"bad rate", citysim.Config{KeyDir: "k", Rate: -1}, "rate"},
		{"unknown fault", citysim.Config{KeyDir: "k", Faults: map[mpssim.Fault]float64{mpssim.FaultGap: 0.5}}, "unknown fault"},
		{"bad probability", citysim.Config{KeyDir: "k", Faults: map[mpssim.Fault]float64{mpssim.FaultDuplicate: 2}}, "probability"},
	} {
		_, err := citysim.New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
