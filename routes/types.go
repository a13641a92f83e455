// Package routes moves messages between the buses and the hub's state: the
// inbound route (open, de-duplicate, resequence, validate, apply, receipt),
// the outbox relay (seal, publish with confirms, resend, flag) and the filing
// service used by the HTTP API and the CLI.
package routes

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/contracts"
	"zhianhub/envelope"
	"zhianhub/store/registry"
)

// Payloads cleans and validates payloads at the boundary.
type Payloads interface {
	// Check cleans payload of kind and validates the result. It returns the
	// cleaned JSON, the typed payload, a short description of each cleaning
	// applied (never the values), and a coded error (E100, E102, E120-E122)
	// when the payload is refused.
	Check(kind string, payload []byte) (cleaned []byte, typed any, cleanings []string, err error)
}

// Cipher encrypts personal data at rest (*fieldenc.Keyring: SM4-GCM under
// the hub's data keys), each value bound to its place by aad.
type Cipher interface {
	Encrypt(plaintext, aad []byte) ([]byte, error)
	Decrypt(ciphertext, aad []byte) ([]byte, error)
}

// Registry applies messages to the key-person registry in the caller's
// transaction; *registry.Registry satisfies it. A refusal of the state
// machine is a coded error (E130, E131, or a payload code for a merged
// change); registry.ErrAlreadyApplied means the effect happened before. On
// those Apply leaves tx as it found it and usable (*registry.Registry checks
// before it writes): the route then rejects in the same tx. Any other error
// fails the transaction.
type Registry interface {
	Apply(ctx context.Context, tx pgx.Tx, m registry.Message) error
}

// Receipt statuses.
const (
	StatusAccepted  = "ACCEPTED"
	StatusRejected  = "REJECTED"
	StatusDuplicate = "DUPLICATE"
)

// receiptPayload is the Receipt of mps-bus.md.
type receiptPayload struct {
	Ref    string `json:"ref"`
	Status string `json:"status"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
	At     string `json:"at"`
}

var shanghai = time.FixedZone("CST", 8*3600)

func receiptJSON(ref, status, code, reason string, at time.Time) []byte {
	b, _ := json.Marshal(receiptPayload{Ref: ref, Status: status, Code: code, Reason: reason, At: at.In(shanghai).Format("2006-01-02T15:04:05.000Z07:00")})
	return b
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// Ordering names the ordering header of a bus's payloads: the member that
// holds the ordering key, and its shape. Messages are applied in seq order
// per (sender, key); the exchange tables keep the key in their person_no
// columns whatever the bus (contracts/city-bus.md).
type Ordering struct {
	// Field is the JSON member of the key: "personNo" or "refNo".
	Field string
	// Valid reports a well-formed key.
	Valid func(key string) bool
}

// PersonOrdering is the Ministry bus's: personNo, 20 digits. It is the
// default of InboundConfig and FilingConfig.
var PersonOrdering = Ordering{Field: "personNo", Valid: func(s string) bool { return isDigits(s, 20) }}

// RefOrdering is the city bus's (feedback-bus.md): refNo, 1-32 visible
// ASCII characters.
var RefOrdering = Ordering{Field: "refNo", Valid: func(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}}

func (o Ordering) orDefault() Ordering {
	if o.Field == "" || o.Valid == nil {
		return PersonOrdering
	}
	return o
}

// read reads the ordering header (key, seq) of a payload that may have
// failed validation, so that a rejected message still fills its place in
// the sequence.
func (o Ordering) read(payload []byte) (key string, seq int64, ok bool) {
	var h map[string]json.RawMessage
	if json.Unmarshal(payload, &h) != nil {
		return "", 0, false
	}
	var k *string
	var n json.Number
	if json.Unmarshal(h[o.Field], &k) != nil || k == nil || json.Unmarshal(h["seq"], &n) != nil {
		return "", 0, false
	}
	v, err := n.Int64()
	if err != nil || v < 1 || !o.Valid(*k) {
		return "", 0, false
	}
	return *k, v, true
}

// ordering reads the Ministry bus's ordering header (personNo, seq).
func ordering(payload []byte) (personNo string, seq int64, ok bool) {
	return PersonOrdering.read(payload)
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// redactedEvent is the internal event of an applied message: the ordering
// header and kind-specific fields, without ID numbers, names, addresses, sex
// or birth date (subscribers fetch details through the API, with rights and
// a reason).
func redactedEvent(id, kind, from string, at time.Time, payload []byte) []byte {
	var m map[string]any
	_ = json.Unmarshal(payload, &m)
	// Sex and birth date go too: with the regions they come close to
	// naming the person (data minimization).
	for _, k := range []string{"idNo", "name", "hukouAddr", "residAddr", "sex", "birthDate"} {
		delete(m, k)
	}
	if ch, ok := m["changes"].(map[string]any); ok {
		for _, k := range []string{"name", "hukouAddr", "residAddr", "sex", "birthDate"} {
			if _, had := ch[k]; had {
				ch[k] = "***"
			}
		}
	}
	b, _ := json.Marshal(map[string]any{
		"messageId": id, "kind": kind, "from": from,
		"receivedAt": at.In(shanghai).Format("2006-01-02T15:04:05.000Z07:00"), "data": m,
	})
	return b
}

// reasonOf returns the user-facing (Chinese) reason of a refusal.
func reasonOf(err error) string {
	var e *envelope.Error
	var fe *contracts.FieldError
	var se *registry.StateError
	var ur interface{ UserReason() string }
	switch {
	case errors.As(err, &fe):
		return fe.Reason
	case errors.As(err, &se):
		return se.Reason
	case errors.As(err, &ur):
		return ur.UserReason()
	case errors.As(err, &e) && e.Reason != "":
		return e.Reason
	}
	return err.Error()
}
