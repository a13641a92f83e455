package auth_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zhianhub/adapters/auth"
)

func TestPermissions(t *testing.T) {
	for _, tc := range []struct {
		roles string
		want  string
	}{
		{"", "[]"},
		{"officer", "[dispatch.read feedback.file filing.read filing.submit lead.read lead.register person.read portal.use task.read warning.handle warning.read]"},
		{"officer,unmask", "[dispatch.read feedback.file filing.read filing.submit lead.read lead.register person.read person.unmask portal.use task.read warning.handle warning.read]"},
		{"portaladmin", "[notice.manage portal.use push.manage]"},
		{"sysadmin,portaladmin", "[account.manage log.system.read]"},
		{"unmask", "[person.unmask]"},
		{"sysadmin", "[account.manage log.system.read]"},
		{"secadmin", "[binding.manage role.grant]"},
		{"auditor", "[audit.read log.operation.read log.system.read]"},
		{"secadmin,officer,unmask", "[binding.manage role.grant]"}, // an administrator's account does no business
		{"secadmin,auditor", "[]"},                                 // two administrators' roles: neither
		{"officer,nosuchrole", "[dispatch.read feedback.file filing.read filing.submit lead.read lead.register person.read portal.use task.read warning.handle warning.read]"},
	} {
		id := auth.Identity{User: "u"}
		if tc.roles != "" {
			id.Roles = strings.Split(tc.roles, ",")
		}
		if got := fmt.Sprint(id.Permissions()); got != tc.want {
			t.Errorf("roles %q: permissions %s, want %s", tc.roles, got, tc.want)
		}
	}
	if !(auth.Identity{Roles: []string{"auditor"}}).Can(auth.PermAuditRead) || (auth.Identity{Roles: []string{"auditor"}}).Can(auth.PermRoleGrant) {
		t.Error("Can disagrees with Permissions")
	}
}

func TestUnitTree(t *testing.T) {
	tree := auth.DemoUnitTree()
	for _, tc := range []struct {
		user, record string
		want         bool
	}{
		{"310000000000", "310104010000", true},  // 市局 sees a 派出所
		{"310000000000", "310104000000", true},  // and a 分局
		{"310104000000", "310104010000", true},  // 分局 sees its 派出所
		{"310104000000", "310104000000", true},  // and itself
		{"310104010000", "310104000000", false}, // a 派出所 does not see its 分局
		{"310104010000", "310104020000", false}, // nor a sibling
		{"310112000000", "310104000000", false}, // 分局 beside
		{"310112000000", "310112010000", true},
		{"", "310104000000", false},             // no unit, no scope
		{"320000000000", "320000000000", true},  // a unit outside the tree: itself only
		{"320000000000", "310104000000", false}, //
		{"310000000000", "320100000000", false}, // a record outside the tree: nobody above it
		{"310000000000", "", false},
	} {
		if got := tree.InScope(tc.user, tc.record); got != tc.want {
			t.Errorf("InScope(%s, %s) = %v, want %v", tc.user, tc.record, got, tc.want)
		}
	}
	if tree.Name("310104000000") != "徐汇分局" || !tree.Contains("310104010000") || tree.Contains("310104990000") || tree.Len() < 20 {
		t.Errorf("tree: name %q, %d units", tree.Name("310104000000"), tree.Len())
	}
	codes := tree.Codes()
	if len(codes) != tree.Len() || !slices.IsSorted(codes) || codes[0] != "310000000000" || !slices.Contains(codes, "310104020000") {
		t.Errorf("Codes() = %v", codes)
	}

	if !tree.IsRoot("310000000000") || tree.IsRoot("310104000000") || tree.IsRoot("320000000000") {
		t.Error("IsRoot: only the city bureau is a root")
	}
	if got := fmt.Sprint(tree.Subtree("310104000000")); got != "[310104000000 310104010000 310104020000]" {
		t.Errorf("Subtree(徐汇分局) = %s", got)
	}
	if got := fmt.Sprint(tree.Subtree("320000000000")); got != "[320000000000]" {
		t.Errorf("Subtree of a unit outside the tree = %s", got)
	}
	if got := fmt.Sprint(tree.Chain("310104010000")); got != "[310104010000 310104000000 310000000000]" {
		t.Errorf("Chain(天平路派出所) = %s", got)
	}
	if n := len(tree.Subtree("310000000000")); n != tree.Len() {
		t.Errorf("the city bureau's subtree has %d of %d units", n, tree.Len())
	}

	// The embedded demo tree is the deploy example.
	example, err := os.ReadFile(filepath.Join("..", "..", "deploy", "units.example.yaml"))
	must(t, err)
	embedded, err := os.ReadFile("units_demo.yaml")
	must(t, err)
	if !bytes.Equal(example, embedded) {
		t.Error("adapters/auth/units_demo.yaml differs from deploy/units.example.yaml: copy it")
	}

	for _, tc := range []struct{ doc, errHas string }{
		{"units: []", "no units"},
		{"units:\n  - {code: '3100', name: x}", "12 digits"},
		{"units:\n  - {code: '310000000000', name: ''}", "name missing"},
		{"units:\n  - code: '310000000000'\n    name: a\n    children:\n      - {code: '310000000000', name: b}", "twice"},
		{"units:\n  - {code: '310000000000', name: a, parent: x}", "parent"},
		{"unit: []", "unit"},
	} {
		if _, err := auth.ParseUnitTree([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.errHas)
		}
	}
	if _, err := auth.LoadUnitTree(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestUnitScope(t *testing.T) {
	tree := auth.DemoUnitTree()
	got := tree.Scope("310104000000")
	want := []string{"310104000000", "310104010000", "310104020000"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("scope of 徐汇分局: %v, want %v", got, want)
	}
	if s := tree.Scope("310000000000"); len(s) != tree.Len() {
		t.Errorf("the city bureau sees %d units of %d", len(s), tree.Len())
	}
	if s := tree.Scope("999999999999"); fmt.Sprint(s) != "[999999999999]" {
		t.Errorf("a unit outside the tree: %v", s)
	}
	if s := tree.Scope(""); s != nil {
		t.Errorf("no unit: %v", s)
	}
}
