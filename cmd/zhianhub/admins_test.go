package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store"
	"zhianhub/store/access"
	"zhianhub/store/storetest"
)

// TestAdminsCLI: the administrators' roles are granted and revoked at
// deployment by the command line, one per account, audited.
func TestAdminsCLI(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	env := map[string]string{"ZHIANHUB_DATABASE_URL": dbURL, "ZHIANHUB_KEYS_DIR": keys, "USER": "deployer"}
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return access.GrantRole(ctx, tx, access.Grant{User: "li.officer", Role: "officer", GrantedBy: "sec", GrantedAt: time.Now()})
	}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout, or stderr when code != 0
	}{
		{[]string{"grant", "--user", "sec.admin", "--role", "secadmin", "--reason", "部署"}, 0, "granted secadmin sec.admin by deployer"},
		{[]string{"grant", "--user", "sec.admin", "--role", "secadmin", "--reason", "again"}, 1, "already"},
		{[]string{"grant", "--user", "sec.admin", "--role", "auditor", "--reason", "x"}, 1, "no other role"},
		{[]string{"grant", "--user", "li.officer", "--role", "sysadmin", "--reason", "x"}, 1, "no other role"},
		{[]string{"grant", "--user", "aud.itor", "--role", "auditor", "--reason", "部署"}, 0, "granted"},
		{[]string{"grant", "--user", "x", "--role", "officer", "--reason", "x"}, 2, "--role must be"},
		{[]string{"grant", "--user", "x", "--role", "auditor"}, 2, "needs --reason"},
		{[]string{"revoke", "--user", "aud.itor", "--role", "auditor", "--reason", "离岗"}, 0, "revoked auditor aud.itor"},
		{[]string{"revoke", "--user", "aud.itor", "--role", "auditor", "--reason", "x"}, 1, "does not hold"},
		{[]string{"list"}, 0, "sec.admin  secadmin"},
		{[]string{"bogus"}, 2, "unknown subcommand"},
	} {
		code, out, errs := runCLI(t, "", env, append([]string{"admins"}, tc.args...)...)
		got := out
		if tc.code != 0 {
			got = errs
		}
		if code != tc.code || !strings.Contains(got, tc.out) {
			t.Errorf("admins %v: exit %d, stdout %q, stderr %q; want exit %d with %q", tc.args, code, out, errs, tc.code, tc.out)
		}
	}
	var grants, revokes int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = 'role.grant' AND actor = 'deployer' AND detail->>'via' = 'cli'),
		count(*) FILTER (WHERE action = 'role.revoke' AND reason = '离岗') FROM audit_entry`).Scan(&grants, &revokes); err != nil || grants != 2 || revokes != 1 {
		t.Fatalf("audit: %d grants, %d revokes, %v", grants, revokes, err)
	}
	if code, out, errs := runCLI(t, "", env, "audit", "verify"); code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("audit verify: %d %s %s", code, out, errs)
	}
}
