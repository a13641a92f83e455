package lead_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/store"
	"zhianhub/store/lead"
	"zhianhub/store/storetest"
)

// keyring opens the field encryption keys of pool's database under a node
// key store of the test's own.
func keyring(t *testing.T, pool *pgxpool.Pool) *fieldenc.Keyring {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := keystore.Generate(dir, "310000000000", nil); err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Load(dir, keystore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := fieldenc.Open(context.Background(), store.NewDataKeys(pool), ks)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func newService(t *testing.T, pool *pgxpool.Pool, now time.Time) *lead.Service {
	t.Helper()
	svc, err := lead.New(lead.Config{Pool: pool, Keyring: keyring(t, pool), Now: func() time.Time { return now }, Window: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestNormalize: what duplicates share, and what keeps leads apart; the
// blind index follows Normalize.
func TestNormalize(t *testing.T) {
	svc := newService(t, storetest.NewPool(t), time.Now())
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
		same := lead.Normalize(tc.a) == lead.Normalize(tc.b)
		if same != tc.same || bytes.Equal(svc.Index(tc.a), svc.Index(tc.b)) != tc.same {
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
	svc := newService(t, pool, now)
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
	got, err := svc.Get(ctx, pool, first.LeadID, nil)
	if err != nil || len(got.Duplicates) != 1 || got.Duplicates[0].LeadID != dup.LeadID || got.Duplicates[0].Officer != "1023457" ||
		got.Duplicates[0].Unit != "310104010000" || got.Duplicates[0].Via != lead.ViaAPI {
		t.Fatalf("primary %+v, %v", got, err)
	}
	if _, err := svc.Get(ctx, pool, first.LeadID, []string{"310115000000"}); !errors.Is(err, lead.ErrNotFound) {
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
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM lead WHERE content_index = $1 AND merged_into IS NULL`,
		svc.Index("并发登记的同一线索（测试）")).Scan(&primaries); err != nil || primaries != 1 {
		t.Errorf("%d primaries of four concurrent duplicates, %v", primaries, err)
	}
	list, err := svc.List(ctx, pool, lead.Filter{Scope: []string{"310104000000", "310104010000"}, Primary: true})
	if err != nil || len(list) != 4 { // first, other category, out of window, the concurrent one
		t.Errorf("primaries in scope: %d, %v", len(list), err)
	}
}

// TestContentAtRest: the text is stored only encrypted, bound to its lead;
// the duplicate index is keyed: identical texts still merge, but the index
// is not the plain SM3 of the text and differs under another keyring.
func TestContentAtRest(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	svc := newService(t, pool, now)
	// Test data: a made-up ID number and mobile number.
	const text = "来访群众张测试（身份证 310104198605171356，电话 13912345678）反映某路口夜间聚集（测试数据）"
	first, _, err := svc.Register(ctx, reg(text, "310104000000", "1023456", now))
	if err != nil {
		t.Fatal(err)
	}
	dup, _, err := svc.Register(ctx, reg(text, "310104010000", "1023457", now.Add(time.Minute)))
	if err != nil || dup.MergedInto != first.LeadID || dup.Content != text {
		t.Fatalf("identical text not merged: %+v %v", dup, err)
	}
	got, err := svc.Get(ctx, pool, first.LeadID, nil)
	if err != nil || got.Content != text {
		t.Fatalf("decrypted %q, %v", got.Content, err)
	}

	type row struct {
		id          string
		sealed, idx []byte
	}
	var rows []row
	rs, err := pool.Query(ctx, `SELECT lead_id, content_enc, content_index FROM lead ORDER BY lead_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.id, &r.sealed, &r.idx); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil || len(rows) != 2 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	plainSM3 := sm3.Sum([]byte(lead.Normalize(text)))
	for _, r := range rows {
		for _, part := range []string{text, "310104198605171356", "13912345678", "张测试", lead.Normalize(text)} {
			if bytes.Contains(r.sealed, []byte(part)) || bytes.Contains(r.idx, []byte(part)) {
				t.Errorf("%s: stored bytes contain %q", r.id, part)
			}
		}
		if bytes.Equal(r.idx, plainSM3[:]) {
			t.Errorf("%s: the index is the unkeyed SM3 of the text", r.id)
		}
	}
	if bytes.Equal(rows[0].sealed, rows[1].sealed) {
		t.Error("identical texts give identical ciphertexts")
	}
	if !bytes.Equal(rows[0].idx, rows[1].idx) || !bytes.Equal(rows[0].idx, svc.Index(text)) {
		t.Error("identical texts give different indexes")
	}
	// No columns in clear remain.
	var clear int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE table_name = 'lead' AND column_name IN ('content', 'content_hash')`).Scan(&clear); err != nil || clear != 0 {
		t.Errorf("%d clear-text columns, %v", clear, err)
	}

	// A ciphertext moved to another lead does not decrypt.
	if _, err := pool.Exec(ctx, `UPDATE lead SET content_enc = $1 WHERE lead_id = $2`, rows[0].sealed, rows[1].id); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Get(ctx, pool, rows[1].id, nil); !errors.Is(err, fieldenc.ErrDecrypt) {
		t.Errorf("moved ciphertext: %v", err)
	}

	// Another deployment (other data keys) indexes the same text otherwise.
	other := newService(t, storetest.NewPool(t), now)
	if bytes.Equal(other.Index(text), svc.Index(text)) {
		t.Error("the index is the same under another keyring")
	}
	if _, err := lead.New(lead.Config{Pool: pool}); err == nil || !strings.Contains(err.Error(), "Keyring") {
		t.Errorf("no keyring: %v", err)
	}
}
