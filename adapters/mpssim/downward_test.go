package mpssim_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"zhianhub/adapters/mpssim"
	"zhianhub/contracts"
	"zhianhub/crypto/keystore"
)

// waitSim polls the simulator until cond holds, or fails.
func waitSim(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
	}
}

// registerWithoutHeader is a register payload without personNo and seq,
// as in a script.
func (h *harness) registerWithoutHeader(t *testing.T) []byte {
	return edit(t, h.newPerson().payloads[contracts.KindRegister], "personNo", nil, "seq", nil)
}

// TestResendUntilReceipt: a message without receipt is resent with the same
// id, re-sealed, until the hub answers.
func TestResendUntilReceipt(t *testing.T) {
	h := newHarness(t)
	res, err := h.sim.Send(h.ctx, contracts.KindRegister, h.registerWithoutHeader(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != 1 || len(res.PersonNo) != 20 || res.Code != "0000" {
		t.Fatalf("send result %+v", res)
	}
	got := h.waitFor("three copies", 5*time.Second, func(got []hubMsg) bool { return len(byID(got, res.ID)) >= 3 })
	copies := byID(got, res.ID)
	for i, c := range copies {
		if c.err != nil {
			t.Fatalf("copy %d: %v", i, c.err)
		}
		if i > 0 && bytes.Equal(c.d.Body, copies[0].d.Body) {
			t.Errorf("copy %d is not re-sealed", i)
		}
		if i > 0 && !c.msg.TS.After(copies[i-1].msg.TS) {
			t.Errorf("copy %d has no fresh ts", i)
		}
		var p contracts.Person
		_ = json.Unmarshal(c.msg.Payload, &p)
		if p.PersonNo != res.PersonNo || p.Seq != 1 {
			t.Errorf("copy %d header %s/%d", i, p.PersonNo, p.Seq)
		}
	}
	h.answer(res.ID, contracts.StatusAccepted, "0000")
	waitSim(t, "the receipt recorded", 5*time.Second, func() bool {
		m, _ := h.sim.Message(res.ID)
		return m.Receipt != nil
	})
	time.Sleep(50 * time.Millisecond) // a resend in flight lands
	h.mu.Lock()
	n := len(byID(h.got, res.ID))
	h.mu.Unlock()
	time.Sleep(1200 * time.Millisecond) // more than the maximum interval
	h.mu.Lock()
	after := len(byID(h.got, res.ID))
	h.mu.Unlock()
	if after != n {
		t.Fatalf("%d copies after the receipt, %d before", after, n)
	}
	st := h.sim.Stats()
	if st.Resends < 2 || st.Sent[contracts.KindRegister] != 1 || st.Pending != 0 || st.ReceiptsReceived.Count("ACCEPTED", "0000") != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestGiveUp: after the give-up time the message is flagged and no longer
// resent.
func TestGiveUp(t *testing.T) {
	h := newHarness(t, func(c *mpssim.Config) {
		c.Resend = mpssim.ResendPolicy{Initial: 50 * time.Millisecond, Max: 100 * time.Millisecond, GiveUp: 400 * time.Millisecond}
	})
	res, err := h.sim.Send(h.ctx, contracts.KindRegister, h.registerWithoutHeader(t))
	if err != nil {
		t.Fatal(err)
	}
	waitSim(t, "the message flagged", 5*time.Second, func() bool {
		m, _ := h.sim.Message(res.ID)
		return m.Flagged
	})
	st := h.sim.Stats()
	if st.Flagged != 1 || st.Pending != 0 {
		t.Fatalf("flagged %d pending %d", st.Flagged, st.Pending)
	}
	time.Sleep(150 * time.Millisecond)
	m1, _ := h.sim.Message(res.ID)
	time.Sleep(300 * time.Millisecond)
	m2, _ := h.sim.Message(res.ID)
	if m2.Attempts != m1.Attempts {
		t.Fatalf("resent after being flagged: %d -> %d attempts", m1.Attempts, m2.Attempts)
	}
}

// TestFaultsEnvelope: each envelope or payload fault gives the hub the code
// it says.
func TestFaultsEnvelope(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		fault mpssim.Fault
		want  string
		probe bool
	}{
		{mpssim.FaultBadSignature, "E110", true},
		{mpssim.FaultUnknownKey, "E111", true},
		{mpssim.FaultStaleTimestamp, "E113", true},
		{mpssim.FaultInvalidPayload, "E121", false},
		{mpssim.FaultInvalidPayload, "E122", false},
		{mpssim.FaultInvalidPayload, "E120", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.fault)+"-"+tt.want, func(t *testing.T) {
			infos, err := h.sim.Inject(h.ctx, tt.fault, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 1 || infos[0].Expect != tt.want || infos[0].Probe != tt.probe {
				t.Fatalf("injected %+v, want expect %s", infos, tt.want)
			}
			id := infos[0].ID
			got := h.waitFor("the faulty message", 5*time.Second, func(got []hubMsg) bool { return len(byID(got, id)) > 0 })
			if code := byID(got, id)[0].code(); string(code) != tt.want {
				t.Fatalf("hub opened it with %s (%v), want %s", code, byID(got, id)[0].err, tt.want)
			}
		})
	}
	// Probes are sent once; the invalid payloads are resent until answered.
	time.Sleep(500 * time.Millisecond)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.got {
		if m.err != nil && string(m.code()) != "E121" && string(m.code()) != "E122" && string(m.code()) != "E120" && len(byID(h.got, m.d.MessageId)) != 1 {
			t.Errorf("probe %s (%s) sent %d times", m.d.MessageId, m.code(), len(byID(h.got, m.d.MessageId)))
		}
	}
	if st := h.sim.Stats(); st.Faults["badSignature"] != 1 || st.Faults["invalidPayload"] != 3 {
		t.Errorf("faults %v", st.Faults)
	}
}

// headerOf reads personNo and seq of a received message.
func headerOf(t *testing.T, m hubMsg) contracts.Header {
	t.Helper()
	var h contracts.Header
	if m.err != nil {
		t.Fatalf("message %s: %v", m.d.MessageId, m.err)
	}
	_ = json.Unmarshal(m.msg.Payload, &h)
	return h
}

// TestFaultsOrder: duplicate, reorder and gap.
func TestFaultsOrder(t *testing.T) {
	h := newHarness(t)
	t.Run("duplicate", func(t *testing.T) {
		infos, err := h.sim.Inject(h.ctx, mpssim.FaultDuplicate, 1)
		if err != nil || len(infos) != 1 {
			t.Fatalf("%v %v", infos, err)
		}
		got := h.waitFor("two copies", 5*time.Second, func(got []hubMsg) bool { return len(byID(got, infos[0].ID)) >= 2 })
		c := byID(got, infos[0].ID)
		if !bytes.Equal(c[0].d.Body, c[1].d.Body) || c[0].err != nil {
			t.Fatalf("copies differ or invalid: %v", c[0].err)
		}
	})
	t.Run("reorder", func(t *testing.T) {
		infos, err := h.sim.Inject(h.ctx, mpssim.FaultReorder, 1)
		if err != nil || len(infos) != 2 || infos[0].Seq != 1 || infos[1].Seq != 2 {
			t.Fatalf("%+v %v", infos, err)
		}
		got := h.waitFor("both", 5*time.Second, func(got []hubMsg) bool {
			return len(byID(got, infos[0].ID)) > 0 && len(byID(got, infos[1].ID)) > 0
		})
		for _, m := range got {
			if m.d.MessageId == infos[0].ID {
				t.Fatal("seq 1 arrived first")
			}
			if m.d.MessageId == infos[1].ID {
				if hd := headerOf(t, m); hd.Seq != 2 || hd.PersonNo != infos[0].PersonNo {
					t.Fatalf("first message %+v", hd)
				}
				break
			}
		}
	})
	t.Run("gap", func(t *testing.T) {
		infos, err := h.sim.Inject(h.ctx, mpssim.FaultGap, 1)
		if err != nil || len(infos) != 3 || !infos[1].Withheld || infos[2].Expect != "E140" {
			t.Fatalf("%+v %v", infos, err)
		}
		h.waitFor("seq 1 and 3", 5*time.Second, func(got []hubMsg) bool {
			return len(byID(got, infos[0].ID)) > 0 && len(byID(got, infos[2].ID)) > 0
		})
		time.Sleep(300 * time.Millisecond)
		h.mu.Lock()
		n := len(byID(h.got, infos[1].ID))
		h.mu.Unlock()
		if n != 0 {
			t.Fatal("the withheld message was sent")
		}
		if st := h.sim.Stats(); st.Withheld != 1 {
			t.Errorf("withheld %d", st.Withheld)
		}
	})
}

// TestFaultGapFill: with GapFill the withheld message follows later.
func TestFaultGapFill(t *testing.T) {
	h := newHarness(t, func(c *mpssim.Config) { c.GapFill = 300 * time.Millisecond })
	start := time.Now()
	infos, err := h.sim.Inject(h.ctx, mpssim.FaultGap, 1)
	if err != nil || len(infos) != 3 || infos[2].Expect != "0000" {
		t.Fatalf("%+v %v", infos, err)
	}
	got := h.waitFor("the filled gap", 5*time.Second, func(got []hubMsg) bool { return len(byID(got, infos[1].ID)) > 0 })
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gap filled after %s", d)
	}
	if hd := headerOf(t, byID(got, infos[1].ID)[0]); hd.Seq != 2 {
		t.Fatalf("filled seq %d", hd.Seq)
	}
}

// TestFaultLostReceipt: a dropped receipt makes the simulator resend; the
// hub's DUPLICATE answer is then recorded.
func TestFaultLostReceipt(t *testing.T) {
	h := newHarness(t)
	if _, err := h.sim.Inject(h.ctx, mpssim.FaultLostReceipt, 1); err != nil {
		t.Fatal(err)
	}
	res, err := h.sim.Send(h.ctx, contracts.KindRegister, h.registerWithoutHeader(t))
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor("the message", 5*time.Second, func(got []hubMsg) bool { return len(byID(got, res.ID)) >= 1 })
	h.answer(res.ID, contracts.StatusAccepted, "0000")
	h.waitFor("the resend", 5*time.Second, func(got []hubMsg) bool { return len(byID(got, res.ID)) >= 2 })
	h.answer(res.ID, contracts.StatusDuplicate, "0000")
	waitSim(t, "the receipt recorded", 5*time.Second, func() bool {
		m, _ := h.sim.Message(res.ID)
		return m.Receipt != nil
	})
	m, _ := h.sim.Message(res.ID)
	st := h.sim.Stats()
	if m.Receipt.Status != contracts.StatusDuplicate || st.ReceiptsDropped != 1 || h.sim.PendingLostReceipts() != 0 {
		t.Fatalf("receipt %+v, dropped %d", m.Receipt, st.ReceiptsDropped)
	}
}

// TestRandomTraffic: the random traffic is valid, numbered per person from
// 1 in order, and follows the story order.
func TestRandomTraffic(t *testing.T) {
	h := newHarness(t, func(c *mpssim.Config) {
		c.Rate = 200
		c.Stories = 3
		c.Resend.Initial = 10 * time.Second // no resends here
		c.Resend.Max = 10 * time.Second
	})
	got := h.waitFor("60 messages", 10*time.Second, func(got []hubMsg) bool { return len(got) >= 60 })
	next := map[string]int64{}
	step := map[string]int{}
	for _, m := range got {
		if m.err != nil {
			t.Fatalf("message %s: %v", m.d.MessageId, m.err)
		}
		hd := headerOf(t, m)
		next[hd.PersonNo]++
		if hd.Seq != next[hd.PersonNo] {
			t.Fatalf("person %s: seq %d, want %d", hd.PersonNo, hd.Seq, next[hd.PersonNo])
		}
		if want := mpssim.StoryKinds[step[hd.PersonNo]]; m.msg.Kind != want {
			t.Fatalf("person %s: %s, want %s", hd.PersonNo, m.msg.Kind, want)
		}
		step[hd.PersonNo]++
	}
}

// TestRandomTrafficFaults: fault probabilities apply to the random traffic.
func TestRandomTrafficFaults(t *testing.T) {
	faults := map[mpssim.Fault]float64{}
	for _, f := range mpssim.AllFaults() {
		faults[f] = 0.3
	}
	h := newHarness(t, func(c *mpssim.Config) {
		c.Rate = 200
		c.Faults = faults
	})
	got := h.waitFor("80 messages", 10*time.Second, func(got []hubMsg) bool { return len(got) >= 80 })
	codes := map[string]int{}
	for _, m := range got {
		codes[string(m.code())]++
	}
	for _, c := range []string{"0000", "E110", "E111", "E113"} {
		if codes[c] == 0 {
			t.Errorf("no message with %s among %v", c, codes)
		}
	}
	st := h.sim.Stats()
	for _, f := range []mpssim.Fault{mpssim.FaultDuplicate, mpssim.FaultReorder, mpssim.FaultGap, mpssim.FaultInvalidPayload} {
		if st.Faults[string(f)] == 0 {
			t.Errorf("fault %s never drawn: %v", f, st.Faults)
		}
	}
}

// TestScript: script lines are sent in order with personNo and seq filled
// in.
func TestScript(t *testing.T) {
	dir := t.TempDir()
	tmp := &harness{t: t}
	g, err := mpssim.NewGenerator(mpssim.GeneratorConfig{Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	tmp.gen = g
	p := tmp.newPerson()
	strip := func(kind string) string {
		return string(edit(t, p.payloads[kind], "personNo", nil, "seq", nil))
	}
	script := "# demo\n" +
		`{"kind":"keyperson.register","payload":` + strip(contracts.KindRegister) + "}\n\n" +
		`{"kind":"keyperson.change","payload":` + strip(contracts.KindChange) + "}\n"
	path := filepath.Join(dir, "script.jsonl")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *mpssim.Config) { c.ScriptPath = path })
	got := h.waitFor("two messages", 5*time.Second, func(got []hubMsg) bool { return len(got) >= 2 })
	h1, h2 := headerOf(t, got[0]), headerOf(t, got[1])
	if got[0].msg.Kind != contracts.KindRegister || got[1].msg.Kind != contracts.KindChange ||
		h1.Seq != 1 || h2.Seq != 2 || h1.PersonNo != h2.PersonNo || len(h1.PersonNo) != 20 {
		t.Fatalf("script sent %s %+v, %s %+v", got[0].msg.Kind, h1, got[1].msg.Kind, h2)
	}
}

func TestParseScript(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		lines int
		ok    bool
	}{
		{"two lines and a comment", "# x\n{\"kind\":\"keyperson.register\",\"payload\":{}}\n\n{\"kind\":\"keyperson.cancel\",\"payload\":{\"reason\":\"r\"}}\n", 2, true},
		{"unknown member", `{"kind":"keyperson.register","payload":{},"to":"x"}`, 0, false},
		{"payload not an object", `{"kind":"keyperson.register","payload":[1]}`, 0, false},
		{"no kind", `{"payload":{}}`, 0, false},
		{"not JSON", `kind=register`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := mpssim.ParseScript([]byte(tt.in))
			if (err == nil) != tt.ok || len(lines) != tt.lines {
				t.Fatalf("ParseScript = %d lines, %v", len(lines), err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	ministry, _ := keyDirs(t)
	noPeers := filepath.Join(t.TempDir(), "k")
	lonely := filepath.Join(t.TempDir(), "lonely")
	if err := keystore.Generate(lonely, "000000000000", nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  mpssim.Config
		ok   bool
	}{
		{"defaults", mpssim.Config{KeyDir: ministry}, true},
		{"no key dir", mpssim.Config{}, false},
		{"bad URL", mpssim.Config{KeyDir: ministry, AMQPURL: "http://x"}, false},
		{"bad hub node", mpssim.Config{KeyDir: ministry, HubNode: "31"}, false},
		{"negative rate", mpssim.Config{KeyDir: ministry, Rate: -1}, false},
		{"unknown fault", mpssim.Config{KeyDir: ministry, Faults: map[mpssim.Fault]float64{"x": 0.1}}, false},
		{"probability above 1", mpssim.Config{KeyDir: ministry, Faults: map[mpssim.Fault]float64{mpssim.FaultGap: 1.5}}, false},
		{"resend max below initial", mpssim.Config{KeyDir: ministry, Resend: mpssim.ResendPolicy{Initial: time.Minute, Max: time.Second}}, false},
		{"negative gap timeout", mpssim.Config{KeyDir: ministry, GapTimeout: -time.Second}, false},
		{"missing key dir", mpssim.Config{KeyDir: noPeers}, false},
		{"no hub keys", mpssim.Config{KeyDir: lonely}, false},
		{"missing script", mpssim.Config{KeyDir: ministry, ScriptPath: filepath.Join(t.TempDir(), "none")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mpssim.New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
