package exchange_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"zhianhub/store/exchange"
	"zhianhub/store/storetest"
)

func TestClaimAllAndFinishAll(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	id := func(n int) string { return fmt.Sprintf("01a21a8d-5640-729c-abcc-%012d", n) }
	first, resend := []byte("sm3-of-first-bytes"), []byte("sm3-of-a-resend....")
	// Earlier copies: 1 held, 2 held, 3 done 0000, 4 done E120, 5 done.
	inTx(t, pool, func(tx pgx.Tx) {
		for n := 1; n <= 5; n++ {
			if _, _, err := exchange.ClaimInbound(ctx, tx, ministry, id(n), first, "keyperson.register", personA, int64(n)); err != nil {
				t.Fatal(err)
			}
		}
		for n, code := range map[int]string{3: "0000", 4: "E120", 5: "0000"} {
			if err := exchange.FinishInbound(ctx, tx, ministry, id(n), code, "reason "+code); err != nil {
				t.Fatal(err)
			}
		}
	})
	reqs := []exchange.ClaimRequest{
		{Sender: ministry, ID: id(1), RawSM3: first},                                                       // redelivered while held
		{Sender: ministry, ID: id(2), RawSM3: resend},                                                      // resent while held
		{Sender: ministry, ID: id(3), RawSM3: resend},                                                      // resent after its outcome
		{Sender: ministry, ID: id(4), RawSM3: resend},                                                      // resent after a rejection
		{Sender: ministry, ID: id(5), RawSM3: first},                                                       // redelivered after its outcome
		{Sender: ministry, ID: id(6), RawSM3: first, Kind: "keyperson.control", PersonNo: personA, Seq: 6}, // new
		{Sender: "100000000000", ID: id(1), RawSM3: first},                                                 // same id, other sender: new
	}
	want := []exchange.ClaimResult{
		{Claim: exchange.ClaimRedelivered},
		{Claim: exchange.ClaimPending},
		{Claim: exchange.ClaimDuplicate, Prev: exchange.InboxEntry{Code: "0000", Reason: "reason 0000"}},
		{Claim: exchange.ClaimDuplicate, Prev: exchange.InboxEntry{Code: "E120", Reason: "reason E120"}},
		{Claim: exchange.ClaimRedelivered, Prev: exchange.InboxEntry{Code: "0000", Reason: "reason 0000"}},
		{Claim: exchange.ClaimNew},
		{Claim: exchange.ClaimNew},
	}
	inTx(t, pool, func(tx pgx.Tx) {
		got, err := exchange.ClaimAll(ctx, tx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("request %d: %+v, want %+v", i, got[i], want[i])
			}
		}
		// Outcomes: 6 final, the other sender's non-final (forgotten).
		if err := exchange.FinishAll(ctx, tx, []exchange.Finish{
			{Sender: ministry, ID: id(6), Code: "0000"},
			{Sender: "100000000000", ID: id(1), Code: "E113", Reason: "stale"},
		}); err != nil {
			t.Fatal(err)
		}
	})
	inTx(t, pool, func(tx pgx.Tx) {
		got, err := exchange.ClaimAll(ctx, tx, []exchange.ClaimRequest{
			{Sender: ministry, ID: id(6), RawSM3: resend},
			{Sender: "100000000000", ID: id(1), RawSM3: resend},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Claim != exchange.ClaimDuplicate || got[0].Prev.Code != "0000" || got[1].Claim != exchange.ClaimNew {
			t.Errorf("after FinishAll: %+v", got)
		}
	})
	inTx(t, pool, func(tx pgx.Tx) {
		_, err := exchange.ClaimAll(ctx, tx, []exchange.ClaimRequest{{Sender: ministry, ID: id(7)}, {Sender: ministry, ID: id(7)}})
		if !errors.Is(err, exchange.ErrRepeatInBatch) {
			t.Errorf("repeat in batch: %v", err)
		}
	})
}

func TestLockSeqsAndSetNextSeqs(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	a := exchange.Key{Sender: ministry, PersonNo: personA}
	b := exchange.Key{Sender: ministry, PersonNo: "32010620261126000025"}
	inTx(t, pool, func(tx pgx.Tx) {
		if err := exchange.SetNextSeq(ctx, tx, a.Sender, a.PersonNo, 1); err != nil {
			t.Fatal(err)
		}
		if _, _, err := exchange.NextSeq(ctx, tx, a.Sender, a.PersonNo); err != nil {
			t.Fatal(err)
		}
		if err := exchange.SetNextSeq(ctx, tx, a.Sender, a.PersonNo, 4); err != nil {
			t.Fatal(err)
		}
		if err := exchange.Hold(ctx, tx, exchange.Held{Sender: a.Sender, PersonNo: a.PersonNo, Seq: 6, ID: "01a21a8d-5640-729c-abcc-000000000001",
			Kind: "keyperson.change", Raw: []byte("r"), Payload: []byte("{}"), Code: "0000"}); err != nil {
			t.Fatal(err)
		}
	})
	inTx(t, pool, func(tx pgx.Tx) {
		got, err := exchange.LockSeqs(ctx, tx, []exchange.Key{b, a})
		if err != nil {
			t.Fatal(err)
		}
		if got[a] != (exchange.SeqState{Next: 4, Held: true}) || got[b] != (exchange.SeqState{Next: 1}) {
			t.Fatalf("LockSeqs = %+v", got)
		}
		if err := exchange.SetNextSeqs(ctx, tx, map[exchange.Key]int64{a: 5, b: 3}); err != nil {
			t.Fatal(err)
		}
	})
	inTx(t, pool, func(tx pgx.Tx) {
		for k, want := range map[exchange.Key]int64{a: 5, b: 3} {
			next, _, err := exchange.NextSeq(ctx, tx, k.Sender, k.PersonNo)
			if err != nil || next != want {
				t.Errorf("%v: next %d, %v; want %d", k, next, err, want)
			}
		}
	})
}

func TestEnqueueAll(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	ms := []exchange.Out{
		{ID: "01a21a8d-5640-729c-abcc-000000000011", Kind: "receipt", Exchange: "mps", RoutingKey: "node.000000000000.receipt",
			ToNode: ministry, Corr: "01a21a8d-5640-729c-abcc-000000000001", Payload: []byte(`{"status":"ACCEPTED"}`)},
		{ID: "01a21a8d-5640-729c-abcc-000000000012", Kind: "keyperson.register", Exchange: "zhian.events", RoutingKey: "keyperson.register",
			Corr: "01a21a8d-5640-729c-abcc-000000000002", Payload: []byte(`{}`), PersonNo: personA, Seq: 2, NeedsReceipt: true, Actor: "u1"},
	}
	inTx(t, pool, func(tx pgx.Tx) {
		if err := exchange.EnqueueAll(ctx, tx, ms); err != nil {
			t.Fatal(err)
		}
	})
	for _, m := range ms {
		got, err := exchange.Get(ctx, pool, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind != m.Kind || got.Exchange != m.Exchange || got.RoutingKey != m.RoutingKey || got.ToNode != m.ToNode || got.Corr != m.Corr ||
			string(got.Payload) != string(m.Payload) || got.PersonNo != m.PersonNo || got.Seq != m.Seq || got.NeedsReceipt != m.NeedsReceipt ||
			got.Actor != m.Actor || got.State != "pending" {
			t.Errorf("stored %+v, enqueued %+v", got, m)
		}
	}
}
