package fieldenc_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/store"
	"zhianhub/store/storetest"
)

func newKeys(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := keystore.Generate(dir, "310000000000", nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func load(t *testing.T, dir string) *keystore.Store {
	t.Helper()
	ks, err := keystore.Load(dir, keystore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestEncryptDecryptBlindIndex(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	dir := newKeys(t)
	kr, err := fieldenc.Open(ctx, store.NewDataKeys(pool), load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	idNo := []byte("310104198605171356")
	aad := []byte("person.id_no/32010620261126000017")
	c1, err := kr.Encrypt(idNo, aad)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := kr.Encrypt(idNo, aad)
	if bytes.Equal(c1, c2) || bytes.Contains(c1, idNo) {
		t.Fatal("ciphertexts equal or plaintext visible")
	}
	pt, err := kr.Decrypt(c1, aad)
	if err != nil || !bytes.Equal(pt, idNo) {
		t.Fatalf("decrypt: %q %v", pt, err)
	}
	// Bad cases all fail with ErrDecrypt.
	flipped := bytes.Clone(c1)
	flipped[len(flipped)-1] ^= 1
	badKey := bytes.Clone(c1)
	badKey[4] = 9
	for name, tc := range map[string]struct{ ct, aad []byte }{
		"other place":   {c1, []byte("person.name/32010620261126000017")},
		"flipped bit":   {flipped, aad},
		"unknown key":   {badKey, aad},
		"truncated":     {c1[:10], aad},
		"empty":         {nil, aad},
		"other version": {append([]byte{2}, c1[1:]...), aad},
	} {
		if _, err := kr.Decrypt(tc.ct, tc.aad); !errors.Is(err, fieldenc.ErrDecrypt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Blind index: deterministic, domain-separated, keyed.
	b1, b2 := kr.BlindIndex("id_no", idNo), kr.BlindIndex("id_no", idNo)
	if !bytes.Equal(b1, b2) || len(b1) != 32 {
		t.Fatal("blind index not deterministic")
	}
	if bytes.Equal(b1, kr.BlindIndex("name", idNo)) || bytes.Equal(b1, kr.BlindIndex("id_no", []byte("310104198605171357"))) {
		t.Fatal("blind index collides across domains or values")
	}

	// A second process (new keyring on the same database) reads the same keys.
	kr2, err := fieldenc.Open(ctx, store.NewDataKeys(pool), load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := kr2.Decrypt(c1, aad); err != nil || !bytes.Equal(pt, idNo) {
		t.Fatalf("second keyring: %v", err)
	}
	if !bytes.Equal(kr2.BlindIndex("id_no", idNo), b1) {
		t.Fatal("blind index differs between processes")
	}
	// Another database has other keys: no shared secret between deployments.
	other, err := fieldenc.Open(ctx, store.NewDataKeys(storetest.NewPool(t)), load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.BlindIndex("id_no", idNo), b1) {
		t.Fatal("blind index key is not per deployment")
	}
	if _, err := other.Decrypt(c1, aad); !errors.Is(err, fieldenc.ErrDecrypt) {
		t.Fatalf("other deployment decrypted: %v", err)
	}
}

func TestRotation(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	dir := newKeys(t)
	kr, err := fieldenc.Open(ctx, store.NewDataKeys(pool), load(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	old, _ := kr.Encrypt([]byte("张测试"), nil)
	// Rotate the key-encryption key, then the data key.
	if _, _, err := keystore.Rotate(dir, keystore.KindEnc, nil); err != nil {
		t.Fatal(err)
	}
	kr, err = fieldenc.Open(ctx, store.NewDataKeys(pool), load(t, dir))
	if err != nil {
		t.Fatalf("reopen after KEK rotation: %v", err)
	}
	n, err := kr.Rotate(ctx)
	if err != nil || n != 2 {
		t.Fatalf("rotate: %d %v", n, err)
	}
	fresh, _ := kr.Encrypt([]byte("李测试"), nil)
	if fresh[4] != 2 || old[4] != 1 {
		t.Fatalf("key numbers %d, %d", old[4], fresh[4])
	}
	for _, ct := range [][]byte{old, fresh} {
		if _, err := kr.Decrypt(ct, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Without the old KEK, the data keys it wrapped cannot be loaded.
	other := filepath.Join(t.TempDir(), "k")
	if err := keystore.Generate(other, "310000000000", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := fieldenc.Open(ctx, store.NewDataKeys(pool), load(t, other)); !errors.Is(err, fieldenc.ErrNoKEK) {
		t.Fatalf("foreign KEK: %v", err)
	}
}

// TestConcurrentFirstOpen: two hub processes starting on an empty database
// end up with one set of data keys.
func TestConcurrentFirstOpen(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	ks := load(t, newKeys(t))
	var wg sync.WaitGroup
	rings := make([]*fieldenc.Keyring, 4)
	errs := make([]error, 4)
	for i := range rings {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rings[i], errs[i] = fieldenc.Open(ctx, store.NewDataKeys(pool), ks)
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ct, _ := rings[0].Encrypt([]byte("x"), nil)
	for i, r := range rings {
		if _, err := r.Decrypt(ct, nil); err != nil {
			t.Errorf("ring %d: %v", i, err)
		}
		if !bytes.Equal(r.BlindIndex("d", []byte("v")), rings[0].BlindIndex("d", []byte("v"))) {
			t.Errorf("ring %d has another blind key", i)
		}
	}
}
