package deadletter_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
	"zhianhub/store/storetest"
)

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newStore(t testing.TB, cfg deadletter.Config) (*deadletter.Store, *pgxpool.Pool) {
	t.Helper()
	pool := storetest.NewPool(t)
	if cfg.Cipher == nil {
		cfg.Cipher = storetest.Keyring(t, pool)
	}
	s, err := deadletter.New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, pool
}

func put(t testing.TB, ctx context.Context, s *deadletter.Store, pool *pgxpool.Pool, l deadletter.Letter) int64 {
	t.Helper()
	id, err := s.Put(ctx, pool, l)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// sample is a letter as the inbound path records a bad signature.
func sample() deadletter.Letter {
	return deadletter.Letter{
		Source:     "amqp:node.310000000000",
		Exchange:   "mps.bus",
		RoutingKey: "to.310000000000.keyperson.register",
		MessageID:  "0190a0b0-0000-7000-8000-000000000001",
		Sender:     "000000000000",
		Kind:       "keyperson.register",
		Raw:        []byte(`{"v":1,"id":"0190a0b0-0000-7000-8000-000000000001"}`),
		Code:       "E110",
		Reason:     "签名无效",
		Security:   true,
	}
}

func TestPutGet(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	binary := []byte{0x00, 0xff, 0xfe, '{', 0x00, '\n', 0x80}
	tests := []struct {
		name string
		in   deadletter.Letter
		want deadletter.Letter // fields compared; zero ID/At ignored
	}{
		{"envelope", sample(), sample()},
		{"binary bytes, no route",
			deadletter.Letter{Source: "amqp:node.310000000000", Raw: binary, Code: "E100", Reason: "not JSON", Security: true},
			deadletter.Letter{Source: "amqp:node.310000000000", Raw: binary, Code: "E100", Reason: "not JSON", Security: true}},
		{"empty body",
			deadletter.Letter{Source: "amqp:node.310000000000", Code: "E100", Reason: "empty body"},
			deadletter.Letter{Source: "amqp:node.310000000000", Raw: []byte{}, Code: "E100", Reason: "empty body"}},
		{"unstorable text is cleaned",
			deadletter.Letter{MessageID: "ab\x00c\xff", Kind: strings.Repeat("界", 100), Raw: []byte("x"), Code: "E199", Reason: "r\x00"},
			deadletter.Letter{MessageID: "ab\uFFFDc\uFFFD", Kind: strings.Repeat("界", 85), Raw: []byte("x"), Code: "E199", Reason: "r\uFFFD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := put(t, ctx, s, pool, tt.in)
			got, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != id || got.At.IsZero() || time.Since(got.At) > time.Minute {
				t.Errorf("id %d at %v, want id %d and now", got.ID, got.At, id)
			}
			w := tt.want
			w.ID, w.At, w.Size = got.ID, got.At, len(w.Raw)
			if !equal(got, w) {
				t.Errorf("got\n%+v\nwant\n%+v", got, w)
			}
			if got.Raw == nil || !bytes.Equal(got.Raw, w.Raw) {
				t.Errorf("raw %q, want %q", got.Raw, w.Raw)
			}
			if got.Resolved() || got.ReplayCount != 0 || !got.LastReplayedAt.IsZero() {
				t.Errorf("new letter resolved or replayed: %+v", got)
			}
		})
	}
	if _, err := s.Get(ctx, 999999); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func equal(a, b deadletter.Letter) bool {
	return a.ID == b.ID && a.At.Equal(b.At) && a.Source == b.Source && a.Exchange == b.Exchange &&
		a.RoutingKey == b.RoutingKey && a.MessageID == b.MessageID && a.Sender == b.Sender && a.Kind == b.Kind &&
		bytes.Equal(a.Raw, b.Raw) && a.Size == b.Size && a.Code == b.Code && a.Reason == b.Reason &&
		a.Security == b.Security && a.ReplayCount == b.ReplayCount && a.LastReplayedAt.Equal(b.LastReplayedAt) &&
		a.ResolvedAt.Equal(b.ResolvedAt) && a.ResolvedBy == b.ResolvedBy && a.Note == b.Note
}

func TestPutInvalid(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	tests := []struct {
		name string
		edit func(*deadletter.Letter)
	}{
		{"no code", func(l *deadletter.Letter) { l.Code = "" }},
		{"accepted code", func(l *deadletter.Letter) { l.Code = "0000" }},
		{"lower-case code", func(l *deadletter.Letter) { l.Code = "e110" }},
		{"long code", func(l *deadletter.Letter) { l.Code = "E1100" }},
		{"no reason", func(l *deadletter.Letter) { l.Reason = "" }},
		{"blank reason", func(l *deadletter.Letter) { l.Reason = " \n" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := sample()
			tt.edit(&l)
			if _, err := s.Put(ctx, pool, l); !errors.Is(err, deadletter.ErrInvalidLetter) {
				t.Fatalf("Put = %v, want ErrInvalidLetter", err)
			}
		})
	}
	if n, err := s.Count(ctx, deadletter.Filter{}); err != nil || n != 0 {
		t.Errorf("Count = %d, %v after refused puts", n, err)
	}
}

// TestPutInTransaction records a letter in the caller's transaction: it is
// gone with a rollback and kept with a commit.
func TestPutInTransaction(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	for _, tc := range []struct{ commit, pipe bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		commit := tc.commit
		var tx pgx.Tx
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tc.pipe { // the insert is held back until the commit
			tx = store.NewPipe(tx)
		}
		id, err := s.Put(ctx, tx, sample())
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := tx.(*store.Pipe); ok && p.Held() != 1 {
			t.Errorf("%d writes held back by Put in a pipe, want 1 (the insert)", p.Held())
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Get(ctx, id)
		if commit && err != nil {
			t.Errorf("committed letter: %v", err)
		}
		if !commit && !errors.Is(err, deadletter.ErrNotFound) {
			t.Errorf("rolled back letter: %v, want ErrNotFound", err)
		}
	}
}

func TestListFiltersPagingCount(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	base := time.Now().Add(-10 * time.Hour).Truncate(time.Second)
	type spec struct {
		code     string
		hoursAgo int // At = now - hoursAgo (0: database clock)
		security bool
		resolve  bool
	}
	specs := []spec{
		{"E110", 9, true, false},  // ids[0]
		{"E100", 8, true, true},   // ids[1]
		{"E199", 7, false, false}, // ids[2]
		{"E110", 5, true, true},   // ids[3]
		{"E199", 3, false, false}, // ids[4]
		{"E111", 0, true, false},  // ids[5]
		{"E199", 0, false, false}, // ids[6]
	}
	var ids []int64
	for i, sp := range specs {
		l := sample()
		l.Code, l.Security = sp.code, sp.security
		if sp.hoursAgo > 0 {
			l.At = base.Add(time.Duration(10-sp.hoursAgo) * time.Hour)
		}
		l.Reason = "reason " + string(rune('a'+i))
		id := put(t, ctx, s, pool, l)
		if sp.resolve {
			if err := s.Resolve(ctx, id, "alice", "handled"); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, id)
	}
	yes, no := true, false
	tests := []struct {
		name string
		f    deadletter.Filter
		want []int // indexes into ids, newest first
	}{
		{"all", deadletter.Filter{}, []int{6, 5, 4, 3, 2, 1, 0}},
		{"code", deadletter.Filter{Code: "E199"}, []int{6, 4, 2}},
		{"unknown code", deadletter.Filter{Code: "E140"}, nil},
		{"unresolved", deadletter.Filter{Unresolved: true}, []int{6, 5, 4, 2, 0}},
		{"security", deadletter.Filter{Security: &yes}, []int{5, 3, 1, 0}},
		{"not security", deadletter.Filter{Security: &no}, []int{6, 4, 2}},
		{"since", deadletter.Filter{Since: base.Add(5 * time.Hour)}, []int{6, 5, 4, 3}},
		{"since until", deadletter.Filter{Since: base.Add(2 * time.Hour), Until: base.Add(5 * time.Hour)}, []int{2, 1}},
		{"before id", deadletter.Filter{BeforeID: ids[3]}, []int{2, 1, 0}},
		{"limit", deadletter.Filter{Limit: 2}, []int{6, 5}},
		{"combined", deadletter.Filter{Code: "E110", Unresolved: true, Security: &yes}, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.List(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs, wantIDs []int64
			for _, l := range got {
				gotIDs = append(gotIDs, l.ID)
				if l.Raw != nil || l.Size != len(sample().Raw) {
					t.Errorf("listed letter %d carries raw %q / size %d", l.ID, l.Raw, l.Size)
				}
			}
			for _, i := range tt.want {
				wantIDs = append(wantIDs, ids[i])
			}
			if !slices.Equal(gotIDs, wantIDs) {
				t.Errorf("List ids %v, want %v", gotIDs, wantIDs)
			}
			f := tt.f
			f.Limit = 0
			n, err := s.Count(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if f := tt.f; f.Limit == 0 && n != int64(len(wantIDs)) {
				t.Errorf("Count = %d, want %d", n, len(wantIDs))
			}
		})
	}

	// Paging with BeforeID walks every letter once, newest first.
	var walked []int64
	f := deadletter.Filter{Limit: 3}
	for pages := 0; ; pages++ {
		page, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			if pages != 3 {
				t.Errorf("%d pages, want 3", pages)
			}
			break
		}
		for _, l := range page {
			walked = append(walked, l.ID)
		}
		f.BeforeID = page[len(page)-1].ID
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(walked, want) {
		t.Errorf("paged ids %v, want %v", walked, want)
	}

	if _, err := s.List(ctx, deadletter.Filter{Limit: -1}); err == nil {
		t.Error("negative limit accepted")
	}

	total, unresolved, lastHour, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if total != 7 || unresolved != 5 || lastHour != 2 {
		t.Errorf("Stats = %d, %d, %d; want 7, 5, 2", total, unresolved, lastHour)
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	id := put(t, ctx, s, pool, sample())
	if err := s.Resolve(ctx, id, " ", "x"); err == nil {
		t.Error("Resolve without who accepted")
	}
	if err := s.Resolve(ctx, id, "alice", "伪造签名，已通报部级总线"); err != nil {
		t.Fatal(err)
	}
	l, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Resolved() || l.ResolvedBy != "alice" || l.Note != "伪造签名，已通报部级总线" || time.Since(l.ResolvedAt) > time.Minute {
		t.Errorf("resolved letter %+v", l)
	}
	if err := s.Resolve(ctx, id, "bob", "again"); !errors.Is(err, deadletter.ErrAlreadyResolved) {
		t.Errorf("second Resolve = %v, want ErrAlreadyResolved", err)
	}
	if l2, _ := s.Get(ctx, id); l2.ResolvedBy != "alice" || !l2.ResolvedAt.Equal(l.ResolvedAt) {
		t.Errorf("second Resolve changed the letter: %+v", l2)
	}
	if err := s.Resolve(ctx, id+1000, "bob", ""); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("Resolve(missing) = %v, want ErrNotFound", err)
	}
	if err := s.MarkReplayed(ctx, id+1000); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("MarkReplayed(missing) = %v, want ErrNotFound", err)
	}
	if err := s.MarkReplayed(ctx, id); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Get(ctx, id); l.ReplayCount != 1 || l.LastReplayedAt.IsZero() {
		t.Errorf("after MarkReplayed: count %d at %v", l.ReplayCount, l.LastReplayedAt)
	}
}

// TestRecordSecurityEvent records security and ordinary letters with a real
// audit writer: only the security letter is in the chain, which verifies.
func TestRecordSecurityEvent(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pool := storetest.NewPool(t)
	key, err := crypto.GenerateSM2()
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.NewWriter(pool, audit.WriterConfig{Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	kr := storetest.Keyring(t, pool)
	s, err := deadletter.New(pool, deadletter.Config{Cipher: kr, Auditor: w, Actor: "310000000000"})
	if err != nil {
		t.Fatal(err)
	}
	sec := sample()
	secID, err := s.Record(ctx, sec)
	if err != nil {
		t.Fatal(err)
	}
	plain := sample()
	plain.Code, plain.Security, plain.Reason = "E199", false, "database down"
	if _, err := s.Record(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	var actor, action, object, result, reason, corr, sm3 string
	err = pool.QueryRow(ctx, `SELECT count(*) OVER (), actor, action, object, result, reason, correlation_id, detail->>'sm3'
		FROM audit_entry`).Scan(&n, &actor, &action, &object, &result, &reason, &corr, &sm3)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"310000000000", deadletter.ActionSecurity, strconv.FormatInt(secID, 10), "E110", sec.Reason, sec.MessageID, crypto.SM3Hex(sec.Raw)}
	if got := []string{actor, action, object, result, reason, corr, sm3}; n != 1 || !slices.Equal(got, want) {
		t.Errorf("%d audit entries; entry %q, want %q", n, got, want)
	}
	rep, err := audit.Verify(ctx, pool, func(id crypto.KeyID) (crypto.Verifier, bool) { return key.Public(), id == key.KeyID() })
	if err != nil || !rep.OK {
		t.Errorf("chain: %+v %v", rep, err)
	}

	// Without an auditor a security letter is stored, and the missing event
	// is an error.
	bare, err := deadletter.New(pool, deadletter.Config{Cipher: kr})
	if err != nil {
		t.Fatal(err)
	}
	id, err := bare.Record(ctx, sec)
	if !errors.Is(err, deadletter.ErrNoAuditor) || id == 0 {
		t.Errorf("Record without auditor = %d, %v; want the id and ErrNoAuditor", id, err)
	}
}
