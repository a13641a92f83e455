package api_test

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"zhianhub/adapters/api"
	"zhianhub/adapters/sheet/sheettest"
	"zhianhub/contracts"
)

var auditHeader = []string{"序号", "时间", "用户", "单位", "角色", "操作", "对象", "结果", "原因", "关联编号"}

// attachment checks the headers of a spreadsheet answer and returns the
// file name.
func attachment(t *testing.T, r response, ext, contentType string) string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != contentType {
		t.Errorf("Content-Type %q, want %q", ct, contentType)
	}
	disp, params, err := mime.ParseMediaType(r.header.Get("Content-Disposition"))
	if err != nil || disp != "attachment" || !strings.HasSuffix(params["filename"], "."+ext) {
		t.Fatalf("Content-Disposition %q: %v", r.header.Get("Content-Disposition"), err)
	}
	return params["filename"]
}

const (
	xlsxType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	csvType  = "text/csv; charset=utf-8"
)

// TestAuditExport: the auditor exports the selected audit entries as .xlsx
// (LibreOffice opens it and shows the Chinese headers and the rows) and as
// CSV (UTF-8 with a BOM, the same rows); each export is audited with its
// criteria; more rows than allowed is 400; no one else may export.
func TestAuditExport(t *testing.T) {
	h := newHarness(t, harnessOpts{maxExportRows: 4})
	seedAudit(t, h)
	want := [][]string{auditHeader,
		{"1", "2026-11-01 08:00:00", "li.officer", "310104000000", "officer", "person.read", "31010420261127000001", "ok", "", "req-1"},
		{"2", "2026-11-01 09:00:00", "li.officer", "310104000000", "officer", "person.unmask", "31010420261127000001", "denied", "无 unmask 权限", "req-2"},
		{"5", "2026-11-01 12:00:00", "li.officer", "310104000000", "officer", "filing.submit", "keyperson.change/31010420261127000001", "ok", "", "req-5"},
	}
	path := "/api/v1/audit/export?actor=li.officer&from=2026-11-01&to=2026-11-01"

	r := h.call(auditor, http.MethodGet, path, nil)
	name := attachment(t, r, "xlsx", xlsxType)
	if !strings.HasPrefix(name, "审计日志-") {
		t.Errorf("file name %q", name)
	}
	if got := sheettest.Convert(t, "audit.xlsx", r.body); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("LibreOffice reads\n%q\nwant\n%q", got, want)
	}

	r = h.call(auditor, http.MethodGet, path+"&format=csv", nil)
	attachment(t, r, "csv", csvType)
	if !bytes.HasPrefix(r.body, []byte("\uFEFF序号,时间,")) {
		t.Fatalf("CSV starts %q", r.body[:min(len(r.body), 40)])
	}
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(r.body, []byte("\uFEFF")))).ReadAll()
	must(t, err)
	if fmt.Sprintf("%q", recs) != fmt.Sprintf("%q", want) {
		t.Fatalf("CSV\n%q\nwant\n%q", recs, want)
	}

	// Exactly the limit is exported; one more is refused.
	r = h.call(auditor, http.MethodGet, "/api/v1/audit/export?to=2026-11-01T12:00:00%2B08:00", nil)
	if got := sheettest.Convert(t, "four.xlsx", r.body); len(got) != 1+4 || got[4][0] != "4" {
		t.Fatalf("export of 4 rows: %q", got)
	}
	expectError(t, h.call(auditor, http.MethodGet, "/api/v1/audit/export?to=2026-11-02", nil), 400, "E100", "超过上限 4 条")
	expectError(t, h.call(auditor, http.MethodGet, "/api/v1/audit/export?format=ods", nil), 400, "E100", "format")
	expectError(t, h.call(auditor, http.MethodGet, "/api/v1/audit/export?after=3", nil), 400, "E100", "未知的查询参数")

	exports := h.audits(api.ActionAuditExport)
	if len(exports) != 3 {
		t.Fatalf("%d audit.export entries, want 3 (the refusals export nothing): %+v", len(exports), exports)
	}
	if e := exports[0]; e.Actor != auditor.id || e.Role != "auditor" || e.Detail["actor"] != "li.officer" || e.Detail["format"] != "xlsx" ||
		e.Detail["rows"] != float64(3) || e.Detail["from"] != "2026-11-01T00:00:00+08:00" || e.Detail["to"] != "2026-11-02T00:00:00+08:00" {
		t.Fatalf("audit.export: %+v", e)
	}
	if e := exports[1]; e.Detail["format"] != "csv" || e.Detail["rows"] != float64(3) {
		t.Fatalf("audit.export of the CSV: %+v", e)
	}

	for _, u := range []user{sysAdmin, secAdmin, officer} {
		expectError(t, h.call(u, http.MethodGet, path, nil), 403, "E403", "audit.read")
	}
	if n := len(h.audits(api.ActionAuditExport)); n != 3 {
		t.Fatalf("refused exports audited as exports: %d", n)
	}
}

// TestTaskExport: the task list as .xlsx, opened by LibreOffice: Chinese
// headers, items and states in Chinese, unit names, times in China
// Standard Time; state and unit select as in GET /tasks; CSV likewise; the
// export is audited.
func TestTaskExport(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	fileResult(t, h.call(officer, http.MethodPost, "/api/v1/filings/"+contracts.KindRegister, registerPayload(personP)))
	fileResult(t, h.call(officer, http.MethodPost, "/api/v1/filings/"+contracts.KindTask, taskPayload(taskUp)))
	down := taskPayload(taskDown)
	down["seq"], down["items"], down["assignedUnit"], down["note"] = 1, []string{"contact", "status"}, "310104000000", "核查联系方式（测试数据）"
	h.down(contracts.KindTask, "", down)
	h.collect(1, true)
	fileResult(t, h.call(officer, http.MethodPost, "/api/v1/tasks/"+taskDown+"/sign", map[string]any{"officer": "1023456"}))
	var views []map[string]any
	for _, no := range []string{taskUp, taskDown} {
		views = append(views, h.call(officer, http.MethodGet, "/api/v1/tasks/"+no, nil).json(t))
	}

	r := h.call(officer, http.MethodGet, "/api/v1/tasks/export", nil)
	if name := attachment(t, r, "xlsx", xlsxType); !strings.HasPrefix(name, "核实任务-") {
		t.Errorf("file name %q", name)
	}
	got := sheettest.Convert(t, "tasks.xlsx", r.body)
	header := []string{"任务编号", "重点人员编号", "核查事项", "指派单位", "指派单位名称", "截止时间", "状态", "备注", "签收单位", "签收民警",
		"签收时间", "下发消息编号", "签收消息编号", "创建时间", "更新时间"}
	if len(got) != 3 || fmt.Sprint(got[0]) != fmt.Sprint(header) {
		t.Fatalf("LibreOffice reads %q", got)
	}
	stamp := regexp.MustCompile(`^2\d{3}-\d\d-\d\d \d\d:\d\d:\d\d$`)
	up, dn := got[1], got[2]
	wantUp := []string{taskUp, personP, "身份信息、居住地址", "310112000000", "闵行分局", "2026-11-30 18:00:00", "待签收", "请核实现居住地址（测试数据）",
		"", "", "", views[0]["issuedMsgId"].(string), ""}
	if fmt.Sprintf("%q", up[:13]) != fmt.Sprintf("%q", wantUp) || !stamp.MatchString(up[13]) || !stamp.MatchString(up[14]) {
		t.Errorf("the hub's task:\n%q\nwant\n%q", up, wantUp)
	}
	wantDown := []string{taskDown, personP, "联系方式、现实状况", "310104000000", "徐汇分局", "2026-11-30 18:00:00", "已签收", "核查联系方式（测试数据）",
		officer.unit, "1023456", "", views[1]["issuedMsgId"].(string), views[1]["signMsgId"].(string)}
	if fmt.Sprintf("%q", append(dn[:10:10], dn[11:13]...)) != fmt.Sprintf("%q", append(wantDown[:10:10], wantDown[11:]...)) || !stamp.MatchString(dn[10]) {
		t.Errorf("the Ministry's task, signed:\n%q\nwant\n%q", dn, wantDown)
	}

	for _, tc := range []struct {
		query string
		want  []string // task numbers
	}{
		{"state=ISSUED&format=csv", []string{taskUp}},
		{"state=SIGNED&format=csv", []string{taskDown}},
		{"unit=310104000000&format=csv", []string{taskDown}},
		{"unit=310000000000", nil},
	} {
		r := h.call(officer, http.MethodGet, "/api/v1/tasks/export?"+tc.query, nil)
		var recs [][]string
		if strings.Contains(tc.query, "csv") {
			attachment(t, r, "csv", csvType)
			var err error
			recs, err = csv.NewReader(bytes.NewReader(bytes.TrimPrefix(r.body, []byte("\uFEFF")))).ReadAll()
			must(t, err)
		} else {
			recs = sheettest.Convert(t, "tasks.xlsx", r.body)
		}
		var nos []string
		for _, rec := range recs[1:] {
			nos = append(nos, rec[0])
		}
		if fmt.Sprint(recs[0]) != fmt.Sprint(header) || fmt.Sprint(nos) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %q", tc.query, recs)
		}
	}
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks/export?state=DONE", nil), 400, "E100", "state")
	expectError(t, h.call(officer, http.MethodGet, "/api/v1/tasks/export?limit=5", nil), 400, "E100", "未知的查询参数")
	expectError(t, h.call(auditor, http.MethodGet, "/api/v1/tasks/export", nil), 403, "E403", "task.read")

	exports := h.audits(api.ActionTaskExport)
	if len(exports) != 5 || exports[0].Actor != officer.id || exports[0].Detail["rows"] != float64(2) || exports[0].Detail["format"] != "xlsx" ||
		exports[2].Detail["state"] != "SIGNED" || exports[3].Detail["unit"] != "310104000000" || exports[4].Detail["rows"] != float64(0) {
		t.Fatalf("task.export entries: %+v", exports)
	}
}
