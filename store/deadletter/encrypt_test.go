package deadletter_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto/fieldenc"
	"zhianhub/store/deadletter"
	"zhianhub/store/storetest"
)

// leadEvent is an internal event as the portal route rejects it: plain JSON
// from a module, with a name and an ID number in a lead's free text.
const leadEvent = `{"messageId":"0190a0b0-0000-7000-8000-0000000000e1","kind":"lead.submitted",` +
	`"content":"举报人张三丰，身份证号310101199001011234，称某旅馆未登记住客"}`

// secrets are the parts of leadEvent that must never be stored in clear.
var secrets = []string{"张三丰", "310101199001011234", "旅馆"}

// putClear inserts l as the store wrote letters before the encryption
// (migration 00021): raw in clear, raw_encrypted false, raw_size NULL.
func putClear(t testing.TB, ctx context.Context, pool *pgxpool.Pool, l deadletter.Letter) int64 {
	t.Helper()
	var id int64
	err := pool.QueryRow(ctx, `
		INSERT INTO dead_letter (source, exchange, routing_key, message_id, sender, kind, raw, code, reason, security)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
		l.Source, l.Exchange, l.RoutingKey, l.MessageID, l.Sender, l.Kind, l.Raw, l.Code, l.Reason, l.Security).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// stored reads the row of letter id as it is at rest.
func stored(t testing.TB, ctx context.Context, pool *pgxpool.Pool, id int64) (raw []byte, encrypted bool, size *int) {
	t.Helper()
	if err := pool.QueryRow(ctx, `SELECT raw, raw_encrypted, raw_size FROM dead_letter WHERE id = $1`, id).
		Scan(&raw, &encrypted, &size); err != nil {
		t.Fatal(err)
	}
	return raw, encrypted, size
}

func sizeText(size *int) string {
	if size == nil {
		return "NULL"
	}
	return strconv.Itoa(*size)
}

func portalLetter(raw []byte) deadletter.Letter {
	return deadletter.Letter{
		Source: "amqp:zhian.events.portal", Exchange: "zhian.events", RoutingKey: "lead.submitted",
		MessageID: "0190a0b0-0000-7000-8000-0000000000e1", Sender: "portal", Kind: "lead.submitted",
		Raw: raw, Code: "E122", Reason: "单位代码不存在",
	}
}

// TestRawEncryptedAtRest: the raw bytes are stored only encrypted, bound to
// their row; Get and List give the message and its size; letters stored in
// clear before the encryption still read.
func TestRawEncryptedAtRest(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})

	tests := []struct {
		name string
		raw  []byte
	}{
		{"internal event with personal data", []byte(leadEvent)},
		{"binary", []byte{0x00, 0xff, 0xfe, '{', 0x00}},
		{"empty", []byte{}},
	}
	ids := map[string]int64{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := put(t, ctx, s, pool, portalLetter(tt.raw))
			ids[tt.name] = id
			raw, encrypted, size := stored(t, ctx, pool, id)
			if !encrypted || size == nil || *size != len(tt.raw) {
				t.Errorf("raw_encrypted %v raw_size %s, want true and %d", encrypted, sizeText(size), len(tt.raw))
			}
			if len(raw) <= len(tt.raw) || (len(tt.raw) > 0 && bytes.Contains(raw, tt.raw)) {
				t.Errorf("stored raw (%d bytes) is not a ciphertext of the %d bytes", len(raw), len(tt.raw))
			}
			for _, secret := range secrets {
				if bytes.Contains(raw, []byte(secret)) {
					t.Errorf("stored raw holds %q in clear", secret)
				}
			}
			got, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Raw == nil || !bytes.Equal(got.Raw, tt.raw) || got.Size != len(tt.raw) {
				t.Errorf("Get: raw %q size %d, want %q size %d", got.Raw, got.Size, tt.raw, len(tt.raw))
			}
		})
	}

	// A letter stored in clear before the encryption reads as it is.
	clearID := putClear(t, ctx, pool, portalLetter([]byte(leadEvent)))
	got, err := s.Get(ctx, clearID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Raw) != leadEvent || got.Size != len(leadEvent) {
		t.Errorf("clear letter: raw %q size %d", got.Raw, got.Size)
	}

	// List reports the size of each message, not of its ciphertext.
	listed, err := s.List(ctx, deadletter.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]int{clearID: len(leadEvent)}
	for _, tt := range tests {
		want[ids[tt.name]] = len(tt.raw)
	}
	if len(listed) != len(want) {
		t.Fatalf("listed %d letters, want %d", len(listed), len(want))
	}
	for _, l := range listed {
		if w, ok := want[l.ID]; !ok || l.Size != w || l.Raw != nil {
			t.Errorf("listed letter %d: size %d raw %q, want size %d and no raw", l.ID, l.Size, l.Raw, w)
		}
	}

	// A ciphertext copied to another row does not decrypt there.
	src, dst := ids["internal event with personal data"], ids["binary"]
	if _, err := pool.Exec(ctx, `UPDATE dead_letter d SET raw = o.raw, raw_size = o.raw_size
		FROM dead_letter o WHERE o.id = $1 AND d.id = $2`, src, dst); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Get(ctx, dst); !errors.Is(err, fieldenc.ErrDecrypt) {
		t.Errorf("Get of a moved ciphertext = %q, %v; want fieldenc.ErrDecrypt", l.Raw, err)
	}
	if l, err := s.Get(ctx, src); err != nil || string(l.Raw) != leadEvent {
		t.Errorf("Get of the original = %q, %v", l.Raw, err)
	}
}

// TestPutKeyringOfAnotherHub: a letter encrypted with one hub's data keys
// does not open with another's.
func TestPutKeyringOfAnotherHub(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	id := put(t, ctx, s, pool, portalLetter([]byte(leadEvent)))
	otherPool := storetest.NewPool(t)
	other, err := deadletter.New(pool, deadletter.Config{Cipher: storetest.Keyring(t, otherPool)})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := other.Get(ctx, id); !errors.Is(err, fieldenc.ErrDecrypt) {
		t.Errorf("Get with another hub's keys = %q, %v; want fieldenc.ErrDecrypt", l.Raw, err)
	}
}

// TestHas finds a stored letter by its metadata and bytes, encrypted or
// stored in clear before the encryption, and nothing else.
func TestHas(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	enc := portalLetter([]byte(leadEvent))
	put(t, ctx, s, pool, enc)
	clear := portalLetter([]byte(`{"messageId":"0190a0b0-0000-7000-8000-0000000000e2"}`))
	clear.MessageID = "0190a0b0-0000-7000-8000-0000000000e2"
	putClear(t, ctx, pool, clear)

	edit := func(l deadletter.Letter, f func(*deadletter.Letter)) deadletter.Letter {
		l.Raw = bytes.Clone(l.Raw)
		f(&l)
		return l
	}
	tests := []struct {
		name string
		l    deadletter.Letter
		want bool
	}{
		{"encrypted letter", enc, true},
		{"letter stored in clear", clear, true},
		{"other bytes, same size", edit(enc, func(l *deadletter.Letter) { l.Raw[len(l.Raw)-2] = 'X' }), false},
		{"other bytes, other size", edit(enc, func(l *deadletter.Letter) { l.Raw = append(l.Raw, ' ') }), false},
		{"other code", edit(enc, func(l *deadletter.Letter) { l.Code = "E120" }), false},
		{"other source", edit(enc, func(l *deadletter.Letter) { l.Source = "amqp:zhian.events.push" }), false},
		{"other routing key", edit(enc, func(l *deadletter.Letter) { l.RoutingKey = "warning.issued" }), false},
		{"other message id", edit(enc, func(l *deadletter.Letter) { l.MessageID = "" }), false},
	}
	for _, tt := range tests {
		got, err := s.Has(ctx, pool, tt.l)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%s: Has = %v, want %v", tt.name, got, tt.want)
		}
	}
}
