package crypto

import (
	"crypto/ecdsa"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs8"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// PEM block types of the key directory (envelope.md, "Key material").
const (
	pemPrivate          = "PRIVATE KEY"
	pemEncryptedPrivate = "ENCRYPTED PRIVATE KEY"
	pemPublic           = "PUBLIC KEY"
)

// KDFIterations is the PBKDF2-HMAC-SM3 iteration count used when a private
// key is written with a passphrase.
const KDFIterations = 100_000

// ErrPassphrase reports an encrypted private key read without its passphrase
// or with a wrong one.
var ErrPassphrase = errors.New("crypto: private key needs the right passphrase")

// ParsePrivateKeyPEM reads one SM2 private key, PKCS#8 PEM, encrypted (PBES2)
// when passphrase protected.
func ParsePrivateKeyPEM(data, passphrase []byte) (*SM2PrivateKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("crypto: no PEM block")
	}
	if len(trimSpace(rest)) != 0 {
		return nil, errors.New("crypto: trailing data after PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case pemPrivate:
		key, err = smx509.ParsePKCS8PrivateKey(block.Bytes)
	case pemEncryptedPrivate:
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("%w: key is encrypted and no passphrase was given", ErrPassphrase)
		}
		key, _, err = pkcs8.ParsePrivateKey(block.Bytes, passphrase)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrPassphrase, err)
		}
	default:
		return nil, fmt.Errorf("crypto: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("crypto: parse PKCS#8: %w", err)
	}
	priv, ok := key.(*sm2.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("crypto: private key is %T, not SM2", key)
	}
	return NewSM2PrivateKey(priv)
}

// MarshalPrivateKeyPEM writes k as PKCS#8 PEM; with a passphrase as
// ENCRYPTED PRIVATE KEY (PBES2, PBKDF2-HMAC-SM3, SM4-CBC).
func MarshalPrivateKeyPEM(k *SM2PrivateKey, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		der, err := smx509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			return nil, fmt.Errorf("crypto: marshal PKCS#8: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
	}
	enc := pkcs.NewPBESEncrypter(pkcs.SM4CBC, pkcs.NewSMPBKDF2Opts(16, KDFIterations))
	der, err := pkcs8.MarshalPrivateKey(k.priv, passphrase, enc)
	if err != nil {
		return nil, fmt.Errorf("crypto: marshal encrypted PKCS#8: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemEncryptedPrivate, Bytes: der}), nil
}

// ParsePublicKeyPEM reads one SM2 SubjectPublicKeyInfo PEM. A key that is not
// on curve sm2p256v1 is an error.
func ParsePublicKeyPEM(data []byte) (*SM2PublicKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("crypto: no PEM block")
	}
	if len(trimSpace(rest)) != 0 {
		return nil, errors.New("crypto: trailing data after PEM block")
	}
	if block.Type != pemPublic {
		return nil, fmt.Errorf("crypto: PEM block %q is not a public key", block.Type)
	}
	key, err := smx509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("crypto: parse SPKI: %w", err)
	}
	pub, ok := key.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("crypto: public key is %T, not SM2", key)
	}
	return NewSM2PublicKey(pub)
}

// MarshalPublicKeyPEM writes the SPKI PEM of k.
func MarshalPublicKeyPEM(k *SM2PublicKey) ([]byte, error) {
	der, err := smx509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		return nil, fmt.Errorf("crypto: marshal SPKI: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
