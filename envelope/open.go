package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"zhianhub/crypto"
)

// Keys is what the receiver needs of a key store.
type Keys interface {
	// Node is this node's code.
	Node() string
	// Verifier returns signing key id of node, if known.
	Verifier(node string, id crypto.KeyID) (crypto.Verifier, bool)
	// Unwrapper returns our encryption key with id, if held.
	Unwrapper(id crypto.KeyID) (crypto.KeyUnwrapper, bool)
}

// Kinds tells which message kinds exist.
type Kinds interface {
	Known(kind string) bool
}

// KindSet is a fixed set of kinds.
type KindSet map[string]bool

// Known implements Kinds.
func (s KindSet) Known(kind string) bool { return s[kind] }

// PayloadValidator runs the kind-specific checks of the bus specs on a
// decrypted payload that is a JSON object. Its errors should implement Coded
// (E120-E122); other errors are reported as E120.
type PayloadValidator interface {
	ValidatePayload(kind string, payload []byte) error
}

// Header is the authenticated header of an envelope.
type Header struct {
	ID   string
	Kind string
	From string
	To   string
	TS   time.Time
	Corr string
	EKID crypto.KeyID
	SKID crypto.KeyID
}

// Message is an opened envelope.
type Message struct {
	Header
	// Payload is the decrypted payload JSON; nil when Open failed before
	// decryption.
	Payload []byte
}

// OpenerConfig configures an Opener.
type OpenerConfig struct {
	Keys Keys
	// Kinds lists the known kinds; unknown ones are E102.
	Kinds Kinds
	// Payload, if set, validates payloads (step 6).
	Payload PayloadValidator
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaxFuture is how far ts may lie ahead; default 5 minutes.
	MaxFuture time.Duration
	// MaxAge is how old ts may be; default 24 hours.
	MaxAge time.Duration
	// KeyCacheTTL is how long an unwrapped content key is kept; default 10
	// minutes (the sender's reuse limit). Negative disables the cache.
	KeyCacheTTL time.Duration
	// KeyCacheSize bounds the cache; default 4096 keys.
	KeyCacheSize int
}

func (c *OpenerConfig) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxFuture == 0 {
		c.MaxFuture = 5 * time.Minute
	}
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.KeyCacheTTL == 0 {
		c.KeyCacheTTL = 10 * time.Minute
	}
	if c.KeyCacheSize == 0 {
		c.KeyCacheSize = 4096
	}
}

// Validate reports a missing or inconsistent setting.
func (c *OpenerConfig) Validate() error {
	if c.Keys == nil {
		return errors.New("envelope: OpenerConfig.Keys is nil")
	}
	if c.Kinds == nil {
		return errors.New("envelope: OpenerConfig.Kinds is nil")
	}
	if c.MaxFuture < 0 || c.MaxAge <= 0 {
		return errors.New("envelope: OpenerConfig time window must be positive")
	}
	if c.KeyCacheSize < 0 {
		return errors.New("envelope: OpenerConfig.KeyCacheSize is negative")
	}
	return nil
}

// Opener applies the receiving rules of envelope.md. It is safe for
// concurrent use.
type Opener struct {
	cfg   OpenerConfig
	cache *keyCache
}

// NewOpener returns an Opener.
func NewOpener(cfg OpenerConfig) (*Opener, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := &Opener{cfg: cfg}
	if cfg.KeyCacheTTL > 0 {
		o.cache = newKeyCache(cfg.KeyCacheSize, cfg.KeyCacheTTL)
	}
	return o, nil
}

// Open checks and decrypts one envelope, applying the receiving rules in
// their order. On failure the error is an *Error (or wraps a Coded payload
// error for step 6); the returned Message is non-nil with its Header set
// whenever the envelope was signed by a known sender (steps 3-6), so that the
// caller can answer with a receipt.
func (o *Opener) Open(raw []byte) (*Message, error) {
	// Rule 1: parse.
	p, err := parse(raw)
	if err != nil {
		return nil, err
	}
	w := &p.wire

	// Rule 2: sender key and signature, before any decryption.
	v, ok := o.cfg.Keys.Verifier(w.From, crypto.KeyID(w.SKID))
	if !ok {
		return nil, rejectf(CodeUnknownSigner, 2, "skid", "key %s is not a signing key of node %s", w.SKID, w.From)
	}
	header := w.canonicalHeader()
	if err := v.Verify(w.signatureInput(header), p.sig); err != nil {
		return nil, &Error{Code: CodeBadSignature, Step: 2, Field: "sig", Err: err}
	}
	msg := &Message{Header: Header{
		ID: w.ID, Kind: w.Kind, From: w.From, To: w.To, TS: p.ts, Corr: w.Corr,
		EKID: crypto.KeyID(w.EKID), SKID: crypto.KeyID(w.SKID),
	}}

	// Rule 3: time window, bounds inclusive.
	now := o.cfg.Now()
	if d := p.ts.Sub(now); d > o.cfg.MaxFuture {
		return msg, rejectf(CodeTimestamp, 3, "ts", "%s is %s ahead of the receiver clock", w.TS, d)
	}
	if d := now.Sub(p.ts); d > o.cfg.MaxAge {
		return msg, rejectf(CodeTimestamp, 3, "ts", "%s is %s old", w.TS, d)
	}

	// Rule 4: recipient and encryption key id.
	if w.To != o.cfg.Keys.Node() {
		return msg, rejectf(CodeWrongRecipient, 4, "to", "addressed to %s, this node is %s", w.To, o.cfg.Keys.Node())
	}
	u, ok := o.cfg.Keys.Unwrapper(crypto.KeyID(w.EKID))
	if !ok {
		return msg, rejectf(CodeDecrypt, 4, "ekid", "%s is not an encryption key of this node", w.EKID)
	}

	// Rule 5: unwrap and decrypt.
	aead, err := o.contentAEAD(u, w.EKID, p.ek)
	if err != nil {
		return msg, err
	}
	payload, err := aead.Open(nil, p.nonce, p.ct, header)
	if err != nil {
		return msg, &Error{Code: CodeDecrypt, Step: 5, Field: "ct", Reason: "GCM authentication failed", Err: err}
	}
	msg.Payload = payload

	// Rule 6: kind, then payload.
	if !o.cfg.Kinds.Known(w.Kind) {
		return msg, rejectf(CodeUnknownKind, 6, "kind", "unknown kind %q", w.Kind)
	}
	if !isJSONObject(payload) {
		return msg, reject(CodeMalformed, 6, "", "payload is not a JSON object")
	}
	if o.cfg.Payload != nil {
		if err := o.cfg.Payload.ValidatePayload(w.Kind, payload); err != nil {
			var e *Error
			var c Coded
			if errors.As(err, &e) || errors.As(err, &c) {
				return msg, err
			}
			return msg, &Error{Code: CodeSchema, Step: 6, Err: err}
		}
	}
	return msg, nil
}

// contentAEAD returns the SM4-GCM instance of the content key wrapped in ek,
// from the cache when the same ek was unwrapped before.
func (o *Opener) contentAEAD(u crypto.KeyUnwrapper, ekid string, ek []byte) (aeadT, error) {
	var ck cacheKey
	if o.cache != nil {
		ck = cacheKey{ekid: ekid, ek: crypto.SM3(ek)}
		if a, ok := o.cache.get(ck, o.cfg.Now()); ok {
			return a, nil
		}
	}
	key, err := u.Unwrap(ek)
	if err != nil {
		return nil, &Error{Code: CodeDecrypt, Step: 5, Field: "ek", Reason: "cannot unwrap the content key", Err: err}
	}
	if len(key) != crypto.ContentKeySize {
		return nil, rejectf(CodeDecrypt, 5, "ek", "content key is %d bytes, not %d", len(key), crypto.ContentKeySize)
	}
	a, err := crypto.NewAEAD(key)
	if err != nil {
		return nil, &Error{Code: CodeDecrypt, Step: 5, Field: "ek", Err: err}
	}
	if o.cache != nil {
		o.cache.put(ck, a, o.cfg.Now())
	}
	return a, nil
}

// isJSONObject reports whether b is exactly one valid JSON object.
func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return false
	}
	return true
}

// String describes a header for logs (no payload).
func (h Header) String() string {
	return fmt.Sprintf("%s %s %s->%s", h.ID, h.Kind, h.From, h.To)
}
