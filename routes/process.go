package routes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"zhianhub/envelope"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
	"zhianhub/store/exchange"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
)

// process handles one item inside the batch transaction and returns the
// audit entries to append once it commits.
func (in *Inbound) process(ctx context.Context, tx *work, it *item) ([]audit.Entry, error) {
	if it.msg == nil {
		return in.deadLetterUnauthenticated(ctx, tx, it)
	}
	m := it.msg
	id, err := uuid.Parse(m.ID)
	if err != nil {
		return nil, fmt.Errorf("routes: id %q: %w", m.ID, err)
	}
	claim, prev, err := tx.claim(ctx, it)
	if err != nil {
		return nil, err
	}
	jm := journal.Message{ID: id, Direction: journal.In, Kind: m.Kind, Peer: m.From, Raw: it.raw, State: journal.StateOpened, CorrelationID: m.Corr}
	if claim != exchange.ClaimNew {
		// Journaled as received again; the stored message keeps its state.
		jm.Reason = claimReason(claim)
		if err := tx.journal.Record(jm); err != nil {
			return nil, err
		}
		if claim == exchange.ClaimDuplicate && m.Kind != "receipt" {
			tx.enqueue(in.receiptOut(m, StatusDuplicate, prev.Code, prev.Reason))
			return []audit.Entry{in.auditEntry(m, prev.Code, "duplicate of an answered message")}, nil
		}
		return nil, nil
	}
	if len(it.cleanings) > 0 {
		// Cleaning at the boundary is journaled: which fields, which
		// operations (never the values).
		jm.Reason = "cleaned: " + strings.Join(it.cleanings, "; ")
	}
	// The inbox claim makes this transaction the message's only writer.
	if err := tx.journal.Record(jm); err != nil {
		return nil, err
	}
	if it.openErr != nil && !it.ordered {
		// Steps 3-6 rejections without a readable place in a sequence.
		return in.reject(ctx, tx, it.d.RoutingKey, m, it.raw, string(envelope.CodeOf(it.openErr)), reasonOf(it.openErr))
	}
	if m.Kind == "receipt" {
		if it.code != string(envelope.CodeOK) {
			return in.reject(ctx, tx, it.d.RoutingKey, m, it.raw, it.code, it.reason)
		}
		return in.receipt(ctx, tx, it)
	}
	code, reason := it.code, it.reason
	if it.openErr != nil {
		code, reason = string(envelope.CodeOf(it.openErr)), reasonOf(it.openErr)
	}
	if !it.ordered {
		return in.reject(ctx, tx, it.d.RoutingKey, m, it.raw, code, reason)
	}
	return in.sequence(ctx, tx, it, code, reason)
}

func claimReason(c exchange.Claim) string {
	switch c {
	case exchange.ClaimRedelivered:
		return "redelivered by the broker"
	case exchange.ClaimPending:
		return "resent while held for a sequence gap"
	default:
		return "resent after its outcome: answered DUPLICATE"
	}
}

// sequence applies the message in seq order per (sender, personNo): it is
// applied now with every held message that follows it, held when it comes
// ahead of a gap, or refused when its seq was used already.
func (in *Inbound) sequence(ctx context.Context, tx *work, it *item, code, reason string) ([]audit.Entry, error) {
	m := it.msg
	key := exchange.Key{Sender: m.From, PersonNo: it.personNo}
	st, err := tx.seqState(ctx, key)
	if err != nil {
		return nil, err
	}
	next, held := st.Next, st.Held
	switch {
	case it.seq < next:
		return in.reject(ctx, tx, it.d.RoutingKey, m, it.raw, string(envelope.CodeStateConflict),
			fmt.Sprintf("seq：序号 %d 已使用，期望 %d", it.seq, next))
	case it.seq > next:
		sealed, err := in.cfg.Cipher.Encrypt(it.payload, exchange.HeldAAD(m.From, m.ID))
		if err != nil {
			return nil, fmt.Errorf("routes: encrypt the held payload: %w", err)
		}
		err = exchange.Hold(ctx, tx, exchange.Held{
			Sender: m.From, PersonNo: it.personNo, Seq: it.seq, ID: m.ID, Kind: m.Kind, Corr: m.Corr, TS: m.TS,
			Raw: it.raw, Payload: sealed, Encrypted: true, Code: code, Reason: reason, HeldSince: in.cfg.Now(),
		})
		if errors.Is(err, exchange.ErrSeqTaken) {
			return in.reject(ctx, tx, it.d.RoutingKey, m, it.raw, string(envelope.CodeStateConflict),
				fmt.Sprintf("seq：序号 %d 已被另一条消息占用", it.seq))
		}
		if err != nil {
			return nil, err
		}
		tx.setSeq(key, exchange.SeqState{Next: next, Held: true})
		return nil, nil
	}
	entries, err := in.apply(ctx, tx, it.d.RoutingKey, m, it.raw, it.typed, it.payload, code, reason)
	if err != nil {
		return nil, err
	}
	for next = it.seq + 1; held; next++ {
		h, err := exchange.TakeHeld(ctx, tx, m.From, it.personNo, next)
		if err != nil {
			return nil, err
		}
		if h == nil {
			break
		}
		more, err := in.applyHeld(ctx, tx, h)
		if err != nil {
			return nil, err
		}
		entries = append(entries, more...)
	}
	// Held stays as it was: messages past a further gap may still wait.
	tx.setSeq(key, exchange.SeqState{Next: next, Held: held})
	return entries, nil
}

// applyHeld applies a message that waited for its turn.
func (in *Inbound) applyHeld(ctx context.Context, tx *work, h *exchange.Held) ([]audit.Entry, error) {
	if h.Encrypted {
		p, err := in.cfg.Cipher.Decrypt(h.Payload, exchange.HeldAAD(h.Sender, h.ID))
		if err != nil {
			return nil, fmt.Errorf("routes: decrypt held message %s: %w", h.ID, err)
		}
		h.Payload, h.Encrypted = p, false
	}
	m := &envelope.Message{Header: envelope.Header{ID: h.ID, Kind: h.Kind, From: h.Sender, To: in.cfg.Node, TS: h.TS, Corr: h.Corr}, Payload: h.Payload}
	var typed any
	if h.Code == string(envelope.CodeOK) {
		var err error
		if _, typed, _, err = in.cfg.Payloads.Check(h.Kind, h.Payload); err != nil {
			return nil, fmt.Errorf("routes: held message %s no longer validates: %w", h.ID, err)
		}
	}
	return in.apply(ctx, tx, "", m, h.Raw, typed, h.Payload, h.Code, h.Reason)
}

// apply gives one message its effect (or its rejection) and its receipt.
func (in *Inbound) apply(ctx context.Context, tx *work, routingKey string, m *envelope.Message, raw []byte, typed any, payload []byte, code, reason string) ([]audit.Entry, error) {
	if code != string(envelope.CodeOK) {
		return in.reject(ctx, tx, routingKey, m, raw, code, reason)
	}
	// A refused effect leaves nothing behind and tx usable: the registry
	// checks before it writes.
	err := in.applyRegistry(ctx, tx, registry.Message{ID: m.ID, Direction: registry.In, Node: m.From, Kind: m.Kind, Corr: m.Corr, Payload: typed, At: in.cfg.Now()})
	var coded envelope.Coded
	switch {
	case err == nil || errors.Is(err, registry.ErrAlreadyApplied):
	case errors.As(err, &coded):
		return in.reject(ctx, tx, routingKey, m, raw, coded.ResultCode(), reasonOf(err))
	default:
		return nil, err
	}
	tx.enqueue(in.receiptOut(m, StatusAccepted, string(envelope.CodeOK), ""))
	if in.cfg.EventsExchange != "" {
		tx.enqueue(exchange.Out{
			ID: newID(), Kind: m.Kind, Exchange: in.cfg.EventsExchange, RoutingKey: m.Kind,
			Corr: m.ID, Payload: redactedEvent(m.ID, m.Kind, m.From, in.cfg.Now(), payload),
		})
	}
	tx.finish(m.From, m.ID, string(envelope.CodeOK), "")
	if err := in.transition(ctx, tx, m.ID, journal.StateApplied, string(envelope.CodeOK), ""); err != nil {
		return nil, err
	}
	return []audit.Entry{in.auditEntry(m, string(envelope.CodeOK), "")}, nil
}

// reject answers REJECTED (a receipt is never answered), records the
// outcome in the inbox and keeps the message as a dead letter.
func (in *Inbound) reject(ctx context.Context, tx *work, routingKey string, m *envelope.Message, raw []byte, code, reason string) ([]audit.Entry, error) {
	if m.Kind != "receipt" {
		tx.enqueue(in.receiptOut(m, StatusRejected, code, reason))
	}
	tx.finish(m.From, m.ID, code, reason)
	if routingKey == "" {
		routingKey = in.cfg.RoutingKey(in.cfg.Node, m.Kind)
	}
	if _, err := in.cfg.DeadLetters.Put(ctx, tx, deadletter.Letter{
		Source: "amqp:" + in.cfg.Queue, Exchange: in.cfg.Exchange, RoutingKey: routingKey,
		MessageID: m.ID, Sender: m.From, Kind: m.Kind, Raw: raw, Code: code, Reason: reason,
	}); err != nil {
		return nil, err
	}
	if err := in.transition(ctx, tx, m.ID, journal.StateRejected, code, reason); err != nil {
		return nil, err
	}
	return []audit.Entry{in.auditEntry(m, code, reason)}, nil
}

// receipt correlates a receipt with the filing it answers.
func (in *Inbound) receipt(ctx context.Context, tx *work, it *item) ([]audit.Entry, error) {
	m := it.msg
	var r receiptPayload
	if err := json.Unmarshal(it.payload, &r); err != nil {
		return nil, fmt.Errorf("routes: validated receipt does not decode: %w", err)
	}
	if m.Corr != r.Ref {
		return in.reject(ctx, tx, it.d.RoutingKey, m, it.raw, string(envelope.CodeSchema),
			fmt.Sprintf("corr：信封 corr %q 与回执 ref %q 不一致", m.Corr, r.Ref))
	}
	at, _ := time.Parse(time.RFC3339Nano, r.At)
	filing, changed, err := exchange.CorrelateReceipt(ctx, tx, exchange.Receipt{
		ID: m.ID, From: m.From, Ref: r.Ref, Status: r.Status, Code: r.Code, Reason: r.Reason, At: at,
	})
	if errors.Is(err, exchange.ErrUnknownRef) {
		return in.reject(ctx, tx, it.d.RoutingKey, m, it.raw, string(envelope.CodeUnknownRecord), "ref：回执所答复的消息不存在")
	}
	if err != nil {
		return nil, err
	}
	tx.finish(m.From, m.ID, string(envelope.CodeOK), "")
	if err := in.transition(ctx, tx, m.ID, journal.StateApplied, r.Code, r.Status); err != nil {
		return nil, err
	}
	if changed {
		refID, _ := uuid.Parse(r.Ref)
		err := in.cfg.Journal.Transition(ctx, tx, refID, journal.Out, journal.StateReceipted, r.Code, strings.TrimSpace(r.Status+" "+r.Reason))
		if errors.Is(err, journal.ErrNotFound) {
			// The relay published the filing but crashed before its
			// commit, and the receipt came first: journal it now (its
			// sealed bytes were not kept; the payload is in the outbox).
			_, err = in.cfg.Journal.Record(ctx, tx, journal.Message{ID: refID, Direction: journal.Out, Kind: filing.Kind, Peer: filing.ToNode,
				Raw: filing.Payload, State: journal.StateReceipted, Code: r.Code, Reason: "receipt before the send was recorded (relay crash); raw = the outbox payload (encrypted at rest), not the envelope"})
		}
		if err != nil {
			return nil, err
		}
	}
	e := in.auditEntry(m, r.Code, r.Status)
	e.Action, e.Object, e.CorrelationID = "filing.receipt", r.Ref, r.Ref
	e.Detail = map[string]any{"kind": filing.Kind, "personNo": filing.PersonNo, "seq": filing.Seq, "status": r.Status, "receipt": m.ID}
	return []audit.Entry{e}, nil
}

// deadLetterUnauthenticated keeps an envelope that failed steps 1-2: it is
// not answered (the sender cannot be trusted) and raises a security event.
func (in *Inbound) deadLetterUnauthenticated(ctx context.Context, tx *work, it *item) ([]audit.Entry, error) {
	code := string(envelope.CodeOf(it.openErr))
	reason := it.openErr.Error()
	var hdr struct{ ID, From, Kind string }
	_ = json.Unmarshal(it.raw, &hdr)
	id, err := uuid.Parse(hdr.ID)
	if err != nil || !envelope.ValidID(hdr.ID) {
		id, hdr.ID = uuid.Must(uuid.NewV7()), "" // journaled under an id of ours
	}
	if _, err := in.cfg.Journal.Record(ctx, tx, journal.Message{
		ID: id, Direction: journal.In, Kind: hdr.Kind, Peer: hdr.From, Raw: it.raw,
		State: journal.StateDeadLettered, Code: code, Reason: reason,
	}); err != nil {
		return nil, err
	}
	security := code == string(envelope.CodeBadSignature) || code == string(envelope.CodeUnknownSigner)
	if _, err := in.cfg.DeadLetters.Put(ctx, tx, deadletter.Letter{
		Source: "amqp:" + in.cfg.Queue, Exchange: in.cfg.Exchange, RoutingKey: it.d.RoutingKey,
		MessageID: hdr.ID, Sender: hdr.From, Kind: hdr.Kind, Raw: it.raw, Code: code, Reason: reason, Security: security,
	}); err != nil {
		return nil, err
	}
	action := "message.dead_letter"
	if security {
		action = "security.signature_failure"
	}
	return []audit.Entry{{
		Actor: nodeOr(hdr.From), Action: action, Object: id.String(), Result: code, Reason: reason,
		CorrelationID: id.String(), Detail: map[string]any{"queue": in.cfg.Queue, "kind": hdr.Kind},
	}}, nil
}

func nodeOr(s string) string {
	if envelope.ValidNode(s) {
		return s
	}
	return "unknown"
}

func (in *Inbound) transition(ctx context.Context, tx *work, id string, state journal.State, code, reason string) error {
	u, err := uuid.Parse(id)
	if err != nil {
		return err
	}
	// Sent with the batch's other journal writes at its end.
	return tx.journal.Transition(u, journal.In, state, code, reason)
}

// receiptOut is the receipt answering m, for the outbox.
func (in *Inbound) receiptOut(m *envelope.Message, status, code, reason string) exchange.Out {
	return exchange.Out{
		ID: newID(), Kind: "receipt", Exchange: in.cfg.Exchange, RoutingKey: in.cfg.RoutingKey(m.From, "receipt"),
		ToNode: m.From, Corr: m.ID, Payload: receiptJSON(m.ID, status, code, reason, in.cfg.Now()),
	}
}

func (in *Inbound) auditEntry(m *envelope.Message, code, reason string) audit.Entry {
	return audit.Entry{
		Actor: m.From, Action: "message.receive", Object: m.ID, Result: code, Reason: reason, CorrelationID: m.ID,
		Detail: map[string]any{"kind": m.Kind, "queue": in.cfg.Queue},
	}
}
