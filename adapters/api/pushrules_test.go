package api_test

import (
	"strconv"
	"testing"
)

// TestPushRules: users manage their own subscription rules within their
// scope; a portal administrator manages a unit's rules in scope; others'
// rules are 404; validation is 400; changes are audited.
func TestPushRules(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	base := "/api/v1/push-rules"
	r := h.call(officer, "POST", base, map[string]any{"eventKind": "warning.issued", "category": "0301", "maxLevel": 2})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	own := r.json(t)
	if own["owner"] != "user" || own["ownerId"] != officer.id || own["unitScope"] != officer.unit || own["enabled"] != true {
		t.Fatalf("rule %v", own)
	}
	ownID := strconv.Itoa(int(own["id"].(float64)))
	// A station below the officer's branch: in scope.
	if r := h.call(officer, "POST", base, map[string]any{"eventKind": "dispatch.order", "unitScope": "310104010000"}); r.status != 201 {
		t.Fatalf("create in scope: %d %s", r.status, r.body)
	}
	// The city bureau's whole-tree rule is stored as "".
	r = h.call(cityReader, "POST", base, map[string]any{"eventKind": "keyperson.control"})
	if r.status != 201 || r.json(t)["unitScope"] != "" {
		t.Fatalf("city rule: %d %s", r.status, r.body)
	}
	r = h.call(xuhuiAdmin, "POST", base, map[string]any{"owner": "unit", "unit": "310104010000", "eventKind": "lead.registered"})
	if r.status != 201 || r.json(t)["owner"] != "unit" || r.json(t)["ownerId"] != "310104010000" {
		t.Fatalf("unit rule: %d %s", r.status, r.body)
	}
	unitID := strconv.Itoa(int(r.json(t)["id"].(float64)))

	if r := h.call(officer, "GET", base, nil); r.status != 200 || len(r.json(t)["rules"].([]any)) != 2 {
		t.Fatalf("own list: %d %s", r.status, r.body)
	}
	if r := h.call(xuhuiAdmin, "GET", base+"?unit=310104010000", nil); r.status != 200 || len(r.json(t)["rules"].([]any)) != 1 {
		t.Fatalf("unit list: %d %s", r.status, r.body)
	}
	if r := h.call(officer, "GET", base+"?limit=1", nil); r.json(t)["next"] != ownID {
		t.Fatalf("paging: %s", r.body)
	}

	for _, tc := range []struct {
		u      user
		body   any
		status int
		code   string
		msg    string
	}{
		{officer, map[string]any{"eventKind": "push.delivered"}, 400, "E100", "eventKind"},
		{officer, map[string]any{"eventKind": "warning.issued", "category": "3"}, 400, "E100", "category"},
		{officer, map[string]any{"eventKind": "warning.issued", "maxLevel": 5}, 400, "E100", "maxLevel"},
		{officer, map[string]any{"eventKind": "warning.issued", "owner": "group"}, 400, "E100", "owner"},
		{officer, map[string]any{"eventKind": "warning.issued", "unit": "310104000000"}, 400, "E100", "unit"},
		{officer, map[string]any{"eventKind": "warning.issued", "ethnicity": "x"}, 400, "E100", "未知字段"},
		{officer, map[string]any{"eventKind": "warning.issued", "unitScope": "310105000000"}, 403, "E403", "超出"},
		{officer, map[string]any{"eventKind": "warning.issued", "owner": "unit"}, 403, "E403", "push.manage"},
		{xuhuiAdmin, map[string]any{"eventKind": "warning.issued", "owner": "unit", "unit": "310105000000"}, 403, "E403", "超出"},
		{auditor, map[string]any{"eventKind": "warning.issued"}, 403, "E403", "portal.use"},
	} {
		expectError(t, h.call(tc.u, "POST", base, tc.body), tc.status, tc.code, tc.msg)
	}
	expectError(t, h.call(officer, "GET", base+"?unit=310104000000", nil), 403, "E403", "push.manage")
	expectError(t, h.call(xuhuiAdmin, "GET", base+"?unit=310105000000", nil), 403, "E403", "超出")
	expectError(t, h.call(officer, "GET", base+"?unit=x", nil), 400, "E100", "unit")

	// Someone else's rule is unknown; the owner and the unit's manager delete.
	expectError(t, h.call(colleague, "DELETE", base+"/"+ownID, nil), 404, "E131")
	expectError(t, h.call(officer, "DELETE", base+"/"+unitID, nil), 404, "E131")
	expectError(t, h.call(changningAdm, "DELETE", base+"/"+unitID, nil), 404, "E131")
	expectError(t, h.call(officer, "DELETE", base+"/x", nil), 400, "E100", "ruleId")
	for _, c := range []struct {
		u  user
		id string
	}{{officer, ownID}, {xuhuiAdmin, unitID}} {
		if r := h.call(c.u, "DELETE", base+"/"+c.id, nil); r.status != 204 {
			t.Fatalf("delete %s: %d %s", c.id, r.status, r.body)
		}
	}
	expectError(t, h.call(officer, "DELETE", base+"/"+ownID, nil), 404, "E131")
	if n, m := len(h.audits("push.rule.create")), len(h.audits("push.rule.delete")); n != 4 || m != 2 {
		t.Errorf("%d creations, %d deletions audited; want 4, 2", n, m)
	}
}
