// Package keystore reads and writes the key directory of envelope.md:
//
//	self/node              (one line: this node's 12-digit code)
//	self/sign.key.pem      self/enc.key.pem
//	peers/<node code>/sign.pub.pem
//	peers/<node code>/enc.pub.pem
//
// During a rotation a node holds several keys of a kind, named
// sign.<n>.key.pem, enc.<n>.pub.pem and so on (an unnumbered file counts as
// n = 0): the highest n signs and encrypts, every loaded key verifies and
// decrypts.
package keystore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"zhianhub/crypto"
)

// Key kinds.
const (
	KindSign = "sign"
	KindEnc  = "enc"
)

var (
	// ErrNotFound reports a key, node or peer the store does not hold.
	ErrNotFound = errors.New("keystore: not found")
	nodeRe      = regexp.MustCompile(`^[0-9]{12}$`)
	// <kind>[.<n>].<key|pub>.pem
	fileRe = regexp.MustCompile(`^(sign|enc)(?:\.([1-9][0-9]{0,5}))?\.(key|pub)\.pem$`)
)

// ValidNode reports whether s is a 12-digit node code.
func ValidNode(s string) bool { return nodeRe.MatchString(s) }

// Peer holds the public keys of one other node.
type Peer struct {
	Node string
	// Sign holds every signing key, by key id.
	Sign map[crypto.KeyID]crypto.Verifier
	// Enc is the peer's current encryption key (highest n).
	Enc crypto.KeyWrapper
	// EncAll lists every encryption key, highest n first.
	EncAll []crypto.KeyWrapper
}

// Store is the key material of one node. It is immutable after Load and safe
// for concurrent use. Its fields hold interfaces so that a cipher-machine
// provider can supply the private-key operations.
type Store struct {
	node       string
	signers    []crypto.Signer // highest n first
	unwrappers []crypto.KeyUnwrapper
	byEnc      map[crypto.KeyID]crypto.KeyUnwrapper
	selfVerify map[crypto.KeyID]crypto.Verifier
	peers      map[string]*Peer
}

// New assembles a store from keys held elsewhere (e.g. a cipher machine).
// signers and unwrappers are ordered highest n first.
func New(node string, signers []crypto.Signer, unwrappers []crypto.KeyUnwrapper, peers []*Peer) (*Store, error) {
	if !ValidNode(node) {
		return nil, fmt.Errorf("keystore: node code %q is not 12 digits", node)
	}
	if len(signers) == 0 {
		return nil, fmt.Errorf("keystore: node %s has no signing key", node)
	}
	if len(unwrappers) == 0 {
		return nil, fmt.Errorf("keystore: node %s has no encryption key", node)
	}
	s := &Store{
		node:       node,
		signers:    signers,
		unwrappers: unwrappers,
		byEnc:      make(map[crypto.KeyID]crypto.KeyUnwrapper),
		selfVerify: make(map[crypto.KeyID]crypto.Verifier),
		peers:      make(map[string]*Peer),
	}
	for _, u := range unwrappers {
		s.byEnc[u.KeyID()] = u
	}
	for _, sg := range signers {
		s.selfVerify[sg.KeyID()] = sg.Public()
	}
	for _, p := range peers {
		if _, dup := s.peers[p.Node]; dup {
			return nil, fmt.Errorf("keystore: peer %s listed twice", p.Node)
		}
		s.peers[p.Node] = p
	}
	return s, nil
}

// Node returns this node's code.
func (s *Store) Node() string { return s.node }

// Signer returns the current signing key (highest n).
func (s *Store) Signer() crypto.Signer { return s.signers[0] }

// Signers returns every own signing key, highest n first.
func (s *Store) Signers() []crypto.Signer { return append([]crypto.Signer(nil), s.signers...) }

// Unwrappers returns every own encryption key, highest n first.
func (s *Store) Unwrappers() []crypto.KeyUnwrapper {
	return append([]crypto.KeyUnwrapper(nil), s.unwrappers...)
}

// Unwrapper returns the own encryption key with id, if held.
func (s *Store) Unwrapper(id crypto.KeyID) (crypto.KeyUnwrapper, bool) {
	u, ok := s.byEnc[id]
	return u, ok
}

// SelfVerifier returns the verifier of one of our own signing keys (for
// checking our own signatures, such as audit checkpoints).
func (s *Store) SelfVerifier(id crypto.KeyID) (crypto.Verifier, bool) {
	v, ok := s.selfVerify[id]
	return v, ok
}

// Verifier returns the signing key id of node, when node is a known peer or
// this node itself.
func (s *Store) Verifier(node string, id crypto.KeyID) (crypto.Verifier, bool) {
	if node == s.node {
		return s.SelfVerifier(id)
	}
	p, ok := s.peers[node]
	if !ok {
		return nil, false
	}
	v, ok := p.Sign[id]
	return v, ok
}

// Wrapper returns the current encryption key of node.
func (s *Store) Wrapper(node string) (crypto.KeyWrapper, error) {
	if node == s.node {
		return s.unwrappers[0].Wrapper(), nil
	}
	p, ok := s.peers[node]
	if !ok || p.Enc == nil {
		return nil, fmt.Errorf("%w: no encryption key for node %s", ErrNotFound, node)
	}
	return p.Enc, nil
}

// Peers returns the known peer node codes, sorted.
func (s *Store) Peers() []string {
	out := make([]string, 0, len(s.peers))
	for n := range s.peers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Peer returns one peer.
func (s *Store) Peer(node string) (*Peer, bool) {
	p, ok := s.peers[node]
	return p, ok
}

// LoadOptions tunes Load.
type LoadOptions struct {
	// Passphrase decrypts ENCRYPTED PRIVATE KEY files.
	Passphrase []byte
	// RequireEncrypted refuses unencrypted private keys (production).
	RequireEncrypted bool
}

// keyFile is one numbered key file.
type keyFile struct {
	kind string
	n    int
	path string
}

// listKeys returns the key files of a directory matching ext ("key" or
// "pub"), per kind, highest n first. Files that do not match the naming
// scheme are reported as errors when they look like keys, so that a
// misnamed file is not silently ignored.
func listKeys(dir, ext string) (map[string][]keyFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	out := map[string][]keyFile{}
	seen := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".pem") {
			continue
		}
		m := fileRe.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("keystore: %s: file name is not <sign|enc>[.<n>].<key|pub>.pem", filepath.Join(dir, name))
		}
		if m[3] != ext {
			continue
		}
		n := 0
		if m[2] != "" {
			n, _ = strconv.Atoi(m[2])
		}
		slot := m[1] + "/" + strconv.Itoa(n)
		if prev, dup := seen[slot]; dup {
			return nil, fmt.Errorf("keystore: %s and %s are both %s key %d", prev, name, m[1], n)
		}
		seen[slot] = name
		out[m[1]] = append(out[m[1]], keyFile{kind: m[1], n: n, path: filepath.Join(dir, name)})
	}
	for k := range out {
		sort.Slice(out[k], func(i, j int) bool { return out[k][i].n > out[k][j].n })
	}
	return out, nil
}

// ReadNode reads dir/self/node.
func ReadNode(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "self", "node"))
	if err != nil {
		return "", fmt.Errorf("keystore: %w", err)
	}
	node := strings.TrimSpace(string(b))
	if !ValidNode(node) {
		return "", fmt.Errorf("keystore: %s: node code %q is not 12 digits", filepath.Join(dir, "self", "node"), node)
	}
	return node, nil
}

// Load reads a key directory with software keys.
func Load(dir string, opts LoadOptions) (*Store, error) {
	node, err := ReadNode(dir)
	if err != nil {
		return nil, err
	}
	self, err := listKeys(filepath.Join(dir, "self"), "key")
	if err != nil {
		return nil, err
	}
	var signers []crypto.Signer
	var unwrappers []crypto.KeyUnwrapper
	for _, f := range self[KindSign] {
		k, err := loadPrivate(f.path, opts)
		if err != nil {
			return nil, err
		}
		signers = append(signers, k)
	}
	for _, f := range self[KindEnc] {
		k, err := loadPrivate(f.path, opts)
		if err != nil {
			return nil, err
		}
		unwrappers = append(unwrappers, k)
	}
	peers, err := loadPeers(filepath.Join(dir, "peers"))
	if err != nil {
		return nil, err
	}
	return New(node, signers, unwrappers, peers)
}

func loadPrivate(path string, opts LoadOptions) (*crypto.SM2PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if opts.RequireEncrypted && !strings.Contains(string(b), "ENCRYPTED PRIVATE KEY") {
		return nil, fmt.Errorf("keystore: %s: private key is not passphrase-protected", path)
	}
	k, err := crypto.ParsePrivateKeyPEM(b, opts.Passphrase)
	if err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", path, err)
	}
	return k, nil
}

func loadPeers(dir string) ([]*Peer, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	var peers []*Peer
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if !ValidNode(e.Name()) {
			return nil, fmt.Errorf("keystore: %s: peer directory is not a 12-digit node code", filepath.Join(dir, e.Name()))
		}
		files, err := listKeys(filepath.Join(dir, e.Name()), "pub")
		if err != nil {
			return nil, err
		}
		p := &Peer{Node: e.Name(), Sign: map[crypto.KeyID]crypto.Verifier{}}
		for _, f := range files[KindSign] {
			k, err := loadPublic(f.path)
			if err != nil {
				return nil, err
			}
			p.Sign[k.KeyID()] = k
		}
		for _, f := range files[KindEnc] {
			k, err := loadPublic(f.path)
			if err != nil {
				return nil, err
			}
			p.EncAll = append(p.EncAll, k)
		}
		if len(p.EncAll) > 0 {
			p.Enc = p.EncAll[0]
		}
		peers = append(peers, p)
	}
	return peers, nil
}

func loadPublic(path string) (*crypto.SM2PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	k, err := crypto.ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", path, err)
	}
	return k, nil
}
