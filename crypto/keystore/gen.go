package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"zhianhub/crypto"
)

// ErrExists reports a key directory that already holds keys.
var ErrExists = errors.New("keystore: keys exist already")

// fileName returns the file name of key n of kind ("key" or "pub").
func fileName(kind string, n int, ext string) string {
	if n == 0 {
		return kind + "." + ext + ".pem"
	}
	return kind + "." + strconv.Itoa(n) + "." + ext + ".pem"
}

// Generate creates a new key directory for node with one signing and one
// encryption key pair. It refuses to overwrite existing keys.
func Generate(dir, node string, passphrase []byte) error {
	if !ValidNode(node) {
		return fmt.Errorf("keystore: node code %q is not 12 digits", node)
	}
	selfDir := filepath.Join(dir, "self")
	if _, err := os.Stat(filepath.Join(selfDir, "node")); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, selfDir)
	}
	if err := os.MkdirAll(selfDir, 0o700); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "peers"), 0o755); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	for _, kind := range []string{KindSign, KindEnc} {
		if err := writeNewKey(selfDir, kind, 0, passphrase); err != nil {
			return err
		}
	}
	// The node file is written last: its presence marks a complete directory.
	return writeFile(filepath.Join(selfDir, "node"), []byte(node+"\n"), 0o644)
}

// Rotate adds a new key of kind with the next number; it becomes the key that
// signs (sign) or that peers encrypt to (enc). Old keys stay to verify and
// decrypt. It returns the new key's number and id.
func Rotate(dir, kind string, passphrase []byte) (int, crypto.KeyID, error) {
	if kind != KindSign && kind != KindEnc {
		return 0, "", fmt.Errorf("keystore: kind %q is not sign or enc", kind)
	}
	if _, err := ReadNode(dir); err != nil {
		return 0, "", err
	}
	selfDir := filepath.Join(dir, "self")
	files, err := listKeys(selfDir, "key")
	if err != nil {
		return 0, "", err
	}
	n := 0
	if fs := files[kind]; len(fs) > 0 {
		n = fs[0].n + 1
	}
	k, err := crypto.GenerateSM2()
	if err != nil {
		return 0, "", err
	}
	if err := writePrivate(filepath.Join(selfDir, fileName(kind, n, "key")), k, passphrase); err != nil {
		return 0, "", err
	}
	return n, k.KeyID(), nil
}

// ExportPublic writes the public halves of every own key of the directory
// src into dst/<node>/, numbered as in src: the peers/ entry another node
// needs to talk to src's node.
func ExportPublic(src string, opts LoadOptions, dst string) (string, error) {
	node, err := ReadNode(src)
	if err != nil {
		return "", err
	}
	files, err := listKeys(filepath.Join(src, "self"), "key")
	if err != nil {
		return "", err
	}
	outDir := filepath.Join(dst, node)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("keystore: %w", err)
	}
	for _, kind := range []string{KindSign, KindEnc} {
		for _, f := range files[kind] {
			k, err := loadPrivate(f.path, opts)
			if err != nil {
				return "", err
			}
			pemBytes, err := crypto.MarshalPublicKeyPEM(k.PublicKey())
			if err != nil {
				return "", err
			}
			path := filepath.Join(outDir, fileName(kind, f.n, "pub"))
			if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, pemBytes) {
				continue // exported before
			}
			if err := writeFile(path, pemBytes, 0o644); err != nil {
				return "", err
			}
		}
	}
	return node, nil
}

func writeNewKey(selfDir, kind string, n int, passphrase []byte) error {
	k, err := crypto.GenerateSM2()
	if err != nil {
		return err
	}
	return writePrivate(filepath.Join(selfDir, fileName(kind, n, "key")), k, passphrase)
}

func writePrivate(path string, k *crypto.SM2PrivateKey, passphrase []byte) error {
	pemBytes, err := crypto.MarshalPrivateKeyPEM(k, passphrase)
	if err != nil {
		return err
	}
	return writeFile(path, pemBytes, 0o600)
}

// writeFile writes data atomically and never replaces an existing file.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: %w", err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	// os.Link fails when path exists: no silent overwrite of a key.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, path)
		}
		return fmt.Errorf("keystore: %w", err)
	}
	return nil
}
