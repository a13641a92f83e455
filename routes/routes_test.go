package routes_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"zhianhub/envelope"
	"zhianhub/store/deadletter"
	"zhianhub/store/exchange"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
)

// vectorPayloads returns the payloads of the shared valid vectors by file
// name (person A: 01-06, person B: 07).
func vectorPayloads(t *testing.T) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "shared", "testdata", "envelope", "manifest.json"))
	must(t, err)
	var m struct {
		Cases []struct {
			File    string         `json:"file"`
			Payload map[string]any `json:"payload"`
		} `json:"cases"`
	}
	must(t, json.Unmarshal(b, &m))
	out := map[string]map[string]any{}
	for _, c := range m.Cases {
		if c.Payload != nil {
			out[filepath.Base(c.File)] = c.Payload
		}
	}
	return out
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

func expect(t *testing.T, got map[string]map[string]any, id, status, code string) {
	t.Helper()
	r, ok := got[id]
	if !ok {
		t.Errorf("no receipt for %s", id)
		return
	}
	if r["status"] != status || r["code"] != code {
		t.Errorf("receipt for %s: %v %v (%v), want %s %s", id, r["status"], r["code"], r["reason"], status, code)
	}
}

// TestInboundExchange drives the inbound route with the Ministry's traffic:
// out-of-order messages applied in seq order, a resend answered DUPLICATE
// without a second effect, a broker redelivery not answered at all, payload
// and state rejections with their codes, a forged signature kept as a dead
// letter and not answered.
func TestInboundExchange(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	v := vectorPayloads(t)
	ctx := context.Background()

	// Person A: register, then control (seq 3) before change (seq 2).
	id1, _ := h.down("keyperson.register", "", v["01-keyperson.register.json"])
	id3, env3 := h.down("keyperson.control", "", v["03-keyperson.control.json"])
	id2, _ := h.down("keyperson.change", "", v["02-keyperson.change.json"])
	got := h.receipts(3)
	for _, id := range []string{id1, id2, id3} {
		expect(t, got, id, "ACCEPTED", "0000")
	}
	p, err := h.registry.GetPerson(ctx, h.pool, "32010620261126000017")
	must(t, err)
	if p.ResidRegion != "310112" || p.State != registry.PersonActive {
		t.Errorf("person after change: %+v", p)
	}
	ctrls, err := h.registry.Controls(ctx, h.pool, "32010620261126000017")
	must(t, err)
	if len(ctrls) != 1 || ctrls[0].State != registry.ControlOpen {
		t.Errorf("controls %+v", ctrls)
	}

	// A resend of id1 (re-sealed, fresh ts): DUPLICATE, no second effect.
	h.down("keyperson.register", id1, v["01-keyperson.register.json"])
	expect(t, h.receipts(1), id1, "DUPLICATE", "0000")
	// The broker redelivers id3's bytes: no effect and no answer.
	h.publish("keyperson.control", id3, env3)
	h.quiet(700 * time.Millisecond)
	hist, err := h.registry.History(ctx, h.pool, "32010620261126000017")
	must(t, err)
	if len(hist) != 3 {
		t.Errorf("history has %d entries, want 3 (one per message)", len(hist))
	}

	// Rejections with their codes.
	badID := clone(v["07-keyperson.register.json"])
	badID["personNo"] = "31010420261127000099"
	idNo := badID["idNo"].(string)
	badID["idNo"] = idNo[:17] + map[bool]string{true: "1", false: "X"}[idNo[17] == 'X']
	idBad, _ := h.down("keyperson.register", "", badID)
	unknown := clone(v["02-keyperson.change.json"])
	unknown["personNo"], unknown["seq"] = "31010420261127000098", 1
	idUnknown, _ := h.down("keyperson.change", "", unknown)
	again := clone(v["01-keyperson.register.json"])
	again["seq"] = 4
	idConflict, _ := h.down("keyperson.register", "", again)
	got = h.receipts(3)
	expect(t, got, idBad, "REJECTED", "E121")
	expect(t, got, idUnknown, "REJECTED", "E131")
	expect(t, got, idConflict, "REJECTED", "E130")

	// A forged signature: dead letter with its raw bytes, no answer.
	p2, _ := json.Marshal(v["07-keyperson.register.json"])
	env, idForged, err := h.sealer.Seal(envelope.Outgoing{Kind: "keyperson.register", To: hubNode, Payload: p2})
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(env, &m))
	sig, _ := base64.StdEncoding.DecodeString(m["sig"].(string))
	sig[len(sig)-1] ^= 1
	m["sig"] = base64.StdEncoding.EncodeToString(sig)
	forged, _ := json.Marshal(m)
	h.publish("keyperson.register", idForged, forged)
	h.quiet(700 * time.Millisecond)
	dl, err := deadletter.New(h.pool, deadletter.Config{Cipher: h.keyring})
	must(t, err)
	sec := true
	letters, err := dl.List(ctx, deadletter.Filter{Security: &sec})
	must(t, err)
	if len(letters) != 1 || letters[0].Code != "E110" || letters[0].MessageID != idForged {
		t.Fatalf("security dead letters: %+v", letters)
	}
	full, err := dl.Get(ctx, letters[0].ID)
	must(t, err)
	if string(full.Raw) != string(forged) {
		t.Error("dead letter does not keep the exact bytes")
	}
	if n, _ := dl.Count(ctx, deadletter.Filter{}); n != 4 {
		t.Errorf("%d dead letters, want 4 (three rejections and the forgery)", n)
	}
}

// TestGapTimeout: a message ahead of a gap is held, rejected with E140 when
// the gap does not fill in time, and processed afresh when the sender
// resends from the gap.
func TestGapTimeout(t *testing.T) {
	h := newHarness(t, harnessOpts{gap: 300 * time.Millisecond})
	v := vectorPayloads(t)
	id2, _ := h.down("keyperson.change", "", v["02-keyperson.change.json"])
	start := time.Now()
	expect(t, h.receipts(1), id2, "REJECTED", "E140")
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("E140 after %s, before the gap timeout", waited)
	}
	// The sender resends from the gap: seq 1, then seq 2 with its old id.
	id1, _ := h.down("keyperson.register", "", v["01-keyperson.register.json"])
	h.down("keyperson.change", id2, v["02-keyperson.change.json"])
	got := h.receipts(2)
	expect(t, got, id1, "ACCEPTED", "0000")
	expect(t, got, id2, "ACCEPTED", "0000")
}

// TestFilingResendAndFlag files records up: the relay publishes them
// sealed to the Ministry, resends with the same id until a receipt arrives,
// and flags a filing never answered.
func TestFilingResendAndFlag(t *testing.T) {
	h := newHarness(t, harnessOpts{resend: resendPolicy(200*time.Millisecond, 400*time.Millisecond, 1500*time.Millisecond)})
	v := vectorPayloads(t)
	ctx := context.Background()
	payload, _ := json.Marshal(v["01-keyperson.register.json"])
	res, err := h.filing.File(ctx, fileReq("keyperson.register", payload))
	must(t, err)
	if res.Seq != 1 {
		t.Errorf("seq %d, want 1", res.Seq)
	}
	first, ok := h.next(5 * time.Second)
	if !ok || first.msg.ID != res.ID || first.msg.Kind != "keyperson.register" {
		t.Fatalf("first send: %+v %v", first.msg, ok)
	}
	second, ok := h.next(5 * time.Second)
	if !ok || second.msg.ID != res.ID || !second.msg.TS.After(first.msg.TS) {
		t.Fatalf("resend: %+v", second.msg)
	}
	// The Ministry answers; the resends stop.
	receipt, _ := json.Marshal(map[string]string{"ref": res.ID, "status": "ACCEPTED", "code": "0000", "reason": "", "at": time.Now().Format(time.RFC3339)})
	env, rid, err := h.sealer.Seal(envelope.Outgoing{Kind: "receipt", To: hubNode, Corr: res.ID, Payload: receipt})
	must(t, err)
	h.publish("receipt", rid, env)
	waitFor(t, func() bool {
		o, err := exchange.Get(ctx, h.pool, res.ID)
		return err == nil && o.State == exchange.OutReceipted && o.ReceiptStatus == "ACCEPTED"
	})
	h.quiet(800 * time.Millisecond)

	// A change is seq 2; never answered, it is flagged after the give-up time.
	change, _ := json.Marshal(v["02-keyperson.change.json"])
	res2, err := h.filing.File(ctx, fileReq("keyperson.change", change))
	must(t, err)
	if res2.Seq != 2 {
		t.Errorf("seq %d, want 2", res2.Seq)
	}
	waitFor(t, func() bool {
		o, err := exchange.Get(ctx, h.pool, res2.ID)
		return err == nil && o.State == exchange.OutFlagged
	})
	o, _ := exchange.Get(ctx, h.pool, res2.ID)
	if o.Attempts < 2 {
		t.Errorf("flagged after %d attempts", o.Attempts)
	}

	// An invalid filing is refused with its code and never published.
	bad := clone(v["07-keyperson.register.json"])
	bad["categories"] = []string{"0701"}
	b, _ := json.Marshal(bad)
	_, err = h.filing.File(ctx, fileReq("keyperson.register", b))
	if envelope.CodeOf(err) != "E122" {
		t.Fatalf("invalid filing: %v (code %s)", err, envelope.CodeOf(err))
	}
	var coded envelope.Coded
	if !errors.As(err, &coded) {
		t.Errorf("error %T carries no code", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestGapTimeoutInjectedClock: with the spec's 10-minute gap timeout on an
// injected clock, a held message is still held at 9 min 59 s and rejected
// with E140 past 10 minutes.
func TestGapTimeoutInjectedClock(t *testing.T) {
	clk := &clock{t: time.Now()}
	h := newHarness(t, harnessOpts{gap: 10 * time.Minute, now: clk.Now})
	v := vectorPayloads(t)
	id2, _ := h.down("keyperson.change", "", v["02-keyperson.change.json"])
	h.quiet(500 * time.Millisecond) // held: no receipt yet
	clk.Add(9*time.Minute + 59*time.Second)
	h.quiet(500 * time.Millisecond)
	clk.Add(2 * time.Second)
	r := h.receipts(1)
	expect(t, r, id2, "REJECTED", "E140")
}

// TestInternalErrorE199: a failure of the hub's own storage answers E199
// (the sender resends later), keeps the message as a dead letter, and the
// resend is processed afresh once the fault is gone.
func TestInternalErrorE199(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	v := vectorPayloads(t)
	// Fault injection on the test's own database: person rows of this
	// personNo cannot be written.
	_, err := h.pool.Exec(ctx, `ALTER TABLE person ADD CONSTRAINT test_fault CHECK (person_no <> '32010620261126000017')`)
	must(t, err)
	id1, _ := h.down("keyperson.register", "", v["01-keyperson.register.json"])
	expect(t, h.receipts(1), id1, "REJECTED", "E199")
	dl, err := deadletter.New(h.pool, deadletter.Config{Cipher: h.keyring})
	must(t, err)
	letters, err := dl.List(ctx, deadletter.Filter{Code: "E199"})
	must(t, err)
	if len(letters) != 1 || letters[0].MessageID != id1 || letters[0].RoutingKey == "" {
		t.Fatalf("E199 dead letters: %+v", letters)
	}
	_, err = h.pool.Exec(ctx, `ALTER TABLE person DROP CONSTRAINT test_fault`)
	must(t, err)
	h.down("keyperson.register", id1, v["01-keyperson.register.json"])
	expect(t, h.receipts(1), id1, "ACCEPTED", "0000")
}

// TestResendAcrossRestart: the resend schedule lives in the database, so a
// new relay (a restarted hub) resends an unanswered filing with its id.
func TestResendAcrossRestart(t *testing.T) {
	h := newHarness(t, harnessOpts{resend: resendPolicy(time.Second, 2*time.Second, time.Hour)})
	ctx := context.Background()
	v := vectorPayloads(t)
	payload, _ := json.Marshal(v["01-keyperson.register.json"])
	res, err := h.filing.File(ctx, fileReq("keyperson.register", payload))
	must(t, err)
	first, ok := h.next(5 * time.Second)
	if !ok || first.msg.ID != res.ID {
		t.Fatalf("first send: %v", ok)
	}
	h.restartRelay()
	again, ok := h.next(5 * time.Second)
	if !ok || again.msg.ID != res.ID {
		t.Fatalf("no resend after the restart")
	}
	// The attempt is recorded in the relay's transaction, which commits
	// after the broker's confirm.
	waitFor(t, func() bool {
		o, err := exchange.Get(ctx, h.pool, res.ID)
		return err == nil && o.Attempts == 2
	})
}

// TestTaskSignDownwardAndCleaning: the hub files a verification task up;
// the Ministry relays the sign-off down (corr = the task's message id) and
// the task is SIGNED. A register sent with full-width digits and a
// lower-case check character is cleaned at the boundary, accepted, and the
// cleaning is journaled (fields and operations, never values).
func TestTaskSignDownwardAndCleaning(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	v := vectorPayloads(t)
	reg := clone(v["07-keyperson.register.json"])
	idNo := reg["idNo"].(string) // ends in X
	full := ""
	for _, r := range idNo[:6] {
		full += string(r - '0' + '０')
	}
	reg["idNo"] = full + idNo[6:17] + "x"
	regID, _ := h.down("keyperson.register", "", reg)
	expect(t, h.receipts(1), regID, "ACCEPTED", "0000")
	jr := journal.New(h.pool)
	m, err := jr.Get(ctx, uuid.MustParse(regID), journal.In)
	must(t, err)
	events, err := jr.Events(ctx, m.ID, journal.In)
	must(t, err)
	if len(events) == 0 || !strings.Contains(events[0].Reason, "idNo: fullwidth-digits,upper-x") || strings.Contains(events[0].Reason, idNo[6:17]) {
		t.Errorf("cleaning not journaled as expected: %+v", events)
	}
	found, err := h.registry.FindByIDNo(ctx, h.pool, idNo)
	must(t, err)
	if len(found) != 1 {
		t.Fatalf("cleaned ID number not found by blind index: %d", len(found))
	}

	task := map[string]any{"personNo": reg["personNo"], "taskNo": "31010420261127000777", "items": []string{"identity", "address"},
		"assignedUnit": "310104000000", "deadline": "2026-12-10T18:00:00.000+08:00", "note": "核实居住情况（测试数据）"}
	b, _ := json.Marshal(task)
	res, err := h.filing.File(ctx, fileReq("keyperson.task", b))
	must(t, err)
	if sent, ok := h.next(5 * time.Second); !ok || sent.msg.ID != res.ID {
		t.Fatal("task filing not sent")
	}
	sign := map[string]any{"personNo": reg["personNo"], "seq": 2, "taskNo": "31010420261127000777", "unit": "320106000000",
		"officer": "1023456", "signedAt": time.Now().Format("2006-01-02T15:04:05.000Z07:00")}
	p, _ := json.Marshal(sign)
	env, signID, err := h.sealer.Seal(envelope.Outgoing{Kind: "keyperson.task.sign", To: hubNode, Corr: res.ID, Payload: p})
	must(t, err)
	h.publish("keyperson.task.sign", signID, env)
	expect(t, h.receipts(1), signID, "ACCEPTED", "0000")
	tk, err := h.registry.GetTask(ctx, h.pool, "31010420261127000777")
	must(t, err)
	if tk.State != registry.TaskSigned {
		t.Errorf("task state %s, want %s", tk.State, registry.TaskSigned)
	}
}

// TestRepeatsInOneBatch publishes a message, its broker redelivery and its
// resend back to back (one batch window): one effect, ACCEPTED for the
// message, no answer to the redelivery, DUPLICATE for the resend.
func TestRepeatsInOneBatch(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	v := vectorPayloads(t)
	id, env := h.down("keyperson.register", "", v["01-keyperson.register.json"])
	h.publish("keyperson.register", id, env)
	h.down("keyperson.register", id, v["01-keyperson.register.json"])
	var statuses []string
	for range 2 {
		r, ok := h.next(15 * time.Second)
		if !ok || r.receipt == nil || r.receipt["ref"] != id {
			t.Fatalf("receipt %v (ok %v), want one answering %s", r.receipt, ok, id)
		}
		statuses = append(statuses, r.receipt["status"].(string)+" "+r.receipt["code"].(string))
	}
	slices.Sort(statuses)
	if strings.Join(statuses, ", ") != "ACCEPTED 0000, DUPLICATE 0000" {
		t.Errorf("receipts %v, want ACCEPTED and DUPLICATE", statuses)
	}
	h.quiet(700 * time.Millisecond)
	hist, err := h.registry.History(context.Background(), h.pool, "32010620261126000017")
	must(t, err)
	if len(hist) != 1 {
		t.Errorf("history has %d entries, want 1", len(hist))
	}
}

// TestPayloadsEncryptedAtRest: a message held for a gap keeps its payload
// encrypted and is applied from it when the gap fills; a filing's payload
// is kept in the outbox only encrypted, and the relay still publishes it
// whole.
func TestPayloadsEncryptedAtRest(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	v := vectorPayloads(t)
	ctx := context.Background()
	reg := v["01-keyperson.register.json"]
	personNo := reg["personNo"].(string)

	// Downward: seq 2 before seq 1 is held, encrypted.
	id2, _ := h.down("keyperson.change", "", v["02-keyperson.change.json"])
	waitFor(t, func() bool {
		var n int
		return h.pool.QueryRow(ctx, `SELECT count(*) FROM reseq_held WHERE id = $1`, id2).Scan(&n) == nil && n == 1
	})
	var stored []byte
	var encrypted bool
	must(t, h.pool.QueryRow(ctx, `SELECT payload, payload_encrypted FROM reseq_held WHERE id = $1`, id2).Scan(&stored, &encrypted))
	if !encrypted || bytes.Contains(stored, []byte(personNo)) || bytes.Contains(stored, []byte(`"changes"`)) {
		t.Fatalf("held payload at rest (encrypted %v): %q", encrypted, stored)
	}
	id1, _ := h.down("keyperson.register", "", reg)
	got := h.receipts(2)
	expect(t, got, id1, "ACCEPTED", "0000")
	expect(t, got, id2, "ACCEPTED", "0000")

	// Upward: a filing about the person, encrypted in the outbox.
	change, _ := json.Marshal(v["02-keyperson.change.json"])
	res, err := h.filing.File(ctx, fileReq("keyperson.change", change))
	must(t, err)
	must(t, h.pool.QueryRow(ctx, `SELECT payload, payload_encrypted FROM outbox WHERE id = $1`, res.ID).Scan(&stored, &encrypted))
	if !encrypted || bytes.Contains(stored, []byte(personNo)) || bytes.Contains(stored, []byte(`"changes"`)) {
		t.Fatalf("outbox payload at rest (encrypted %v): %q", encrypted, stored)
	}
	for {
		sent, ok := h.next(5 * time.Second)
		if !ok {
			t.Fatal("the filing was not published")
		}
		if sent.msg.ID == res.ID {
			if !bytes.Contains(sent.msg.Payload, []byte(personNo)) || !bytes.Contains(sent.msg.Payload, []byte(`"changes"`)) {
				t.Fatalf("the Ministry got %s", sent.msg.Payload)
			}
			break
		}
	}
}
