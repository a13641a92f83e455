package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/sheet/sheettest"
	"zhianhub/contracts"
	"zhianhub/store/exchange"
	"zhianhub/store/registry"
)

// cityOrder stores an order as the city bus's inbound route does (through
// the dispatch store, in a transaction) and returns its message id.
func (h *harness) cityOrder(orderNo, title string, units ...string) string {
	h.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	o := &contracts.Order{OrderNo: orderNo, RefHeader: contracts.RefHeader{RefNo: orderNo, Seq: 1}, Title: title, Content: "请处置。",
		Level: 2, TargetUnits: units, Deadline: time.Date(2026, 11, 28, 20, 0, 0, 0, time.UTC), IssuedBy: "0012345"}
	must(h.t, pgx.BeginFunc(context.Background(), h.pool, func(tx pgx.Tx) error {
		return h.dispatch.Apply(context.Background(), tx, registry.Message{ID: id, Direction: registry.In, Node: cityNode,
			Kind: contracts.KindDispatchOrder, Payload: o, At: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)})
	}))
	return id
}

// TestDispatchOrdersAPI: an officer sees the orders that target a unit of
// their scope (with those units only), reports the unit's feedback, which
// is filed to the city bureau as feedback.dispatch; out-of-scope orders are
// 404, out-of-scope units 403, refusals coded; no permission, no access.
func TestDispatchOrdersAPI(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const a, b = "31000020261127000001", "31000020261127000002"
	idA := h.cityOrder(a, "外滩巡逻", "310104000000", "310101000000")
	h.cityOrder(b, "长宁值守", "310105000000")
	xuhui := user{id: "li.officer", unit: "310104000000", roles: "officer"}
	huangpu := user{id: "zhao.officer", unit: "310101000000", roles: "officer"}

	r := h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders", nil)
	var list struct {
		Orders []struct {
			OrderNo, MessageID, Title string
			Units                     []struct{ Unit, State, FeedbackID, Result string }
		}
	}
	must(t, json.Unmarshal(r.body, &list))
	if r.status != http.StatusOK || len(list.Orders) != 1 || list.Orders[0].OrderNo != a || list.Orders[0].MessageID != idA ||
		len(list.Orders[0].Units) != 1 || list.Orders[0].Units[0].Unit != "310104000000" || list.Orders[0].Units[0].State != "delivered" {
		t.Fatalf("list %d: %s", r.status, r.body)
	}
	if r := h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders/"+a, nil); r.status != http.StatusOK {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	expectError(t, h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders/"+b, nil), http.StatusNotFound, "E131", b)
	expectError(t, h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders/123", nil), http.StatusBadRequest, "E100", "orderNo")
	expectError(t, h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders?state=closed", nil), http.StatusBadRequest, "E100", "state")
	expectError(t, h.call(user{id: "x", unit: "310104000000", roles: "auditor"}, http.MethodGet, "/api/v1/dispatch/orders", nil), http.StatusForbidden, "E403")
	// The city bureau's officer sees every unit of both orders.
	r = h.call(user{id: "chen.city", unit: "310000000000", roles: "officer"}, http.MethodGet, "/api/v1/dispatch/orders", nil)
	must(t, json.Unmarshal(r.body, &list))
	if len(list.Orders) != 2 || len(list.Orders[1].Units) != 2 {
		t.Fatalf("city-wide list: %s", r.body)
	}

	// Feedback.
	fb := map[string]any{"officer": "123456", "result": "done", "detail": "已到场处置完毕。",
		"attachments": []map[string]any{{"name": "现场.jpg", "size": 2048, "sm3": strings.Repeat("ab", 32)}}}
	r = h.call(xuhui, http.MethodPost, "/api/v1/dispatch/orders/"+a+"/feedback", fb)
	if r.status != http.StatusAccepted {
		t.Fatalf("feedback: %d %s", r.status, r.body)
	}
	res := r.json(t)
	if res["kind"] != "feedback.dispatch" || res["refNo"] != a || res["seq"] != 1.0 || res["unit"] != "310104000000" {
		t.Fatalf("feedback result %v", res)
	}
	out, err := exchange.Get(context.Background(), h.pool, res["id"].(string))
	must(t, err)
	if out.ToNode != cityNode || out.RoutingKey != "to.310000000001.feedback.dispatch" || out.Corr != idA || out.PersonNo != a || !out.NeedsReceipt {
		t.Fatalf("outbox row %+v", out)
	}
	// Sealed to the city bureau by the shared relay.
	select {
	case d := <-h.toCity:
		msg, err := h.cityOpen.Open(d.Body)
		must(t, err)
		var p contracts.Feedback
		must(t, json.Unmarshal(msg.Payload, &p))
		if msg.ID != out.ID || msg.Kind != "feedback.dispatch" || p.Unit != "310104000000" || p.RefNo != a || p.Result != "done" || len(p.Attachments) != 1 {
			t.Fatalf("on the bus: %+v %s", msg.Header, msg.Payload)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the feedback was not published on the city bus")
	}
	r = h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders?state=submitted", nil)
	must(t, json.Unmarshal(r.body, &list))
	if len(list.Orders) != 1 || list.Orders[0].Units[0].State != "submitted" || list.Orders[0].Units[0].FeedbackID != out.ID || list.Orders[0].Units[0].Result != "done" {
		t.Fatalf("after the feedback: %s", r.body)
	}
	if audits := h.audits("filing.submit"); len(audits) != 1 || audits[0].Actor != "li.officer" {
		t.Errorf("filing audit %+v", audits)
	}

	// Refusals.
	post := func(u user, orderNo string, body any) response {
		return h.call(u, http.MethodPost, "/api/v1/dispatch/orders/"+orderNo+"/feedback", body)
	}
	expectError(t, post(xuhui, a, fb), http.StatusConflict, "E130", "最终结果")
	expectError(t, post(xuhui, a, map[string]any{"unit": "310101000000", "officer": "123456", "result": "done", "detail": "x"}), http.StatusForbidden, "E403", "超出数据范围")
	expectError(t, post(xuhui, b, fb), http.StatusNotFound, "E131", b)
	expectError(t, post(huangpu, a, map[string]any{"officer": "123456", "result": "closed", "detail": "x"}), http.StatusUnprocessableEntity, "E120", "result")
	expectError(t, post(huangpu, a, map[string]any{"officer": "12", "result": "done", "detail": "x"}), http.StatusUnprocessableEntity, "E120", "officer")
	expectError(t, post(huangpu, a, map[string]any{"officer": "123456", "result": "done", "detail": "x", "extra": 1}), http.StatusBadRequest, "E100")
	expectError(t, post(user{id: "x", unit: "310101000000", roles: "unmask"}, a, fb), http.StatusForbidden, "E403", "feedback.file")
	// in_progress, then a final result: both filed, seq 2 and 3 of the order.
	for i, result := range []string{"in_progress", "done"} {
		r := post(huangpu, a, map[string]any{"officer": "654321", "result": result, "detail": "处置中。"})
		if r.status != http.StatusAccepted || r.json(t)["seq"] != float64(2+i) {
			t.Fatalf("%s: %d %s", result, r.status, r.body)
		}
	}
}

// TestDispatchOrdersExport: the orders of the caller's scope, one row per
// target unit, as .xlsx (opened with LibreOffice: Chinese headers, the
// rows) and CSV; the export is audited.
func TestDispatchOrdersExport(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.cityOrder("31000020261127000001", "外滩巡逻", "310104000000", "310104010000", "310101000000")
	h.cityOrder("31000020261127000002", "长宁值守", "310105000000")
	xuhui := user{id: "li.officer", unit: "310104000000", roles: "officer"}
	header := []string{"调度指令编号", "标题", "内容", "等级", "截止时间", "下达人警号", "接收时间", "目标单位", "目标单位名称", "状态", "反馈结果", "反馈编号", "反馈时间", "反馈消息编号"}
	row := func(unit, name string) []string {
		return []string{"31000020261127000001", "外滩巡逻", "请处置。", "二级", "2026-11-29 04:00:00", "0012345", "2026-11-27 17:00:00", unit, name, "待反馈", "", "", "", ""}
	}
	want := [][]string{header, row("310104000000", "徐汇分局"), row("310104010000", "天平路派出所（示例）")}

	r := h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders/export", nil)
	if name := attachment(t, r, "xlsx", xlsxType); !strings.HasPrefix(name, "调度指令-") {
		t.Errorf("file name %q", name)
	}
	if got := sheettest.Convert(t, "dispatch.xlsx", r.body); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("LibreOffice reads\n%q\nwant\n%q", got, want)
	}
	r = h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders/export?format=csv&state=delivered", nil)
	attachment(t, r, "csv", csvType)
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(r.body, []byte("\uFEFF")))).ReadAll()
	must(t, err)
	if fmt.Sprintf("%q", recs) != fmt.Sprintf("%q", want) {
		t.Fatalf("CSV\n%q\nwant\n%q", recs, want)
	}
	r = h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders/export?format=csv&state=submitted", nil)
	if recs, _ := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(r.body, []byte("\uFEFF")))).ReadAll(); len(recs) != 1 {
		t.Fatalf("nothing submitted yet: %q", recs)
	}
	expectError(t, h.call(xuhui, http.MethodGet, "/api/v1/dispatch/orders/export?format=pdf", nil), http.StatusBadRequest, "E100", "format")
	audits := h.audits("dispatch.export")
	if len(audits) != 3 || audits[0].Actor != "li.officer" || audits[0].Detail["rows"] != 2.0 || audits[1].Detail["state"] != "delivered" {
		t.Fatalf("export audits %+v", audits)
	}
}

// TestDispatchOrderTimesInShanghai: the API writes times in UTC+08:00, as
// every view does.
func TestDispatchOrderTimesInShanghai(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.cityOrder("31000020261127000001", "外滩巡逻", "310104000000")
	r := h.call(user{id: "li", unit: "310104000000", roles: "officer"}, http.MethodGet, "/api/v1/dispatch/orders/31000020261127000001", nil)
	m := r.json(t)
	if m["deadline"] != "2026-11-29T04:00:00+08:00" || m["receivedAt"] != "2026-11-27T17:00:00+08:00" {
		t.Fatalf("times %v %v", m["deadline"], m["receivedAt"])
	}
	if u := m["units"].([]any)[0].(map[string]any); u["deliveredAt"] != "2026-11-27T17:00:00+08:00" {
		t.Fatalf("deliveredAt %v", u["deliveredAt"])
	}
}

// TestDispatchFeedbackWithoutCityBus: without the city bus, orders can be
// read but a feedback is 503 E503.
func TestDispatchFeedbackWithoutCityBus(t *testing.T) {
	h := newHarness(t, harnessOpts{noCityBus: true})
	h.cityOrder("31000020261127000001", "外滩巡逻", "310104000000")
	u := user{id: "li", unit: "310104000000", roles: "officer"}
	if r := h.call(u, http.MethodGet, "/api/v1/dispatch/orders/31000020261127000001", nil); r.status != http.StatusOK {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	expectError(t, h.call(u, http.MethodPost, "/api/v1/dispatch/orders/31000020261127000001/feedback",
		map[string]any{"officer": "123456", "result": "done", "detail": "x"}), http.StatusServiceUnavailable, "E503", "市局反馈总线未启用")
}
