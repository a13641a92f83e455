package mpssim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"zhianhub/adapters/mpssim"
	"zhianhub/contracts"
)

func (h *harness) call(method, path string, body any, out any) int {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+h.sim.ControlAddr()+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			h.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func TestControlAPI(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson()

	var sent mpssim.SendResult
	reg := json.RawMessage(edit(t, p.payloads[contracts.KindRegister], "personNo", nil, "seq", nil))
	if code := h.call("POST", "/send", mpssim.SendRequest{Kind: contracts.KindRegister, Payload: reg}, &sent); code != http.StatusOK {
		t.Fatalf("POST /send: %d", code)
	}
	if sent.Seq != 1 || len(sent.PersonNo) != 20 || sent.Code != "0000" {
		t.Fatalf("sent %+v", sent)
	}
	var sent2 mpssim.SendResult
	change := json.RawMessage(edit(t, p.payloads[contracts.KindChange], "personNo", nil, "seq", nil))
	if code := h.call("POST", "/send", mpssim.SendRequest{Kind: contracts.KindChange, Payload: change}, &sent2); code != http.StatusOK {
		t.Fatalf("POST /send: %d", code)
	}
	if sent2.Seq != 2 || sent2.PersonNo != sent.PersonNo {
		t.Fatalf("second message %+v, want seq 2 of %s", sent2, sent.PersonNo)
	}
	// An invalid payload is sent all the same, with the validator's code.
	var sent3 mpssim.SendResult
	bad := json.RawMessage(edit(t, p.payloads[contracts.KindCancel], "basis", nil))
	if code := h.call("POST", "/send", mpssim.SendRequest{Kind: contracts.KindCancel, Payload: bad}, &sent3); code != http.StatusOK || sent3.Code != "E120" {
		t.Fatalf("POST /send invalid: %d %+v", code, sent3)
	}
	var errBody map[string]string
	if code := h.call("POST", "/send", mpssim.SendRequest{Kind: contracts.KindReceipt, Payload: json.RawMessage(`{}`)}, &errBody); code != http.StatusBadRequest || errBody["error"] == "" {
		t.Fatalf("POST /send receipt: %d %v", code, errBody)
	}

	h.waitFor("the messages", 5*time.Second, func(got []hubMsg) bool { return len(byID(got, sent2.ID)) > 0 })
	var info mpssim.MessageInfo
	if code := h.call("GET", "/messages/"+sent.ID, nil, &info); code != http.StatusOK || info.Kind != contracts.KindRegister || info.Attempts < 1 {
		t.Fatalf("GET /messages: %d %+v", code, info)
	}
	if code := h.call("GET", "/messages/nope", nil, nil); code != http.StatusNotFound {
		t.Fatalf("GET /messages/nope: %d", code)
	}

	var fr mpssim.FaultsResponse
	req := map[string]any{
		"badSignature": map[string]any{"inject": 1},
		"duplicate":    map[string]any{"probability": 0.25},
		"lostReceipt":  map[string]any{"inject": 2},
	}
	if code := h.call("POST", "/faults", req, &fr); code != http.StatusOK {
		t.Fatalf("POST /faults: %d", code)
	}
	if len(fr.Injected) != 1 || fr.Injected[0].Expect != "E110" || fr.Probabilities[mpssim.FaultDuplicate] != 0.25 || fr.PendingLostReceipts != 2 {
		t.Fatalf("faults response %+v", fr)
	}
	fr = mpssim.FaultsResponse{}
	if code := h.call("GET", "/faults", nil, &fr); code != http.StatusOK || fr.Probabilities[mpssim.FaultDuplicate] != 0.25 {
		t.Fatalf("GET /faults: %d %+v", code, fr)
	}
	for _, bad := range []any{
		map[string]any{"nonsense": map[string]any{"inject": 1}},
		map[string]any{"gap": map[string]any{"probability": 2}},
		map[string]any{"gap": map[string]any{"inject": -1}},
		map[string]any{"gap": map[string]any{"often": true}},
	} {
		if code := h.call("POST", "/faults", bad, nil); code != http.StatusBadRequest {
			t.Errorf("POST /faults %v: %d, want 400", bad, code)
		}
	}

	var st mpssim.Stats
	if code := h.call("GET", "/stats", nil, &st); code != http.StatusOK {
		t.Fatalf("GET /stats: %d", code)
	}
	if st.Sent[contracts.KindRegister] != 2 || st.Sent[contracts.KindChange] != 1 || st.Faults["badSignature"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}
