package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"zhianhub/adapters/moduleacl"
	"zhianhub/store"
	"zhianhub/store/storetest"
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

// TestModulesApplyAudited: `zhianhub modules apply` (with the real
// rabbitmqctl, a module of the test's own, deleted at the end) records the
// change of the broker's users and permissions in the audit chain, as the
// operator.
func TestModulesApplyAudited(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl not available: ", err)
	}
	r := moduleacl.Rabbitmqctl{}
	if _, err := moduleacl.Users(context.Background(), r); err != nil {
		t.Skip("rabbitmqctl cannot reach the broker: ", err)
	}
	dbURL := storetest.NewDatabase(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	name := "test-cli-" + randSuffix(t)
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl.yaml")
	yaml := "ingress_exchange: test.ingress." + name + "\nevents_exchange: test.events." + name +
		"\nmodules:\n  - name: " + name + "\n    publish: [warning.issued]\n"
	if err := os.WriteFile(acl, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = r.Run(context.Background(), []string{"delete_user", name}, nil) })
	env := map[string]string{"ZHIANHUB_DATABASE_URL": dbURL, "ZHIANHUB_KEYS_DIR": keys, "USER": "ops.li"}
	code, out, errs := runCLI(t, "", env, "modules", "apply", "--acl", acl, "--passwords", filepath.Join(dir, "pw"))
	if code != 0 || errs != "" || strings.Count(out, "done:") != 4 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	var actor, object, result string
	var detail map[string]any
	if err := pool.QueryRow(context.Background(), `SELECT actor, object, result, detail FROM audit_entry WHERE action = 'modules.apply'`).
		Scan(&actor, &object, &result, &detail); err != nil {
		t.Fatalf("no modules.apply entry: %v", err)
	}
	if actor != "ops.li" || object != acl || result != "ok" || detail["commands"] != float64(4) || detail["modules"] != float64(1) {
		t.Errorf("modules.apply: %s %s %s %v", actor, object, result, detail)
	}
}

func randSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
