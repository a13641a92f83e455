package audit

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"zhianhub/store/storetest"
)

// listed returns the seqs of records.
func listed(recs []Record) string {
	seqs := []int64{}
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	return fmt.Sprint(seqs)
}

func TestList(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	w := newWriter(t, pool, WriterConfig{Signer: newKeys(t).signer})
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i, e := range []struct {
		action, actor, unit, result, object string
	}{
		{"person.read", "u0", "310104000000", "ok", "p1"},
		{"person.unmask", "u1", "310104000000", "denied", "p1"},
		{"role.grant", "u0", "310000000000", "ok", "user/u9"},
		{"person.read", "u1", "310112000000", "ok", "p2"},
		{"audit.read", "u2", "310000000000", "ok", "audit"},
	} {
		en := entry(i)
		en.At = t0.Add(time.Duration(i) * time.Hour) // seq i+1 at t0 + i h
		en.Action, en.Actor, en.Unit, en.Result, en.Object = e.action, e.actor, e.unit, e.result, e.object
		if _, err := w.Append(ctx, en); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		f    ListFilter
		want string // seqs
	}{
		{"all", ListFilter{}, "[1 2 3 4 5]"},
		{"action", ListFilter{Criteria: Criteria{Action: "person.read"}}, "[1 4]"},
		{"action prefix", ListFilter{Criteria: Criteria{Action: "person.*"}}, "[1 2 4]"},
		{"any action", ListFilter{Criteria: Criteria{Action: "*"}}, "[1 2 3 4 5]"},
		{"prefix and actor", ListFilter{Criteria: Criteria{Action: "person.*", Actor: "u1"}}, "[2 4]"},
		{"no LIKE patterns", ListFilter{Criteria: Criteria{Action: "person%"}}, "[]"},
		{"unit", ListFilter{Criteria: Criteria{Unit: "310000000000"}}, "[3 5]"},
		{"object", ListFilter{Criteria: Criteria{Object: "p1"}}, "[1 2]"},
		{"result", ListFilter{Criteria: Criteria{Result: "denied"}}, "[2]"},
		{"from (inclusive)", ListFilter{Criteria: Criteria{From: t0.Add(2 * time.Hour)}}, "[3 4 5]"},
		{"to (exclusive)", ListFilter{Criteria: Criteria{To: t0.Add(2 * time.Hour)}}, "[1 2]"},
		{"actor and range", ListFilter{Criteria: Criteria{Actor: "u1", From: t0.Add(time.Hour), To: t0.Add(4 * time.Hour)}}, "[2 4]"},
		{"range in another zone", ListFilter{Criteria: Criteria{From: t0.Add(3 * time.Hour).In(time.FixedZone("CST", 8*3600))}}, "[4 5]"},
		{"all criteria", ListFilter{Criteria: Criteria{Actor: "u1", Unit: "310112000000", Object: "p2", Action: "person.read", Result: "ok",
			From: t0, To: t0.Add(24 * time.Hour)}}, "[4]"},
		{"nothing matches", ListFilter{Criteria: Criteria{Actor: "u0", Result: "denied"}}, "[]"},
		{"page", ListFilter{After: 2, Limit: 1}, "[3]"},
		{"page with criteria", ListFilter{Criteria: Criteria{Action: "person.*"}, After: 1, Limit: 1}, "[2]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := List(ctx, pool, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := listed(recs); got != tc.want {
				t.Errorf("seqs %s, want %s", got, tc.want)
			}
			if tc.f.Limit != 0 {
				return
			}
			seqs := []int64{}
			m, err := Each(ctx, pool, tc.f.Criteria, 100, func(r *Record) error {
				seqs = append(seqs, r.Seq)
				return nil
			})
			if err != nil || m != len(seqs) || fmt.Sprint(seqs) != tc.want {
				t.Errorf("Each: %d entries %v, %v; want %s", m, seqs, err, tc.want)
			}
		})
	}
	recs, err := List(ctx, pool, ListFilter{Limit: 1})
	if err != nil || len(recs) != 1 || recs[0].Actor != "u0" || recs[0].CorrelationID != "corr-0" || len(recs[0].Detail) == 0 ||
		!recs[0].At.Equal(t0) || recs[0].Unit != "310104000000" {
		t.Fatalf("record: %+v %v", recs, err)
	}
	for _, f := range []ListFilter{{Limit: -1}, {Limit: MaxListLimit + 1}, {After: -1},
		{Criteria: Criteria{From: t0, To: t0}}, {Criteria: Criteria{From: t0.Add(time.Hour), To: t0}}} {
		if _, err := List(ctx, pool, f); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}

// TestEach: Each stops at its limit and at fn's error.
func TestEach(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	w := newWriter(t, pool, WriterConfig{Signer: newKeys(t).signer})
	for i := range 7 {
		if _, err := w.Append(ctx, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []int64
	n, err := Each(ctx, pool, Criteria{}, 3, func(r *Record) error { seqs = append(seqs, r.Seq); return nil })
	if err != nil || n != 3 || fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("Each with limit 3: %d %v %v", n, seqs, err)
	}
	stop := errors.New("stop")
	n, err = Each(ctx, pool, Criteria{}, 100, func(r *Record) error {
		if r.Seq == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 4 {
		t.Fatalf("Each stopped by fn: %d %v", n, err)
	}
	if _, err := Each(ctx, pool, Criteria{}, 0, func(*Record) error { return nil }); err == nil {
		t.Error("Each with limit 0 accepted")
	}
	if _, err := Each(ctx, pool, Criteria{From: time.Now(), To: time.Now().Add(-time.Hour)}, 1, func(*Record) error { return nil }); err == nil {
		t.Error("Each with From after To accepted")
	}
}
