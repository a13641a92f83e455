package lead_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/store/lead"
	"zhianhub/store/storetest"
)

// TestNormalize: what duplicates share, and what keeps leads apart.
func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"某小区夜间有可疑人员聚集", "某小区 夜间有可疑人员聚集\n", true},
		{"某小区夜间有可疑人员聚集", "某小区　夜间有\t可疑人员聚集", true}, // ideographic space, tab
		{"３号楼１２０１室，ＡＢ", "3号楼1201室,ab", true},      // full-width digits, letters, comma
		{"Room 5 ABC", "room5abc", true},
		{"某小区夜间有可疑人员聚集", "某小区夜间有可疑人员聚集。", false}, // punctuation is kept
		{"3号楼", "4号楼", false},
	} {
		same := bytes.Equal(lead.Digest(tc.a), lead.Digest(tc.b))
		if same != tc.same {
			t.Errorf("%q vs %q: same %v (normalized %q, %q)", tc.a, tc.b, same, lead.Normalize(tc.a), lead.Normalize(tc.b))
		}
	}
}

func reg(content, unit, officer string, at time.Time) lead.Registration {
	return lead.Registration{Source: "hotline", Category: "0105", Content: content, Unit: unit, Officer: officer,
		RegisteredAt: at, Via: lead.ViaAPI, Actor: "li.officer", ActorUnit: unit}
}

// TestRegisterAndMerge: numbering, merging within category, region and
// window, the primary's links to its duplicates with their registrants,
// bus redelivery and conflicts, scope, concurrent duplicates.
func TestRegisterAndMerge(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC) // 10:00 CST
	svc, err := lead.New(lead.Config{Pool: pool, Now: func() time.Time { return now }, Window: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const text = "群众反映某小区夜间有可疑人员聚集（测试数据）"
	first, created, err := svc.Register(ctx, reg(text, "310104000000", "1023456", now))
	if err != nil || !created || first.LeadID != "31010420261127900001" || first.MergedInto != "" || first.Region != "310104" {
		t.Fatalf("first: %+v %v %v", first, created, err)
	}
	dup, _, err := svc.Register(ctx, reg(" 群众反映某小区夜间有可疑人员聚集（测试数据）\n", "310104010000", "1023457", now.Add(time.Hour)))
	if err != nil || dup.MergedInto != first.LeadID || dup.LeadID != "31010420261127900002" || dup.Content != " 群众反映某小区夜间有可疑人员聚集（测试数据）\n" {
		t.Fatalf("duplicate: %+v %v", dup, err)
	}
	for name, r := range map[string]lead.Registration{
		"other category": func() lead.Registration {
			r := reg(text, "310104000000", "1023456", now)
			r.Category = "0106"
			return r
		}(),
		"other region":  reg(text, "310115000000", "1023456", now),
		"out of window": reg(text, "310104000000", "1023456", now.Add(72*time.Hour)),
	} {
		l, _, err := svc.Register(ctx, r)
		if err != nil || l.MergedInto != "" {
			t.Errorf("%s: merged into %q, %v", name, l.MergedInto, err)
		}
	}
	got, err := lead.Get(ctx, pool, first.LeadID, nil)
	if err != nil || len(got.Duplicates) != 1 || got.Duplicates[0].LeadID != dup.LeadID || got.Duplicates[0].Officer != "1023457" ||
		got.Duplicates[0].Unit != "310104010000" || got.Duplicates[0].Via != lead.ViaAPI {
		t.Fatalf("primary %+v, %v", got, err)
	}
	if _, err := lead.Get(ctx, pool, first.LeadID, []string{"310115000000"}); !errors.Is(err, lead.ErrNotFound) {
		t.Errorf("out of scope: %v", err)
	}
	if _, _, err := svc.Register(ctx, lead.Registration{Source: "rumour", Category: "0105", Content: "x", Unit: "310104000000",
		Officer: "1023456", Via: lead.ViaAPI, Actor: "a"}); !errors.Is(err, lead.ErrInvalid) {
		t.Errorf("bad source: %v", err)
	}

	// Bus: the same lead again (another messageId) has no effect; other
	// content under its number is a conflict.
	bus := func(id, content string) (lead.Lead, bool, error) {
		var l lead.Lead
		var c bool
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			r := reg(content, "310104000000", "1023456", now)
			r.LeadID, r.Via, r.MessageID, r.Actor = id, lead.ViaBus, uuid.NewString(), "leads"
			l, c, err = svc.RegisterTx(ctx, tx, r)
			return err
		})
		return l, c, err
	}
	if l, c, err := bus("31010420261127000042", text); err != nil || !c || l.MergedInto != first.LeadID || l.Via != lead.ViaBus {
		t.Fatalf("bus lead: %+v %v %v", l, c, err)
	}
	if _, c, err := bus("31010420261127000042", text); err != nil || c {
		t.Fatalf("bus lead again: %v %v", c, err)
	}
	if _, _, err := bus("31010420261127000042", "另一条线索"); !errors.Is(err, lead.ErrConflict) {
		t.Fatalf("bus lead with other content: %v", err)
	}

	// Concurrent duplicates: one primary.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if _, _, err := svc.Register(ctx, reg("并发登记的同一线索（测试）", "310104000000", fmt.Sprint(1023460+i), now)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var primaries int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM lead WHERE content = '并发登记的同一线索（测试）' AND merged_into IS NULL`).Scan(&primaries); err != nil || primaries != 1 {
		t.Errorf("%d primaries of four concurrent duplicates, %v", primaries, err)
	}
	list, err := lead.List(ctx, pool, lead.Filter{Scope: []string{"310104000000", "310104010000"}, Primary: true})
	if err != nil || len(list) != 4 { // first, other category, out of window, the concurrent one
		t.Errorf("primaries in scope: %d, %v", len(list), err)
	}
}
