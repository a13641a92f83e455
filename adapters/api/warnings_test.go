package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/sheet/sheettest"
	"zhianhub/contracts/events"
	"zhianhub/store/trace"
	"zhianhub/store/warning"
)

var (
	pudongOfficer = user{id: "chen.pudong", unit: "310115000000", roles: "officer"} // 浦东分局
	noWarnings    = user{id: "he.unmask", unit: "310104000000", roles: "unmask"}    // neither warning.* nor lead.*
)

// issueWarning stores a warning as the bus consumer does (the same store
// code in its own transaction), due at deadline.
func issueWarning(t *testing.T, h *harness, id, unit string, level int, deadline time.Time) {
	t.Helper()
	svc, err := warning.New(warning.Config{Pool: h.pool, Units: auth.DemoUnitTree()})
	must(t, err)
	must(t, pgx.BeginFunc(context.Background(), h.pool, func(tx pgx.Tx) error {
		_, err := svc.Issue(context.Background(), tx, uuid.NewString(), "analysis", warning.Issue{WarningID: id, Level: level,
			Category: "0301", Title: "异常聚集预警（测试）" + id[17:], Content: "请核实（测试数据）", Unit: unit,
			Deadline: deadline, IssuedAt: time.Now().Add(-time.Hour)})
		return err
	}))
}

func warningIDs(t *testing.T, r response) string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out []string
	for _, w := range r.json(t)["warnings"].([]any) {
		out = append(out, w.(map[string]any)["warningId"].(string)[17:])
	}
	return fmt.Sprint(out)
}

// TestWarningsAPI: listing and reading within the unit subtree (others 404),
// filters, the lifecycle through the API with its refusals (403 without
// the permission or the responsibility, 409 for a step the state machine
// refuses, 422 for a bad body), the events of the steps, the transfer to
// another unit's inbox and scope, and the audit of each step.
func TestWarningsAPI(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	now := time.Now()
	issueWarning(t, h, "31000020261127000001", "310104000000", 2, now.Add(8*time.Hour))  // 徐汇分局
	issueWarning(t, h, "31000020261127000002", "310104010000", 1, now.Add(-time.Minute)) // 天平路派出所, overdue
	issueWarning(t, h, "31000020261127000003", "310115000000", 3, now.Add(8*time.Hour))  // 浦东分局

	// Scope and filters.
	for _, tc := range []struct {
		u     user
		query string
		want  string
	}{
		{officer, "", "[002 001]"},
		{stationOfficer, "", "[002]"},
		{cityOfficer, "", "[003 002 001]"},
		{pudongOfficer, "", "[003]"},
		{unitless, "", "[]"},
		{cityOfficer, "?overdue=true", "[002]"},
		{cityOfficer, "?overdue=false", "[003 001]"},
		{cityOfficer, "?level=3", "[003]"},
		{cityOfficer, "?state=signed", "[]"},
		{cityOfficer, "?limit=2", "[003 002]"},
		{cityOfficer, "?before=31000020261127000002", "[001]"},
	} {
		if got := warningIDs(t, h.call(tc.u, http.MethodGet, "/api/v1/warnings"+tc.query, nil)); got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.u.id, tc.query, got, tc.want)
		}
	}
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/warnings?state=open", nil), 400, "E100", "state")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/warnings?level=5", nil), 400, "E100", "level")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/warnings/31000020261127000003", nil), 404, "E131", "31000020261127000003")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/warnings/123", nil), 400, "E100", "warningId")
	r := h.call(stationOfficer, http.MethodGet, "/api/v1/warnings/31000020261127000002", nil)
	if m := r.json(t); r.status != 200 || m["overdue"] != true || m["state"] != "issued" || m["unitName"] == "" || len(m["steps"].([]any)) != 1 {
		t.Fatalf("get: %d %s", r.status, r.body)
	}

	// No permission: every endpoint 403.
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/warnings"}, {"GET", "/api/v1/warnings/export"}, {"GET", "/api/v1/warnings/31000020261127000001"},
		{"POST", "/api/v1/warnings/31000020261127000001/sign"}, {"POST", "/api/v1/warnings/31000020261127000001/start"},
		{"POST", "/api/v1/warnings/31000020261127000001/finish"}, {"POST", "/api/v1/warnings/31000020261127000001/transfer"},
	} {
		expectError(t, h.call(noWarnings, c.method, c.path, nil), 403, "E403", "warning.")
	}

	// Lifecycle of 001.
	const w1 = "/api/v1/warnings/31000020261127000001"
	expectError(t, h.call(officer, http.MethodPost, w1+"/start", map[string]string{"officer": "1023456"}), 409, "E130", "已下发", "不能开始处置")
	expectError(t, h.call(officer, http.MethodPost, w1+"/sign", nil), 422, "E120", "officer")
	expectError(t, h.call(officer, http.MethodPost, w1+"/sign", map[string]string{"officer": "1023456", "unit": "310115000000"}), 400, "E100", "unit")
	expectError(t, h.call(pudongOfficer, http.MethodPost, w1+"/sign", map[string]string{"officer": "1023457"}), 404, "E131")
	step := func(u user, action string, body any, wantState string) map[string]any {
		t.Helper()
		r := h.call(u, http.MethodPost, w1+"/"+action, body)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", action, r.status, r.body)
		}
		m := r.json(t)
		if m["state"] != wantState {
			t.Fatalf("%s: state %v, want %s", action, m["state"], wantState)
		}
		return m
	}
	signed := h.call(officer, http.MethodPost, w1+"/sign", map[string]string{"officer": "1023456"})
	if m := signed.json(t); signed.status != http.StatusOK || m["state"] != "signed" || m["signedOfficer"] != "1023456" {
		t.Fatalf("sign: %d %s", signed.status, signed.body)
	}
	// The user action traces to the event it caused: the request id is the
	// event's correlation id.
	signID := signed.header.Get("X-Request-Id")
	tr, err := trace.Of(context.Background(), h.pool, signID)
	if err != nil {
		t.Fatal(err)
	}
	var sawEvent bool
	for _, st := range tr.Steps {
		sawEvent = sawEvent || (st.Source == "outbox" && strings.HasPrefix(st.What, "warning.signed"))
	}
	if !sawEvent {
		t.Errorf("trace of the sign request %s lacks its warning.signed event: %+v", signID, tr.Steps)
	}
	expectError(t, h.call(officer, http.MethodPost, w1+"/sign", map[string]string{"officer": "1023456"}), 409, "E130", "已签收")
	step(officer, "start", map[string]string{"officer": "1023456"}, "in_progress")
	expectError(t, h.call(officer, http.MethodPost, w1+"/finish", map[string]string{"officer": "1023456", "result": "fixed", "detail": "x"}), 422, "E120", "result")
	expectError(t, h.call(officer, http.MethodPost, w1+"/finish", map[string]string{"officer": "1023456", "result": "handled"}), 422, "E120", "detail")
	step(officer, "finish", map[string]string{"officer": "1023456", "result": "handled", "detail": "已现场处置（测试）"}, "done")
	expectError(t, h.call(officer, http.MethodPost, w1+"/transfer", map[string]string{"officer": "1023456", "unit": "310115000000", "reason": "x"}), 409, "E130", "已办结")

	// Transfer of 002 from the station (by its district) to 浦东分局.
	const w2 = "/api/v1/warnings/31000020261127000002"
	expectError(t, h.call(officer, http.MethodPost, w2+"/transfer", map[string]string{"officer": "1023456", "unit": "319999000000", "reason": "x"}), 422, "E120", "不在单位树中")
	m := step2(t, h, officer, w2+"/transfer", map[string]string{"officer": "1023456", "unit": "310115000000", "reason": "发生地属浦东"})
	if m["state"] != "transferred" || m["unit"] != "310115000000" || fmt.Sprint(m["holders"]) != "[310104010000 310115000000]" {
		t.Fatalf("transfer: %v", m)
	}
	if got := warningIDs(t, h.call(pudongOfficer, http.MethodGet, "/api/v1/warnings", nil)); got != "[003 002]" {
		t.Errorf("浦东分局 after the transfer: %s", got)
	}
	var items int
	must(t, h.pool.QueryRow(context.Background(), `SELECT count(*) FROM inbox_item WHERE recipient = '310115000000' AND ref = '31000020261127000002'`).Scan(&items))
	if items != 1 {
		t.Errorf("%d inbox items of the new unit", items)
	}
	expectError(t, h.call(stationOfficer, http.MethodPost, w2+"/sign", map[string]string{"officer": "1023458"}), 403, "E403", "管辖范围")
	if r := h.call(stationOfficer, http.MethodGet, w2, nil); r.status != 200 {
		t.Errorf("the station no longer sees what it handed over: %d", r.status)
	}
	step2(t, h, pudongOfficer, w2+"/sign", map[string]string{"officer": "1023459"})

	// Events of the steps, valid by their contracts.
	reg, err := events.NewRegistry()
	must(t, err)
	rows, err := h.pool.Query(context.Background(), `SELECT kind, payload FROM outbox WHERE exchange = $1 ORDER BY created_at`, events.EventsExchange)
	must(t, err)
	var kinds []string
	for rows.Next() {
		var kind string
		var payload []byte
		must(t, rows.Scan(&kind, &payload))
		if err := reg.Validate(kind, payload); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
		kinds = append(kinds, kind)
	}
	if fmt.Sprint(kinds) != "[warning.signed warning.feedback warning.signed]" {
		t.Errorf("events %v", kinds)
	}
	// Each step audited with the caller.
	waitFor(t, "audit of the steps", func() bool { return len(h.audits("warning.sign")) == 2 && len(h.audits("warning.transfer")) == 1 })
	if a := h.audits("warning.transfer")[0]; a.Actor != officer.id || a.Object != "31000020261127000002" || a.Reason != "发生地属浦东" || a.Detail["toUnit"] != "310115000000" {
		t.Errorf("transfer audit %+v", a)
	}
	if n := len(h.audits("warning.finish")); n != 1 {
		t.Errorf("%d finish audits", n)
	}
}

func step2(t *testing.T, h *harness, u user, path string, body any) map[string]any {
	t.Helper()
	r := h.call(u, http.MethodPost, path, body)
	if r.status != http.StatusOK {
		t.Fatalf("%s: %d %s", path, r.status, r.body)
	}
	return r.json(t)
}

// TestWarningExport: the caller's warnings as .xlsx (read by LibreOffice)
// and .csv, with Chinese headers, filtered and audited.
func TestWarningExport(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	deadline := time.Date(2026, 11, 27, 17, 30, 0, 0, time.FixedZone("CST", 8*3600))
	issueWarning(t, h, "31000020261127000001", "310104000000", 2, deadline)
	issueWarning(t, h, "31000020261127000002", "310115000000", 1, deadline) // out of scope
	header := []string{"预警编号", "级别", "类别", "标题", "责任单位", "责任单位名称", "状态", "下发时间", "时限", "是否超期", "督办时间",
		"签收民警", "签收时间", "处置结果", "办结时间", "来源模块"}

	r := h.call(officer, http.MethodGet, "/api/v1/warnings/export", nil)
	name := attachment(t, r, "xlsx", xlsxType)
	if !strings.HasPrefix(name, "信息预警-") {
		t.Errorf("file name %q", name)
	}
	got := sheettest.Convert(t, "warnings.xlsx", r.body)
	if len(got) != 2 || fmt.Sprint(got[0]) != fmt.Sprint(header) {
		t.Fatalf("LibreOffice reads %q", got)
	}
	row := got[1]
	if row[0] != "31000020261127000001" || row[1] != "橙" || row[4] != "310104000000" || row[6] != "已下发" ||
		row[8] != "2026-11-27 17:30:00" || row[9] != "是" || row[15] != "analysis" || !regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$`).MatchString(row[7]) {
		t.Errorf("row %q", row)
	}

	r = h.call(officer, http.MethodGet, "/api/v1/warnings/export?format=csv&level=2", nil)
	attachment(t, r, "csv", csvType)
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(r.body, []byte("\uFEFF")))).ReadAll()
	must(t, err)
	if len(recs) != 2 || fmt.Sprint(recs[0]) != fmt.Sprint(header) || recs[1][0] != "31000020261127000001" {
		t.Fatalf("CSV %q", recs)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/warnings/export?format=csv&level=1", nil)
	if recs, _ := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(r.body, []byte("\uFEFF")))).ReadAll(); len(recs) != 1 {
		t.Errorf("level 1 (out of scope only): %q", recs)
	}
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/warnings/export?format=pdf", nil), 400, "E100", "format")
	waitFor(t, "export audits", func() bool { return len(h.audits("warning.export")) == 3 })
	if a := h.audits("warning.export")[1]; a.Actor != officer.id || a.Detail["format"] != "csv" || a.Detail["level"] != "2" || a.Detail["rows"] != float64(1) {
		t.Errorf("export audit %+v", a)
	}
}

// TestLeadsAPI: registration (numbered, merged with an earlier lead of the
// same content, audited), the scope of reads and registrations, refusals.
func TestLeadsAPI(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	body := map[string]string{"source": "hotline", "category": "0105", "content": "群众反映某小区夜间有可疑人员聚集（测试数据）", "officer": "1023456"}
	r := h.call(officer, http.MethodPost, "/api/v1/leads", body)
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	first := r.json(t)
	id := first["leadId"].(string)
	if !regexp.MustCompile(`^310104\d{8}9\d{5}$`).MatchString(id) || first["unit"] != "310104000000" || first["mergedInto"] != nil ||
		r.header.Get("Location") != "/api/v1/leads/"+id {
		t.Fatalf("first lead %s (Location %s)", r.body, r.header.Get("Location"))
	}
	dupBody := map[string]string{"source": "patrol", "category": "0105", "content": "群众反映某小区夜间有可疑人员聚集（测试数据）　\n", "officer": "1023457"}
	r = h.call(stationOfficer, http.MethodPost, "/api/v1/leads", dupBody)
	if dup := r.json(t); r.status != http.StatusCreated || dup["mergedInto"] != id || dup["unit"] != "310104010000" {
		t.Fatalf("duplicate: %d %s", r.status, r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/leads/"+id, nil)
	dups, _ := r.json(t)["duplicates"].([]any)
	if r.status != http.StatusOK || len(dups) != 1 || dups[0].(map[string]any)["officer"] != "1023457" {
		t.Fatalf("primary with duplicates: %d %s", r.status, r.body)
	}
	expectError(t, h.call(pudongOfficer, http.MethodGet, "/api/v1/leads/"+id, nil), 404, "E131", id)
	r = h.call(officer, http.MethodGet, "/api/v1/leads?primary=true", nil)
	if leads := r.json(t)["leads"].([]any); r.status != 200 || len(leads) != 1 {
		t.Errorf("primaries: %s", r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/leads", nil)
	if leads := r.json(t)["leads"].([]any); r.status != 200 || len(leads) != 2 {
		t.Errorf("all: %s", r.body)
	}
	if leads := h.call(pudongOfficer, http.MethodGet, "/api/v1/leads", nil).json(t)["leads"].([]any); len(leads) != 0 {
		t.Errorf("浦东分局 sees %d leads of 徐汇", len(leads))
	}

	// Refusals.
	outOfScope := map[string]string{"source": "hotline", "category": "0105", "content": "x", "officer": "1023456", "unit": "310115000000"}
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/leads", outOfScope), 403, "E403", "管辖范围")
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/leads", map[string]string{"source": "rumour", "category": "0105", "content": "x", "officer": "1023456"}), 422, "E120", "source")
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/leads", map[string]string{"source": "hotline", "category": "0105", "content": "x"}), 422, "E120", "officer")
	expectError(t, h.call(officer, http.MethodPost, "/api/v1/leads", map[string]any{"source": "hotline", "name": "张三"}), 400, "E100", "name")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/leads?category=1", nil), 400, "E100", "category")
	for _, c := range []struct{ method, path string }{{"GET", "/api/v1/leads"}, {"POST", "/api/v1/leads"}, {"GET", "/api/v1/leads/" + id}} {
		expectError(t, h.call(noWarnings, c.method, c.path, body), 403, "E403", "lead.")
	}
	waitFor(t, "registrations audited", func() bool { return len(h.audits("lead.register")) == 2 })
	if a := h.audits("lead.register")[1]; a.Actor != stationOfficer.id || a.Detail["mergedInto"] != id {
		t.Errorf("audit %+v", a)
	}
}
