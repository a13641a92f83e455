package mpssim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"zhianhub/contracts"
	"zhianhub/envelope"
)

// Fault is a fault the simulator injects into the downward traffic.
type Fault string

// Faults. Each is set as a probability (0..1) applied to the random
// traffic (lostReceipt: to every receipt received), or injected N times at
// once with Inject, each injection on a new person.
const (
	// FaultDuplicate publishes a message a second time, byte for byte
	// (same id): the hub must answer DUPLICATE with the original code.
	FaultDuplicate Fault = "duplicate"
	// FaultReorder swaps two consecutive messages of one person: the hub
	// must hold the later seq and apply both in order.
	FaultReorder Fault = "reorder"
	// FaultGap withholds one message of a person and sends the next:
	// after its gap timeout the hub must reject the held one with E140.
	// Config.GapFill sends the withheld message after a delay.
	FaultGap Fault = "gap"
	// FaultBadSignature flips a bit of sig: E110, unanswered.
	FaultBadSignature Fault = "badSignature"
	// FaultUnknownKey signs with a fresh stranger key (skid = its id):
	// E111, unanswered.
	FaultUnknownKey Fault = "unknownKey"
	// FaultStaleTimestamp seals with ts 25 hours old: REJECTED E113.
	FaultStaleTimestamp Fault = "staleTimestamp"
	// FaultInvalidPayload sends a register with, in turn, a wrong ID
	// check character (E121), an unknown category (E122) or no basis
	// (E120): REJECTED with that code.
	FaultInvalidPayload Fault = "invalidPayload"
	// FaultLostReceipt drops a receipt from the hub as if it were lost:
	// the message is resent and the hub must answer DUPLICATE.
	FaultLostReceipt Fault = "lostReceipt"
)

// StaleAge is the age of the timestamp of FaultStaleTimestamp.
const StaleAge = 25 * time.Hour

// AllFaults lists every fault.
func AllFaults() []Fault {
	return []Fault{FaultDuplicate, FaultReorder, FaultGap, FaultBadSignature, FaultUnknownKey,
		FaultStaleTimestamp, FaultInvalidPayload, FaultLostReceipt}
}

// FaultDoc is a one-line description of f for help texts.
func FaultDoc(f Fault) string {
	switch f {
	case FaultDuplicate:
		return "publish a message twice with the same id (hub: DUPLICATE)"
	case FaultReorder:
		return "swap two consecutive messages of a person (hub: hold, then apply in order)"
	case FaultGap:
		return "withhold a message and send the next (hub: E140 after its gap timeout)"
	case FaultBadSignature:
		return "flip a bit of the signature (hub: E110, no receipt)"
	case FaultUnknownKey:
		return "sign with an unknown key (hub: E111, no receipt)"
	case FaultStaleTimestamp:
		return "timestamp 25 h old (hub: REJECTED E113)"
	case FaultInvalidPayload:
		return "invalid register: ID check character, category or missing basis (hub: E121/E122/E120)"
	case FaultLostReceipt:
		return "drop a receipt from the hub, so the message is resent (hub: DUPLICATE)"
	}
	return ""
}

func checkFault(f Fault, p float64) error {
	if FaultDoc(f) == "" {
		return fmt.Errorf("unknown fault %q", f)
	}
	if !(p >= 0 && p <= 1) {
		return fmt.Errorf("fault %s: probability %g is not in 0..1", f, p)
	}
	return nil
}

// SetFault sets the probability of f (0 turns it off).
func (s *Sim) SetFault(f Fault, p float64) error {
	if err := checkFault(f, p); err != nil {
		return fmt.Errorf("mpssim: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == 0 {
		delete(s.faults, f)
	} else {
		s.faults[f] = p
	}
	s.log.Info("fault probability set", "fault", string(f), "probability", p)
	return nil
}

// FaultProbabilities returns the fault probabilities in force.
func (s *Sim) FaultProbabilities() map[Fault]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[Fault]float64, len(s.faults))
	for f, p := range s.faults {
		out[f] = p
	}
	return out
}

// PendingLostReceipts returns how many receipts the one-shot lost-receipt
// fault will still drop.
func (s *Sim) PendingLostReceipts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostReceipts
}

// roll draws the fault f with its probability. s.mu is held.
func (s *Sim) roll(f Fault) bool {
	p := s.faults[f]
	return p > 0 && s.rng.Float64() < p
}

// dropReceipt reports whether to drop the receipt at hand. s.mu is held.
func (s *Sim) dropReceipt() bool {
	drop := false
	if s.lostReceipts > 0 {
		s.lostReceipts--
		drop = true
	} else {
		drop = s.roll(FaultLostReceipt)
	}
	if drop {
		s.stats.Faults[string(FaultLostReceipt)]++
	}
	return drop
}

// Inject injects f n times at once, each on a new person, and returns the
// messages concerned (a withheld one included); lostReceipt instead drops
// the next n receipts and returns none.
func (s *Sim) Inject(ctx context.Context, f Fault, n int) ([]MessageInfo, error) {
	if err := checkFault(f, 0); err != nil {
		return nil, fmt.Errorf("mpssim: %w", err)
	}
	if n < 1 || n > 1000 {
		return nil, fmt.Errorf("mpssim: inject count %d is not in 1..1000", n)
	}
	if f == FaultLostReceipt {
		s.mu.Lock()
		s.lostReceipts += n
		s.mu.Unlock()
		s.log.Info("fault armed", "fault", string(f), "count", n)
		return nil, nil
	}
	var out []MessageInfo
	for range n {
		infos, err := s.inject(ctx, f)
		out = append(out, infos...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// inject runs one injection of f on a new person.
func (s *Sim) inject(ctx context.Context, f Fault) ([]MessageInfo, error) {
	if s.publisher() == nil {
		return nil, errNotConnected
	}
	now := s.cfg.Now()
	s.mu.Lock()
	st := s.gen.NewStory(now)
	var all, order []*outMsg
	var err error
	mk := func() *outMsg {
		if err != nil {
			return nil
		}
		kind, payload, _ := st.Next(now, s.nextSeq(st.PersonNo))
		var m *outMsg
		if m, err = s.newMsg(kind, st.PersonNo, s.seqs[st.PersonNo], payload); err != nil {
			return nil
		}
		m.fault, m.expect = f, contracts.CodeAccepted
		all = append(all, m)
		return m
	}
	mode, dup := sealNormal, false
	switch f {
	case FaultDuplicate:
		m := mk()
		order, dup = []*outMsg{m}, true
	case FaultReorder:
		a, b := mk(), mk()
		order = []*outMsg{b, a}
	case FaultGap:
		a, g, c := mk(), mk(), mk()
		if err == nil {
			g.withheld, c.expect = true, s.gapExpect()
			s.scheduleFill(ctx, g)
			order = []*outMsg{a, c}
		}
	case FaultBadSignature, FaultUnknownKey, FaultStaleTimestamp:
		m := mk()
		if err == nil {
			m.probe = true
			switch f {
			case FaultBadSignature:
				mode, m.expect = sealBadSig, string(envelope.CodeBadSignature)
			case FaultUnknownKey:
				mode, m.expect = sealStranger, string(envelope.CodeUnknownSigner)
			default:
				mode, m.expect = sealStale, string(envelope.CodeTimestamp)
			}
			order = []*outMsg{m}
		}
	case FaultInvalidPayload:
		m := mk()
		if err == nil {
			v := invalidVariants[s.invalidNext%len(invalidVariants)]
			s.invalidNext++
			if m.payload, err = v.apply(m.payload, s.validator.Categories()); err == nil {
				m.expect = v.code
				order = []*outMsg{m}
			}
		}
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	for _, m := range order {
		s.track(m)
	}
	s.stats.Faults[string(f)]++
	s.mu.Unlock()

	for _, m := range order {
		if err := s.dispatch(ctx, m, mode); err != nil {
			return infos(s, all), err
		}
		if dup {
			if err := s.republish(ctx, m); err != nil {
				return infos(s, all), err
			}
		}
	}
	return infos(s, all), nil
}

func infos(s *Sim, ms []*outMsg) []MessageInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]MessageInfo, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.info())
	}
	return out
}

// invalidVariants are the defects of FaultInvalidPayload, in turn.
var invalidVariants = []struct {
	name, code string
	apply      func(payload []byte, cats contracts.Categories) ([]byte, error)
}{
	{"idNo check character", contracts.CodeIDNumber, func(p []byte, _ contracts.Categories) ([]byte, error) {
		return editPayload(p, func(m map[string]json.RawMessage) error {
			var id string
			if err := json.Unmarshal(m["idNo"], &id); err != nil || len(id) != 18 {
				return errors.New("mpssim: register without an 18-character idNo")
			}
			wrong := byte('0')
			if IDCheckChar(id) == '0' {
				wrong = '1'
			}
			m["idNo"], _ = json.Marshal(id[:17] + string(wrong))
			return nil
		})
	}},
	{"unknown category", contracts.CodeNotInTable, func(p []byte, cats contracts.Categories) ([]byte, error) {
		return editPayload(p, func(m map[string]json.RawMessage) error {
			for i := range 10000 {
				if c := fmt.Sprintf("%04d", i); !cats.Has(c) {
					m["categories"], _ = json.Marshal([]string{c})
					return nil
				}
			}
			return errors.New("mpssim: the category table holds every code")
		})
	}},
	{"missing basis", contracts.CodeSchema, func(p []byte, _ contracts.Categories) ([]byte, error) {
		return editPayload(p, func(m map[string]json.RawMessage) error {
			delete(m, "basis")
			return nil
		})
	}},
}

func editPayload(p []byte, edit func(map[string]json.RawMessage) error) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, fmt.Errorf("mpssim: payload: %w", err)
	}
	if err := edit(m); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// FlipSignatureBit flips the lowest bit of the last byte of sig (inside the
// DER integer s, so the DER stays well-formed and only the signature check
// fails). The city-bus simulator uses it too.
func FlipSignatureBit(env []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(env, &m); err != nil {
		return nil, fmt.Errorf("mpssim: envelope: %w", err)
	}
	var sig string
	if err := json.Unmarshal(m["sig"], &sig); err != nil {
		return nil, fmt.Errorf("mpssim: envelope sig: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("mpssim: envelope sig: %v", err)
	}
	b[len(b)-1] ^= 0x01
	m["sig"], _ = json.Marshal(base64.StdEncoding.EncodeToString(b))
	return json.Marshal(m)
}

// newID returns a new message id, a UUIDv7.
func newID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("mpssim: new id: %w", err)
	}
	return id.String(), nil
}
