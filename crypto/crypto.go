// Package crypto holds the SM2/SM3/SM4 primitives the hub uses, behind small
// interfaces so that a cipher machine holding keys in hardware can replace the
// software provider.
//
// All SM2 signatures use SM3 with Z_A computed from the default user id
// 1234567812345678 (GB/T 32918.2), DER SEQUENCE{r, s}. SM2 encryption produces
// and accepts only the GM/T 0009 ASN.1 DER form of C1C3C2.
package crypto

import (
	stdcipher "crypto/cipher"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

// KeyID is the lower-case hex SM3 fingerprint of an SM2 public key's
// 65-byte uncompressed point 04||X||Y.
type KeyID string

// DefaultUID is the SM2 user id of GB/T 32918.2 used for every signature.
const DefaultUID = "1234567812345678"

// ContentKeySize is the size of an SM4 key.
const ContentKeySize = 16

var (
	// ErrVerify reports an invalid signature.
	ErrVerify = errors.New("crypto: signature invalid")
	// ErrUnwrap reports a wrapped key that could not be unwrapped. It is
	// deliberately vague: callers must not learn why.
	ErrUnwrap = errors.New("crypto: cannot unwrap key")
	// ErrKeySize reports a key of the wrong size.
	ErrKeySize = errors.New("crypto: wrong key size")
)

// Signer signs messages with a private SM2 key.
type Signer interface {
	// KeyID identifies the public half of the signing key.
	KeyID() KeyID
	// Sign returns the DER SM2 signature of msg (SM3, default user id).
	Sign(msg []byte) ([]byte, error)
	// Public returns the verifier for this key.
	Public() Verifier
}

// Verifier checks SM2 signatures made by one public key.
type Verifier interface {
	KeyID() KeyID
	// Verify reports nil when sig is a valid DER SM2 signature of msg,
	// otherwise an error wrapping ErrVerify.
	Verify(msg, sig []byte) error
}

// KeyWrapper encrypts a content key to a recipient's SM2 encryption key.
type KeyWrapper interface {
	KeyID() KeyID
	// Wrap returns the GM/T 0009 ASN.1 DER SM2 ciphertext of key.
	Wrap(key []byte) ([]byte, error)
}

// KeyUnwrapper decrypts content keys wrapped to one of our SM2 encryption keys.
type KeyUnwrapper interface {
	KeyID() KeyID
	// Unwrap accepts only the strict ASN.1 DER form; any failure wraps ErrUnwrap.
	Unwrap(wrapped []byte) ([]byte, error)
	// Wrapper returns the wrapper that encrypts to this key.
	Wrapper() KeyWrapper
}

// NewAEAD returns SM4-GCM with a 12-byte nonce and a 16-byte tag.
func NewAEAD(key []byte) (stdcipher.AEAD, error) {
	if len(key) != ContentKeySize {
		return nil, fmt.Errorf("%w: SM4 needs %d bytes, got %d", ErrKeySize, ContentKeySize, len(key))
	}
	block, err := sm4.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("crypto: sm4: %w", err)
	}
	return stdcipher.NewGCM(block)
}

// SM3 returns the SM3 digest of the concatenation of parts.
func SM3(parts ...[]byte) [sm3.Size]byte {
	h := sm3.New()
	for _, p := range parts {
		h.Write(p)
	}
	var out [sm3.Size]byte
	h.Sum(out[:0])
	return out
}

// SM3Hex returns the lower-case hex SM3 digest of the concatenation of parts.
func SM3Hex(parts ...[]byte) string {
	d := SM3(parts...)
	return hex.EncodeToString(d[:])
}
