// Package fieldenc encrypts personal data at rest: each value is sealed with
// SM4-GCM under a data key, data keys are wrapped by a key-encryption key of
// the node's key store (its SM2 encryption key, or a cipher machine's), and a
// blind index (HMAC-SM3 under a separate key) allows equality lookups, e.g.
// of ID numbers, without decrypting.
//
// Ciphertext layout (version 1):
//
//	0x01 || key number (uint32, big-endian) || nonce (12) || SM4-GCM(ct || tag)
//
// The additional data binds a value to its place (table, column, record), so
// that a ciphertext copied to another column or row does not decrypt.
package fieldenc

import (
	"context"
	stdcipher "crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/emmansun/gmsm/sm3"

	"zhianhub/crypto"
)

// Key purposes.
const (
	PurposeField = "field" // SM4-GCM data keys
	PurposeBlind = "blind" // the HMAC-SM3 blind-index key
)

const (
	version    = 1
	headerSize = 1 + 4 + 12
	blindSize  = 32
)

var (
	// ErrDecrypt reports a ciphertext that does not open: tampered, moved to
	// another place, or under an unknown key.
	ErrDecrypt = errors.New("fieldenc: cannot decrypt")
	// ErrNoKEK reports a wrapped data key whose key-encryption key is not held.
	ErrNoKEK = errors.New("fieldenc: key-encryption key not held")
)

// WrappedKey is a data key as it is stored.
type WrappedKey struct {
	No      uint32
	Purpose string
	Wrapped []byte
	KEK     crypto.KeyID
}

// Repo persists wrapped data keys. Insert must not overwrite: it reports
// inserted=false when a key with the same number and purpose exists (another
// process created it first).
type Repo interface {
	ListDataKeys(ctx context.Context) ([]WrappedKey, error)
	InsertDataKey(ctx context.Context, k WrappedKey) (inserted bool, err error)
}

// KEKs gives the key-encryption keys: the current one wraps new data keys,
// any held one unwraps.
type KEKs interface {
	Unwrappers() []crypto.KeyUnwrapper // current first
	Unwrapper(id crypto.KeyID) (crypto.KeyUnwrapper, bool)
}

// Keyring holds the unwrapped data keys. It is safe for concurrent use.
type Keyring struct {
	mu      sync.RWMutex
	fields  map[uint32]stdcipher.AEAD
	current uint32
	blind   []byte
	repo    Repo
	keks    KEKs
}

// Open loads the data keys from repo, creating the first field key and the
// blind-index key when there are none.
func Open(ctx context.Context, repo Repo, keks KEKs) (*Keyring, error) {
	if repo == nil || keks == nil || len(keks.Unwrappers()) == 0 {
		return nil, errors.New("fieldenc: repo and a key-encryption key are required")
	}
	k := &Keyring{fields: map[uint32]stdcipher.AEAD{}, repo: repo, keks: keks}
	if err := k.load(ctx); err != nil {
		return nil, err
	}
	if k.blind == nil {
		if err := k.create(ctx, PurposeBlind, 1, blindSize); err != nil {
			return nil, err
		}
	}
	if len(k.fields) == 0 {
		if err := k.create(ctx, PurposeField, 1, crypto.ContentKeySize); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *Keyring) load(ctx context.Context) error {
	keys, err := k.repo.ListDataKeys(ctx)
	if err != nil {
		return fmt.Errorf("fieldenc: list data keys: %w", err)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].No < keys[j].No })
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, wk := range keys {
		u, ok := k.keks.Unwrapper(wk.KEK)
		if !ok {
			return fmt.Errorf("%w: data key %s/%d is wrapped to %s", ErrNoKEK, wk.Purpose, wk.No, wk.KEK)
		}
		raw, err := u.Unwrap(wk.Wrapped)
		if err != nil {
			return fmt.Errorf("fieldenc: unwrap data key %s/%d: %w", wk.Purpose, wk.No, err)
		}
		switch wk.Purpose {
		case PurposeField:
			a, err := crypto.NewAEAD(raw)
			if err != nil {
				return fmt.Errorf("fieldenc: data key %d: %w", wk.No, err)
			}
			k.fields[wk.No] = a
			if wk.No > k.current {
				k.current = wk.No
			}
		case PurposeBlind:
			if len(raw) != blindSize {
				return fmt.Errorf("fieldenc: blind-index key is %d bytes", len(raw))
			}
			if k.blind != nil {
				return errors.New("fieldenc: more than one blind-index key")
			}
			k.blind = raw
		default:
			return fmt.Errorf("fieldenc: data key of unknown purpose %q", wk.Purpose)
		}
	}
	return nil
}

// create wraps and stores a new key, then reloads (another process may have
// won the race; its key is then used).
func (k *Keyring) create(ctx context.Context, purpose string, no uint32, size int) error {
	raw := make([]byte, size)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("fieldenc: %w", err)
	}
	kek := k.keks.Unwrappers()[0]
	wrapped, err := kek.Wrapper().Wrap(raw)
	if err != nil {
		return fmt.Errorf("fieldenc: wrap data key: %w", err)
	}
	if _, err := k.repo.InsertDataKey(ctx, WrappedKey{No: no, Purpose: purpose, Wrapped: wrapped, KEK: kek.KeyID()}); err != nil {
		return fmt.Errorf("fieldenc: store data key: %w", err)
	}
	k.mu.Lock()
	k.fields = map[uint32]stdcipher.AEAD{}
	k.blind = nil
	k.current = 0
	k.mu.Unlock()
	return k.load(ctx)
}

// Rotate adds a new field data key that encrypts from now on; older keys
// keep decrypting. It returns the new key's number.
func (k *Keyring) Rotate(ctx context.Context) (uint32, error) {
	k.mu.RLock()
	next := k.current + 1
	k.mu.RUnlock()
	if err := k.create(ctx, PurposeField, next, crypto.ContentKeySize); err != nil {
		return 0, err
	}
	return k.Current(), nil
}

// Current returns the number of the key that encrypts.
func (k *Keyring) Current() uint32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.current
}

// Encrypt seals plaintext for the place named by aad.
func (k *Keyring) Encrypt(plaintext, aad []byte) ([]byte, error) {
	k.mu.RLock()
	no, a := k.current, k.fields[k.current]
	k.mu.RUnlock()
	out := make([]byte, headerSize, headerSize+len(plaintext)+a.Overhead())
	out[0] = version
	binary.BigEndian.PutUint32(out[1:5], no)
	if _, err := rand.Read(out[5:headerSize]); err != nil {
		return nil, fmt.Errorf("fieldenc: nonce: %w", err)
	}
	return a.Seal(out, out[5:headerSize], plaintext, k.additional(out[:5], aad)), nil
}

// Decrypt opens a value sealed by Encrypt for the same aad.
func (k *Keyring) Decrypt(ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < headerSize+16 || ciphertext[0] != version {
		return nil, fmt.Errorf("%w: not a version-1 field ciphertext", ErrDecrypt)
	}
	no := binary.BigEndian.Uint32(ciphertext[1:5])
	k.mu.RLock()
	a, ok := k.fields[no]
	k.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: unknown data key %d", ErrDecrypt, no)
	}
	pt, err := a.Open(nil, ciphertext[5:headerSize], ciphertext[headerSize:], k.additional(ciphertext[:5], aad))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	return pt, nil
}

// additional binds the header (version, key number) and the caller's place.
func (k *Keyring) additional(header, aad []byte) []byte {
	out := make([]byte, 0, len(header)+len(aad))
	return append(append(out, header...), aad...)
}

// BlindIndex returns HMAC-SM3 over domain || 0x00 || value: equal values in
// the same domain give equal indexes, and nothing about the value can be
// learnt without the key. Callers normalise the value first (the
// transforms clean ID numbers at the boundary).
func (k *Keyring) BlindIndex(domain string, value []byte) []byte {
	k.mu.RLock()
	key := k.blind
	k.mu.RUnlock()
	m := hmac.New(sm3.New, key)
	m.Write([]byte(domain))
	m.Write([]byte{0})
	m.Write(value)
	return m.Sum(nil)
}
