package access_test

import (
	"context"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/store/access"
	"zhianhub/store/storetest"
)

func TestNormalizeSerial(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0a1b", "A1B"}, {"0x0A:1B", "A1B"}, {" 00 ff ", "FF"}, {"0", "0"}, {"", "0"}, {"xyz", ""}, {"-1", ""},
	} {
		if got := access.NormalizeSerial(tc.in); got != tc.want {
			t.Errorf("NormalizeSerial(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := access.SerialHex(big.NewInt(0xA1B)); got != "A1B" {
		t.Errorf("SerialHex = %q", got)
	}
}

func TestBindingsGrantsLocks(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	tx := func(fn func(pgx.Tx) error) error { return pgx.BeginFunc(ctx, pool, fn) }
	now := time.Now()
	b := access.Binding{Serial: "A1B", Issuer: "CN=测试CA,C=CN", User: "1023456", Unit: "310104000000", CreatedBy: "sec", CreatedAt: now}

	var first access.Binding
	if err := tx(func(tx pgx.Tx) (err error) { first, err = access.CreateBinding(ctx, tx, b); return err }); err != nil {
		t.Fatal(err)
	}
	err := tx(func(tx pgx.Tx) error { _, err := access.CreateBinding(ctx, tx, b); return err })
	if !errors.Is(err, access.ErrConflict) {
		t.Fatalf("second binding of one certificate: %v", err)
	}
	bad := b
	bad.Unit = "3101"
	if err := tx(func(tx pgx.Tx) error { _, err := access.CreateBinding(ctx, tx, bad); return err }); !errors.Is(err, access.ErrInvalid) {
		t.Fatalf("bad unit: %v", err)
	}
	got, err := access.ActiveBinding(ctx, pool, "A1B", b.Issuer)
	if err != nil || got.ID != first.ID || got.User != "1023456" || !got.Active() {
		t.Fatalf("active binding %+v %v", got, err)
	}
	if _, err := access.ActiveBinding(ctx, pool, "A1B", "CN=其他CA,C=CN"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("other issuer: %v", err)
	}
	if err := tx(func(tx pgx.Tx) error {
		_, err := access.RevokeBinding(ctx, tx, first.ID, "sec", "挂失", now)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := tx(func(tx pgx.Tx) error {
		_, err := access.RevokeBinding(ctx, tx, first.ID, "sec", "挂失", now)
		return err
	}); !errors.Is(err, access.ErrConflict) {
		t.Fatalf("second revocation: %v", err)
	}
	if err := tx(func(tx pgx.Tx) error { _, err := access.RevokeBinding(ctx, tx, 999, "sec", "挂失", now); return err }); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("unknown binding: %v", err)
	}
	if _, err := access.ActiveBinding(ctx, pool, "A1B", b.Issuer); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("revoked binding still in force: %v", err)
	}
	// The certificate can be bound again; history keeps both.
	if err := tx(func(tx pgx.Tx) error { _, err := access.CreateBinding(ctx, tx, b); return err }); err != nil {
		t.Fatal(err)
	}
	all, err := access.ListBindings(ctx, pool, access.BindingFilter{IncludeRevoke: true})
	active, err2 := access.ListBindings(ctx, pool, access.BindingFilter{User: "1023456"})
	if err != nil || err2 != nil || len(all) != 2 || all[0].RevokeReason != "挂失" || len(active) != 1 || active[0].ID == first.ID {
		t.Fatalf("list: %+v %v / %+v %v", all, err, active, err2)
	}

	// Roles and locks.
	g := access.Grant{User: "1023456", Role: "unmask", GrantedBy: "sec", GrantedAt: now, Reason: "专案需要"}
	if err := tx(func(tx pgx.Tx) error { return access.GrantRole(ctx, tx, g) }); err != nil {
		t.Fatal(err)
	}
	if err := tx(func(tx pgx.Tx) error { return access.GrantRole(ctx, tx, g) }); !errors.Is(err, access.ErrConflict) {
		t.Fatalf("second grant: %v", err)
	}
	g.Role = "officer"
	if err := tx(func(tx pgx.Tx) error { return access.GrantRole(ctx, tx, g) }); err != nil {
		t.Fatal(err)
	}
	if err := tx(func(tx pgx.Tx) error {
		return access.LockAccount(ctx, tx, access.Lock{User: "1023456", Reason: "离职", LockedBy: "sys", LockedAt: now})
	}); err != nil {
		t.Fatal(err)
	}
	roles, reason, locked, err := access.Of(ctx, pool, "1023456")
	if err != nil || !slices.Equal(roles, []string{"officer", "unmask"}) || !locked || reason != "离职" {
		t.Fatalf("Of: %v %q %v %v", roles, reason, locked, err)
	}
	if err := tx(func(tx pgx.Tx) error { _, err := access.RevokeRole(ctx, tx, "1023456", "unmask"); return err }); err != nil {
		t.Fatal(err)
	}
	if err := tx(func(tx pgx.Tx) error { _, err := access.RevokeRole(ctx, tx, "1023456", "unmask"); return err }); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("second revocation: %v", err)
	}
	if err := tx(func(tx pgx.Tx) error { _, err := access.UnlockAccount(ctx, tx, "1023456"); return err }); err != nil {
		t.Fatal(err)
	}
	roles, _, locked, err = access.Of(ctx, pool, "1023456")
	if err != nil || !slices.Equal(roles, []string{"officer"}) || locked {
		t.Fatalf("Of after changes: %v %v %v", roles, locked, err)
	}
	roles, _, locked, err = access.Of(ctx, pool, "nobody")
	if err != nil || len(roles) != 0 || locked {
		t.Fatalf("Of unknown user: %v %v %v", roles, locked, err)
	}
}
