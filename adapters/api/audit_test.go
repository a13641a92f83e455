package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"zhianhub/adapters/api"
	"zhianhub/store/audit"
)

// seedAudit appends entries for the audit query tests: seq 1-6, an hour
// apart from 2026-11-01 08:00 CST (00:00 UTC).
func seedAudit(t *testing.T, h *harness) time.Time {
	t.Helper()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i, e := range []audit.Entry{
		{Actor: "li.officer", Unit: "310104000000", Role: "officer", Action: "person.read", Object: "31010420261127000001", Result: "ok"},
		{Actor: "li.officer", Unit: "310104000000", Role: "officer", Action: "person.unmask", Object: "31010420261127000001", Result: "denied", Reason: "无 unmask 权限"},
		{Actor: "sec.admin", Unit: "310000000000", Role: "secadmin", Action: "role.grant", Object: "user/li.officer", Result: "ok", Reason: "入职"},
		{Actor: "sun.minhang", Unit: "310112000000", Role: "officer", Action: "person.read", Object: "31011220261127000002", Result: "ok"},
		{Actor: "li.officer", Unit: "310104000000", Role: "officer", Action: "filing.submit", Object: "keyperson.change/31010420261127000001", Result: "ok"},
		{Actor: "system", Action: "message.receive", Object: "0190a0b0-0000-7000-8000-000000000001", Result: "E140", Reason: "序号缺口超时"},
	} {
		e.At = t0.Add(time.Duration(i) * time.Hour)
		e.CorrelationID = fmt.Sprintf("req-%d", i+1)
		if _, err := h.audit.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	return t0
}

// auditSeqs returns the seqs of an audit page and its next cursor.
func auditSeqs(t *testing.T, r response) (string, any) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	page := r.json(t)
	seqs := []int64{}
	for _, e := range page["entries"].([]any) {
		seqs = append(seqs, int64(e.(map[string]any)["seq"].(float64)))
	}
	return fmt.Sprint(seqs), page["next"]
}

// TestAuditQuery: the auditor selects audit entries by time range, user,
// unit, object, action and result, paged by seq; each read is audited with
// its criteria; bad parameters are 400 naming the parameter.
func TestAuditQuery(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	seedAudit(t, h)
	q := url.QueryEscape
	for _, tc := range []struct {
		name, query, want string
	}{
		{"all (of that day)", "to=2026-11-02", "[1 2 3 4 5 6]"},
		{"actor", "actor=li.officer", "[1 2 5]"},
		{"unit", "unit=310104000000", "[1 2 5]"},
		{"object", "object=" + q("user/li.officer"), "[3]"},
		{"action", "action=person.read", "[1 4]"},
		{"action prefix", "action=" + q("person.*"), "[1 2 4]"},
		{"result", "result=denied", "[2]"},
		{"from, RFC 3339 (inclusive)", "from=" + q("2026-11-01T10:00:00+08:00") + "&to=2026-11-01", "[3 4 5 6]"},
		{"to, RFC 3339 (exclusive)", "to=" + q("2026-11-01T02:00:00Z"), "[1 2]"},
		{"user and time range", "actor=li.officer&from=" + q("2026-11-01T09:00:00+08:00") + "&to=" + q("2026-11-01T13:00:00+08:00"), "[2 5]"},
		{"dates: the whole days, CST", "from=2026-11-01&to=2026-11-01", "[1 2 3 4 5 6]"},
		{"date before", "to=2026-10-31", "[]"},
		{"everything", "from=2026-11-01&to=2026-11-02&actor=li.officer&unit=310104000000&object=31010420261127000001&action=" + q("person.*") + "&result=ok", "[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := auditSeqs(t, h.call(auditor, http.MethodGet, "/api/v1/audit?"+tc.query, nil))
			if got != tc.want {
				t.Errorf("seqs %s, want %s", got, tc.want)
			}
		})
	}

	// Keyset paging by seq, with criteria.
	var pages []string
	path := "/api/v1/audit?actor=li.officer&limit=2"
	for p := path; ; {
		seqs, next := auditSeqs(t, h.call(auditor, http.MethodGet, p, nil))
		pages = append(pages, seqs)
		if next == nil {
			break
		}
		p = path + "&after=" + next.(string)
	}
	if fmt.Sprint(pages) != "[[1 2] [5]]" {
		t.Fatalf("pages %v", pages)
	}

	// The reads are audited with their criteria.
	reads := h.audits(api.ActionAuditRead)
	if len(reads) != 13+2 {
		t.Fatalf("%d audit.read entries, want 15", len(reads))
	}
	last, rng := reads[len(reads)-1], reads[9]
	if last.Actor != auditor.id || last.Role != "auditor" || last.Detail["actor"] != "li.officer" || last.Detail["after"] != float64(2) ||
		last.Detail["count"] != float64(1) || last.CorrelationID == "" {
		t.Fatalf("audit.read of a page: %+v", last)
	}
	if rng.Detail["from"] != "2026-11-01T09:00:00+08:00" || rng.Detail["to"] != "2026-11-01T13:00:00+08:00" || rng.Detail["count"] != float64(2) {
		t.Fatalf("audit.read of a time range: %+v", rng)
	}

	for _, tc := range []struct{ query, msg string }{
		{"from=yesterday", "from"},
		{"to=2026-13-01", "to"},
		{"from=2026-11-02&to=2026-11-01", "from 须早于 to"},
		{"from=" + q("2026-11-01T10:00:00+08:00") + "&to=" + q("2026-11-01T10:00:00+08:00"), "from 须早于 to"},
		{"unit=3101", "unit"},
		{"actor=" + q("a\tb"), "actor"},
		{"object=" + q(string(make([]byte, 257))), "object"},
		{"result=" + q("\x00"), "result"},
		{"after=-1", "after"},
		{"limit=0", "limit"},
		{"user=li.officer", "未知的查询参数"},
	} {
		expectError(t, h.call(auditor, http.MethodGet, "/api/v1/audit?"+tc.query, nil), 400, "E100", tc.msg)
	}
}

// TestAuditAccess: only the auditor reads the audit log; the system and
// security administrators and officers are refused (403, audited), and
// nobody can change or delete it through the API.
func TestAuditAccess(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	seedAudit(t, h)
	refused := []user{sysAdmin, secAdmin, officer, reviewer}
	for _, u := range refused {
		expectError(t, h.call(u, http.MethodGet, "/api/v1/audit?actor=li.officer", nil), 403, "E403", "audit.read")
	}
	denied := h.audits(api.ActionDenied)
	if len(denied) != len(refused) {
		t.Fatalf("%d authz.denied entries, want %d: %+v", len(denied), len(refused), denied)
	}
	for i, a := range denied {
		if a.Actor != refused[i].id || a.Object != "/api/v1/audit" || a.Result != "denied" || a.Detail["permission"] != "audit.read" {
			t.Errorf("authz.denied %d: %+v", i, a)
		}
	}
	// No method alters the audit log, for anyone.
	for _, u := range []user{auditor, sysAdmin, secAdmin} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			expectError(t, h.call(u, m, "/api/v1/audit", nil), 405, "E405")
		}
	}
	if got, _ := auditSeqs(t, h.call(auditor, http.MethodGet, "/api/v1/audit?to=2026-11-02", nil)); got != "[1 2 3 4 5 6]" {
		t.Fatalf("the log after the attempts: %s", got)
	}
}

// TestAuditVerify: the auditor verifies the chain: intact, the report and
// the last checkpoint; after a DBA rewrites an entry, the first bad entry
// in the report and a security.chain_break event by the auditor, chained
// after the head; every verification audited; no one else may verify.
func TestAuditVerify(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	seedAudit(t, h)

	// 6 seeded entries and the auditor's login (auth.login, before the
	// request is served).
	r := h.call(auditor, http.MethodGet, "/api/v1/audit/verify", nil)
	rep := r.json(t)
	cp, _ := rep["lastCheckpoint"].(map[string]any)
	if r.status != 200 || rep["ok"] != true || rep["entries"] != float64(7) || rep["lastSeq"] != float64(7) || rep["firstBad"] != nil ||
		cp == nil || cp["seq"] == nil || len(cp["hash"].(string)) != 64 || !strings.Contains(rep["message"].(string), "审计链完整") {
		t.Fatalf("intact chain: %d %s", r.status, r.body)
	}
	expectError(t, h.call(auditor, http.MethodGet, "/api/v1/audit/verify?full=1", nil), 400, "E100", "未知的查询参数")

	// A DBA with full rights rewrites entry 2 (lifting the append-only guard).
	tx, err := h.pool.Begin(context.Background())
	must(t, err)
	_, err = tx.Exec(context.Background(), `SET LOCAL zhianhub.audit_archive = 'on'`)
	must(t, err)
	_, err = tx.Exec(context.Background(), `UPDATE audit_entry SET result = 'ok', reason = '' WHERE seq = 2`)
	must(t, err)
	must(t, tx.Commit(context.Background()))

	r = h.call(auditor, http.MethodGet, "/api/v1/audit/verify", nil)
	rep = r.json(t)
	bad, _ := rep["firstBad"].(map[string]any)
	if r.status != 200 || rep["ok"] != false || rep["entries"] != float64(1) || bad == nil || bad["seq"] != float64(2) || bad["kind"] != "modified" ||
		!strings.Contains(rep["message"].(string), "序号 2 处被破坏（记录被篡改）") {
		t.Fatalf("broken chain: %d %s", r.status, r.body)
	}
	ev := h.waitAudits(audit.ActionChainBreak, 1)[0]
	if ev.Actor != auditor.id || ev.Role != "auditor" || ev.Object != "2" || ev.Result != "broken" || ev.CorrelationID == "" ||
		!strings.Contains(ev.Reason, "BROKEN at seq 2 (modified)") || ev.Detail["kind"] != "modified" {
		t.Fatalf("security.chain_break: %+v", ev)
	}
	verifies := h.audits(api.ActionAuditVerify)
	if len(verifies) != 2 || verifies[0].Result != "ok" || verifies[1].Result != "broken" || verifies[0].Actor != auditor.id ||
		verifies[0].Detail["entries"] != float64(7) {
		t.Fatalf("audit.verify entries: %+v", verifies)
	}

	for _, u := range []user{sysAdmin, secAdmin, officer} {
		expectError(t, h.call(u, http.MethodGet, "/api/v1/audit/verify", nil), 403, "E403", "audit.read")
	}
	if n := len(h.audits(audit.ActionChainBreak)); n != 1 {
		t.Fatalf("%d chain-break events after refused verifications, want 1", n)
	}
}
