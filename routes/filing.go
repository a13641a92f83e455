package routes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/envelope"
	"zhianhub/store/audit"
	"zhianhub/store/exchange"
	"zhianhub/store/registry"
)

// FilingConfig configures the filing service.
type FilingConfig struct {
	Pool     *pgxpool.Pool
	Self     string // this node
	To       string // the Ministry bus node
	Exchange string
	// Ordering is the ordering header of the bus's payloads; default
	// PersonOrdering (the Ministry bus).
	Ordering Ordering
	// RoutingKey gives the routing key of a message to node of kind.
	RoutingKey func(to, kind string) string
	Payloads   Payloads
	Registry   Registry
	// Cipher encrypts the filing's payload in the outbox (it holds ID
	// numbers, names and addresses until the receipt, and stays).
	Cipher Cipher
	Audit  *audit.Writer
	Now    func() time.Time
	// Notify is called after a filing is committed to the outbox.
	Notify func()
}

// Filing files this hub's records up to the Ministry (备案): it validates
// a payload, applies it to the registry and puts it in the outbox in one
// transaction; the relay seals, publishes and resends it until its receipt.
// Configured for the city bus (Ordering RefOrdering, a city Registry and
// Payloads), it files feedback to the city bureau the same way.
type Filing struct {
	cfg FilingConfig
}

// NewFiling returns the service.
func NewFiling(cfg FilingConfig) (*Filing, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	cfg.Ordering = cfg.Ordering.orDefault()
	if cfg.Pool == nil || cfg.Payloads == nil || cfg.Registry == nil || cfg.Cipher == nil || cfg.Audit == nil || cfg.RoutingKey == nil ||
		!envelope.ValidNode(cfg.Self) || !envelope.ValidNode(cfg.To) || cfg.Exchange == "" {
		return nil, errors.New("routes: FilingConfig needs Pool, Payloads, Registry, Cipher, Audit, RoutingKey, Exchange and valid Self/To nodes")
	}
	return &Filing{cfg: cfg}, nil
}

// FileRequest is one filing.
type FileRequest struct {
	Kind string
	// Payload is the kind's JSON; its seq is assigned by the service (a
	// given seq is replaced).
	Payload []byte
	// Corr is the id this filing answers (task.sign: the Task message).
	Corr string
	// Actor is who files (user id), for the audit.
	Actor string
	// CorrelationID ties the filing to the request that caused it.
	CorrelationID string
}

// FileResult describes an accepted filing, now in the outbox.
type FileResult struct {
	ID        string   `json:"id"`
	Kind      string   `json:"kind"`
	PersonNo  string   `json:"personNo"` // the ordering key (refNo on the city bus)
	Seq       int64    `json:"seq"`
	Cleanings []string `json:"cleanings,omitempty"`
}

// File validates and files one record. Refusals are coded errors (E100,
// E102, E120-E122 for the payload, E130/E131 for the registry state).
func (f *Filing) File(ctx context.Context, req FileRequest) (FileResult, error) {
	var res FileResult
	var entry audit.Entry
	err := pgx.BeginFunc(ctx, f.cfg.Pool, func(tx pgx.Tx) error {
		var err error
		res, entry, err = f.FileTx(ctx, tx, req)
		return err
	})
	if err != nil {
		var coded envelope.Coded
		var e *envelope.Error
		if errors.As(err, &coded) || errors.As(err, &e) {
			_, _ = f.cfg.Audit.Append(ctx, audit.Entry{Actor: req.Actor, Action: "filing.submit", Object: f.orderingKey(req.Payload),
				Result: string(envelope.CodeOf(err)), Reason: reasonOf(err), CorrelationID: req.CorrelationID, Detail: map[string]any{"kind": req.Kind}})
			return FileResult{}, err
		}
		return FileResult{}, fmt.Errorf("routes: file %s: %w", req.Kind, err)
	}
	f.cfg.Notify()
	if _, err := f.cfg.Audit.Append(ctx, entry); err != nil {
		return res, fmt.Errorf("routes: filed %s but the audit failed: %w", res.ID, err)
	}
	return res, nil
}

// FileTx is File in the caller's transaction: a filing that is part of
// another change (a warning's final disposition reported to the city
// bureau) commits or rolls back with it. It returns the filing's audit
// entry for the caller to stage in tx (audit.Stage) and does not notify
// the relay: call Notify after the commit. A refusal is a coded error and
// leaves tx usable only as far as the caller's own rules allow (the
// registry checks before it writes; the sequence row may be locked).
func (f *Filing) FileTx(ctx context.Context, tx pgx.Tx, req FileRequest) (FileResult, audit.Entry, error) {
	if req.Kind == "receipt" {
		return FileResult{}, audit.Entry{}, &envelope.Error{Code: envelope.CodeUnknownKind, Step: 6, Field: "kind", Reason: "kind：回执不能作为备案提交"}
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(req.Payload))
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return FileResult{}, audit.Entry{}, &envelope.Error{Code: envelope.CodeMalformed, Step: 6, Reason: "载荷不是 JSON 对象"}
	}
	personNo, _, _ := f.cfg.Ordering.read(withSeq(fields, 1))
	seq := int64(1)
	if personNo != "" {
		var err error
		if seq, err = exchange.NextOutSeq(ctx, tx, f.cfg.To, personNo); err != nil {
			return FileResult{}, audit.Entry{}, err
		}
	}
	cleaned, typed, cleanings, err := f.cfg.Payloads.Check(req.Kind, withSeq(fields, seq))
	if err != nil {
		return FileResult{}, audit.Entry{}, err
	}
	id := newID()
	if err := f.cfg.Registry.Apply(ctx, tx, registry.Message{ID: id, Direction: registry.Out, Node: f.cfg.To, Kind: req.Kind, Corr: req.Corr, Payload: typed, At: f.cfg.Now()}); err != nil {
		return FileResult{}, audit.Entry{}, err
	}
	sealed, err := f.cfg.Cipher.Encrypt(cleaned, exchange.PayloadAAD(id))
	if err != nil {
		return FileResult{}, audit.Entry{}, fmt.Errorf("routes: encrypt the filing: %w", err)
	}
	if err := exchange.Enqueue(ctx, tx, exchange.Out{
		ID: id, Kind: req.Kind, Exchange: f.cfg.Exchange, RoutingKey: f.cfg.RoutingKey(f.cfg.To, req.Kind), ToNode: f.cfg.To,
		Corr: req.Corr, Payload: sealed, Encrypted: true, PersonNo: personNo, Seq: seq, NeedsReceipt: true, Actor: req.Actor,
	}); err != nil {
		return FileResult{}, audit.Entry{}, err
	}
	res := FileResult{ID: id, Kind: req.Kind, PersonNo: personNo, Seq: seq, Cleanings: cleanings}
	entry := audit.Entry{Actor: req.Actor, Action: "filing.submit", Object: id, Result: string(envelope.CodeOK),
		CorrelationID: firstNonEmpty(req.CorrelationID, id), Detail: map[string]any{"kind": req.Kind, "personNo": personNo, "seq": seq, "cleanings": cleanings}}
	return res, entry, nil
}

// Notify wakes the relay: call it after committing a FileTx.
func (f *Filing) Notify() { f.cfg.Notify() }

// orderingKey is the ordering key of a payload (for the audit of a
// refusal), "" when it has none.
func (f *Filing) orderingKey(payload []byte) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(payload, &fields) != nil || fields == nil {
		return ""
	}
	key, _, _ := f.cfg.Ordering.read(withSeq(fields, 1))
	return key
}

// withSeq returns the payload with its seq member set.
func withSeq(fields map[string]json.RawMessage, seq int64) []byte {
	out := make(map[string]json.RawMessage, len(fields)+1)
	for k, v := range fields {
		out[k] = v
	}
	if _, isReceipt := fields["ref"]; !isReceipt {
		out["seq"] = json.RawMessage(fmt.Sprint(seq))
	}
	b, _ := json.Marshal(out)
	return b
}
