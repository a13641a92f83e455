package api_test

import (
	"fmt"
	"strconv"
	"testing"

	"zhianhub/adapters/auth"
)

var (
	xuhuiAdmin    = user{id: "xu.portal", unit: "310104000000", roles: "portaladmin"}
	changningAdm  = user{id: "chang.portal", unit: "310105000000", roles: "portaladmin"}
	cityAdmin     = user{id: "city.portal", unit: "310000000000", roles: "portaladmin"}
	stationOff    = user{id: "tian.officer", unit: "310104010000", roles: "officer"}
	cityReader    = user{id: "shi.officer", unit: "310000000000", roles: "officer"}
	noticeOfficer = officer // 徐汇分局
)

func noticeTitles(t *testing.T, h *harness, u user, path string) []string {
	t.Helper()
	r := h.call(u, "GET", path, nil)
	if r.status != 200 {
		t.Fatalf("GET %s as %s: %d %s", path, u.id, r.status, r.body)
	}
	var out []string
	for _, n := range r.json(t)["notices"].([]any) {
		out = append(out, n.(map[string]any)["title"].(string))
	}
	return out
}

func inboxTitles(t *testing.T, h *harness, u user) []string {
	t.Helper()
	r := h.call(u, "GET", "/api/v1/inbox?kind=notice", nil)
	if r.status != 200 {
		t.Fatalf("inbox of %s: %d %s", u.id, r.status, r.body)
	}
	var out []string
	for _, it := range r.json(t)["items"].([]any) {
		out = append(out, it.(map[string]any)["title"].(string))
	}
	return out
}

// TestNotices: a portal administrator drafts, edits, publishes and
// withdraws notices for the units in their scope; publishing reminds every
// unit of the audience's subtrees (limited to the audience roles) and the
// readers see exactly the notices addressed to them; states, scope,
// permissions and validation are enforced; every change is audited.
func TestNotices(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	base := "/api/v1/notices"

	r := h.call(xuhuiAdmin, "POST", base, map[string]any{"title": "消防演练通知", "body": "周五下午三点演练。\n请准时参加。", "level": 3})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	n := r.json(t)
	id := strconv.Itoa(int(n["id"].(float64)))
	if n["state"] != "draft" || fmt.Sprint(n["units"]) != "[310104000000]" || n["unitName"] != "徐汇分局" || r.header.Get("Location") != base+"/"+id {
		t.Fatalf("draft %v", n)
	}
	// A draft is nobody's reading.
	if got := noticeTitles(t, h, noticeOfficer, base); len(got) != 0 {
		t.Fatalf("the officer sees a draft: %v", got)
	}
	expectError(t, h.call(noticeOfficer, "GET", base+"/"+id, nil), 404, "E131")
	r = h.call(xuhuiAdmin, "PUT", base+"/"+id, map[string]any{"title": "消防演练通知（更新）", "body": "周五下午三点演练。", "level": 2})
	if r.status != 200 || r.json(t)["title"] != "消防演练通知（更新）" {
		t.Fatalf("update: %d %s", r.status, r.body)
	}

	r = h.call(xuhuiAdmin, "POST", base+"/"+id+"/publish", nil)
	if r.status != 200 || r.json(t)["delivered"] != 3.0 || r.json(t)["notice"].(map[string]any)["state"] != "published" {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		u    user
		sees bool
	}{
		{noticeOfficer, true}, {stationOff, true}, // 徐汇分局 and a 派出所 below it
		{elsewhere, false}, {cityReader, false}, // 长宁分局; the city bureau is above the audience
	} {
		want := "[]"
		if tc.sees {
			want = "[消防演练通知（更新）]"
		}
		if got := fmt.Sprint(nonNilStrings(noticeTitles(t, h, tc.u, base))); got != want {
			t.Errorf("%s reads notices %s, want %s", tc.u.id, got, want)
		}
		if got := fmt.Sprint(nonNilStrings(inboxTitles(t, h, tc.u))); got != want {
			t.Errorf("%s's reminders %s, want %s", tc.u.id, got, want)
		}
	}
	if r := h.call(stationOff, "GET", base+"/"+id, nil); r.status != 200 || r.json(t)["level"] != 2.0 {
		t.Fatalf("reader's get: %d %s", r.status, r.body)
	}
	expectError(t, h.call(elsewhere, "GET", base+"/"+id, nil), 404, "E131")
	// Published: no edit, no delete, no second publication.
	expectError(t, h.call(xuhuiAdmin, "PUT", base+"/"+id, map[string]any{"title": "x"}), 409, "E409", "已发布")
	expectError(t, h.call(xuhuiAdmin, "DELETE", base+"/"+id, nil), 409, "E409")
	expectError(t, h.call(xuhuiAdmin, "POST", base+"/"+id+"/publish", nil), 409, "E409")
	// Another branch's administrator cannot touch it; nor can an officer.
	expectError(t, h.call(changningAdm, "POST", base+"/"+id+"/withdraw", map[string]any{"reason": "误发"}), 404, "E131")
	expectError(t, h.call(noticeOfficer, "POST", base+"/"+id+"/withdraw", map[string]any{"reason": "误发"}), 403, "E403", "notice.manage")

	// A whole-city notice for the portal administrators only.
	r = h.call(cityAdmin, "POST", base, map[string]any{"title": "门户管理员培训", "roles": []string{auth.RolePortalAdmin}})
	cid := strconv.Itoa(int(r.json(t)["id"].(float64)))
	r = h.call(cityAdmin, "POST", base+"/"+cid+"/publish", nil)
	if r.status != 200 || int(r.json(t)["delivered"].(float64)) != auth.DemoUnitTree().Len() {
		t.Fatalf("city-wide publish: %d %s", r.status, r.body)
	}
	if got := noticeTitles(t, h, changningAdm, base); fmt.Sprint(got) != "[门户管理员培训]" {
		t.Errorf("a portal administrator reads %v", got)
	}
	if got := inboxTitles(t, h, changningAdm); fmt.Sprint(got) != "[门户管理员培训]" {
		t.Errorf("a portal administrator's reminders %v", got)
	}
	if got := inboxTitles(t, h, elsewhere); len(got) != 0 {
		t.Errorf("an officer got the administrators' notice: %v", got)
	}

	// Withdrawal: with a reason; the reminders disappear.
	expectError(t, h.call(xuhuiAdmin, "POST", base+"/"+id+"/withdraw", map[string]any{}), 400, "E100", "reason")
	r = h.call(xuhuiAdmin, "POST", base+"/"+id+"/withdraw", map[string]any{"reason": "演练取消"})
	if r.status != 200 || r.json(t)["state"] != "withdrawn" || r.json(t)["withdrawReason"] != "演练取消" {
		t.Fatalf("withdraw: %d %s", r.status, r.body)
	}
	if got := inboxTitles(t, h, stationOff); len(got) != 0 {
		t.Errorf("reminders after the withdrawal: %v", got)
	}
	if got := noticeTitles(t, h, stationOff, base); len(got) != 0 {
		t.Errorf("notices after the withdrawal: %v", got)
	}
	expectError(t, h.call(xuhuiAdmin, "POST", base+"/"+id+"/withdraw", map[string]any{"reason": "再撤"}), 409, "E409", "已撤回")

	// The manager's list: every state of the units in scope.
	r = h.call(xuhuiAdmin, "POST", base, map[string]any{"title": "草稿", "units": []string{"310104010000"}})
	did := strconv.Itoa(int(r.json(t)["id"].(float64)))
	if got := noticeTitles(t, h, xuhuiAdmin, base+"?all=true"); fmt.Sprint(got) != "[草稿 消防演练通知（更新）]" {
		t.Errorf("manager's list %v (the city's notice is not the branch's to manage)", got)
	}
	if got := noticeTitles(t, h, cityAdmin, base+"?all=true&state=withdrawn"); fmt.Sprint(got) != "[消防演练通知（更新）]" {
		t.Errorf("city manager's withdrawn list %v", got)
	}
	if got := noticeTitles(t, h, xuhuiAdmin, base+"?all=true&limit=1"); len(got) != 1 {
		t.Errorf("limit: %v", got)
	}
	expectError(t, h.call(noticeOfficer, "GET", base+"?all=true", nil), 403, "E403", "notice.manage")
	if r := h.call(xuhuiAdmin, "DELETE", base+"/"+did, nil); r.status != 204 {
		t.Fatalf("delete draft: %d %s", r.status, r.body)
	}
	expectError(t, h.call(xuhuiAdmin, "GET", base+"/"+did, nil), 404, "E131")

	// Validation, scope and permissions.
	for _, tc := range []struct {
		u      user
		body   any
		status int
		code   string
		msg    string
	}{
		{xuhuiAdmin, map[string]any{"title": ""}, 400, "E100", "title"},
		{xuhuiAdmin, map[string]any{"title": "t", "level": 9}, 400, "E100", "level"},
		{xuhuiAdmin, map[string]any{"title": "t", "units": []string{"3101"}}, 400, "E100", "12 位"},
		{xuhuiAdmin, map[string]any{"title": "t", "units": []string{"310104990000"}}, 400, "E100", "不在机构树中"},
		{xuhuiAdmin, map[string]any{"title": "t", "roles": []string{"sysadmin"}}, 400, "E100", "业务角色"},
		{xuhuiAdmin, map[string]any{"title": "t", "extra": 1}, 400, "E100", "未知字段"},
		{xuhuiAdmin, map[string]any{"title": "t", "units": []string{"310105000000"}}, 403, "E403", "超出"},
		{noticeOfficer, map[string]any{"title": "t"}, 403, "E403", "notice.manage"},
		{secAdmin, map[string]any{"title": "t"}, 403, "E403", "notice.manage"},
	} {
		expectError(t, h.call(tc.u, "POST", base, tc.body), tc.status, tc.code, tc.msg)
	}
	expectError(t, h.call(xuhuiAdmin, "GET", base+"/abc", nil), 400, "E100", "noticeId")
	expectError(t, h.call(xuhuiAdmin, "GET", base+"?state=draft", nil), 400, "E100", "all=true")
	expectError(t, h.call(auditor, "GET", base, nil), 403, "E403", "portal.use")

	for action, want := range map[string]int{"notice.create": 3, "notice.update": 1, "notice.publish": 2, "notice.withdraw": 1, "notice.delete": 1} {
		if got := len(h.audits(action)); got != want {
			t.Errorf("%d %s entries, want %d", got, action, want)
		}
	}
	if w := h.audits("notice.withdraw"); w[0].Reason != "演练取消" || w[0].Actor != xuhuiAdmin.id || w[0].Detail["hidden"] != 3.0 {
		t.Errorf("withdraw audit %+v", w[0])
	}
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
