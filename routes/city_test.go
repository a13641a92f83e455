package routes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"zhianhub/contracts"
	"zhianhub/envelope"
	"zhianhub/routes"
	"zhianhub/store/dispatch"
	"zhianhub/store/exchange"
	"zhianhub/store/inbox"
)

// The city feedback bus runs on the same routes as the Ministry bus,
// configured with the refNo ordering, the city payloads and the dispatch
// store (harnessOpts.city).

func cityOrder(orderNo string, seq int64, title string, units ...string) map[string]any {
	return map[string]any{"orderNo": orderNo, "refNo": orderNo, "seq": seq, "title": title, "content": "请立即处置。",
		"level": 1, "targetUnits": units, "deadline": time.Now().Add(24 * time.Hour).Format(time.RFC3339), "issuedBy": "0012345"}
}

func cityFeedback(t *testing.T, h *harness, orderNo, unit, result string) []byte {
	t.Helper()
	no, err := dispatch.NextFeedbackNo(context.Background(), h.pool, time.Now())
	must(t, err)
	b, _ := json.Marshal(map[string]any{"feedbackNo": no, "refType": "dispatch", "refNo": orderNo, "unit": unit, "officer": "123456",
		"result": result, "detail": "已到场处置。", "attachments": []any{}, "at": time.Now().Format(time.RFC3339)})
	return b
}

func countRows(t *testing.T, h *harness, sql string, args ...any) int {
	t.Helper()
	var n int
	must(t, h.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// TestCityOrderAppliedOnce: a dispatch.order is stored with one row per
// target unit and answered ACCEPTED; the city bureau's resend of the same
// id is answered DUPLICATE 0000 with no second effect; another message for
// the same orderNo (seq 2) is E130.
func TestCityOrderAppliedOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{city: true})
	const orderNo = "31000020261127000001"
	id, _ := h.down(contracts.KindDispatchOrder, newUUID(), cityOrder(orderNo, 1, "外滩巡逻", "310101000000", "310104000000"))
	r := h.receipts(1)[id]
	if r["status"] != "ACCEPTED" || r["code"] != "0000" {
		t.Fatalf("receipt %v", r)
	}
	o, err := dispatch.GetOrder(context.Background(), h.pool, orderNo, []string{"310101000000", "310104000000"})
	must(t, err)
	if o.MessageID != id || o.Title != "外滩巡逻" || len(o.Units) != 2 || o.Units[0].State != dispatch.StateDelivered {
		t.Fatalf("order %+v", o)
	}
	// The sender's resend: re-sealed, same id.
	h.down(contracts.KindDispatchOrder, id, cityOrder(orderNo, 1, "外滩巡逻", "310101000000", "310104000000"))
	if r := h.receipts(1)[id]; r["status"] != "DUPLICATE" || r["code"] != "0000" {
		t.Fatalf("resend receipt %v", r)
	}
	id2, _ := h.down(contracts.KindDispatchOrder, newUUID(), cityOrder(orderNo, 2, "另一标题", "310101000000"))
	if r := h.receipts(1)[id2]; r["status"] != "REJECTED" || r["code"] != "E130" {
		t.Fatalf("second order with the same orderNo: %v", r)
	}
	if n := countRows(t, h, `SELECT count(*) FROM dispatch_unit WHERE order_no = $1`, orderNo); n != 2 {
		t.Errorf("%d unit rows, want 2", n)
	}
	// One reminder in each target unit's inbox, in the order's transaction;
	// none for the resend nor for the refused seq 2.
	for _, u := range []string{"310101000000", "310104000000"} {
		items, err := inbox.List(context.Background(), h.pool, inbox.Viewer{User: "officer." + u, Unit: u}, inbox.Filter{Kind: dispatch.InboxKind})
		must(t, err)
		if len(items) != 1 || items[0].Ref != orderNo || items[0].Title != "调度指令：外滩巡逻" || items[0].Level != 1 || items[0].Read {
			t.Errorf("inbox of %s: %+v", u, items)
		}
	}
	// The resequencer keyed the order by (sender, refNo): person_no holds refNo.
	if n := countRows(t, h, `SELECT next_seq FROM sequence_in WHERE sender = $1 AND person_no = $2`, cityNode, orderNo); n != 3 {
		t.Errorf("next seq %d, want 3", n)
	}
	// An invalid order is REJECTED E120 naming the field; nothing stored.
	bad := cityOrder("31000020261127000002", 1, "x", "310101000000")
	bad["refNo"] = "31000020261127000009"
	id3, _ := h.down(contracts.KindDispatchOrder, newUUID(), bad)
	if r := h.receipts(1)[id3]; r["status"] != "REJECTED" || r["code"] != "E120" {
		t.Fatalf("invalid order: %v", r)
	}
	// feedback.* does not flow from the city bureau to the hub: E102.
	id4, _ := h.down(contracts.KindFeedbackDispatch, newUUID(), map[string]any{"refNo": "31000020261127000005", "seq": 1})
	if r := h.receipts(1)[id4]; r["status"] != "REJECTED" || r["code"] != "E102" {
		t.Fatalf("feedback from the city bureau: %v", r)
	}
	if n := countRows(t, h, `SELECT count(*) FROM dispatch_order`); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}

// TestCityOrderResequenced: seq 2 of a refNo arriving first is held until
// seq 1 comes; they are then applied in seq order (seq 1 creates the
// order, seq 2 conflicts with it).
func TestCityOrderResequenced(t *testing.T) {
	h := newHarness(t, harnessOpts{city: true, gap: time.Minute})
	const orderNo = "31000020261127000003"
	id2, _ := h.down(contracts.KindDispatchOrder, newUUID(), cityOrder(orderNo, 2, "第二条", "310101000000"))
	h.quiet(500 * time.Millisecond) // held: no receipt yet
	id1, _ := h.down(contracts.KindDispatchOrder, newUUID(), cityOrder(orderNo, 1, "第一条", "310101000000"))
	rs := h.receipts(2)
	if rs[id1]["status"] != "ACCEPTED" || rs[id2]["status"] != "REJECTED" || rs[id2]["code"] != "E130" {
		t.Fatalf("receipts %v", rs)
	}
	o, err := dispatch.GetOrder(context.Background(), h.pool, orderNo, []string{"310101000000"})
	must(t, err)
	if o.Title != "第一条" || o.MessageID != id1 {
		t.Errorf("order %+v", o)
	}
}

// TestCityFeedbackFiling: each unit's feedback on an order is filed as
// feedback.dispatch with seq per refNo, sealed to the city bureau and
// resent until its receipt, which the hub correlates; the unit's row
// becomes submitted with the feedback's message id.
func TestCityFeedbackFiling(t *testing.T) {
	h := newHarness(t, harnessOpts{city: true, resend: resendPolicy(300*time.Millisecond, time.Second, time.Hour)})
	ctx := context.Background()
	const orderNo = "31000020261127000004"
	units := []string{"310101000000", "310104000000"}
	id, _ := h.down(contracts.KindDispatchOrder, newUUID(), cityOrder(orderNo, 1, "核查", units...))
	h.receipts(1)

	var filed []routes.FileResult
	for i, u := range units {
		res, err := h.filing.File(ctx, routes.FileRequest{Kind: contracts.KindFeedbackDispatch, Payload: cityFeedback(t, h, orderNo, u, "done"), Actor: "u" + u, Corr: id})
		must(t, err)
		if res.PersonNo != orderNo || res.Seq != int64(i+1) {
			t.Fatalf("filed %+v, want refNo %s seq %d", res, orderNo, i+1)
		}
		filed = append(filed, res)
	}
	// Both arrive at the city bureau, then again (resent: no receipt yet).
	seen := map[string]int{}
	for len(seen) < 2 || seen[filed[0].ID] < 2 {
		r, ok := h.next(10 * time.Second)
		if !ok {
			t.Fatalf("got %v", seen)
		}
		if r.msg.Kind != contracts.KindFeedbackDispatch || r.msg.From != hubNode || r.msg.To != cityNode || r.msg.Corr != id {
			t.Fatalf("unexpected %+v", r.msg.Header)
		}
		var fb contracts.Feedback
		must(t, json.Unmarshal(r.msg.Payload, &fb))
		if fb.RefNo != orderNo || fb.RefType != "dispatch" {
			t.Fatalf("payload %s", r.msg.Payload)
		}
		seen[r.msg.ID]++
	}
	for _, f := range filed {
		receipt, _ := json.Marshal(map[string]string{"ref": f.ID, "status": "ACCEPTED", "code": "0000", "reason": "", "at": time.Now().Format(time.RFC3339)})
		env, rid, err := h.sealer.Seal(envelope.Outgoing{Kind: "receipt", To: hubNode, Corr: f.ID, Payload: receipt})
		must(t, err)
		h.publish("receipt", rid, env)
	}
	waitFor(t, func() bool {
		for _, f := range filed {
			o, err := exchange.Get(ctx, h.pool, f.ID)
			if err != nil || o.State != exchange.OutReceipted || o.ReceiptStatus != "ACCEPTED" {
				return false
			}
		}
		return true
	})
	o, err := dispatch.GetOrder(ctx, h.pool, orderNo, units)
	must(t, err)
	for i, u := range o.Units {
		if u.State != dispatch.StateSubmitted || u.FeedbackID != filed[i].ID || u.Result != "done" {
			t.Errorf("unit %+v", u)
		}
	}
	hist, err := dispatch.History(ctx, h.pool, "dispatch", orderNo)
	must(t, err)
	if len(hist) != 2 {
		t.Errorf("history %+v", hist)
	}

	// Refusals: a final result twice (E130), a unit not targeted (E131), an
	// unknown order (E131), an invalid payload (E120); none is published.
	for _, tc := range []struct {
		payload []byte
		code    string
	}{
		{cityFeedback(t, h, orderNo, units[0], "done"), "E130"},
		{cityFeedback(t, h, orderNo, "310115000000", "done"), "E131"},
		{cityFeedback(t, h, "31000020261127000099", units[0], "done"), "E131"},
		{cityFeedback(t, h, orderNo, units[0], "closed"), "E120"},
	} {
		_, err := h.filing.File(ctx, routes.FileRequest{Kind: contracts.KindFeedbackDispatch, Payload: tc.payload, Actor: "x"})
		if got := envelope.CodeOf(err); string(got) != tc.code {
			t.Errorf("%s: got %v (%s), want %s", tc.payload, err, got, tc.code)
		}
	}
	// Late copies of the two filings may still be queued; nothing else.
	for {
		r, ok := h.next(700 * time.Millisecond)
		if !ok {
			break
		}
		if r.msg.ID != filed[0].ID && r.msg.ID != filed[1].ID {
			t.Fatalf("a refused feedback was published: %+v", r.msg.Header)
		}
	}
	if n := countRows(t, h, `SELECT count(*) FROM feedback`); n != 2 {
		t.Errorf("%d feedback rows, want 2", n)
	}
	// Feedback of another refType is filed with its own seq per refNo.
	w, _ := json.Marshal(map[string]any{"feedbackNo": fmt.Sprintf("310000%s000777", time.Now().Format("20060102")), "refType": "warning", "refNo": "W-2026-0001",
		"unit": units[0], "officer": "123456", "result": "false_alarm", "detail": "误报。", "attachments": []any{}, "at": time.Now().Format(time.RFC3339)})
	res, err := h.filing.File(ctx, routes.FileRequest{Kind: contracts.KindFeedbackWarning, Payload: w, Actor: "x"})
	must(t, err)
	if res.Seq != 1 || res.PersonNo != "W-2026-0001" {
		t.Errorf("warning feedback %+v", res)
	}
}
