package audit

import (
	"fmt"
	"testing"

	"zhianhub/store/storetest"
)

func TestList(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	w := newWriter(t, pool, WriterConfig{Signer: newKeys(t).signer})
	for i, action := range []string{"person.read", "person.unmask", "role.grant", "person.read"} {
		e := entry(i)
		e.Action, e.Actor = action, fmt.Sprintf("u%d", i%2)
		if _, err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		f    ListFilter
		want string // seqs
	}{
		{ListFilter{}, "[1 2 3 4]"},
		{ListFilter{Action: "person.read"}, "[1 4]"},
		{ListFilter{Action: "person.*"}, "[1 2 4]"},
		{ListFilter{Action: "person.*", Actor: "u1"}, "[2 4]"},
		{ListFilter{After: 2, Limit: 1}, "[3]"},
		{ListFilter{Action: "person%"}, "[]"}, // no LIKE patterns
	} {
		recs, err := List(ctx, pool, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, r := range recs {
			seqs = append(seqs, r.Seq)
		}
		if fmt.Sprint(seqs) != tc.want && !(tc.want == "[]" && len(seqs) == 0) {
			t.Errorf("%+v: seqs %v, want %s", tc.f, seqs, tc.want)
		}
	}
	recs, err := List(ctx, pool, ListFilter{Limit: 1})
	if err != nil || len(recs) != 1 || recs[0].Actor != "u0" || recs[0].CorrelationID != "corr-0" || len(recs[0].Detail) == 0 {
		t.Fatalf("record: %+v %v", recs, err)
	}
	for _, f := range []ListFilter{{Limit: -1}, {Limit: MaxListLimit + 1}, {After: -1}} {
		if _, err := List(ctx, pool, f); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}
