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
