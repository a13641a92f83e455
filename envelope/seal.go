package envelope

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"zhianhub/crypto"
)

// SealKeys is what the sender needs of a key store.
type SealKeys interface {
	Node() string
	// Signer is the current signing key.
	Signer() crypto.Signer
	// Wrapper is the current encryption key of node.
	Wrapper(node string) (crypto.KeyWrapper, error)
}

// SealerConfig configures a Sealer.
type SealerConfig struct {
	Keys SealKeys
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Location of the ts field; default Asia/Shanghai (+08:00).
	Location *time.Location
	// KeyMaxAge bounds the reuse of one content key; default 10 minutes.
	// Negative disables reuse: a fresh key per message.
	KeyMaxAge time.Duration
	// KeyMaxUses bounds the reuse of one content key; default 100,000.
	KeyMaxUses int
}

func (c *SealerConfig) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Location == nil {
		c.Location = time.FixedZone("CST", 8*3600)
	}
	if c.KeyMaxAge == 0 {
		c.KeyMaxAge = 10 * time.Minute
	}
	if c.KeyMaxUses == 0 {
		c.KeyMaxUses = 100_000
	}
}

// Validate reports a missing or out-of-spec setting.
func (c *SealerConfig) Validate() error {
	if c.Keys == nil {
		return errors.New("envelope: SealerConfig.Keys is nil")
	}
	if c.KeyMaxAge > 10*time.Minute {
		return fmt.Errorf("envelope: SealerConfig.KeyMaxAge %s exceeds the 10 minutes of the spec", c.KeyMaxAge)
	}
	if c.KeyMaxUses < 1 || c.KeyMaxUses > 100_000 {
		return fmt.Errorf("envelope: SealerConfig.KeyMaxUses %d not in 1..100000", c.KeyMaxUses)
	}
	return nil
}

// Outgoing is a message to seal.
type Outgoing struct {
	// ID is the message id; empty means a new UUIDv7. A resend passes the
	// original id.
	ID   string
	Kind string
	To   string
	// Corr is the id this message answers, or "".
	Corr    string
	Payload []byte
}

// Sealer builds envelopes. It is safe for concurrent use.
type Sealer struct {
	cfg  SealerConfig
	mu   sync.Mutex
	keys map[crypto.KeyID]*contentKey // by recipient key id
}

type contentKey struct {
	ekText  string
	aead    cipher.AEAD
	created time.Time
	uses    int
}

// NewSealer returns a Sealer.
func NewSealer(cfg SealerConfig) (*Sealer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sealer{cfg: cfg, keys: make(map[crypto.KeyID]*contentKey)}, nil
}

// Seal returns the envelope JSON and its id.
func (s *Sealer) Seal(m Outgoing) ([]byte, string, error) {
	if m.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, "", fmt.Errorf("envelope: new id: %w", err)
		}
		m.ID = id.String()
	}
	switch {
	case !ValidID(m.ID):
		return nil, "", fmt.Errorf("envelope: id %q is not a lower-case UUID", m.ID)
	case m.Corr != "" && !ValidID(m.Corr):
		return nil, "", fmt.Errorf("envelope: corr %q is not a lower-case UUID", m.Corr)
	case !ValidNode(m.To):
		return nil, "", fmt.Errorf("envelope: recipient %q is not a 12-digit node code", m.To)
	case m.Kind == "":
		return nil, "", errors.New("envelope: empty kind")
	case !isJSONObject(m.Payload):
		return nil, "", errors.New("envelope: payload is not a JSON object")
	}
	wrapper, err := s.cfg.Keys.Wrapper(m.To)
	if err != nil {
		return nil, "", fmt.Errorf("envelope: %w", err)
	}
	now := s.cfg.Now()
	ck, err := s.contentKey(wrapper, now)
	if err != nil {
		return nil, "", err
	}
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", fmt.Errorf("envelope: nonce: %w", err)
	}
	signer := s.cfg.Keys.Signer()
	w := wireEnvelope{
		V:     Version,
		ID:    m.ID,
		Kind:  m.Kind,
		From:  s.cfg.Keys.Node(),
		To:    m.To,
		TS:    FormatTS(now.In(s.cfg.Location)),
		Corr:  m.Corr,
		EKID:  string(wrapper.KeyID()),
		EK:    ck.ekText,
		Nonce: base64.StdEncoding.EncodeToString(nonce),
		SKID:  string(signer.KeyID()),
	}
	header := w.canonicalHeader()
	w.CT = base64.StdEncoding.EncodeToString(ck.aead.Seal(nil, nonce, m.Payload, header))
	sig, err := signer.Sign(w.signatureInput(header))
	if err != nil {
		return nil, "", fmt.Errorf("envelope: sign: %w", err)
	}
	w.Sig = base64.StdEncoding.EncodeToString(sig)
	out, err := json.Marshal(&w)
	if err != nil {
		return nil, "", fmt.Errorf("envelope: marshal: %w", err)
	}
	return out, m.ID, nil
}

// contentKey returns the content key to use for the recipient key, reusing
// one for at most KeyMaxAge and KeyMaxUses messages.
func (s *Sealer) contentKey(wrapper crypto.KeyWrapper, now time.Time) (*contentKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.KeyMaxAge > 0 {
		if ck, ok := s.keys[wrapper.KeyID()]; ok && ck.uses < s.cfg.KeyMaxUses && now.Sub(ck.created) < s.cfg.KeyMaxAge && !now.Before(ck.created) {
			ck.uses++
			return ck, nil
		}
	}
	key := make([]byte, crypto.ContentKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("envelope: content key: %w", err)
	}
	ek, err := wrapper.Wrap(key)
	if err != nil {
		return nil, fmt.Errorf("envelope: wrap content key: %w", err)
	}
	aead, err := crypto.NewAEAD(key)
	if err != nil {
		return nil, err
	}
	ck := &contentKey{ekText: base64.StdEncoding.EncodeToString(ek), aead: aead, created: now, uses: 1}
	if s.cfg.KeyMaxAge > 0 {
		s.keys[wrapper.KeyID()] = ck
	}
	return ck, nil
}
