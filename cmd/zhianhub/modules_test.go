package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestModulesPlanCLI: `zhianhub modules plan` prints four rabbitmqctl
// commands per module of the ACL; a bad ACL is a usage error naming the
// problem.
func TestModulesPlanCLI(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl.yaml")
	if err := os.WriteFile(acl, []byte("vhost: zhianhub\nmodules:\n  - name: leads\n    publish: [lead.registered]\n    subscribe: [dispatch.feedback]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "", nil, "modules", "plan", "--acl", acl, "--passwords", "/etc/zhianhub/modules")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := `rabbitmqctl add_user leads < /etc/zhianhub/modules/leads.pass
rabbitmqctl set_permissions -p zhianhub leads '^(module\.leads\..*|amq\.gen-.*)$' '^(zhian\.ingress|module\.leads\..*|amq\.gen-.*)$' '^(zhian\.events|module\.leads\..*|amq\.gen-.*)$'
rabbitmqctl set_topic_permissions -p zhianhub leads zhian.ingress '^(lead\.registered)$' '^$'
rabbitmqctl set_topic_permissions -p zhianhub leads zhian.events '^$' '^(dispatch\.feedback)$'
`
	if out != want {
		t.Errorf("plan:\n%s\nwant:\n%s", out, want)
	}
	if err := os.WriteFile(acl, []byte("modules:\n  - name: leads\n    publish: [keyperson.register]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, "", nil, "modules", "plan", "--acl", acl)
	if code != 2 || !strings.Contains(errs, "only the hub publishes") {
		t.Errorf("bad ACL: exit %d, %s", code, errs)
	}
	if code, _, _ := runCLI(t, "", nil, "modules", "drop"); code != 2 {
		t.Errorf("unknown subcommand: exit %d", code)
	}
}
