package mpssim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"time"

	"zhianhub/contracts"
	"zhianhub/envelope"
)

// outMsg is a downward message tracked until its receipt.
type outMsg struct {
	id, kind, personNo string
	seq                int64
	payload            []byte
	fault              Fault  // the fault it carries, if any
	expect             string // the code the hub should find
	probe              bool   // sent once, never resent (envelope faults)
	withheld           bool   // held back by the gap fault
	created            time.Time
	firstSent          time.Time
	lastSent           time.Time
	nextSend           time.Time
	interval           time.Duration // resend interval after the next send
	attempts           int           // publishes confirmed
	raw                []byte        // the envelope last published
	receipt            *contracts.Receipt
	receipts           int
	done               bool // a receipt was recorded
	flagged            bool
}

// MessageInfo describes a downward message (GET /messages/{id}).
type MessageInfo struct {
	ID       string             `json:"id"`
	Kind     string             `json:"kind"`
	PersonNo string             `json:"personNo,omitempty"`
	Seq      int64              `json:"seq,omitempty"`
	Fault    Fault              `json:"fault,omitempty"`
	Expect   string             `json:"expect,omitempty"`
	Probe    bool               `json:"probe,omitempty"`
	Withheld bool               `json:"withheld,omitempty"`
	Attempts int                `json:"attempts"`
	Receipt  *contracts.Receipt `json:"receipt,omitempty"`
	Receipts int                `json:"receipts"`
	Flagged  bool               `json:"flagged,omitempty"`
	Sent     time.Time          `json:"sent,omitzero"`
	LastSent time.Time          `json:"lastSent,omitzero"`
}

func (m *outMsg) info() MessageInfo {
	i := MessageInfo{
		ID: m.id, Kind: m.kind, PersonNo: m.personNo, Seq: m.seq, Fault: m.fault, Expect: m.expect,
		Probe: m.probe, Withheld: m.withheld, Attempts: m.attempts, Receipts: m.receipts,
		Flagged: m.flagged, Sent: m.firstSent, LastSent: m.lastSent,
	}
	if m.receipt != nil {
		r := *m.receipt
		i.Receipt = &r
	}
	return i
}

// Message returns what the simulator knows of a downward message.
func (s *Sim) Message(id string) (MessageInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.out[id]
	if !ok {
		return MessageInfo{}, false
	}
	return m.info(), true
}

// newMsg registers a downward message. s.mu is held.
func (s *Sim) newMsg(kind, personNo string, seq int64, payload []byte) (*outMsg, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	m := &outMsg{id: id, kind: kind, personNo: personNo, seq: seq, payload: payload, created: time.Now(), interval: s.cfg.Resend.Initial}
	s.out[id] = m
	if kind == contracts.KindTask {
		var t contracts.Task
		if json.Unmarshal(payload, &t) == nil && t.TaskNo != "" {
			s.downTasks[taskKey{s.cfg.HubNode, t.TaskNo}] = &downTask{personNo: personNo, id: id}
		}
	}
	return m, nil
}

// track puts m under resend tracking from now. s.mu is held.
func (s *Sim) track(m *outMsg) {
	if m.probe || m.done {
		return
	}
	m.withheld = false
	if m.nextSend.IsZero() {
		m.nextSend = time.Now().Add(m.interval)
	}
	s.pending[m.id] = m
}

// nextSeq allocates the next seq of personNo. s.mu is held.
func (s *Sim) nextSeq(personNo string) int64 {
	s.seqs[personNo]++
	return s.seqs[personNo]
}

// sealMode selects how a message is sealed.
type sealMode int

const (
	sealNormal   sealMode = iota
	sealStale             // ts 25 h old
	sealStranger          // signed with an unknown key
	sealBadSig            // one bit of sig flipped
)

// dispatch seals and publishes m (a first send or a resend) and updates its
// tracking and the counters.
func (s *Sim) dispatch(ctx context.Context, m *outMsg, mode sealMode) error {
	s.mu.Lock()
	payload, resend := m.payload, m.attempts > 0
	s.mu.Unlock()
	if payload == nil {
		return nil // answered meanwhile
	}
	env, err := s.seal(m.id, m.kind, payload, mode)
	if err != nil {
		return err
	}
	err = s.publish(ctx, s.cfg.HubNode, m.kind, m.id, env)
	now := time.Now()
	s.mu.Lock()
	if m.firstSent.IsZero() {
		m.firstSent = now
	}
	m.nextSend = now.Add(m.interval)
	m.interval = min(time.Duration(float64(m.interval)*s.cfg.Resend.Multiplier), s.cfg.Resend.Max)
	if err != nil {
		s.stats.PublishErrors++
	} else {
		m.attempts++
		m.lastSent = now
		if !m.done {
			m.raw = env
		}
		if resend {
			s.stats.Resends++
		} else {
			s.stats.Sent[m.kind]++
		}
	}
	attempt := m.attempts
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("send failed; resent on schedule", "id", m.id, "kind", m.kind, "personNo", m.personNo, "seq", m.seq, "err", err)
		return err
	}
	msg := "sent"
	if resend {
		msg = "resent (no receipt yet)"
	}
	attrs := []any{"id", m.id, "to", s.cfg.HubNode, "kind", m.kind, "personNo", m.personNo, "seq", m.seq, "attempt", attempt}
	if m.fault != "" {
		attrs = append(attrs, "fault", string(m.fault), "expect", m.expect)
	}
	s.log.Info(msg, attrs...)
	return nil
}

// republish publishes the last envelope of m again, byte for byte (the
// duplicate fault).
func (s *Sim) republish(ctx context.Context, m *outMsg) error {
	s.mu.Lock()
	raw := m.raw
	s.mu.Unlock()
	if raw == nil {
		return nil
	}
	if err := s.publish(ctx, s.cfg.HubNode, m.kind, m.id, raw); err != nil {
		return err
	}
	s.mu.Lock()
	s.stats.Faults[string(FaultDuplicate)]++
	s.mu.Unlock()
	s.log.Info("sent again (duplicate fault)", "id", m.id, "kind", m.kind, "personNo", m.personNo, "seq", m.seq, "fault", string(FaultDuplicate))
	return nil
}

// seal builds the envelope of a downward message.
func (s *Sim) seal(id, kind string, payload []byte, mode sealMode) ([]byte, error) {
	sealer := s.sealer
	switch mode {
	case sealStale:
		sealer = s.stale
	case sealStranger:
		sealer = s.stranger
	}
	env, _, err := sealer.Seal(envelope.Outgoing{ID: id, Kind: kind, To: s.cfg.HubNode, Payload: payload})
	if err != nil {
		return nil, fmt.Errorf("mpssim: seal: %w", err)
	}
	if mode == sealBadSig {
		return FlipSignatureBit(env)
	}
	return env, nil
}

// resendDue resends every message whose receipt is overdue and flags those
// past the give-up time.
func (s *Sim) resendDue(ctx context.Context) {
	connected := s.publisher() != nil
	now := time.Now()
	var due []*outMsg
	s.mu.Lock()
	for _, m := range s.pending {
		if m.flagged || now.Before(m.nextSend) {
			continue
		}
		if now.Sub(m.created) >= s.cfg.Resend.GiveUp {
			m.flagged = true
			delete(s.pending, m.id)
			s.log.Error("no receipt after the give-up time: message flagged for the operators", "id", m.id, "kind", m.kind,
				"personNo", m.personNo, "seq", m.seq, "attempts", m.attempts, "since", m.created.Format(time.RFC3339))
			continue
		}
		if connected {
			due = append(due, m)
		}
	}
	s.mu.Unlock()
	for _, m := range due {
		if ctx.Err() != nil {
			return
		}
		_ = s.dispatch(ctx, m, sealNormal)
	}
}

// SendResult describes a message sent by Send.
type SendResult struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	PersonNo string `json:"personNo"`
	Seq      int64  `json:"seq"`
	// Code is what the contract validator says of the payload ("0000"
	// when valid); an invalid payload is sent all the same.
	Code   string `json:"code"`
	Reason string `json:"reason,omitempty"`
}

var kindRe = regexp.MustCompile(`^[a-z][a-z0-9]*(\.[a-z0-9]+)*$`)

// Send sends one message to the hub, as a line of a script: personNo is
// filled in when absent (a new one for keyperson.register, else the one of
// the previous scripted message) and seq when absent (the next of that
// personNo). The payload is checked by the contract validator and sent
// even when invalid (to exercise the hub); the result says which. The
// message is tracked until its receipt, also when the first publish fails.
func (s *Sim) Send(ctx context.Context, kind string, payload json.RawMessage) (SendResult, error) {
	if !kindRe.MatchString(kind) || len(kind) > 64 {
		return SendResult{}, fmt.Errorf("mpssim: kind %q is not a message kind", kind)
	}
	if kind == contracts.KindReceipt {
		return SendResult{}, errors.New("mpssim: a receipt is only sent as an answer")
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return SendResult{}, errors.New("mpssim: payload is not a JSON object")
	}
	s.mu.Lock()
	personNo, err := s.scriptPerson(kind, fields)
	if err != nil {
		s.mu.Unlock()
		return SendResult{}, err
	}
	var seq int64
	if raw, ok := fields["seq"]; ok {
		seq, err = strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			s.mu.Unlock()
			return SendResult{}, fmt.Errorf("mpssim: seq %s is not an integer", raw)
		}
		s.seqs[personNo] = max(s.seqs[personNo], seq)
	} else {
		seq = s.nextSeq(personNo)
		fields["seq"] = json.RawMessage(strconv.FormatInt(seq, 10))
	}
	body, err := json.Marshal(fields)
	if err != nil {
		s.mu.Unlock()
		return SendResult{}, fmt.Errorf("mpssim: payload: %w", err)
	}
	m, err := s.newMsg(kind, personNo, seq, body)
	s.mu.Unlock()
	if err != nil {
		return SendResult{}, err
	}

	res := SendResult{ID: m.id, Kind: kind, PersonNo: personNo, Seq: seq, Code: contracts.CodeAccepted}
	if _, verr := s.validator.ValidatePayload(kind, body); verr != nil {
		res.Code, res.Reason = contracts.ErrorCode(verr), verr.Error()
		var fe *contracts.FieldError
		if errors.As(verr, &fe) {
			res.Reason = fe.Reason
		}
		s.log.Warn("scripted payload is invalid: the hub should reject it", "id", m.id, "kind", kind, "code", res.Code, "reason", res.Reason)
	}
	s.mu.Lock()
	m.expect = res.Code
	s.track(m)
	s.mu.Unlock()
	return res, s.dispatch(ctx, m, sealNormal)
}

// scriptPerson returns the personNo of a scripted payload, filling it in
// when absent. s.mu is held.
func (s *Sim) scriptPerson(kind string, fields map[string]json.RawMessage) (string, error) {
	if raw, ok := fields["personNo"]; ok {
		var p string
		if err := json.Unmarshal(raw, &p); err != nil {
			return "", fmt.Errorf("mpssim: personNo %s is not a string", raw)
		}
		s.lastPerson = p
		return p, nil
	}
	if kind == contracts.KindRegister || s.lastPerson == "" {
		if kind != contracts.KindRegister {
			return "", fmt.Errorf("mpssim: %s without personNo and no earlier scripted person", kind)
		}
		s.lastPerson = s.gen.SerialNo(s.cfg.Now())
	}
	b, _ := json.Marshal(s.lastPerson)
	fields["personNo"] = b
	return s.lastPerson, nil
}

// ScriptLine is one line of a script file.
type ScriptLine struct {
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload"`
}

// ParseScript reads a script: one JSON object {"kind": ..., "payload":
// {...}} per line, sent in order; blank lines and lines starting with # are
// skipped. personNo and seq are filled in when absent (see Send).
func ParseScript(data []byte) ([]ScriptLine, error) {
	var out []ScriptLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var l ScriptLine
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if l.Kind == "" || len(l.Payload) == 0 || l.Payload[0] != '{' {
			return nil, fmt.Errorf("line %d: want {\"kind\": ..., \"payload\": {...}}", n)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// LoadScript reads a script file (see ParseScript).
func LoadScript(path string) ([]ScriptLine, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mpssim: script: %w", err)
	}
	lines, err := ParseScript(b)
	if err != nil {
		return nil, fmt.Errorf("mpssim: script %s: %w", path, err)
	}
	return lines, nil
}

// runScript sends the script once the bus is ready.
func (s *Sim) runScript(ctx context.Context) {
	if len(s.script) == 0 {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-s.running:
	}
	for i, l := range s.script {
		if ctx.Err() != nil {
			return
		}
		if _, err := s.Send(ctx, l.Kind, l.Payload); err != nil {
			s.log.Warn("script line not sent", "line", i+1, "kind", l.Kind, "err", err)
		}
	}
	s.log.Info("script sent", "messages", len(s.script))
}

// randomStep sends the next message of one of the followed persons,
// applying the fault probabilities.
func (s *Sim) randomStep(ctx context.Context) {
	if s.publisher() == nil {
		return
	}
	now := s.cfg.Now()
	type planned struct {
		m   *outMsg
		dup bool
	}
	var plan []planned
	var probes []Fault
	s.mu.Lock()
	st := s.pickStory(now)
	take := func() *outMsg {
		kind, payload, ok := st.Next(now, s.nextSeq(st.PersonNo))
		if !ok {
			return nil
		}
		m, err := s.newMsg(kind, st.PersonNo, s.seqs[st.PersonNo], payload)
		if err != nil {
			return nil
		}
		m.expect = contracts.CodeAccepted
		return m
	}
	switch {
	case st.Remaining() >= 2 && s.roll(FaultReorder):
		if a, b := take(), take(); a != nil && b != nil {
			a.fault, b.fault = FaultReorder, FaultReorder
			s.stats.Faults[string(FaultReorder)]++
			plan = append(plan, planned{m: b}, planned{m: a})
		}
	case st.Remaining() >= 2 && s.roll(FaultGap):
		if gap, next := take(), take(); gap != nil && next != nil {
			gap.fault, gap.withheld, next.fault = FaultGap, true, FaultGap
			next.expect = s.gapExpect()
			s.stats.Faults[string(FaultGap)]++
			s.scheduleFill(ctx, gap)
			plan = append(plan, planned{m: next})
		}
	default:
		plan = append(plan, planned{m: take()})
	}
	plan = slices.DeleteFunc(plan, func(p planned) bool { return p.m == nil })
	for i := range plan {
		plan[i].dup = s.roll(FaultDuplicate)
		s.track(plan[i].m)
	}
	if st.Remaining() == 0 {
		s.dropStory(st)
	}
	for _, f := range []Fault{FaultBadSignature, FaultUnknownKey, FaultStaleTimestamp, FaultInvalidPayload} {
		if s.roll(f) {
			probes = append(probes, f)
		}
	}
	s.mu.Unlock()
	for _, p := range plan {
		if p.m.withheld {
			continue
		}
		if s.dispatch(ctx, p.m, sealNormal) == nil && p.dup {
			_ = s.republish(ctx, p.m)
		}
	}
	for _, f := range probes {
		if _, err := s.inject(ctx, f); err != nil {
			s.log.Warn("fault not injected", "fault", string(f), "err", err)
		}
	}
}

// pickStory returns a person of the random traffic: a new one while fewer
// than Config.Stories are followed, else one of them. s.mu is held.
func (s *Sim) pickStory(now time.Time) *Story {
	if len(s.stories) < s.cfg.Stories {
		st := s.gen.NewStory(now)
		s.stories = append(s.stories, st)
		return st
	}
	return s.stories[s.rng.IntN(len(s.stories))]
}

func (s *Sim) dropStory(st *Story) {
	for i, x := range s.stories {
		if x == st {
			s.stories = append(s.stories[:i], s.stories[i+1:]...)
			return
		}
	}
}

// scheduleFill sends a withheld message after Config.GapFill, if set.
// s.mu is held.
func (s *Sim) scheduleFill(ctx context.Context, m *outMsg) {
	s.log.Info("withheld (gap fault)", "id", m.id, "kind", m.kind, "personNo", m.personNo, "seq", m.seq, "fillAfter", s.cfg.GapFill.String())
	if s.cfg.GapFill <= 0 {
		return
	}
	s.wg.Go(func() {
		t := time.NewTimer(s.cfg.GapFill)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		m.created = time.Now()
		s.track(m)
		s.mu.Unlock()
		s.log.Info("filling the gap", "id", m.id, "personNo", m.personNo, "seq", m.seq)
		_ = s.dispatch(ctx, m, sealNormal)
	})
}

// gapExpect is the code the hub should give the message after a gap.
func (s *Sim) gapExpect() string {
	if s.cfg.GapFill > 0 && s.cfg.GapFill < DefaultGapTimeout {
		return contracts.CodeAccepted
	}
	return string(envelope.CodeSequenceGap)
}
