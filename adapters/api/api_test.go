package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"zhianhub/adapters/api"
	"zhianhub/adapters/auth"
	"zhianhub/contracts"
	"zhianhub/routes"
	"zhianhub/store/exchange"
	"zhianhub/store/registry"
)

// Test records: a person registered by a Shanghai unit, with fictitious data.
const (
	personP   = "31010420261127000017"
	idNoP     = "310104198605171356"
	nameP     = "张测试"
	controlP  = "31010420261127000003"
	taskUp    = "31010420261127000005" // issued by the hub
	taskDown  = "32010620261127000006" // issued by the Ministry to a Shanghai unit
	personNew = "31010420261127000088"
)

func basis(doc string) map[string]any {
	return map[string]any{"docNo": doc, "approvedBy": "上海市公安局徐汇分局（测试）",
		"approvedAt": "2026-11-26T11:00:00.000+08:00", "legal": "《中华人民共和国禁毒法》有关规定（测试数据）"}
}

func registerPayload(personNo string) map[string]any {
	return map[string]any{
		"personNo": personNo, "idType": "111", "idNo": idNoP, "name": nameP, "sex": "1", "birthDate": "1986-05-17",
		"hukouRegion": "310104", "hukouAddr": "上海市徐汇区测试路1号（虚构地址）",
		"residRegion": "310115", "residAddr": "上海市浦东新区样例路2弄3号（虚构地址）",
		"categories": []string{"0201"}, "basis": basis("沪公徐（测）字〔2026〕第0017号"), "reviewBy": "2027-05-26",
		"unit": "310104000000", "officer": "1023456", "registeredAt": "2026-11-26T15:20:00.000+08:00",
	}
}

func changePayload() map[string]any {
	return map[string]any{"personNo": personP, "changes": map[string]any{"residRegion": "310112", "residAddr": "上海市闵行区示例路88号（虚构地址）"},
		"reason": "居住地变更（测试数据）", "changedAt": "2026-11-27T09:15:00.000+08:00"}
}

func controlPayload() map[string]any {
	return map[string]any{"personNo": personP, "controlNo": controlP, "level": 2, "measures": []string{"verify", "report"},
		"regions": []string{"310112", "310115"}, "validFrom": "2026-11-27T09:00:00.000+08:00", "validTo": "2027-02-25T09:00:00.000+08:00",
		"basis": basis("沪公徐（测）控字〔2026〕第0003号")}
}

func releasePayload() map[string]any {
	return map[string]any{"personNo": personP, "controlNo": controlP, "reason": "布控事由已消除（测试数据）", "releasedAt": "2026-11-27T09:35:00.000+08:00"}
}

func taskPayload(taskNo string) map[string]any {
	return map[string]any{"personNo": personP, "taskNo": taskNo, "items": []string{"identity", "address"},
		"assignedUnit": "310112000000", "deadline": "2026-11-30T18:00:00.000+08:00", "note": "请核实现居住地址（测试数据）"}
}

func cancelPayload() map[string]any {
	return map[string]any{"personNo": personP, "reason": "列管事由消除，撤销登记（测试数据）", "basis": basis("沪公徐（测）销字〔2026〕第0001号"),
		"cancelledAt": "2026-11-27T09:52:00.000+08:00"}
}

// fileResult decodes a 202 answer.
func fileResult(t *testing.T, r response) routes.FileResult {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", r.status, r.body)
	}
	var res routes.FileResult
	must(t, json.Unmarshal(r.body, &res))
	if r.header.Get("Location") != api.Prefix+"/filings/"+res.ID {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	return res
}

// TestFilingAllKinds files the seven kinds through the API (task.sign via
// /tasks/{taskNo}/sign after a downward task) and checks that the Ministry
// receives them in seq order; then receipts, the awaiting list, a filing
// with its exchange history, the person's history and controls, the task
// endpoints and the refusals (422, 409, 404, 400).
func TestFilingAllKinds(t *testing.T) {
	h := newHarness(t, harnessOpts{})

	var filed []routes.FileResult
	file := func(kind string, payload any) routes.FileResult {
		t.Helper()
		res := fileResult(t, h.call(officer, http.MethodPost, "/api/v1/filings/"+kind, payload))
		if res.Kind != kind || res.PersonNo != personP || res.Seq != int64(len(filed)+1) {
			t.Fatalf("filed %+v, want %s seq %d", res, kind, len(filed)+1)
		}
		filed = append(filed, res)
		return res
	}
	reg := registerPayload(personP)
	reg["seq"] = 42 // replaced by the hub
	file(contracts.KindRegister, reg)
	file(contracts.KindChange, changePayload())
	file(contracts.KindControl, controlPayload())
	file(contracts.KindRelease, releasePayload())
	file(contracts.KindTask, taskPayload(taskUp))

	// The Ministry issues a task about the person to a Shanghai unit.
	down := taskPayload(taskDown)
	down["seq"] = 1
	taskMsg := h.down(contracts.KindTask, "", down)
	receipts := h.collect(1, true)
	if receipts[0].payload["ref"] != taskMsg || receipts[0].payload["status"] != "ACCEPTED" {
		t.Fatalf("receipt of the downward task: %v", receipts[0].payload)
	}

	// Tasks received: list, filter, page, one.
	r := h.call(officer, http.MethodGet, "/api/v1/tasks?state=ISSUED", nil)
	tasks := r.json(t)["tasks"].([]any)
	if r.status != 200 || len(tasks) != 2 {
		t.Fatalf("issued tasks: %d %s", r.status, r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/tasks?state=ISSUED&unit=310112000000&limit=1", nil)
	page := r.json(t)
	if len(page["tasks"].([]any)) != 1 || page["next"] != taskUp {
		t.Fatalf("first page: %s", r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/tasks?limit=1&after="+taskUp, nil)
	if got := r.json(t)["tasks"].([]any); len(got) != 1 || got[0].(map[string]any)["taskNo"] != taskDown {
		t.Fatalf("second page: %s", r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/tasks/"+taskDown, nil)
	if task := r.json(t); r.status != 200 || task["issuedMsgId"] != taskMsg || task["state"] != registry.TaskIssued {
		t.Fatalf("task: %d %s", r.status, r.body)
	}

	// Sign it: task.sign with corr = the task's message, unit from the identity.
	res := fileResult(t, h.call(officer, http.MethodPost, "/api/v1/tasks/"+taskDown+"/sign", map[string]any{"officer": "1023456"}))
	if res.Kind != contracts.KindTaskSign || res.Seq != 6 {
		t.Fatalf("sign: %+v", res)
	}
	filed = append(filed, res)
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/tasks/"+taskDown+"/sign", map[string]any{"officer": "1023456"}),
		http.StatusConflict, "E130", "已签收")
	file(contracts.KindCancel, cancelPayload())

	// The Ministry receives the seven filings once each, in seq order.
	got := h.collect(len(filed), false)
	for i, m := range got {
		if m.msg.ID != filed[i].ID || m.msg.Kind != filed[i].Kind || m.payload["seq"] != float64(i+1) || m.payload["personNo"] != personP {
			t.Errorf("message %d at the Ministry: %s %s seq %v, want %s %s seq %d", i, m.msg.Kind, m.msg.ID, m.payload["seq"], filed[i].Kind, filed[i].ID, i+1)
		}
	}
	sign := got[5]
	if sign.msg.Corr != taskMsg || sign.payload["unit"] != officer.unit || sign.payload["taskNo"] != taskDown {
		t.Errorf("task.sign: corr %s payload %v", sign.msg.Corr, sign.payload)
	}
	var submitted []auditRow
	waitFor(t, "filings audited", func() bool {
		submitted = submitted[:0]
		for _, a := range h.audits("filing.submit") {
			if a.Result == "0000" {
				submitted = append(submitted, a)
			}
		}
		return len(submitted) >= 7
	})
	if a := submitted; len(a) != 7 || a[0].Actor != officer.id || a[0].Object != filed[0].ID || a[0].CorrelationID == "" || a[0].CorrelationID == filed[0].ID {
		t.Errorf("filing.submit audit: %+v", a)
	}

	// Receipts for the first five; the last two await theirs.
	for _, f := range filed[:5] {
		h.receipt(f.ID, "ACCEPTED", "0000", "")
	}
	waitFor(t, "receipts correlated", func() bool {
		r := h.call(officer, http.MethodGet, "/api/v1/filings?state=receipted", nil)
		return len(r.json(t)["filings"].([]any)) == 5
	})
	r = h.call(officer, http.MethodGet, "/api/v1/filings?state=sent,pending&personNo="+personP, nil)
	awaiting := r.json(t)["filings"].([]any)
	if len(awaiting) != 2 || awaiting[0].(map[string]any)["id"] != filed[6].ID || awaiting[1].(map[string]any)["id"] != filed[5].ID {
		t.Fatalf("awaiting a receipt: %s", r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/filings?limit=3", nil)
	if len(r.json(t)["filings"].([]any)) != 3 {
		t.Errorf("limit=3: %s", r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/filings/"+filed[0].ID, nil)
	one := r.json(t)
	if one["state"] != exchange.OutReceipted || one["receipt"].(map[string]any)["status"] != "ACCEPTED" || one["actor"] != officer.id {
		t.Fatalf("filing: %s", r.body)
	}
	if states := eventStates(one["events"]); strings.Join(states, ",") != "sent,receipted" {
		t.Errorf("filing events %v", states)
	}
	if strings.Contains(string(r.body), idNoP) || strings.Contains(string(r.body), nameP) {
		t.Error("a filing shows personal data in clear")
	}
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/filings/0190a0b0-0000-7000-8000-00000000000a", nil), 404, "E131")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/filings/"+strings.ToUpper(filed[0].ID), nil), 400, "E100", "id")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/filings?state=done", nil), 400, "E100", "state")

	// History with the exchange history of every message.
	r = h.call(officer, http.MethodGet, "/api/v1/persons/"+personP+"/history", nil)
	hist := r.json(t)["history"].([]any)
	if r.status != 200 || len(hist) != 8 {
		t.Fatalf("history: %d entries\n%s", len(hist), r.body)
	}
	first := hist[0].(map[string]any)
	ex := first["exchange"].(map[string]any)
	if first["kind"] != contracts.KindRegister || first["direction"] != "out" || ex["state"] != "receipted" ||
		ex["filing"].(map[string]any)["receipt"].(map[string]any)["code"] != "0000" {
		t.Errorf("history of the register: %v", first)
	}
	in := hist[5].(map[string]any)
	if in["msgId"] != taskMsg || in["direction"] != "in" || in["exchange"].(map[string]any)["state"] != "applied" {
		t.Errorf("history of the downward task: %v", in)
	}
	if s := eventStates(in["exchange"].(map[string]any)["events"]); len(s) == 0 || s[len(s)-1] != "applied" {
		t.Errorf("downward task events %v", s)
	}
	if strings.Contains(string(r.body), idNoP) || strings.Contains(string(r.body), nameP) {
		t.Error("the history shows personal data in clear")
	}

	// Controls.
	r = h.call(officer, http.MethodGet, "/api/v1/persons/"+personP+"/controls", nil)
	ctrls := r.json(t)["controls"].([]any)
	if len(ctrls) != 1 || ctrls[0].(map[string]any)["controlNo"] != controlP || ctrls[0].(map[string]any)["state"] != registry.ControlReleased {
		t.Fatalf("controls: %s", r.body)
	}
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/persons/"+personNew+"/controls", nil), 404, "E131", personNew)
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/persons/"+personNew+"/history", nil), 404, "E131", personNew)
	reads := h.audits(api.ActionPersonRead)
	if len(reads) != 2 || reads[0].Detail["view"] != "history" || reads[1].Detail["view"] != "controls" || reads[0].Object != personP {
		t.Errorf("person.read audit: %+v", reads)
	}

	// Refusals.
	bad := registerPayload(personNew)
	bad["idNo"] = idNoP[:17] + "X"
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register", bad), 422, "E121", "idNo")
	bad = registerPayload(personNew)
	bad["basis"].(map[string]any)["docNo"] = 17
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register", bad), 422, "E120", "basis.docNo")
	bad = registerPayload(personNew)
	bad["ethnicity"] = "01"
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register", bad), 422, "E120", "ethnicity")
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register", registerPayload(personP)), 409, "E130")
	ch := changePayload()
	ch["personNo"] = personNew
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.change", ch), 404, "E131")
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.change", `{"personNo":`), 400, "E100")
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/filings/receipt", `{}`), 400, "E102", "kind")
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register?corr="+taskMsg, registerPayload(personNew)), 400, "E100", "corr")
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/tasks/"+taskUp+"/sign", `{"officer":"1023456","extra":1}`), 400, "E100", "extra")
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/tasks/"+personNew+"/sign", map[string]any{"officer": "1023456"}), 404, "E131")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks/"+personNew, nil), 404, "E131")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks?state=OPEN", nil), 400, "E100", "state")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks?limit=1001", nil), 400, "E100", "limit")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks?limit=0", nil), 400, "E100", "limit")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks?unit=31", nil), 400, "E100", "unit")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks?ethnicity=1", nil), 400, "E100", "ethnicity")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks?limit=1&limit=2", nil), 400, "E100", "limit")
	// A refused filing consumed no seq: the next one is 8.
	if n, err := exchange.NextOutSeq(context.Background(), h.pool, "000000000000", personP); err != nil || n != 8 {
		t.Errorf("next seq %d %v, want 8", n, err)
	}
}

func eventStates(v any) []string {
	var out []string
	es, _ := v.([]any)
	for _, e := range es {
		out = append(out, e.(map[string]any)["state"].(string))
	}
	return out
}

// TestPersonMasking: masked by default; unmask needs the role and a
// reason and is audited before the data is returned; lookup by ID number.
func TestPersonMasking(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	fileResult(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register", registerPayload(personP)))
	path := "/api/v1/persons/" + personP

	r := h.call(officer, http.MethodGet, path, nil)
	p := r.json(t)
	if r.status != 200 || p["masked"] != true || p["idNo"] != "310104********1356" || p["name"] != "张**" ||
		p["birthDate"] != "1986-**-**" || p["hukouAddr"] != "上海市徐汇区＊＊＊＊" || p["residAddr"] != "上海市浦东新＊＊＊＊" {
		t.Fatalf("masked record: %s", r.body)
	}
	if strings.Contains(string(r.body), idNoP) || strings.Contains(string(r.body), nameP) || strings.Contains(string(r.body), "测试路") {
		t.Fatal("masked record shows personal data")
	}
	read := h.audits(api.ActionPersonRead)
	if len(read) != 1 || read[0].Actor != officer.id || read[0].Unit != officer.unit || read[0].Object != personP || read[0].Result != "ok" ||
		read[0].CorrelationID != r.header.Get("X-Request-Id") {
		t.Fatalf("person.read audit: %+v", read)
	}

	reason := "核查涉毒线索（测试）"
	for _, tc := range []struct {
		name   string
		u      user
		query  string
		status int
		code   string
		msg    string
	}{
		{"no role", officer, "?unmask=true&reason=" + url.QueryEscape(reason), 403, "E403", "unmask"},
		{"no reason", reviewer, "?unmask=true", 400, "E100", "需说明查看理由"},
		{"blank reason", reviewer, "?unmask=true&reason=%20%20", 400, "E100", "需说明查看理由"},
		{"bad unmask", reviewer, "?unmask=yes&reason=x", 400, "E100", "unmask"},
		{"unknown parameter", reviewer, "?religion=1", 400, "E100", "religion"},
		{"long reason", reviewer, "?unmask=true&reason=" + strings.Repeat("理", 201), 400, "E100", "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.call(tc.u, http.MethodGet, path+tc.query, nil)
			expectError(t, r, tc.status, tc.code, tc.msg)
			if strings.Contains(string(r.body), idNoP) {
				t.Error("refusal shows the ID number")
			}
		})
	}
	denied := h.audits(api.ActionPersonUnmask)
	if len(denied) != 3 || denied[0].Result != "denied" || denied[0].Actor != officer.id || denied[1].Actor != reviewer.id {
		t.Fatalf("denied unmasks audited: %+v", denied)
	}

	r = h.call(reviewer, http.MethodGet, path+"?unmask=true&reason="+url.QueryEscape(reason), nil)
	p = r.json(t)
	if r.status != 200 || p["masked"] != false || p["idNo"] != idNoP || p["name"] != nameP || p["birthDate"] != "1986-05-17" ||
		p["hukouAddr"] != "上海市徐汇区测试路1号（虚构地址）" {
		t.Fatalf("unmasked record: %s", r.body)
	}
	unmask := h.audits(api.ActionPersonUnmask)
	last := unmask[len(unmask)-1]
	if len(unmask) != 4 || last.Result != "ok" || last.Actor != reviewer.id || last.Unit != reviewer.unit || last.Role != api.RoleUnmask ||
		last.Reason != reason || last.Object != personP || last.CorrelationID != r.header.Get("X-Request-Id") {
		t.Fatalf("person.unmask audit: %+v", last)
	}

	// Lookup by ID number (blind index), with a reason, masked.
	q := "/api/v1/persons?idNo=%20" + idNoP + "%20&reason=" + url.QueryEscape(reason)
	r = h.call(officer, http.MethodGet, q, nil)
	found := r.json(t)["persons"].([]any)
	if r.status != 200 || len(found) != 1 || found[0].(map[string]any)["personNo"] != personP ||
		found[0].(map[string]any)["idNoMasked"] != "310104********1356" || strings.Contains(string(r.body), idNoP) {
		t.Fatalf("lookup: %s", r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/persons?idNo=110101199003070011&reason=x", nil)
	if len(r.json(t)["persons"].([]any)) != 0 {
		t.Errorf("lookup of another number: %s", r.body)
	}
	search := h.audits(api.ActionPersonSearch)
	if len(search) != 2 || search[0].Object != "310104********1356" || search[0].Reason != reason || strings.Contains(fmt.Sprint(search), idNoP) {
		t.Errorf("person.search audit: %+v", search)
	}
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/persons?idNo="+idNoP, nil), 400, "E100", "需说明查看理由")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/persons?reason=x", nil), 400, "E100", "idNo")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/persons?ethnicity=01&reason=x", nil), 400, "E100", "ethnicity")

	expectError(t, h.call(officer, http.MethodGet, "/api/v1/persons/"+personNew, nil), 404, "E131", personNew)
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/persons/3101", nil), 400, "E100", "personNo")
	expectError(t, h.call(officer, http.MethodDelete, path, nil), 405, "E405")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/people", nil), 404, "E404")
	if n := len(h.audits(api.ActionPersonRead)); n != 1 {
		t.Errorf("%d person.read entries, want 1 (refusals read nothing)", n)
	}
}

// TestIdentity: without the development identity every request is 401 and
// audited; with it, a request without or with malformed headers is too.
func TestIdentity(t *testing.T) {
	t.Run("dev identity off", func(t *testing.T) {
		h := newHarness(t, harnessOpts{noDevIdentity: true})
		for _, path := range []string{"/api/v1/persons/" + personP, "/api/v1/openapi.json", "/api/v1/asyncapi.json", "/api/v1/tasks"} {
			expectError(t, h.call(reviewer, http.MethodGet, path, nil), 401, "E401", "开发身份")
		}
		expectError(t, h.call(reviewer, http.MethodPost, "/api/v1/filings/keyperson.register", registerPayload(personP)), 401, "E401")
		fails := h.audits("auth.failure")
		if len(fails) != 5 || fails[0].Actor != "anonymous" || fails[0].Result != "denied" || fails[0].Detail["claimedUser"] != reviewer.id ||
			fails[0].Object != "/api/v1/persons/"+personP || fails[0].CorrelationID == "" {
			t.Fatalf("auth.failure audit: %+v", fails)
		}
		if n := len(h.audits("filing.submit")); n != 0 {
			t.Errorf("%d filings without identity", n)
		}
	})
	t.Run("dev identity on", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		for _, tc := range []struct {
			name string
			u    user
			msg  string
		}{
			{"no user", nobody, auth.HeaderDevUser},
			{"bad user", user{id: "李警官"}, auth.HeaderDevUser},
			{"bad unit", user{id: "li", unit: "3101"}, auth.HeaderDevUnit},
			{"bad roles", user{id: "li", roles: "Unmask"}, auth.HeaderDevRoles},
		} {
			t.Run(tc.name, func(t *testing.T) {
				expectError(t, h.call(tc.u, http.MethodGet, "/api/v1/tasks", nil), 401, "E401", tc.msg)
			})
		}
		if n := len(h.audits("auth.failure")); n != 4 {
			t.Errorf("%d auth.failure entries, want 4", n)
		}
		if r := h.call(officer, http.MethodGet, "/api/v1/openapi.json", nil); r.status != 200 {
			t.Errorf("openapi.json: %d", r.status)
		}
		if r := h.call(officer, http.MethodGet, "/api/v1/asyncapi.json", nil); r.status != 200 {
			t.Errorf("asyncapi.json: %d", r.status)
		}
	})
}

// TestFlaggedFilings: a filing the Ministry never answers is flagged and
// listed for the operators.
func TestFlaggedFilings(t *testing.T) {
	h := newHarness(t, harnessOpts{resend: routes.ResendPolicy{Initial: 200 * time.Millisecond, Max: 400 * time.Millisecond, GiveUp: 1500 * time.Millisecond}})
	res := fileResult(t, h.call(officer, http.MethodPost, "/api/v1/filings/keyperson.register", registerPayload(personP)))
	waitFor(t, "flagged", func() bool {
		r := h.call(officer, http.MethodGet, "/api/v1/filings?state=flagged", nil)
		fs := r.json(t)["filings"].([]any)
		return len(fs) == 1 && fs[0].(map[string]any)["id"] == res.ID
	})
	r := h.call(officer, http.MethodGet, "/api/v1/filings/"+res.ID, nil)
	f := r.json(t)
	if f["state"] != exchange.OutFlagged || f["attempts"].(float64) < 2 || f["receipt"] != nil {
		t.Fatalf("flagged filing: %s", r.body)
	}
	if s := eventStates(f["events"]); len(s) < 3 || s[0] != "sent" || s[len(s)-1] != "flagged" {
		t.Errorf("events %v", s)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/filings?state=sent", nil)
	if n := len(r.json(t)["filings"].([]any)); n != 0 {
		t.Errorf("%d awaiting after the flag", n)
	}
}
