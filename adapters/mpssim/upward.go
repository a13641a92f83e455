package mpssim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpsbus"
	"zhianhub/contracts"
	"zhianhub/envelope"
)

// personKey identifies a sequence and a record: (sender, personNo).
type personKey struct{ sender, personNo string }

// taskKey identifies a task sent down to a node.
type taskKey struct{ to, taskNo string }

// downTask is a task the simulator sent down.
type downTask struct {
	personNo, id string
	signed       bool
}

type recordStatus int

const (
	recordNone recordStatus = iota
	recordActive
	recordCancelled
)

// personState is the Ministry's view of one (sender, personNo): the
// sequence and the record.
type personState struct {
	next     int64             // the seq applied next
	held     map[int64]*filing // ahead of a gap
	gapSince time.Time         // real time the current gap was seen
	status   recordStatus
	record   map[string]json.RawMessage // the register payload, changes merged
	controls map[string]bool            // controlNo -> open
	tasks    map[string]bool            // taskNo -> signed (tasks the sender filed)
}

// filing is a message from a sender that passed envelope steps 1-5.
type filing struct {
	msg      *envelope.Message
	personNo string
	seq      int64
	err      error // step 6 rejection or nil
	value    any   // the validated payload when err is nil
}

// outcome is what the simulator answered, or will answer, to an id.
type outcome struct {
	sender, kind         string
	status, code, reason string
	pending              bool // held: answered when applied or expired
	answered             bool // a receipt was published
}

// answer is a receipt to publish.
type answer struct {
	to, ref, kind        string
	status, code, reason string
}

// handleDelivery handles one message of the simulator's queue. It returns
// an error only when a receipt could not be published and the delivery
// should be requeued.
func (s *Sim) handleDelivery(ctx context.Context, d amqp.Delivery) error {
	msg, err := s.opener.Open(d.Body)
	if msg == nil {
		// Steps 1-2: the sender cannot be trusted; never answered.
		code := envelope.CodeOf(err)
		s.mu.Lock()
		s.stats.Unanswered[string(code)]++
		s.mu.Unlock()
		s.log.Warn("message not answered (envelope rejected at steps 1-2)", "id", d.MessageId, "type", d.Type, "code", string(code), "err", err)
		return nil
	}
	if msg.Kind == contracts.KindReceipt {
		s.onReceipt(msg, err)
		return nil
	}
	return s.sendAnswers(ctx, s.onFiling(msg, err))
}

// onFiling decides the answers to a filing.
func (s *Sim) onFiling(msg *envelope.Message, openErr error) []answer {
	f := &filing{msg: msg, err: openErr}
	step := 6
	var ee *envelope.Error
	if errors.As(openErr, &ee) {
		step = ee.Step
	}
	if openErr == nil {
		f.value, f.err = s.validator.ValidatePayload(msg.Kind, msg.Payload)
		if o, ok := f.value.(contracts.Ordered); ok {
			h := o.Ordering()
			f.personNo, f.seq = h.PersonNo, h.Seq
		}
	} else if step == 6 && contracts.Known(msg.Kind) {
		f.personNo, f.seq, _ = readOrdering(msg.Payload)
	}
	s.log.Info("filing received", "id", msg.ID, "from", msg.From, "kind", msg.Kind, "personNo", f.personNo, "seq", f.seq, "check", string(envelope.CodeOf(f.err)))

	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.FilingsReceived[msg.Kind]++
	if openErr != nil && step < 6 {
		// Steps 3-5: answered, not recorded (see the package comment).
		return []answer{rejection(msg, openErr)}
	}
	if o, ok := s.outcomes[msg.ID]; ok {
		if o.pending {
			s.log.Info("repeated id of a held filing: answered when applied", "id", msg.ID)
			return nil
		}
		status := contracts.StatusDuplicate
		if !o.answered {
			status = o.status // the first answer was never published
		}
		return []answer{{to: msg.From, ref: msg.ID, kind: msg.Kind, status: status, code: o.code, reason: o.reason}}
	}
	if f.personNo == "" {
		a := rejection(msg, f.err)
		s.record(a)
		return []answer{a}
	}
	return s.sequence(f)
}

// readOrdering reads personNo and seq of a payload that failed validation,
// leniently; ok is false when they cannot be read.
func readOrdering(payload []byte) (personNo string, seq int64, ok bool) {
	var h struct {
		PersonNo string      `json:"personNo"`
		Seq      json.Number `json:"seq"`
	}
	if json.Unmarshal(payload, &h) != nil || len(h.PersonNo) != 20 {
		return "", 0, false
	}
	for _, c := range h.PersonNo {
		if c < '0' || c > '9' {
			return "", 0, false
		}
	}
	n, err := strconv.ParseInt(h.Seq.String(), 10, 64)
	if err != nil || n < 1 {
		return "", 0, false
	}
	return h.PersonNo, n, true
}

// sequence applies f in seq order: at once when it is the next, held when
// it is ahead of a gap, rejected when its seq is used. s.mu is held.
func (s *Sim) sequence(f *filing) []answer {
	k := personKey{f.msg.From, f.personNo}
	ps := s.persons[k]
	if ps == nil {
		ps = &personState{next: 1, held: map[int64]*filing{}, controls: map[string]bool{}, tasks: map[string]bool{}}
		s.persons[k] = ps
	}
	switch {
	case f.seq < ps.next:
		a := rejection(f.msg, f.err)
		if f.err == nil {
			a.code, a.reason = string(envelope.CodeStateConflict), fmt.Sprintf("序号 %d 已使用（人员编号 %s 的下一个序号应为 %d）", f.seq, f.personNo, ps.next)
		}
		s.record(a)
		return []answer{a}
	case f.seq > ps.next:
		if h, dup := ps.held[f.seq]; dup {
			a := rejection(f.msg, nil)
			a.code, a.reason = string(envelope.CodeStateConflict), fmt.Sprintf("序号 %d 与暂存的消息 %s 重复", f.seq, h.msg.ID)
			s.record(a)
			return []answer{a}
		}
		ps.held[f.seq] = f
		if ps.gapSince.IsZero() {
			ps.gapSince = time.Now()
		}
		s.outcomes[f.msg.ID] = &outcome{sender: f.msg.From, kind: f.msg.Kind, pending: true}
		s.log.Info("filing held until the gap is filled", "id", f.msg.ID, "personNo", f.personNo, "seq", f.seq, "waitingFor", ps.next)
		return nil
	}
	answers := []answer{s.apply(k, ps, f)}
	ps.next++
	for {
		h, ok := ps.held[ps.next]
		if !ok {
			break
		}
		delete(ps.held, ps.next)
		answers = append(answers, s.apply(k, ps, h))
		ps.next++
	}
	if len(ps.held) == 0 {
		ps.gapSince = time.Time{}
	} else {
		ps.gapSince = time.Now() // a later gap remains
	}
	return answers
}

// apply applies a filing in its turn and records the outcome. s.mu is held.
func (s *Sim) apply(k personKey, ps *personState, f *filing) answer {
	a := answer{to: f.msg.From, ref: f.msg.ID, kind: f.msg.Kind, status: contracts.StatusAccepted, code: contracts.CodeAccepted}
	if f.err != nil {
		a = rejection(f.msg, f.err)
	} else if code, reason := s.transition(k, ps, f); code != "" {
		a.status, a.code, a.reason = contracts.StatusRejected, code, reason
	}
	s.record(a)
	return a
}

// record stores the outcome of an id. s.mu is held.
func (s *Sim) record(a answer) {
	o := s.outcomes[a.ref]
	if o == nil {
		o = &outcome{}
		s.outcomes[a.ref] = o
	}
	*o = outcome{sender: a.to, kind: a.kind, status: a.status, code: a.code, reason: a.reason}
}

// transition runs the state machine of mps-bus.md for a valid filing and
// returns the rejection code and reason, or "" when accepted. s.mu is held.
func (s *Sim) transition(k personKey, ps *personState, f *filing) (code, reason string) {
	e130, e131 := string(envelope.CodeStateConflict), string(envelope.CodeUnknownRecord)
	active := func() (string, string) {
		switch ps.status {
		case recordNone:
			return e131, fmt.Sprintf("重点人员编号 %s 未登记", k.personNo)
		case recordCancelled:
			return e130, fmt.Sprintf("重点人员编号 %s 已注销", k.personNo)
		}
		return "", ""
	}
	switch v := f.value.(type) {
	case *contracts.Person:
		if ps.status != recordNone {
			return e130, fmt.Sprintf("重点人员编号 %s 已登记", k.personNo)
		}
		var rec map[string]json.RawMessage
		_ = json.Unmarshal(f.msg.Payload, &rec)
		ps.status, ps.record = recordActive, rec
	case *contracts.Change:
		if c, r := active(); c != "" {
			return c, r
		}
		var ch struct {
			Changes map[string]json.RawMessage `json:"changes"`
		}
		_ = json.Unmarshal(f.msg.Payload, &ch)
		merged := maps.Clone(ps.record)
		maps.Copy(merged, ch.Changes)
		b, _ := json.Marshal(merged)
		if _, err := s.validator.ValidatePayload(contracts.KindRegister, b); err != nil {
			reason := err.Error()
			var fe *contracts.FieldError
			if errors.As(err, &fe) {
				reason = fe.Reason
			}
			return contracts.ErrorCode(err), "变更后的登记信息不符合规范：" + reason
		}
		ps.record = merged
	case *contracts.Cancel:
		if c, r := active(); c != "" {
			return c, r
		}
		ps.status = recordCancelled
		for no := range ps.controls {
			ps.controls[no] = false // cancel closes every open control
		}
	case *contracts.Control:
		if c, r := active(); c != "" {
			return c, r
		}
		if _, ok := ps.controls[v.ControlNo]; ok {
			return e130, fmt.Sprintf("布控编号 %s 已存在", v.ControlNo)
		}
		ps.controls[v.ControlNo] = true
	case *contracts.Release:
		if ps.status == recordNone {
			return e131, fmt.Sprintf("重点人员编号 %s 未登记", k.personNo)
		}
		open, ok := ps.controls[v.ControlNo]
		switch {
		case !ok:
			return e131, fmt.Sprintf("布控编号 %s 不存在", v.ControlNo)
		case !open:
			return e130, fmt.Sprintf("布控编号 %s 已解除", v.ControlNo)
		}
		ps.controls[v.ControlNo] = false
	case *contracts.Task:
		if c, r := active(); c != "" {
			return c, r
		}
		if _, ok := ps.tasks[v.TaskNo]; ok {
			return e130, fmt.Sprintf("任务编号 %s 已存在", v.TaskNo)
		}
		ps.tasks[v.TaskNo] = false
	case *contracts.TaskSign:
		if t, ok := s.downTasks[taskKey{k.sender, v.TaskNo}]; ok {
			if t.signed {
				return e130, fmt.Sprintf("任务 %s 已签收", v.TaskNo)
			}
			if f.msg.Corr != t.id {
				s.log.Warn("task.sign corr is not the id of the task", "id", f.msg.ID, "corr", f.msg.Corr, "task", t.id)
			}
			t.signed = true
			return "", ""
		}
		signed, ok := ps.tasks[v.TaskNo]
		switch {
		case !ok:
			return e131, fmt.Sprintf("任务编号 %s 未下发", v.TaskNo)
		case signed:
			return e130, fmt.Sprintf("任务 %s 已签收", v.TaskNo)
		}
		ps.tasks[v.TaskNo] = true
	}
	return "", ""
}

// expireGaps rejects with E140 the filings held longer than the gap
// timeout.
func (s *Sim) expireGaps(ctx context.Context) {
	now := time.Now()
	var answers []answer
	s.mu.Lock()
	for _, ps := range s.persons {
		if len(ps.held) == 0 || now.Sub(ps.gapSince) < s.cfg.GapTimeout {
			continue
		}
		for _, seq := range slices.Sorted(maps.Keys(ps.held)) {
			f := ps.held[seq]
			a := rejection(f.msg, nil)
			a.code = string(envelope.CodeSequenceGap)
			a.reason = fmt.Sprintf("序号 %d 之前的消息（自序号 %d 起）在 %s 内未到达", seq, ps.next, s.cfg.GapTimeout)
			delete(s.outcomes, a.ref) // not final: a resend of this id is processed afresh
			answers = append(answers, a)
		}
		clear(ps.held)
		ps.gapSince = time.Time{}
	}
	s.mu.Unlock()
	if err := s.sendAnswers(ctx, answers); err != nil {
		s.log.Warn("E140 receipts not all sent; the sender's resend gets them", "err", err)
	}
}

// rejection is a REJECTED answer to msg with the code and reason of err.
func rejection(msg *envelope.Message, err error) answer {
	return answer{to: msg.From, ref: msg.ID, kind: msg.Kind, status: contracts.StatusRejected, code: string(envelope.CodeOf(err)), reason: reasonOf(err)}
}

// reasonOf is the Chinese receipt reason of a rejection.
func reasonOf(err error) string {
	code := envelope.CodeOf(err)
	var ee *envelope.Error
	if errors.As(err, &ee) && ee.Reason != "" && ee.Step == 6 && (code == envelope.CodeSchema || code == envelope.CodeIDNumber || code == envelope.CodeCodeValue) {
		return ee.Reason
	}
	switch code {
	case envelope.CodeMalformed:
		return "载荷不是合法的 JSON 对象"
	case envelope.CodeVersion:
		return "不支持的信封版本"
	case envelope.CodeUnknownKind:
		return "未知的消息类型"
	case envelope.CodeDecrypt:
		return "无法解密：ekid 不是本节点的加密密钥，或内容密钥、认证标签不符"
	case envelope.CodeTimestamp:
		return "信封时间戳 ts 超出有效窗口（不得早于 24 小时前，不得晚于 5 分钟后）"
	case envelope.CodeWrongRecipient:
		return "信封接收方 to 不是本节点"
	case envelope.CodeSchema:
		return "载荷不符合接口规范"
	case envelope.CodeIDNumber:
		return "证件号码无效"
	case envelope.CodeCodeValue:
		return "代码值不在代码表中"
	}
	return "接收方内部错误，请稍后重发"
}

// sendAnswers publishes receipts. An unroutable receipt is logged and
// skipped (retrying cannot help); another failure stops and is returned.
func (s *Sim) sendAnswers(ctx context.Context, answers []answer) error {
	for _, a := range answers {
		if err := s.sendReceipt(ctx, a); err != nil {
			if errors.Is(err, mpsbus.ErrUnroutable) {
				s.log.Error("receipt unroutable: no queue for the sender", "to", a.to, "ref", a.ref, "err", err)
				continue
			}
			return err
		}
	}
	return nil
}

// sendReceipt seals a receipt to a.to and publishes it to to.<to>.receipt.
func (s *Sim) sendReceipt(ctx context.Context, a answer) error {
	reason := a.reason
	if utf8.RuneCountInString(reason) > 500 {
		reason = string([]rune(reason)[:500])
	}
	payload, err := json.Marshal(contracts.Receipt{Ref: a.ref, Status: a.status, Code: a.code, Reason: reason, At: s.cfg.Now().In(shanghai()).Truncate(time.Millisecond)})
	if err != nil {
		return fmt.Errorf("mpssim: receipt: %w", err)
	}
	env, id, err := s.sealer.Seal(envelope.Outgoing{Kind: contracts.KindReceipt, To: a.to, Corr: a.ref, Payload: payload})
	if err != nil {
		return fmt.Errorf("mpssim: seal receipt: %w", err)
	}
	if err := s.publish(ctx, a.to, contracts.KindReceipt, id, env); err != nil {
		return fmt.Errorf("mpssim: publish receipt for %s: %w", a.ref, err)
	}
	s.mu.Lock()
	s.stats.ReceiptsSent.Add(a.status, a.code)
	if o := s.outcomes[a.ref]; o != nil && !o.pending {
		o.answered = true
	}
	s.mu.Unlock()
	s.log.Info("receipt sent", "to", a.to, "ref", a.ref, "kind", a.kind, "status", a.status, "code", a.code, "reason", reason)
	return nil
}

// onReceipt correlates a receipt for a downward message by its ref.
func (s *Sim) onReceipt(msg *envelope.Message, openErr error) {
	if openErr != nil {
		s.mu.Lock()
		s.stats.ReceiptsInvalid++
		s.mu.Unlock()
		s.log.Warn("invalid receipt ignored (a receipt is never answered)", "id", msg.ID, "from", msg.From, "code", string(envelope.CodeOf(openErr)), "err", openErr)
		return
	}
	var r contracts.Receipt
	if err := json.Unmarshal(msg.Payload, &r); err != nil { // validated by Open
		s.log.Warn("receipt payload unreadable", "id", msg.ID, "err", err)
		return
	}
	s.mu.Lock()
	if s.dropReceipt() {
		s.stats.ReceiptsDropped++
		s.mu.Unlock()
		s.log.Info("receipt dropped (lost-receipt fault): the message will be resent", "ref", r.Ref, "status", r.Status, "code", r.Code)
		return
	}
	s.stats.ReceiptsReceived.Add(r.Status, r.Code)
	m := s.out[r.Ref]
	if m == nil {
		s.stats.ReceiptsUnmatched++
		s.mu.Unlock()
		s.log.Warn("receipt for an unknown message", "id", msg.ID, "ref", r.Ref, "status", r.Status, "code", r.Code)
		return
	}
	m.receipts++
	if m.receipt == nil {
		m.receipt = &r
	}
	if !m.done {
		m.done = true
		delete(s.pending, m.id)
		m.payload, m.raw = nil, nil
	}
	kind, personNo, seq, attempts := m.kind, m.personNo, m.seq, m.attempts
	s.mu.Unlock()
	if msg.Corr != r.Ref {
		s.log.Warn("receipt corr differs from ref", "id", msg.ID, "corr", msg.Corr, "ref", r.Ref)
	}
	s.log.Info("receipt received", "ref", r.Ref, "kind", kind, "personNo", personNo, "seq", seq, "status", r.Status, "code", r.Code, "reason", r.Reason, "attempts", attempts)
}
