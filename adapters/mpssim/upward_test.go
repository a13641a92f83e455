package mpssim_test

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"zhianhub/contracts"
	"zhianhub/envelope"
)

// TestFilingAnswers files one message per case, each about a new person,
// and checks the receipt.
func TestFilingAnswers(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name   string
		kind   string
		build  func(p person) []byte
		status string
		code   string
	}{
		{"valid register", contracts.KindRegister, func(p person) []byte {
			return p.payload(t, contracts.KindRegister, 1)
		}, contracts.StatusAccepted, "0000"},
		{"wrong ID check character", contracts.KindRegister, func(p person) []byte {
			var r contracts.Person
			_ = json.Unmarshal(p.payloads[contracts.KindRegister], &r)
			wrong := "0"
			if r.IDNo[17] == '0' {
				wrong = "1"
			}
			return p.payload(t, contracts.KindRegister, 1, "idNo", r.IDNo[:17]+wrong)
		}, contracts.StatusRejected, "E121"},
		{"unknown category", contracts.KindRegister, func(p person) []byte {
			return p.payload(t, contracts.KindRegister, 1, "categories", []string{"0000"})
		}, contracts.StatusRejected, "E122"},
		{"unknown member", contracts.KindRegister, func(p person) []byte {
			return p.payload(t, contracts.KindRegister, 1, "ethnicity", "01")
		}, contracts.StatusRejected, "E120"},
		{"missing basis", contracts.KindRegister, func(p person) []byte {
			return p.payload(t, contracts.KindRegister, 1, "basis", nil)
		}, contracts.StatusRejected, "E120"},
		{"unknown kind", "keyperson.merge", func(p person) []byte {
			return p.payload(t, contracts.KindRegister, 1)
		}, contracts.StatusRejected, "E102"},
		{"change of an unknown person", contracts.KindChange, func(p person) []byte {
			return p.payload(t, contracts.KindChange, 1)
		}, contracts.StatusRejected, "E131"},
		{"control of an unknown person", contracts.KindControl, func(p person) []byte {
			return p.payload(t, contracts.KindControl, 1)
		}, contracts.StatusRejected, "E131"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := h.file(tt.kind, tt.build(h.newPerson()), "")
			r := h.receipt(id, 1)
			if r.Status != tt.status || r.Code != tt.code {
				t.Fatalf("receipt %s %s (%s), want %s %s", r.Status, r.Code, r.Reason, tt.status, tt.code)
			}
			if r.Code != "0000" && r.Reason == "" {
				t.Error("rejection without a reason")
			}
		})
	}
}

// TestDuplicateID: a repeated id gets the original outcome again as
// DUPLICATE, with no second effect.
func TestDuplicateID(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson()
	reg := p.payload(t, contracts.KindRegister, 1)
	id := h.file(contracts.KindRegister, reg, "")
	if r := h.receipt(id, 1); r.Status != contracts.StatusAccepted {
		t.Fatalf("first receipt %+v", r)
	}
	h.file(contracts.KindRegister, reg, id) // the resend: same id, re-sealed
	if r := h.receipt(id, 2); r.Status != contracts.StatusDuplicate || r.Code != "0000" {
		t.Fatalf("second receipt %+v, want DUPLICATE 0000", r)
	}
	// No second effect: seq 2 is still the next one.
	if r := h.receipt(h.file(contracts.KindChange, p.payload(t, contracts.KindChange, 2), ""), 1); r.Code != "0000" {
		t.Fatalf("change after the duplicate: %+v", r)
	}

	q := h.newPerson()
	bad := q.payload(t, contracts.KindRegister, 1, "categories", []string{"0000"})
	id2 := h.file(contracts.KindRegister, bad, "")
	if r := h.receipt(id2, 1); r.Code != "E122" {
		t.Fatalf("first receipt %+v", r)
	}
	h.file(contracts.KindRegister, bad, id2)
	if r := h.receipt(id2, 2); r.Status != contracts.StatusDuplicate || r.Code != "E122" || r.Reason == "" {
		t.Fatalf("second receipt %+v, want DUPLICATE E122 with the reason", r)
	}
}

// TestStateMachine walks one person through the state machine of
// mps-bus.md, seq by seq.
func TestStateMachine(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson()
	var control contracts.Control
	_ = json.Unmarshal(p.payloads[contracts.KindControl], &control)
	taskSign := func(seq int64, taskNo string) []byte {
		b, _ := json.Marshal(contracts.TaskSign{Header: contracts.Header{PersonNo: p.no, Seq: seq}, TaskNo: taskNo,
			Unit: "310115000001", Officer: "123456", SignedAt: time.Now().Truncate(time.Second)})
		return b
	}
	steps := []struct {
		name    string
		kind    string
		payload []byte
		code    string
	}{
		{"change before register", contracts.KindChange, p.payload(t, contracts.KindChange, 1), "E131"},
		{"register", contracts.KindRegister, p.payload(t, contracts.KindRegister, 2), "0000"},
		{"register again", contracts.KindRegister, p.payload(t, contracts.KindRegister, 3), "E130"},
		{"change", contracts.KindChange, p.payload(t, contracts.KindChange, 4), "0000"},
		{"change breaking the ID agreement", contracts.KindChange, p.payload(t, contracts.KindChange, 5, "changes", map[string]any{"birthDate": "1900-01-01"}), "E121"},
		{"control", contracts.KindControl, p.payload(t, contracts.KindControl, 6), "0000"},
		{"control with the same controlNo", contracts.KindControl, p.payload(t, contracts.KindControl, 7), "E130"},
		{"release", contracts.KindRelease, p.payload(t, contracts.KindRelease, 8), "0000"},
		{"release again", contracts.KindRelease, p.payload(t, contracts.KindRelease, 9), "E130"},
		{"release of an unknown control", contracts.KindRelease, p.payload(t, contracts.KindRelease, 10, "controlNo", "31011520260101999999"), "E131"},
		{"task", contracts.KindTask, p.payload(t, contracts.KindTask, 11), "0000"},
		{"sign of an unknown task", contracts.KindTaskSign, taskSign(12, "99999999999999999999"), "E131"},
		{"control before cancel", contracts.KindControl, p.payload(t, contracts.KindControl, 13, "controlNo", control.ControlNo[:14]+"888888"), "0000"},
		{"cancel", contracts.KindCancel, p.payload(t, contracts.KindCancel, 14), "0000"},
		{"release after cancel (closed by it)", contracts.KindRelease, p.payload(t, contracts.KindRelease, 15, "controlNo", control.ControlNo[:14]+"888888"), "E130"},
		{"change after cancel", contracts.KindChange, p.payload(t, contracts.KindChange, 16), "E130"},
		{"cancel again", contracts.KindCancel, p.payload(t, contracts.KindCancel, 17), "E130"},
		{"seq used before, new id", contracts.KindChange, p.payload(t, contracts.KindChange, 2), "E130"},
	}
	for _, st := range steps {
		id := h.file(st.kind, st.payload, "")
		r := h.receipt(id, 1)
		if r.Code != st.code {
			t.Errorf("%s: receipt %s %s (%s), want %s", st.name, r.Status, r.Code, r.Reason, st.code)
		}
	}
}

// TestTaskSign: the hub signs a task the simulator sent down.
func TestTaskSign(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson()
	res, err := h.sim.Send(h.ctx, contracts.KindTask, edit(t, p.payloads[contracts.KindTask], "seq", nil))
	if err != nil {
		t.Fatal(err)
	}
	var task contracts.Task
	_ = json.Unmarshal(p.payloads[contracts.KindTask], &task)
	sign := func(seq int64) []byte {
		b, _ := json.Marshal(contracts.TaskSign{Header: contracts.Header{PersonNo: p.no, Seq: seq}, TaskNo: task.TaskNo,
			Unit: task.AssignedUnit, Officer: "1234567", SignedAt: time.Now().Truncate(time.Second)})
		return b
	}
	file := func(seq int64) contracts.Receipt {
		env, id, err := h.sealer.Seal(envelope.Outgoing{Kind: contracts.KindTaskSign, To: "000000000000", Corr: res.ID, Payload: sign(seq)})
		if err != nil {
			t.Fatal(err)
		}
		h.publishRaw(contracts.KindTaskSign, id, env)
		return h.receipt(id, 1)
	}
	if r := file(1); r.Code != "0000" {
		t.Fatalf("sign: %+v", r)
	}
	if r := file(2); r.Code != "E130" {
		t.Fatalf("second sign: %+v, want E130", r)
	}
}

// TestOutOfOrder: filings ahead of a gap are held, then applied in order
// when the gap is filled.
func TestOutOfOrder(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson()
	id3 := h.file(contracts.KindControl, p.payload(t, contracts.KindControl, 3), "")
	id2 := h.file(contracts.KindChange, p.payload(t, contracts.KindChange, 2), "")
	h.noReceipt(id3, 150*time.Millisecond)
	h.noReceipt(id2, 0)
	if st := h.sim.Stats(); st.Held != 2 {
		t.Errorf("held %d, want 2", st.Held)
	}
	id1 := h.file(contracts.KindRegister, p.payload(t, contracts.KindRegister, 1), "")
	got := h.waitFor("three receipts", 5*time.Second, func(got []hubMsg) bool {
		return len(receiptsFor(got, id1))+len(receiptsFor(got, id2))+len(receiptsFor(got, id3)) == 3
	})
	var order []string
	for _, m := range got {
		if m.err == nil && m.msg.Kind == contracts.KindReceipt {
			order = append(order, m.msg.Corr)
		}
	}
	if len(order) != 3 || order[0] != id1 || order[1] != id2 || order[2] != id3 {
		t.Fatalf("receipt order %v, want %s %s %s", order, id1, id2, id3)
	}
	for _, id := range []string{id1, id2, id3} {
		if r := h.receipt(id, 1); r.Status != contracts.StatusAccepted {
			t.Errorf("%s: %+v", id, r)
		}
	}
}

// TestGapTimeout: a gap not filled within the gap timeout rejects the held
// filing with E140; the sender resends from the gap.
func TestGapTimeout(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson()
	if r := h.receipt(h.file(contracts.KindRegister, p.payload(t, contracts.KindRegister, 1), ""), 1); r.Code != "0000" {
		t.Fatalf("register: %+v", r)
	}
	start := time.Now()
	id3 := h.file(contracts.KindControl, p.payload(t, contracts.KindControl, 3), "")
	r := h.receipt(id3, 1)
	if r.Status != contracts.StatusRejected || r.Code != "E140" {
		t.Fatalf("held filing: %+v, want REJECTED E140", r)
	}
	if d := time.Since(start); d < h.cfg.GapTimeout {
		t.Errorf("E140 after %s, before the gap timeout %s", d, h.cfg.GapTimeout)
	}
	// Resent from the gap: seq 2, then seq 3 with its old id. E140 is not
	// a final outcome (contracts/mps-exchange.md), so the resend is
	// processed afresh rather than answered DUPLICATE.
	if r := h.receipt(h.file(contracts.KindChange, p.payload(t, contracts.KindChange, 2), ""), 1); r.Code != "0000" {
		t.Fatalf("seq 2: %+v", r)
	}
	h.file(contracts.KindControl, p.payload(t, contracts.KindControl, 3), id3)
	if r := h.receipt(id3, 2); r.Status != contracts.StatusAccepted || r.Code != "0000" {
		t.Fatalf("seq 3 resent with its id: %+v", r)
	}
}

// TestUnanswered: envelopes failing steps 1-2 get no receipt; step 3 (a
// stale timestamp) gets REJECTED E113. A receipt is never answered.
func TestUnanswered(t *testing.T) {
	h := newHarness(t)

	env, badSigID, err := h.sealer.Seal(envelope.Outgoing{Kind: contracts.KindRegister, To: "000000000000", Payload: h.newPerson().payload(t, contracts.KindRegister, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h.publishRaw(contracts.KindRegister, badSigID, flipSig(t, env))

	env, strangerID, err := strangerSealer(t, h.hubKeys).Seal(envelope.Outgoing{Kind: contracts.KindRegister, To: "000000000000", Payload: h.newPerson().payload(t, contracts.KindRegister, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h.publishRaw(contracts.KindRegister, strangerID, env)
	h.publishRaw(contracts.KindRegister, "", []byte(`{"v":1`))

	stale, err := envelope.NewSealer(envelope.SealerConfig{Keys: h.hubKeys, Now: func() time.Time { return time.Now().Add(-25 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	env, staleID, err := stale.Seal(envelope.Outgoing{Kind: contracts.KindRegister, To: "000000000000", Payload: h.newPerson().payload(t, contracts.KindRegister, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h.publishRaw(contracts.KindRegister, staleID, env)
	if r := h.receipt(staleID, 1); r.Status != contracts.StatusRejected || r.Code != "E113" {
		t.Fatalf("stale: %+v, want REJECTED E113", r)
	}

	// A receipt for nothing: not answered.
	h.answer("01890000-0000-7000-8000-000000000000", contracts.StatusAccepted, "0000")

	h.noReceipt(badSigID, 300*time.Millisecond)
	h.noReceipt(strangerID, 0)
	st := h.sim.Stats()
	if st.Unanswered["E110"] != 1 || st.Unanswered["E111"] != 1 || st.Unanswered["E100"] != 1 {
		t.Errorf("unanswered %v, want one each of E110, E111, E100", st.Unanswered)
	}
	if st.ReceiptsUnmatched != 1 {
		t.Errorf("unmatched receipts %d, want 1", st.ReceiptsUnmatched)
	}
	if n := st.ReceiptsSent.Total(); n != 1 {
		t.Errorf("%d receipts sent, want 1 (E113)", n)
	}
}

// flipSig flips the last bit of sig.
func flipSig(t *testing.T, env []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(m["sig"].(string))
	sig[len(sig)-1] ^= 1
	m["sig"] = base64.StdEncoding.EncodeToString(sig)
	b, _ := json.Marshal(m)
	return b
}
