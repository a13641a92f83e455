package inbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/store/inbox"
	"zhianhub/store/storetest"
)

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), storetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestDeliverListRead(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	alice := inbox.Viewer{User: "alice", Unit: "310104000000"}
	bob := inbox.Viewer{User: "bob", Unit: "310104000000"}
	carol := inbox.Viewer{User: "carol", Unit: "310105000000"}

	ids, err := inbox.Deliver(ctx, pool,
		inbox.Item{RecipientKind: inbox.ToUnit, Recipient: alice.Unit, Kind: "dispatch", Ref: "31000020261127000001", Title: "指令：核查", Level: 2},
		inbox.Item{RecipientKind: inbox.ToUser, Recipient: "alice", Kind: "notice", Ref: "7", Title: "通知：演练"},
		inbox.Item{RecipientKind: inbox.ToUnit, Recipient: carol.Unit, Kind: "dispatch", Ref: "31000020261127000001", Title: "指令：核查"},
	)
	if err != nil || len(ids) != 3 {
		t.Fatalf("Deliver = %v, %v; want 3 new ids", ids, err)
	}
	// Idempotent: the same (recipient, kind:ref) again is skipped; a new one is not.
	again, err := inbox.Deliver(ctx, pool,
		inbox.Item{RecipientKind: inbox.ToUnit, Recipient: alice.Unit, Kind: "dispatch", Ref: "31000020261127000001", Title: "指令：核查（重复）"},
		inbox.Item{RecipientKind: inbox.ToUser, Recipient: "bob", Kind: "notice", Ref: "7", Title: "通知：演练"},
	)
	if err != nil || len(again) != 1 {
		t.Fatalf("second Deliver = %v, %v; want only bob's item new", again, err)
	}

	tests := []struct {
		name string
		v    inbox.Viewer
		f    inbox.Filter
		want []string // kind:recipient, newest first
	}{
		{"alice sees her unit's and her own", alice, inbox.Filter{}, []string{"notice:alice", "dispatch:310104000000"}},
		{"bob sees the unit's and his own", bob, inbox.Filter{}, []string{"notice:bob", "dispatch:310104000000"}},
		{"carol sees her unit only", carol, inbox.Filter{}, []string{"dispatch:310105000000"}},
		{"kind filter", alice, inbox.Filter{Kind: "dispatch"}, []string{"dispatch:310104000000"}},
		{"paging", alice, inbox.Filter{Limit: 1, Before: ids[1]}, []string{"dispatch:310104000000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := inbox.List(ctx, pool, tc.v, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, it := range got {
				keys = append(keys, it.Kind+":"+it.Recipient)
			}
			if len(keys) != len(tc.want) {
				t.Fatalf("List = %v, want %v", keys, tc.want)
			}
			for i := range keys {
				if keys[i] != tc.want[i] {
					t.Fatalf("List = %v, want %v", keys, tc.want)
				}
			}
		})
	}

	// Alice reads the unit's item: it stays unread for bob.
	if n, err := inbox.MarkRead(ctx, pool, alice, ids[0], ids[2]); err != nil || n != 1 {
		t.Fatalf("MarkRead = %d, %v; want 1 (carol's item is not alice's)", n, err)
	}
	for _, c := range []struct {
		v    inbox.Viewer
		want map[string]int
	}{
		{alice, map[string]int{"notice": 1}},
		{bob, map[string]int{"notice": 1, "dispatch": 1}},
		{carol, map[string]int{"dispatch": 1}},
	} {
		got, err := inbox.Unread(ctx, pool, c.v)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(c.want) || got["notice"] != c.want["notice"] || got["dispatch"] != c.want["dispatch"] {
			t.Errorf("Unread(%s) = %v, want %v", c.v.User, got, c.want)
		}
	}
	unread, err := inbox.List(ctx, pool, alice, inbox.Filter{UnreadOnly: true})
	if err != nil || len(unread) != 1 || unread[0].Kind != "notice" || unread[0].Read {
		t.Fatalf("unread list = %+v, %v", unread, err)
	}
	if n, err := inbox.MarkRead(ctx, pool, alice); err != nil || n != 1 {
		t.Fatalf("MarkRead(all) = %d, %v; want 1", n, err)
	}
	if n, err := inbox.MarkRead(ctx, pool, alice); err != nil || n != 0 {
		t.Fatalf("MarkRead(all) again = %d, %v; want 0", n, err)
	}
}

func TestDeliverRefusesInvalid(t *testing.T) {
	pool := newPool(t)
	for _, it := range []inbox.Item{
		{RecipientKind: "group", Recipient: "x", Kind: "notice", Ref: "1", Title: "t"},
		{RecipientKind: inbox.ToUser, Kind: "notice", Ref: "1", Title: "t"},
		{RecipientKind: inbox.ToUser, Recipient: "x", Ref: "1", Title: "t"},
		{RecipientKind: inbox.ToUser, Recipient: "x", Kind: "notice", Ref: "1"},
		{RecipientKind: inbox.ToUser, Recipient: "x", Kind: "notice", Title: "t"},
		{RecipientKind: inbox.ToUser, Recipient: "x", Kind: "notice", Ref: "1", Title: "t", Level: 5},
	} {
		if _, err := inbox.Deliver(context.Background(), pool, it); !errors.Is(err, inbox.ErrInvalid) {
			t.Errorf("Deliver(%+v) = %v, want ErrInvalid", it, err)
		}
	}
}

// TestNotifyAtCommit: a delivery notifies Channel when its transaction
// commits, and not before; a rolled-back delivery never notifies.
func TestNotifyAtCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := newPool(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+inbox.Channel); err != nil {
		t.Fatal(err)
	}
	deliver := func(ref string, commit bool) {
		t.Helper()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := inbox.Deliver(ctx, tx, inbox.Item{RecipientKind: inbox.ToUnit, Recipient: "310104000000", Kind: "dispatch", Ref: ref, Title: "指令"}); err != nil {
				return err
			}
			if !commit {
				return errors.New("roll back")
			}
			return nil
		})
		if commit && err != nil {
			t.Fatal(err)
		}
	}
	deliver("rolled-back", false)
	deliver("committed", true)
	n, err := conn.Conn().WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v := inbox.Viewer{User: "u", Unit: "310104000000"}
	if n.Channel != inbox.Channel || !v.Concerns(n.Payload) || (inbox.Viewer{User: "u", Unit: "310105000000"}).Concerns(n.Payload) {
		t.Fatalf("notification %q on %q", n.Payload, n.Channel)
	}
	items, err := inbox.List(ctx, pool, v, inbox.Filter{})
	if err != nil || len(items) != 1 || items[0].Ref != "committed" {
		t.Fatalf("items = %+v, %v", items, err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer wcancel()
	if extra, err := conn.Conn().WaitForNotification(wctx); err == nil {
		t.Fatalf("a second notification %q: the rolled-back delivery notified", extra.Payload)
	}
}

// TestRolesAndWithdraw: a unit's item with audience roles is seen only by
// the users of the unit holding one of them; a withdrawn item disappears
// from lists, counts and read marks, and delivering it again does not bring
// it back.
func TestRolesAndWithdraw(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	officer := inbox.Viewer{User: "li", Unit: "310104000000", Roles: []string{"officer"}}
	admin := inbox.Viewer{User: "zhao", Unit: "310104000000", Roles: []string{"officer", "portaladmin"}}
	noRoles := inbox.Viewer{User: "wu", Unit: "310104000000"}
	items := []inbox.Item{
		{RecipientKind: inbox.ToUnit, Recipient: "310104000000", Kind: "notice", Ref: "1", Title: "全体", Level: 1},
		{RecipientKind: inbox.ToUnit, Recipient: "310104000000", Kind: "notice", Ref: "2", Title: "仅门户管理员", Roles: []string{"portaladmin"}},
	}
	if _, err := inbox.Deliver(ctx, pool, items...); err != nil {
		t.Fatal(err)
	}
	count := func(v inbox.Viewer) int {
		t.Helper()
		got, err := inbox.List(ctx, pool, v, inbox.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if count(officer) != 1 || count(admin) != 2 || count(noRoles) != 1 {
		t.Fatalf("visible: officer %d admin %d none %d; want 1 2 1", count(officer), count(admin), count(noRoles))
	}
	if _, err := inbox.Deliver(ctx, pool, inbox.Item{RecipientKind: inbox.ToUser, Recipient: "li", Kind: "notice", Ref: "3", Title: "t", Roles: []string{"x"}}); !errors.Is(err, inbox.ErrInvalid) {
		t.Fatalf("roles on a user's item: %v", err)
	}
	n, err := inbox.Withdraw(ctx, pool, "notice", "2")
	if err != nil || n != 1 {
		t.Fatalf("Withdraw = %d, %v", n, err)
	}
	if count(admin) != 1 {
		t.Fatal("a withdrawn item is still listed")
	}
	if u, _ := inbox.Unread(ctx, pool, admin); u["notice"] != 1 {
		t.Fatalf("unread %v after the withdrawal", u)
	}
	if m, _ := inbox.MarkRead(ctx, pool, admin); m != 1 {
		t.Fatalf("MarkRead(all) marked %d, want 1 (not the withdrawn one)", m)
	}
	again, err := inbox.Deliver(ctx, pool, items[1])
	if err != nil || len(again) != 0 || count(admin) != 1 {
		t.Fatalf("redelivery of a withdrawn item: %v, %v", again, err)
	}
	// After: oldest first, above the cursor.
	got, err := inbox.List(ctx, pool, officer, inbox.Filter{After: 0})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if _, err := inbox.List(ctx, pool, officer, inbox.Filter{After: 1, Before: 5}); !errors.Is(err, inbox.ErrInvalid) {
		t.Fatalf("Before and After together: %v", err)
	}
}

// TestListener: one listening connection wakes the subscriptions of the
// user or unit a committed delivery concerns, and no others; stopping it
// ends every subscription and refuses new ones.
func TestListener(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := newPool(t)
	l, err := inbox.NewListener(inbox.ListenerConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); l.Run(lctx) }()
	<-l.Ready()

	alice, err := l.Subscribe(inbox.Viewer{User: "alice", Unit: "310104000000"})
	if err != nil {
		t.Fatal(err)
	}
	carol, err := l.Subscribe(inbox.Viewer{User: "carol", Unit: "310105000000"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subscribers() != 2 {
		t.Fatalf("%d subscribers", l.Subscribers())
	}
	drain := func(s *inbox.Subscription) {
		select {
		case <-s.Wake():
		default:
		}
	}
	drain(alice)
	drain(carol)
	if _, err := inbox.Deliver(ctx, pool, inbox.Item{RecipientKind: inbox.ToUnit, Recipient: "310104000000", Kind: "dispatch", Ref: "9", Title: "指令"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-alice.Wake():
	case <-ctx.Done():
		t.Fatal("alice was not woken")
	}
	select {
	case <-carol.Wake():
		t.Fatal("carol was woken by another unit's item")
	case <-time.After(200 * time.Millisecond):
	}
	carol.Close()
	if l.Subscribers() != 1 {
		t.Fatalf("%d subscribers after a Close", l.Subscribers())
	}
	stop()
	<-done
	select {
	case <-alice.Done():
	default:
		t.Fatal("a subscription outlived the listener")
	}
	if _, err := l.Subscribe(inbox.Viewer{User: "x"}); !errors.Is(err, inbox.ErrClosed) {
		t.Fatalf("Subscribe after the stop: %v", err)
	}
}
