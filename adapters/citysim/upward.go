package citysim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpssim"
	"zhianhub/contracts"
	"zhianhub/envelope"
)

// answer is one receipt to send.
type answer struct {
	to, ref              string
	status, code, reason string
}

func (s *Sim) handleDelivery(ctx context.Context, d amqp.Delivery) error {
	msg, err := s.opener.Open(d.Body)
	if msg == nil {
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
	return s.sendAnswers(ctx, s.onFeedback(msg, err))
}

// onReceipt correlates a receipt with the order it answers.
func (s *Sim) onReceipt(msg *envelope.Message, openErr error) {
	var r contracts.Receipt
	if openErr == nil {
		typed, err := s.validator.ValidateCityPayload(contracts.KindReceipt, msg.Payload)
		if err == nil {
			r = *typed.(*contracts.Receipt)
		}
		openErr = err
	}
	if openErr != nil {
		s.log.Warn("invalid receipt from the hub (receipts are never answered)", "id", msg.ID, "err", openErr)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.out[r.Ref]
	if !ok {
		s.log.Warn("receipt for an unknown order", "ref", r.Ref)
		return
	}
	if s.lostReceipts > 0 || (s.faults[mpssim.FaultLostReceipt] > 0 && s.rng.Float64() < s.faults[mpssim.FaultLostReceipt]) {
		if s.lostReceipts > 0 {
			s.lostReceipts--
		}
		s.stats.LostReceipts++
		s.log.Info("receipt dropped (lostReceipt fault): the order will be resent", "ref", r.Ref, "status", r.Status)
		return
	}
	s.stats.ReceiptsReceived.Add(r.Status, r.Code)
	if o.info.Receipt == nil || r.Status != contracts.StatusDuplicate {
		o.info.Receipt = &Receipt{Status: r.Status, Code: r.Code, Reason: r.Reason}
	}
	delete(s.pending, r.Ref)
	s.log.Info("receipt received", "ref", r.Ref, "orderNo", o.info.OrderNo, "status", r.Status, "code", r.Code, "reason", r.Reason)
}

// onFeedback decides the answers to a feedback.
func (s *Sim) onFeedback(msg *envelope.Message, openErr error) []answer {
	fb := Feedback{ID: msg.ID, Kind: msg.Kind, From: msg.From, Corr: msg.Corr}
	step := 6
	var ee *envelope.Error
	if errors.As(openErr, &ee) {
		step = ee.Step
	}
	code, reason := string(envelope.CodeOK), ""
	if openErr != nil {
		code, reason = string(envelope.CodeOf(openErr)), openErr.Error()
		if ee != nil && ee.Reason != "" {
			reason = ee.Reason
		}
	}
	if openErr == nil || step == 6 {
		var h struct {
			FeedbackNo, RefNo, Unit, Result string
			Seq                             int64
		}
		if json.Unmarshal(msg.Payload, &h) == nil {
			fb.FeedbackNo, fb.RefNo, fb.Seq, fb.Unit, fb.Result = h.FeedbackNo, h.RefNo, h.Seq, h.Unit, h.Result
		}
	}
	s.log.Info("feedback received", "id", msg.ID, "kind", msg.Kind, "refNo", fb.RefNo, "seq", fb.Seq, "unit", fb.Unit, "result", fb.Result, "check", code)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.FeedbackReceived[msg.Kind]++
	if openErr != nil && step < 6 {
		return []answer{{to: msg.From, ref: msg.ID, status: contracts.StatusRejected, code: code, reason: reason}}
	}
	if o, ok := s.outcomes[msg.ID]; ok {
		if o.held {
			return nil // answered when applied
		}
		return []answer{{to: msg.From, ref: msg.ID, status: contracts.StatusDuplicate, code: o.code, reason: o.reason}}
	}
	if fb.RefNo == "" || fb.Seq < 1 {
		return []answer{s.settle(&fb, code, reason)}
	}
	k := seqKey{msg.From, fb.RefNo}
	next := s.next[k]
	if next == 0 {
		next = 1
	}
	switch {
	case fb.Seq < next:
		return []answer{s.settle(&fb, "E130", fmt.Sprintf("seq：序号 %d 已使用，期望 %d", fb.Seq, next))}
	case fb.Seq > next:
		if s.held[k] == nil {
			s.held[k] = map[int64]*heldMsg{}
		}
		if _, taken := s.held[k][fb.Seq]; taken {
			return []answer{s.settle(&fb, "E130", fmt.Sprintf("seq：序号 %d 已被另一条消息占用", fb.Seq))}
		}
		s.held[k][fb.Seq] = &heldMsg{fb: fb, code: code, since: time.Now()}
		s.outcomes[msg.ID] = &outcome{held: true}
		s.log.Info("feedback held for a sequence gap", "id", msg.ID, "refNo", fb.RefNo, "seq", fb.Seq, "next", next)
		return nil
	}
	out := []answer{s.settle(&fb, code, reason)}
	for next = fb.Seq + 1; ; next++ {
		h, ok := s.held[k][next]
		if !ok {
			break
		}
		delete(s.held[k], next)
		hf := h.fb
		out = append(out, s.settle(&hf, h.code, ""))
	}
	s.next[k] = next
	return out
}

// settle records the outcome of a feedback and returns its answer. s.mu
// is held.
func (s *Sim) settle(fb *Feedback, code, reason string) answer {
	status := contracts.StatusAccepted
	if code != string(envelope.CodeOK) {
		status = contracts.StatusRejected
	}
	fb.Status, fb.Code, fb.Reason = status, code, reason
	s.outcomes[fb.ID] = &outcome{status: status, code: code, reason: reason}
	s.received = append(s.received, *fb)
	return answer{to: fb.From, ref: fb.ID, status: status, code: code, reason: reason}
}

// expireGaps rejects with E140 the feedback held longer than the gap
// timeout; the expected seq stays at the gap and the ids are forgotten.
func (s *Sim) expireGaps(ctx context.Context) {
	var out []answer
	s.mu.Lock()
	for k, held := range s.held {
		oldest := time.Time{}
		for _, h := range held {
			if oldest.IsZero() || h.since.Before(oldest) {
				oldest = h.since
			}
		}
		if len(held) == 0 || time.Since(oldest) < s.cfg.GapTimeout {
			continue
		}
		next := s.next[k]
		if next == 0 {
			next = 1
		}
		for seq, h := range held {
			delete(s.outcomes, h.fb.ID)
			out = append(out, answer{to: h.fb.From, ref: h.fb.ID, status: contracts.StatusRejected, code: "E140",
				reason: fmt.Sprintf("seq：序号 %d 之前缺少序号 %d 的消息，超过 %s 未补齐，请从缺口处重发", seq, next, s.cfg.GapTimeout)})
		}
		delete(s.held, k)
	}
	s.mu.Unlock()
	if err := s.sendAnswers(ctx, out); err != nil {
		s.log.Warn("E140 receipts not sent", "err", err)
	}
}

// sendAnswers seals and publishes receipts.
func (s *Sim) sendAnswers(ctx context.Context, as []answer) error {
	for _, a := range as {
		at := s.cfg.Now().In(shanghai).Format("2006-01-02T15:04:05.000Z07:00")
		payload, _ := json.Marshal(map[string]string{"ref": a.ref, "status": a.status, "code": a.code, "reason": a.reason, "at": at})
		env, id, err := s.sealer.Seal(envelope.Outgoing{Kind: contracts.KindReceipt, To: a.to, Corr: a.ref, Payload: payload})
		if err != nil {
			return err
		}
		if err := s.publish(ctx, a.to, contracts.KindReceipt, id, env); err != nil {
			return err
		}
		s.mu.Lock()
		if o := s.outcomes[a.ref]; o != nil {
			o.answered = true
		}
		s.stats.ReceiptsSent.Add(a.status, a.code)
		s.mu.Unlock()
		s.log.Info("receipt sent", "ref", a.ref, "status", a.status, "code", a.code, "reason", a.reason)
	}
	return nil
}
