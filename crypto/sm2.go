package crypto

import (
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// KeyIDOf returns the key id of an SM2 public key.
func KeyIDOf(pub *ecdsa.PublicKey) KeyID {
	return KeyID(SM3Hex(MarshalPoint(pub)))
}

// MarshalPoint returns the 65-byte uncompressed point 04||X||Y.
func MarshalPoint(pub *ecdsa.PublicKey) []byte {
	out := make([]byte, 65)
	out[0] = 4
	pub.X.FillBytes(out[1:33])
	pub.Y.FillBytes(out[33:65])
	return out
}

// ValidKeyID reports whether s has the form of a key id: 64 lower-case hex digits.
func ValidKeyID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// CheckPublicKey reports an error unless pub is a point on the SM2 curve
// (not the point at infinity).
func CheckPublicKey(pub *ecdsa.PublicKey) error {
	if pub == nil || pub.X == nil || pub.Y == nil {
		return errors.New("crypto: empty public key")
	}
	if pub.Curve == nil || pub.Curve.Params().Name != sm2.P256().Params().Name {
		return errors.New("crypto: public key is not on curve sm2p256v1")
	}
	// Re-parse the point: this checks that it lies on the curve.
	if _, err := sm2.NewPublicKey(MarshalPoint(pub)); err != nil {
		return fmt.Errorf("crypto: public key is not on curve sm2p256v1: %w", err)
	}
	return nil
}

// SM2PublicKey is a software verifier and key wrapper for one SM2 public key.
type SM2PublicKey struct {
	pub *ecdsa.PublicKey
	id  KeyID
}

// NewSM2PublicKey checks pub and computes its key id.
func NewSM2PublicKey(pub *ecdsa.PublicKey) (*SM2PublicKey, error) {
	if err := CheckPublicKey(pub); err != nil {
		return nil, err
	}
	return &SM2PublicKey{pub: pub, id: KeyIDOf(pub)}, nil
}

// KeyID implements Verifier and KeyWrapper.
func (k *SM2PublicKey) KeyID() KeyID { return k.id }

// ECDSA returns the underlying public key.
func (k *SM2PublicKey) ECDSA() *ecdsa.PublicKey { return k.pub }

// Verify implements Verifier.
func (k *SM2PublicKey) Verify(msg, sig []byte) error {
	if !sm2.VerifyASN1WithSM2(k.pub, nil, msg, sig) {
		return fmt.Errorf("%w (key %s)", ErrVerify, k.id)
	}
	return nil
}

// Wrap implements KeyWrapper.
func (k *SM2PublicKey) Wrap(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrKeySize)
	}
	out, err := sm2.EncryptASN1(rand.Reader, k.pub, key)
	if err != nil {
		return nil, fmt.Errorf("crypto: sm2 encrypt: %w", err)
	}
	return out, nil
}

// SM2PrivateKey is the software Signer and KeyUnwrapper.
type SM2PrivateKey struct {
	priv *sm2.PrivateKey
	pub  *SM2PublicKey
	rand io.Reader
}

// NewSM2PrivateKey wraps priv.
func NewSM2PrivateKey(priv *sm2.PrivateKey) (*SM2PrivateKey, error) {
	pub, err := NewSM2PublicKey(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &SM2PrivateKey{priv: priv, pub: pub, rand: rand.Reader}, nil
}

// GenerateSM2 returns a fresh software key.
func GenerateSM2() (*SM2PrivateKey, error) {
	priv, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("crypto: generate sm2 key: %w", err)
	}
	return NewSM2PrivateKey(priv)
}

// KeyID implements Signer and KeyUnwrapper.
func (k *SM2PrivateKey) KeyID() KeyID { return k.pub.id }

// PublicKey returns the public half.
func (k *SM2PrivateKey) PublicKey() *SM2PublicKey { return k.pub }

// SM2 returns the underlying key, for marshalling.
func (k *SM2PrivateKey) SM2() *sm2.PrivateKey { return k.priv }

// Sign implements Signer. It always hashes msg with Z_A of the default user
// id: never pass nil options to gmsm, which would treat msg as a digest.
func (k *SM2PrivateKey) Sign(msg []byte) ([]byte, error) {
	sig, err := k.priv.Sign(k.rand, msg, sm2.DefaultSM2SignerOpts)
	if err != nil {
		return nil, fmt.Errorf("crypto: sm2 sign: %w", err)
	}
	return sig, nil
}

// Public implements Signer.
func (k *SM2PrivateKey) Public() Verifier { return k.pub }

// Unwrap implements KeyUnwrapper.
func (k *SM2PrivateKey) Unwrap(wrapped []byte) ([]byte, error) {
	if err := CheckSM2CipherDER(wrapped); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnwrap, err)
	}
	pt, err := k.priv.Decrypt(nil, wrapped, sm2.ASN1DecrypterOpts)
	if err != nil {
		return nil, ErrUnwrap
	}
	return pt, nil
}

// Wrapper implements KeyUnwrapper.
func (k *SM2PrivateKey) Wrapper() KeyWrapper { return k.pub }

var (
	_ Signer       = (*SM2PrivateKey)(nil)
	_ KeyUnwrapper = (*SM2PrivateKey)(nil)
	_ Verifier     = (*SM2PublicKey)(nil)
	_ KeyWrapper   = (*SM2PublicKey)(nil)
)

var fieldP = sm2.P256().Params().P

// CheckSM2CipherDER checks that b is exactly one GM/T 0009 SM2Cipher in DER:
// SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING (32), ciphertext OCTET
// STRING } with nothing after it and x, y in [0, p). gmsm's ASN.1 decrypter
// also accepts raw C1C3C2 input, which the envelope must refuse.
func CheckSM2CipherDER(b []byte) error {
	in := cryptobyte.String(b)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return errors.New("not a single DER SEQUENCE")
	}
	x, y := new(big.Int), new(big.Int)
	var hash, ct []byte
	if !seq.ReadASN1Integer(x) || !seq.ReadASN1Integer(y) {
		return errors.New("bad point coordinates")
	}
	if !seq.ReadASN1Bytes(&hash, cbasn1.OCTET_STRING) || !seq.ReadASN1Bytes(&ct, cbasn1.OCTET_STRING) || !seq.Empty() {
		return errors.New("bad hash or ciphertext")
	}
	if x.Sign() < 0 || y.Sign() < 0 || x.Cmp(fieldP) >= 0 || y.Cmp(fieldP) >= 0 {
		return errors.New("point coordinates out of range")
	}
	if len(hash) != 32 || len(ct) == 0 {
		return errors.New("bad hash or ciphertext length")
	}
	return nil
}

// Short returns a prefix of the key id for logs.
func (id KeyID) Short() string {
	if len(id) < 12 {
		return string(id)
	}
	return string(id[:12])
}
