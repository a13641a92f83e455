package api_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"zhianhub/adapters/api"
	"zhianhub/adapters/auth"
	"zhianhub/store/logs"
)

// recordField collects one field of the records of a log page.
func recordField(t *testing.T, r response, field string) []string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out []string
	for _, rec := range r.json(t)["records"].([]any) {
		out = append(out, fmt.Sprint(rec.(map[string]any)[field]))
	}
	return out
}

// TestOperationLog: every call of an identified user lands in the
// operation log under its request id, with who, what, status and duration;
// the auditor selects it by user, level, method, route, unit and request
// id; each read is audited; nobody else may read it.
func TestOperationLog(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ok := h.call(officer, http.MethodGet, "/api/v1/tasks", nil)
	missing := h.call(officer, http.MethodGet, "/api/v1/persons/31010420261127999999", nil)
	h.call(minhangOfficer, http.MethodGet, "/api/v1/me", nil)
	denied := h.call(officer, http.MethodGet, "/api/v1/logs/operations", nil)
	expectError(t, denied, http.StatusForbidden, "E403")
	expectError(t, h.call(sysAdmin, http.MethodGet, "/api/v1/logs/operations", nil), http.StatusForbidden, "E403")
	expectError(t, h.call(secAdmin, http.MethodGet, "/api/v1/logs/operations", nil), http.StatusForbidden, "E403")
	h.call(nobody, http.MethodGet, "/api/v1/tasks", nil) // 401: not in the operation log

	waitFor(t, "6 operation records", func() bool {
		recs, err := logs.Operation(context.Background(), h.pool, logs.OperationFilter{})
		return err == nil && len(recs) >= 6
	})
	reqOK, reqMissing := ok.header.Get("X-Request-Id"), missing.header.Get("X-Request-Id")
	q := url.QueryEscape
	for _, tc := range []struct {
		name, query, field string
		want               string
	}{
		{"everything newest first, 401 left out", "", "status", "[403 403 403 200 404 200]"},
		{"user", "user=li.officer", "route", "[/api/v1/logs/operations /api/v1/persons/{personNo} /api/v1/tasks]"},
		{"warn: 4xx and 5xx", "level=warn&user=li.officer", "status", "[403 404]"},
		{"error: 5xx", "level=error", "status", "[]"},
		{"route pattern", "route=" + q("/api/v1/persons/{personNo}"), "path", "[/api/v1/persons/31010420261127999999]"},
		{"request id", "requestId=" + q(reqOK), "requestId", "[" + reqOK + "]"},
		{"unit", "unit=310112000000", "user", "[sun.minhang]"},
		{"unit subtree", "unit=310000000000&subtree=true&method=GET&level=info&user=li.officer&requestId=" + q(reqMissing), "status", "[404]"},
		{"time range", "from=2000-01-01&to=2000-01-02", "id", "[]"},
		{"limit: the newest is the auditor's own read before", "limit=1", "user", "[aud.itor]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fmt.Sprint(recordField(t, h.call(auditor, http.MethodGet, "/api/v1/logs/operations?"+tc.query, nil), tc.field))
			if tc.want == "[]" && got == "[]" {
				return
			}
			if got != tc.want {
				t.Errorf("%s = %s, want %s", tc.field, got, tc.want)
			}
		})
	}
	// The record has the identity and the call.
	page := h.call(auditor, http.MethodGet, "/api/v1/logs/operations?requestId="+q(reqOK), nil).json(t)
	rec := page["records"].([]any)[0].(map[string]any)
	if rec["user"] != officer.id || rec["unit"] != officer.unit || rec["roles"] != "officer" || rec["authMethod"] != "dev" ||
		rec["method"] != "GET" || rec["level"] != "info" || rec["durationMs"].(float64) <= 0 {
		t.Errorf("record %v", rec)
	}
	// Paging newest first with before.
	first := h.call(auditor, http.MethodGet, "/api/v1/logs/operations?limit=2", nil).json(t)
	next, _ := first["next"].(string)
	if next == "" {
		t.Fatalf("a full page has no next: %v", first)
	}
	second := recordField(t, h.call(auditor, http.MethodGet, "/api/v1/logs/operations?limit=2&before="+next, nil), "id")
	cursor, _ := strconv.ParseInt(next, 10, 64)
	if len(second) != 2 {
		t.Fatalf("second page %v", second)
	}
	for _, id := range second {
		if n, _ := strconv.ParseInt(id, 10, 64); n >= cursor || n <= 0 {
			t.Errorf("second page %v: id %s not below the cursor %s", second, id, next)
		}
	}
	// Every read by the auditor is audited.
	// (10 of the table, 3 above; refusals below are not reads.)
	h.waitAudits(api.ActionOperationLogRead, 13)
	for _, tc := range []struct{ query, msg string }{
		{"level=fatal", "level"},
		{"method=TRACE", "method"},
		{"unit=3101", "unit"},
		{"subtree=true", "subtree"},
		{"unit=999999999999&subtree=true", "机构树"},
		{"before=0", "before"},
		{"from=2026-11-02&to=2026-11-01", "from"},
		{"sort=at", "未知的查询参数"},
	} {
		expectError(t, h.call(auditor, http.MethodGet, "/api/v1/logs/operations?"+tc.query, nil), http.StatusBadRequest, "E100", tc.msg)
	}
}

// TestSystemLog: the system administrator and the auditor read the hub's events by level, component,
// request id, message id, text and time; the others are refused.
func TestSystemLog(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	t0 := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	must(t, logs.Insert(context.Background(), h.pool, []logs.SystemRecord{
		{At: t0, Level: slog.LevelInfo, Msg: "zhianhub ready", Component: "hub", Attrs: map[string]any{"http": "127.0.0.1:8080"}},
		{At: t0.Add(time.Minute), Level: slog.LevelWarn, Msg: "publish failed; retrying", Component: "relay", MessageID: "0193a0b4-6c2e-7d41-8a55-2f3c4d5e6f70"},
		{At: t0.Add(2 * time.Minute), Level: slog.LevelError, Msg: "api request failed", Component: "api", RequestID: "req-9"},
		{At: t0.Add(3 * time.Minute), Level: slog.LevelDebug, Msg: "debug detail", Component: "relay"},
	}, nil))
	q := url.QueryEscape
	for _, tc := range []struct{ name, query, want string }{
		{"all, newest first", "", "[debug detail api request failed publish failed; retrying zhianhub ready]"},
		{"warn and up", "level=warn", "[api request failed publish failed; retrying]"},
		{"info and up", "level=info", "[api request failed publish failed; retrying zhianhub ready]"},
		{"component", "component=relay&level=info", "[publish failed; retrying]"},
		{"request id", "requestId=req-9", "[api request failed]"},
		{"message id", "messageId=0193a0b4-6c2e-7d41-8a55-2f3c4d5e6f70", "[publish failed; retrying]"},
		{"text", "q=READY", "[zhianhub ready]"},
		{"time", "from=" + q("2026-11-27T09:01:00+08:00") + "&to=" + q("2026-11-27T09:02:00+08:00"), "[publish failed; retrying]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := recordField(t, h.call(sysAdmin, http.MethodGet, "/api/v1/logs/system?"+tc.query, nil), "msg")
			if fmt.Sprint(got) != tc.want {
				t.Errorf("got %v, want %s", got, tc.want)
			}
		})
	}
	if got := recordField(t, h.call(auditor, http.MethodGet, "/api/v1/logs/system?level=error", nil), "level"); fmt.Sprint(got) != "[error]" {
		t.Errorf("auditor, level=error: %v", got)
	}
	for _, u := range []user{officer, secAdmin} {
		expectError(t, h.call(u, http.MethodGet, "/api/v1/logs/system", nil), http.StatusForbidden, "E403")
	}
	h.waitAudits(api.ActionSystemLogRead, 9)
}

// TestLoginAudited: the first use of a credential is audited as a login
// (auth.login: user, unit, roles, method, the credential's name) before the
// request is served; later uses of it are not.
func TestLoginAudited(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for range 3 {
		h.call(officer, http.MethodGet, "/api/v1/me", nil)
	}
	h.call(reviewer, http.MethodGet, "/api/v1/tasks", nil)
	logins := h.waitAudits(auth.ActionLogin, 2)
	byUser := map[string]auditRow{}
	for _, l := range logins {
		byUser[l.Actor] = l
	}
	if l := byUser[officer.id]; l.Unit != officer.unit || l.Role != "officer" || l.Object != "dev:"+officer.id || l.Result != "ok" ||
		l.Detail["method"] != auth.MethodDev || l.CorrelationID == "" {
		t.Errorf("officer's login %+v", l)
	}
	if _, ok := byUser[reviewer.id]; !ok {
		t.Errorf("no login of %s: %+v", reviewer.id, logins)
	}
}
