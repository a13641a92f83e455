package audit

import (
	"context"
	"strings"
	"testing"

	"zhianhub/store/storetest"
)

func TestChainBreakEntry(t *testing.T) {
	broken := Report{Entries: 41, Checkpoints: 3, FirstBad: &Problem{Seq: 42, Kind: KindDeleted, Detail: "entry 42 is missing (the next entry is 43)"}}
	for _, tc := range []struct {
		name      string
		rep       Report
		by        Entry
		wantActor string
		wantErr   bool
	}{
		{"intact", Report{OK: true, Entries: 5}, Entry{}, "", true},
		{"not ok without a problem", Report{}, Entry{}, "", true},
		{"by the system", broken, Entry{}, "system", false},
		{"by an auditor", broken, Entry{Actor: "aud.itor", Unit: "310000000000", Role: "auditor", CorrelationID: "req-1",
			Action: "ignored", Detail: map[string]any{"ignored": true}}, "aud.itor", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ChainBreakEntry(tc.rep, tc.by)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("entry %+v for an intact chain", e)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := e.Detail.(map[string]any)
			if e.Actor != tc.wantActor || e.Action != ActionChainBreak || e.Object != "42" || e.Result != ResultBroken ||
				e.Reason != "audit chain BROKEN at seq 42 (deleted): entry 42 is missing (the next entry is 43); 41 entries and 3 checkpoints checked out before it" ||
				d["seq"] != int64(42) || d["kind"] != KindDeleted || d["entries"] != int64(41) || e.Unit != tc.by.Unit || e.CorrelationID != tc.by.CorrelationID {
				t.Fatalf("entry %+v", e)
			}
		})
	}
}

// TestStageChainBreak: the event is staged (audit_pending), then chained.
func TestStageChainBreak(t *testing.T) {
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	rep := Report{FirstBad: &Problem{Seq: 7, Kind: KindModified, Detail: "entry 7: its hash does not match its content"}}
	if err := StageChainBreak(ctx, pool, Report{OK: true}, Entry{}); err == nil {
		t.Fatal("an intact chain staged a break")
	}
	if err := StageChainBreak(ctx, pool, rep, Entry{Actor: "cli"}); err != nil {
		t.Fatal(err)
	}
	var actor, object, result, reason string
	if err := pool.QueryRow(context.Background(), `SELECT actor, object, result, reason FROM audit_pending WHERE action = $1`, ActionChainBreak).
		Scan(&actor, &object, &result, &reason); err != nil {
		t.Fatal(err)
	}
	if actor != "cli" || object != "7" || result != "broken" || !strings.HasPrefix(reason, "audit chain BROKEN at seq 7 (modified)") {
		t.Fatalf("staged %s %s %s %q", actor, object, result, reason)
	}
	w := newWriter(t, pool, WriterConfig{Signer: newKeys(t).signer})
	if _, err := w.ChainPending(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := List(ctx, pool, ListFilter{Criteria: Criteria{Action: ActionChainBreak}})
	if err != nil || len(recs) != 1 || recs[0].Actor != "cli" {
		t.Fatalf("chained: %+v %v", recs, err)
	}
}
