package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/crypto"
)

type testKeys struct {
	signer *crypto.SM2PrivateKey
	known  map[crypto.KeyID]crypto.Verifier
}

func newKeys(t testing.TB) *testKeys {
	t.Helper()
	k, err := crypto.GenerateSM2()
	if err != nil {
		t.Fatal(err)
	}
	return &testKeys{signer: k, known: map[crypto.KeyID]crypto.Verifier{k.KeyID(): k.Public()}}
}

func (k *testKeys) lookup(id crypto.KeyID) (crypto.Verifier, bool) {
	v, ok := k.known[id]
	return v, ok
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newWriter starts a writer closed (with errors ignored) at cleanup.
func newWriter(t testing.TB, pool *pgxpool.Pool, cfg WriterConfig) *Writer {
	t.Helper()
	w, err := NewWriter(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	return w
}

func entry(i int) Entry {
	return Entry{
		Actor:         fmt.Sprintf("user%03d", i%7),
		Unit:          "310000000000",
		Role:          "operator",
		Action:        "message.receive",
		Object:        fmt.Sprintf("0190a0b0-0000-7000-8000-%012d", i),
		Result:        "ok",
		Reason:        "",
		CorrelationID: fmt.Sprintf("corr-%d", i),
		Detail:        map[string]any{"i": i, "kind": "keyperson.register", "ratio": 1.25, "tags": []string{"a", "b"}},
	}
}

func mustVerifyOK(t testing.TB, ctx context.Context, pool *pgxpool.Pool, keys *testKeys) Report {
	t.Helper()
	r, err := Verify(ctx, pool, keys.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK {
		t.Fatalf("chain does not verify: %v (after %d entries)", r.FirstBad, r.Entries)
	}
	return r
}
