package citysim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"zhianhub/adapters/mpssim"
	"zhianhub/contracts"
	"zhianhub/envelope"
)

var titles = []string{"外滩区域加强巡逻", "大型活动安保值守", "重点路段交通疏导", "社区走访排查", "夜间治安巡查", "商圈人员密集场所巡防"}

var shanghai = time.FixedZone("CST", 8*3600)

// LoadScript reads a file of JSON lines, each an Order object whose
// missing fields are generated (blank lines and lines starting with # are
// skipped).
func LoadScript(path string) ([]json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("citysim: script: %w", err)
	}
	var out []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("citysim: script line %d: not a JSON object: %w", n, err)
		}
		out = append(out, json.RawMessage(bytes.Clone(line)))
	}
	return out, sc.Err()
}

func (s *Sim) runScript(ctx context.Context) {
	if len(s.script) == 0 {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-s.running:
	}
	for i, line := range s.script {
		if _, err := s.SendOrder(ctx, line, ""); err != nil {
			s.log.Error("script order not sent", "line", i+1, "err", err)
		}
	}
}

// randomFault draws the fault of the next random order ("" = none).
func (s *Sim) randomFault() mpssim.Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range faults {
		if f == mpssim.FaultLostReceipt {
			continue // applied to receipts
		}
		if p := s.faults[f]; p > 0 && s.rng.Float64() < p {
			return f
		}
	}
	return ""
}

// order completes partial (an Order object, possibly empty) into a valid
// order payload: orderNo, refNo = orderNo, seq 1, a title, content,
// level, 1-3 target units, a deadline 24 h ahead, issuedBy.
func (s *Sim) order(partial json.RawMessage) (map[string]any, error) {
	m := map[string]any{}
	if len(partial) > 0 {
		if err := json.Unmarshal(partial, &m); err != nil || m == nil {
			return nil, fmt.Errorf("citysim: order: not a JSON object")
		}
	}
	now := s.cfg.Now().In(shanghai)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := m["orderNo"]; !ok {
		for {
			no := fmt.Sprintf("310000%s%06d", now.Format("20060102"), s.rng.IntN(1_000_000))
			if !s.serials[no] {
				s.serials[no] = true
				m["orderNo"] = no
				break
			}
		}
	}
	if _, ok := m["refNo"]; !ok {
		m["refNo"] = m["orderNo"]
	}
	if _, ok := m["seq"]; !ok {
		m["seq"] = 1
	}
	if _, ok := m["title"]; !ok {
		m["title"] = titles[s.rng.IntN(len(titles))]
	}
	if _, ok := m["content"]; !ok {
		m["content"] = fmt.Sprintf("请目标单位于 %s 前完成部署并反馈处置情况。", now.Add(24*time.Hour).Format("01月02日 15:04"))
	}
	if _, ok := m["level"]; !ok {
		m["level"] = 1 + s.rng.IntN(3)
	}
	if _, ok := m["targetUnits"]; !ok {
		n := 1 + s.rng.IntN(min(3, len(s.cfg.Units)))
		perm := s.rng.Perm(len(s.cfg.Units))[:n]
		units := make([]string, n)
		for i, j := range perm {
			units[i] = s.cfg.Units[j]
		}
		m["targetUnits"] = units
	}
	if _, ok := m["deadline"]; !ok {
		m["deadline"] = now.Add(24 * time.Hour).Format(time.RFC3339)
	}
	if _, ok := m["issuedBy"]; !ok {
		m["issuedBy"] = "0010001"
	}
	return m, nil
}

// invalidate breaks an order in turn: refNo ≠ orderNo, an empty title, an
// unknown field. The hub answers E120.
func (s *Sim) invalidate(m map[string]any) {
	s.mu.Lock()
	n := s.invalidNext
	s.invalidNext++
	s.mu.Unlock()
	switch n % 3 {
	case 0:
		m["refNo"] = "99999999999999999999"
	case 1:
		m["title"] = ""
	default:
		m["ethnicity"] = "x"
	}
}

// SendOrder sends one dispatch.order to the hub: partial (an Order object,
// may be nil) completed by order, with fault applied ("" = none). It
// returns the message sent; a reordered order is sent after the next one.
func (s *Sim) SendOrder(ctx context.Context, partial json.RawMessage, fault mpssim.Fault) (MessageInfo, error) {
	if fault != "" {
		if err := checkFault(fault, 0); err != nil || fault == mpssim.FaultLostReceipt {
			return MessageInfo{}, fmt.Errorf("citysim: fault %q does not apply to an order", fault)
		}
	}
	m, err := s.order(partial)
	if err != nil {
		return MessageInfo{}, err
	}
	if fault == mpssim.FaultInvalidPayload {
		s.invalidate(m)
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return MessageInfo{}, err
	}
	orderNo, _ := m["orderNo"].(string)
	o := &outMsg{info: MessageInfo{ID: newID(), OrderNo: orderNo, Fault: string(fault)}, payload: payload, interval: s.cfg.Resend.Initial}
	if fault == mpssim.FaultReorder {
		s.mu.Lock()
		prev := s.withheld
		s.withheld = o
		s.mu.Unlock()
		if prev != nil { // two reorders in a row: the older goes now
			return o.info, s.send(ctx, prev, "")
		}
		s.log.Info("order withheld (reorder fault): sent after the next one", "id", o.info.ID, "orderNo", orderNo)
		return o.info, nil
	}
	if err := s.send(ctx, o, fault); err != nil {
		return o.info, err
	}
	s.mu.Lock()
	w := s.withheld
	s.withheld = nil
	s.mu.Unlock()
	if w != nil {
		if err := s.send(ctx, w, ""); err != nil {
			return o.info, err
		}
	}
	return o.info, nil
}

// send seals and publishes an order (the first time) with fault.
func (s *Sim) send(ctx context.Context, o *outMsg, fault mpssim.Fault) error {
	sealer := s.sealer
	if fault == mpssim.FaultStaleTimestamp {
		sealer = s.stale
	}
	env, _, err := sealer.Seal(envelope.Outgoing{ID: o.info.ID, Kind: contracts.KindDispatchOrder, To: s.cfg.HubNode, Payload: o.payload})
	if err != nil {
		return fmt.Errorf("citysim: seal: %w", err)
	}
	if fault == mpssim.FaultBadSignature {
		if env, err = mpssim.FlipSignatureBit(env); err != nil {
			return err
		}
	}
	if err := s.publish(ctx, s.cfg.HubNode, contracts.KindDispatchOrder, o.info.ID, env); err != nil {
		return err
	}
	if fault == mpssim.FaultDuplicate {
		if err := s.publish(ctx, s.cfg.HubNode, contracts.KindDispatchOrder, o.info.ID, env); err != nil {
			return err
		}
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	o.firstSent, o.nextAt = now, now.Add(o.interval)
	o.info.Attempts = 1
	t := s.cfg.Now()
	o.info.SentAt = &t
	s.out[o.info.ID] = o
	// An order with a bad signature is never answered: not awaited.
	if fault != mpssim.FaultBadSignature {
		s.pending[o.info.ID] = o
	}
	s.stats.OrdersSent++
	s.log.Info("order sent", "id", o.info.ID, "orderNo", o.info.OrderNo, "fault", string(fault))
	return nil
}

// resendDue resends the orders without a receipt whose time has come
// (same id and payload, fresh ts), flagging those past the give-up time.
func (s *Sim) resendDue(ctx context.Context) {
	now := time.Now()
	var due []*outMsg
	s.mu.Lock()
	for id, o := range s.pending {
		switch {
		case now.Sub(o.firstSent) >= s.cfg.Resend.GiveUp:
			o.info.Flagged = true
			delete(s.pending, id)
			s.stats.Flagged++
			s.log.Warn("order without receipt past the give-up time: flagged", "id", id, "orderNo", o.info.OrderNo, "attempts", o.info.Attempts)
		case !now.Before(o.nextAt):
			due = append(due, o)
		}
	}
	s.mu.Unlock()
	for _, o := range due {
		env, _, err := s.sealer.Seal(envelope.Outgoing{ID: o.info.ID, Kind: contracts.KindDispatchOrder, To: s.cfg.HubNode, Payload: o.payload})
		if err == nil {
			err = s.publish(ctx, s.cfg.HubNode, contracts.KindDispatchOrder, o.info.ID, env)
		}
		if err != nil {
			if !errors.Is(err, errNotConnected) {
				s.log.Warn("resend failed", "id", o.info.ID, "err", err)
			}
			continue
		}
		s.mu.Lock()
		o.info.Attempts++
		o.interval = min(time.Duration(float64(o.interval)*s.cfg.Resend.Multiplier), s.cfg.Resend.Max)
		o.nextAt = now.Add(o.interval)
		s.stats.Resends++
		s.mu.Unlock()
		s.log.Info("order resent", "id", o.info.ID, "orderNo", o.info.OrderNo, "attempt", o.info.Attempts)
	}
}
