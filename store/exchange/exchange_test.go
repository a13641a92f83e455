package exchange_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/store/exchange"
	"zhianhub/store/storetest"
)

const (
	ministry = "000000000000"
	personA  = "32010620261126000017"
)

func inTx(t *testing.T, pool *pgxpool.Pool, fn func(tx pgx.Tx)) {
	t.Helper()
	if err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error { fn(tx); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestInboxClaims(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	id := "01a21a8d-5640-729c-abcc-f81b08095dde"
	raw1, raw2 := []byte("sm3-of-first-bytes"), []byte("sm3-of-a-resend....")
	tests := []struct {
		name   string
		raw    []byte
		finish string // code to finish with after the claim ("" = leave held)
		want   exchange.Claim
		code   string
	}{
		{"first", raw1, "", exchange.ClaimNew, ""},
		{"broker redelivery while held", raw1, "", exchange.ClaimRedelivered, ""},
		{"resend while held", raw2, "0000", exchange.ClaimPending, ""},
		{"resend after outcome", raw2, "", exchange.ClaimDuplicate, "0000"},
		{"redelivery after outcome", raw1, "", exchange.ClaimRedelivered, "0000"},
	}
	for _, tc := range tests {
		inTx(t, pool, func(tx pgx.Tx) {
			got, prev, err := exchange.ClaimInbound(ctx, tx, ministry, id, tc.raw, "keyperson.register", personA, 1)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || prev.Code != tc.code {
				t.Errorf("%s: claim %d code %q, want %d %q", tc.name, got, prev.Code, tc.want, tc.code)
			}
			if tc.finish != "" {
				if err := exchange.FinishInbound(ctx, tx, ministry, id, tc.finish, ""); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	// A non-final outcome forgets the id: the resend is new.
	id2 := "01a21a8d-5640-729c-abcc-f81b08095ddf"
	for _, code := range []string{"E113", "E140", "E199"} {
		inTx(t, pool, func(tx pgx.Tx) {
			if c, _, _ := exchange.ClaimInbound(ctx, tx, ministry, id2, raw1, "keyperson.change", personA, 2); c != exchange.ClaimNew {
				t.Errorf("%s: claim %d, want new", code, c)
			}
			if err := exchange.FinishInbound(ctx, tx, ministry, id2, code, "x"); err != nil {
				t.Fatal(err)
			}
		})
	}
	for code, final := range map[string]bool{"0000": true, "E120": true, "E130": true, "E112": false, "E114": false, "E140": false, "E199": false} {
		if exchange.FinalCode(code) != final {
			t.Errorf("FinalCode(%s) = %v", code, !final)
		}
	}
}

func TestSequenceAndHold(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	inTx(t, pool, func(tx pgx.Tx) {
		next, _, err := exchange.NextSeq(ctx, tx, ministry, personA)
		if err != nil || next != 1 {
			t.Fatalf("next %d %v", next, err)
		}
		for _, seq := range []int64{4, 3} {
			if err := exchange.Hold(ctx, tx, exchange.Held{Sender: ministry, PersonNo: personA, Seq: seq, ID: uuidFor(seq), Kind: "keyperson.change",
				TS: time.Now(), Raw: []byte("raw"), Payload: []byte("{}"), Code: "0000"}); err != nil {
				t.Fatal(err)
			}
		}
		err = exchange.Hold(ctx, tx, exchange.Held{Sender: ministry, PersonNo: personA, Seq: 3, ID: uuidFor(9), Kind: "keyperson.change", TS: time.Now(), Raw: []byte("r"), Payload: []byte("{}")})
		if !errors.Is(err, exchange.ErrSeqTaken) {
			t.Fatalf("second hold of seq 3: %v", err)
		}
		if h, err := exchange.TakeHeld(ctx, tx, ministry, personA, 2); err != nil || h != nil {
			t.Fatalf("take 2: %v %v", h, err)
		}
		if h, err := exchange.TakeHeld(ctx, tx, ministry, personA, 3); err != nil || h == nil || h.ID != uuidFor(3) {
			t.Fatalf("take 3: %+v %v", h, err)
		}
		if err := exchange.SetNextSeq(ctx, tx, ministry, personA, 2); err != nil {
			t.Fatal(err)
		}
	})
	keys, err := exchange.StaleKeys(ctx, pool, time.Now().Add(time.Minute), 10)
	if err != nil || len(keys) != 1 || keys[0].PersonNo != personA {
		t.Fatalf("stale keys %v %v", keys, err)
	}
	if keys, _ := exchange.StaleKeys(ctx, pool, time.Now().Add(-time.Minute), 10); len(keys) != 0 {
		t.Fatalf("fresh held message reported stale: %v", keys)
	}
	inTx(t, pool, func(tx pgx.Tx) {
		next, _, _ := exchange.NextSeq(ctx, tx, ministry, personA)
		held, err := exchange.TakeAllHeld(ctx, tx, exchange.Key{Sender: ministry, PersonNo: personA})
		if next != 2 || err != nil || len(held) != 1 || held[0].Seq != 4 {
			t.Fatalf("next %d held %+v %v", next, held, err)
		}
	})
}

func uuidFor(n int64) string {
	return "01a21a8d-5640-729c-abcc-00000000000" + string(rune('0'+n))
}

func TestOutboxLifecycle(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	now := time.Now()
	filing := exchange.Out{ID: uuidFor(1), Kind: "keyperson.register", Exchange: "mps.bus", RoutingKey: "to.000000000000.keyperson.register",
		ToNode: ministry, Payload: []byte(`{}`), PersonNo: personA, Seq: 1, NeedsReceipt: true}
	receipt := exchange.Out{ID: uuidFor(2), Kind: "receipt", Exchange: "mps.bus", RoutingKey: "to.000000000000.receipt", ToNode: ministry, Payload: []byte(`{}`)}
	inTx(t, pool, func(tx pgx.Tx) {
		for _, m := range []exchange.Out{filing, receipt} {
			if err := exchange.Enqueue(ctx, tx, m); err != nil {
				t.Fatal(err)
			}
		}
		s1, _ := exchange.NextOutSeq(ctx, tx, ministry, personA)
		s2, _ := exchange.NextOutSeq(ctx, tx, ministry, personA)
		if s1 != 1 || s2 != 2 {
			t.Fatalf("out seqs %d %d", s1, s2)
		}
	})
	inTx(t, pool, func(tx pgx.Tx) {
		due, err := exchange.ClaimDue(ctx, tx, now.Add(time.Second), 10)
		if err != nil || len(due) != 2 {
			t.Fatalf("due %d %v", len(due), err)
		}
		// A second relay skips the locked rows.
		other, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if more, _ := exchange.ClaimDue(ctx, other, now.Add(time.Second), 10); len(more) != 0 {
			t.Errorf("locked rows claimed twice: %d", len(more))
		}
		other.Rollback(ctx)
		err = exchange.RecordAttempts(ctx, tx, now, []exchange.Attempt{
			{ID: filing.ID, Published: true, State: exchange.OutSent, NextAttemptAt: now.Add(time.Minute)},
			{ID: receipt.ID, Err: errors.New("unroutable"), State: exchange.OutPending, NextAttemptAt: now.Add(2 * time.Second)},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	f, _ := exchange.Get(ctx, pool, filing.ID)
	r, _ := exchange.Get(ctx, pool, receipt.ID)
	if f.State != exchange.OutSent || f.Attempts != 1 || f.FirstSentAt == nil || r.Attempts != 0 || r.LastError != "unroutable" || r.State != exchange.OutPending {
		t.Fatalf("after attempts: filing %+v receipt %+v", f, r)
	}
	inTx(t, pool, func(tx pgx.Tx) {
		if _, _, err := exchange.CorrelateReceipt(ctx, tx, exchange.Receipt{ID: uuidFor(3), From: ministry, Ref: uuidFor(7), Status: "ACCEPTED", Code: "0000"}); !errors.Is(err, exchange.ErrUnknownRef) {
			t.Errorf("unknown ref: %v", err)
		}
		if _, _, err := exchange.CorrelateReceipt(ctx, tx, exchange.Receipt{ID: uuidFor(3), From: "320000000000", Ref: filing.ID, Status: "ACCEPTED", Code: "0000"}); !errors.Is(err, exchange.ErrUnknownRef) {
			t.Errorf("receipt from another node: %v", err)
		}
		_, changed, err := exchange.CorrelateReceipt(ctx, tx, exchange.Receipt{ID: uuidFor(3), From: ministry, Ref: filing.ID, Status: "ACCEPTED", Code: "0000", At: now})
		if err != nil || !changed {
			t.Fatalf("correlate: %v %v", changed, err)
		}
		_, changed, _ = exchange.CorrelateReceipt(ctx, tx, exchange.Receipt{ID: uuidFor(4), From: ministry, Ref: filing.ID, Status: "DUPLICATE", Code: "0000", At: now})
		if changed {
			t.Error("second receipt changed the filing")
		}
	})
	f, _ = exchange.Get(ctx, pool, filing.ID)
	if f.State != exchange.OutReceipted || f.ReceiptStatus != "ACCEPTED" {
		t.Fatalf("filing %+v", f)
	}
	// A receipted filing is no longer due.
	inTx(t, pool, func(tx pgx.Tx) {
		due, _ := exchange.ClaimDue(ctx, tx, now.Add(time.Hour), 10)
		if len(due) != 1 || due[0].ID != receipt.ID {
			t.Fatalf("due after receipt: %+v", due)
		}
	})
	list, err := exchange.ListFilings(ctx, pool, exchange.Filter{States: []string{exchange.OutReceipted}})
	if err != nil || len(list) != 1 {
		t.Fatalf("list %v %v", list, err)
	}
}

// TestListFilings selects filings by state and person, newest first,
// limited; internal events (no receipt needed) are never listed.
func TestListFilings(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	const personB = "32010620261126000018"
	// ids 1-5 in creation order: A sent, B sent, A receipted, B flagged,
	// and an internal event.
	msgs := []struct {
		person, state string
		filing        bool
	}{
		{personA, exchange.OutSent, true}, {personB, exchange.OutSent, true}, {personA, exchange.OutReceipted, true},
		{personB, exchange.OutFlagged, true}, {"", exchange.OutPending, false},
	}
	for i, m := range msgs {
		inTx(t, pool, func(tx pgx.Tx) {
			o := exchange.Out{ID: uuidFor(int64(i + 1)), Kind: "keyperson.register", Exchange: "mps.bus", RoutingKey: "to.000000000000.keyperson.register",
				ToNode: ministry, Payload: []byte(`{}`), PersonNo: m.person, Seq: 1, NeedsReceipt: m.filing}
			if !m.filing {
				o.ToNode, o.Kind = "", "warning.issued"
			}
			if err := exchange.Enqueue(ctx, tx, o); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `UPDATE outbox SET state = $2 WHERE id = $1`, o.ID, m.state); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		f    exchange.Filter
		want []int // ids, newest first
	}{
		{"all", exchange.Filter{}, []int{4, 3, 2, 1}},
		{"person", exchange.Filter{PersonNo: personA}, []int{3, 1}},
		{"state", exchange.Filter{States: []string{exchange.OutSent}}, []int{2, 1}},
		{"states", exchange.Filter{States: []string{exchange.OutSent, exchange.OutFlagged}}, []int{4, 2, 1}},
		{"state and person", exchange.Filter{States: []string{exchange.OutSent}, PersonNo: personB}, []int{2}},
		{"none", exchange.Filter{States: []string{exchange.OutReceipted}, PersonNo: personB}, []int{}},
		{"limit", exchange.Filter{Limit: 2}, []int{4, 3}},
	} {
		list, err := exchange.ListFilings(ctx, pool, tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := []int{}
		for _, o := range list {
			for i := range msgs {
				if o.ID == uuidFor(int64(i+1)) {
					got = append(got, i+1)
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: ids %v, want %v", tc.name, got, tc.want)
		}
	}
}
