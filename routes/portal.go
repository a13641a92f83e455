package routes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/contracts"
	"zhianhub/contracts/events"
	"zhianhub/envelope"
	"zhianhub/store/lead"
	"zhianhub/store/warning"
)

// PortalQueue is the portal's own durable queue on zhian.events.
const PortalQueue = "zhian.events.hub-portal"

// PortalKinds are the events the portal consumes.
var PortalKinds = []string{events.KindWarningIssued, events.KindLeadRegistered}

// PortalConfig configures the portal's event route.
type PortalConfig struct {
	AMQPURL     string
	Pool        *pgxpool.Pool
	Contracts   EventContracts
	DeadLetters DeadLetters
	Warnings    *warning.Service
	Leads       *lead.Service
	// AuditNotify wakes the audit writer after a commit (optional).
	AuditNotify func()
	Logger      *slog.Logger
	// Exchange is the events exchange; default events.EventsExchange.
	Exchange string
	// Queue is the portal's queue, bound to Exchange with PortalKinds;
	// default PortalQueue.
	Queue string
	// Prefetch bounds the unacked deliveries; default 16.
	Prefetch int
}

func (c *PortalConfig) setDefaults() {
	if c.Exchange == "" {
		c.Exchange = events.EventsExchange
	}
	if c.Queue == "" {
		c.Queue = PortalQueue
	}
	if c.Prefetch == 0 {
		c.Prefetch = 16
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.AuditNotify == nil {
		c.AuditNotify = func() {}
	}
}

// Validate reports a missing dependency.
func (c *PortalConfig) Validate() error {
	var errs []error
	for name, missing := range map[string]bool{
		"AMQPURL": c.AMQPURL == "", "Pool": c.Pool == nil, "Contracts": c.Contracts == nil, "DeadLetters": c.DeadLetters == nil,
		"Warnings": c.Warnings == nil, "Leads": c.Leads == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("routes: PortalConfig.%s is required", name))
		}
	}
	if c.Prefetch < 1 {
		errs = append(errs, errors.New("routes: PortalConfig.Prefetch must be positive"))
	}
	return errors.Join(errs...)
}

// Portal consumes the internal events the portal acts on, from its own
// durable queue on zhian.events: warning.issued becomes a stored warning
// with a reminder in the responsible unit's inbox (warning.Service.Issue),
// lead.registered a stored lead, merged with its duplicates
// (lead.Service.RegisterTx).
//
// Each event is checked against its contract again (the ingress checked
// it, but the queue may be fed otherwise) and handled in one transaction
// that also records its messageId (portal_event_seen): a redelivered
// event, or the same event published twice, has no second effect, and so
// has another event for a warningId or leadId already stored with the
// same content. An event that cannot be used is kept as a dead letter
// with its raw bytes, code and reason (source "amqp:"+Queue, replayable
// to Exchange with its routing key), then acked: E100/E102/E120 for a
// contract violation, E122 for a responsible unit not in the unit tree,
// E130 for a leadId stored with other content. If the database fails the
// delivery returns to the queue (nack) and the route reconnects.
type Portal struct {
	cfg    PortalConfig
	dialer *dialer
}

// NewPortal returns the route; Run starts it.
func NewPortal(cfg PortalConfig) (*Portal, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Portal{cfg: cfg, dialer: newDialer(cfg.AMQPURL, "zhianhub-portal", cfg.Logger)}, nil
}

// DeclarePortal declares the events exchange (topic, durable) and the
// portal's durable queue bound with PortalKinds.
func DeclarePortal(ch *amqp.Channel, exchange, queue string) error {
	return declareEventQueue(ch, exchange, queue, PortalKinds)
}

// Run consumes until ctx ends; a delivery in hand is finished first.
func (p *Portal) Run(ctx context.Context) error {
	c := consumer{name: "portal", queue: p.cfg.Queue, prefetch: p.cfg.Prefetch, dialer: p.dialer, logger: p.cfg.Logger,
		declare: func(ch *amqp.Channel) error { return DeclarePortal(ch, p.cfg.Exchange, p.cfg.Queue) },
		handle:  p.handle, logAttrs: []any{"exchange", p.cfg.Exchange}}
	c.run(ctx)
	return nil
}

// portalEvent is the frame of a module event.
type portalEvent struct {
	MessageID string          `json:"messageId"`
	From      string          `json:"from"`
	Data      json.RawMessage `json:"data"`
}

type leadData struct {
	LeadID       string    `json:"leadId"`
	Source       string    `json:"source"`
	Category     string    `json:"category"`
	Content      string    `json:"content"`
	Region       string    `json:"region"`
	Unit         string    `json:"unit"`
	Officer      string    `json:"officer"`
	RegisteredAt time.Time `json:"registeredAt"`
}

// refused is an event the portal cannot use: kept as a dead letter.
type refused struct{ code, reason string }

func (r *refused) Error() string { return "routes: portal event refused: " + r.code + " " + r.reason }

// handle processes one delivery and acks it; an error means it was neither
// applied nor kept (the caller returns it to the queue).
func (p *Portal) handle(ctx context.Context, d amqp.Delivery) error {
	kind := d.RoutingKey
	var ev portalEvent
	err := p.check(kind, d.Body)
	if err == nil {
		if err = json.Unmarshal(d.Body, &ev); err == nil {
			err = p.apply(ctx, kind, ev)
		}
	}
	var rf *refused
	switch {
	case err == nil:
		p.cfg.AuditNotify()
		return d.Ack(false)
	case errors.As(err, &rf):
	default:
		if code := contracts.ErrorCode(err); code != contracts.CodeInternal {
			rf = &refused{code: code, reason: ingressReason(kind, err)}
			break
		}
		return err
	}
	if err := keepOnce(ctx, p.cfg.Pool, p.cfg.DeadLetters, "amqp:"+p.cfg.Queue, p.cfg.Exchange, d, messageIDOf(d.Body), rf.code, rf.reason); err != nil {
		return err
	}
	p.cfg.Logger.Warn("portal event refused and kept", "kind", kind, "code", rf.code, "reason", rf.reason, "message_id", messageIDOf(d.Body))
	return d.Ack(false)
}

func (p *Portal) check(kind string, body []byte) error {
	known := false
	for _, k := range PortalKinds {
		known = known || k == kind
	}
	if !known {
		return &refused{code: contracts.CodeUnknownKind, reason: fmt.Sprintf("kind：门户不处理的事件类型 %.64q", kind)}
	}
	return p.cfg.Contracts.Validate(kind, body)
}

// apply makes the event's effect in one transaction with its messageId.
func (p *Portal) apply(ctx context.Context, kind string, ev portalEvent) error {
	return pgx.BeginFunc(ctx, p.cfg.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO portal_event_seen (consumer, message_id, kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			p.cfg.Queue, ev.MessageID, kind)
		if err != nil {
			return fmt.Errorf("routes: portal seen %s: %w", ev.MessageID, err)
		}
		if tag.RowsAffected() == 0 {
			p.cfg.Logger.Debug("portal event seen before", "kind", kind, "message_id", ev.MessageID)
			return nil
		}
		switch kind {
		case events.KindWarningIssued:
			var in warning.Issue
			if err := json.Unmarshal(ev.Data, &in); err != nil {
				return fmt.Errorf("routes: valid warning.issued does not decode: %w", err)
			}
			created, err := p.cfg.Warnings.Issue(ctx, tx, ev.MessageID, ev.From, in)
			var ie *warning.InvalidError
			if errors.As(err, &ie) {
				return &refused{code: contracts.CodeNotInTable, reason: ie.Reason}
			}
			if err == nil && !created {
				p.cfg.Logger.Info("warning known already; event without effect", "warningId", in.WarningID, "message_id", ev.MessageID)
			}
			return err
		default: // lead.registered
			var ld leadData
			if err := json.Unmarshal(ev.Data, &ld); err != nil {
				return fmt.Errorf("routes: valid lead.registered does not decode: %w", err)
			}
			_, _, err := p.cfg.Leads.RegisterTx(ctx, tx, lead.Registration{LeadID: ld.LeadID, Source: ld.Source, Category: ld.Category,
				Content: ld.Content, Region: ld.Region, Unit: ld.Unit, Officer: ld.Officer, RegisteredAt: ld.RegisteredAt,
				Via: lead.ViaBus, MessageID: ev.MessageID, Actor: ev.From, CorrelationID: ev.MessageID})
			var ie *lead.InvalidError
			switch {
			case errors.Is(err, lead.ErrConflict):
				return &refused{code: string(envelope.CodeStateConflict), reason: "leadId：线索编号 " + ld.LeadID + " 已登记且内容不同"}
			case errors.As(err, &ie):
				return &refused{code: contracts.CodeSchema, reason: ie.Reason}
			}
			return err
		}
	})
}
