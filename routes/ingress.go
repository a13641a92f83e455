package routes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/contracts"
	"zhianhub/contracts/events"
	"zhianhub/store/deadletter"
)

// IngressQueue is the hub's queue on the ingress exchange.
const IngressQueue = "zhian.ingress.hub"

// EventContracts validates internal events; *events.Registry satisfies it.
type EventContracts interface {
	// Get returns the contract of kind.
	Get(kind string) (events.Event, bool)
	// Validate returns nil or a coded error (contracts.ErrorCode: E100,
	// E102, E120 with a *contracts.FieldError).
	Validate(kind string, payload []byte) error
}

// IngressConfig configures the ingress route.
type IngressConfig struct {
	AMQPURL string
	// Pool is the database of the dead letters (for the redelivery check).
	Pool        *pgxpool.Pool
	Contracts   EventContracts
	DeadLetters DeadLetters
	Logger      *slog.Logger
	// Exchange is where modules publish; default events.IngressExchange.
	Exchange string
	// Queue is the hub's queue on Exchange, bound with "#"; default
	// IngressQueue.
	Queue string
	// EventsExchange receives every valid event; default
	// events.EventsExchange.
	EventsExchange string
	// Prefetch bounds the unacked deliveries; default 64.
	Prefetch int
}

func (c *IngressConfig) setDefaults() {
	if c.Exchange == "" {
		c.Exchange = events.IngressExchange
	}
	if c.Queue == "" {
		c.Queue = IngressQueue
	}
	if c.EventsExchange == "" {
		c.EventsExchange = events.EventsExchange
	}
	if c.Prefetch == 0 {
		c.Prefetch = 64
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a missing dependency.
func (c *IngressConfig) Validate() error {
	var errs []error
	for name, missing := range map[string]bool{
		"AMQPURL": c.AMQPURL == "", "Pool": c.Pool == nil, "Contracts": c.Contracts == nil, "DeadLetters": c.DeadLetters == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("routes: IngressConfig.%s is required", name))
		}
	}
	if c.Prefetch < 1 {
		errs = append(errs, errors.New("routes: IngressConfig.Prefetch must be positive"))
	}
	if c.Exchange == c.EventsExchange {
		errs = append(errs, errors.New("routes: IngressConfig.Exchange and EventsExchange must differ"))
	}
	return errors.Join(errs...)
}

// Ingress is the hub's ingress route for the internal modules' events: it
// consumes Queue (bound to the topic exchange Exchange with "#", routing key
// = kind), validates each event against its contract and
//
//   - publishes a valid one unchanged to EventsExchange (routing key =
//     kind) and acks the delivery only once the broker confirmed it
//     (at-least-once: a redelivered event is published again, with the same
//     messageId, by which subscribers de-duplicate);
//   - keeps an invalid one as a dead letter (raw bytes, code, reason,
//     source "amqp:"+Queue, sender = the AMQP user_id, replayable to
//     Exchange with its routing key), answers a Rejection to reply_to when
//     the delivery has one (with its correlation_id), then acks. A
//     redelivered invalid event whose letter exists is not kept twice.
//
// The kinds of the hub itself (keyperson.*) are refused (E102): modules
// may subscribe to them, not publish them. When the delivery carries a
// user_id (RabbitMQ checks it against the connection's user), the event's
// from must equal it (E120 at from).
//
// Deliveries are handled one at a time; if the database or the broker
// fails, the delivery is returned to the queue (nack, requeue) and the
// route reconnects with backoff: nothing is acked before it is published
// or kept.
type Ingress struct {
	cfg    IngressConfig
	dialer *dialer
	pub    *batchPublisher
}

// NewIngress returns the route; Run starts it.
func NewIngress(cfg IngressConfig) (*Ingress, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := newDialer(cfg.AMQPURL, "zhianhub-ingress", cfg.Logger)
	return &Ingress{cfg: cfg, dialer: d, pub: &batchPublisher{d: d}}, nil
}

// DeclareIngress declares the ingress and events exchanges (topic,
// durable) and the hub's ingress queue bound to every routing key.
func DeclareIngress(ch *amqp.Channel, exchange, queue, eventsExchange string) error {
	for _, ex := range []string{exchange, eventsExchange} {
		if err := ch.ExchangeDeclare(ex, "topic", true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %s: %w", ex, err)
		}
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue %s: %w", queue, err)
	}
	if err := ch.QueueBind(queue, "#", exchange, false, nil); err != nil {
		return fmt.Errorf("bind %s to %s: %w", queue, exchange, err)
	}
	return nil
}

// Run consumes until ctx ends. A delivery in hand when ctx ends is
// finished first.
func (in *Ingress) Run(ctx context.Context) error {
	defer in.pub.close()
	c := consumer{name: "ingress", queue: in.cfg.Queue, prefetch: in.cfg.Prefetch, dialer: in.dialer, logger: in.cfg.Logger,
		declare: func(ch *amqp.Channel) error {
			return DeclareIngress(ch, in.cfg.Exchange, in.cfg.Queue, in.cfg.EventsExchange)
		},
		handle: in.handle, logAttrs: []any{"exchange", in.cfg.Exchange, "events", in.cfg.EventsExchange}}
	c.run(ctx)
	return nil
}

func (in *Ingress) handle(ctx context.Context, d amqp.Delivery) error {
	kind := d.RoutingKey
	err := in.check(kind, d)
	if err == nil {
		errs := in.pub.Publish(ctx, []Pub{{Exchange: in.cfg.EventsExchange, RoutingKey: kind, Msg: amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: messageIDOf(d.Body),
			Type: kind, Timestamp: time.Now(), Headers: moduleHeader(d.UserId), Body: d.Body,
		}}})
		if errs[0] != nil {
			return fmt.Errorf("publish %s to %s: %w", kind, in.cfg.EventsExchange, errs[0])
		}
		in.cfg.Logger.Debug("ingress event published", "kind", kind, "module", d.UserId, "message_id", messageIDOf(d.Body), "redelivered", d.Redelivered)
		return d.Ack(false)
	}
	code := contracts.ErrorCode(err)
	if code == contracts.CodeInternal {
		return err
	}
	rej := events.Rejection{Code: code, Reason: ingressReason(kind, err), MessageID: messageIDOf(d.Body)}
	var fe *contracts.FieldError
	if errors.As(err, &fe) {
		rej.Path = fe.Path
	}
	if code == contracts.CodeUnknownKind {
		rej.Path = "kind"
	}
	if err := in.keep(ctx, d, rej); err != nil {
		return err
	}
	in.cfg.Logger.Warn("ingress event rejected", "kind", kind, "module", d.UserId, "code", code, "path", rej.Path, "message_id", rej.MessageID)
	if d.ReplyTo != "" {
		body, _ := json.Marshal(rej)
		errs := in.pub.Publish(ctx, []Pub{{Exchange: "", RoutingKey: d.ReplyTo, Msg: amqp.Publishing{
			ContentType: "application/json", CorrelationId: d.CorrelationId, Type: "rejection", Timestamp: time.Now(), Body: body,
		}}})
		if errs[0] != nil {
			// The letter is kept; the publisher can learn the refusal
			// from the operators. Not worth redelivering for.
			in.cfg.Logger.Warn("ingress rejection reply failed", "reply_to", d.ReplyTo, "err", errs[0])
		}
	}
	return d.Ack(false)
}

// check validates a delivery: kind published by modules, contract, and
// agreement of from with the AMQP user_id.
func (in *Ingress) check(kind string, d amqp.Delivery) error {
	ev, ok := in.cfg.Contracts.Get(kind)
	if !ok {
		return fmt.Errorf("%w: %.64q", contracts.ErrUnknownKind, kind)
	}
	if !ev.Module {
		return &contracts.FieldError{Code: contracts.CodeUnknownKind, Path: "kind",
			Reason: "kind：" + kind + " 只能由枢纽发布，模块不得经入口发布"}
	}
	if err := in.cfg.Contracts.Validate(kind, d.Body); err != nil {
		return err
	}
	if d.UserId != "" {
		var f struct {
			From string `json:"from"`
		}
		_ = json.Unmarshal(d.Body, &f) // valid by now
		if f.From != d.UserId {
			return &contracts.FieldError{Code: contracts.CodeSchema, Path: "from", Reason: "from：与发布模块的 RabbitMQ 用户不一致"}
		}
	}
	return nil
}

// keep stores the dead letter of a refused delivery, once: a redelivery
// whose letter is already there is not kept again.
func (in *Ingress) keep(ctx context.Context, d amqp.Delivery, rej events.Rejection) error {
	return keepOnce(ctx, in.cfg.Pool, in.cfg.DeadLetters, "amqp:"+in.cfg.Queue, in.cfg.Exchange, d, rej.MessageID, rej.Code, rej.Reason)
}

// keepOnce stores the dead letter of delivery d from exchange (raw bytes,
// code, reason), unless d is a redelivery whose letter exists already.
func keepOnce(ctx context.Context, pool *pgxpool.Pool, dls DeadLetters, source, exchange string, d amqp.Delivery, messageID, code, reason string) error {
	l := deadletter.Letter{
		Source: source, Exchange: exchange, RoutingKey: d.RoutingKey, MessageID: messageID,
		Sender: d.UserId, Kind: d.RoutingKey, Raw: d.Body, Code: code, Reason: reason,
	}
	if d.Redelivered {
		exists, err := dls.Has(ctx, pool, l)
		if err != nil {
			return fmt.Errorf("dead letter lookup: %w", err)
		}
		if exists {
			return nil
		}
	}
	_, err := dls.Put(ctx, pool, l)
	return err
}

// messageIDOf reads the messageId of an event that may be invalid.
func messageIDOf(body []byte) string {
	var m struct {
		MessageID string `json:"messageId"`
	}
	if json.Unmarshal(body, &m) != nil || len(m.MessageID) > 64 {
		return ""
	}
	return m.MessageID
}

// HeaderModule names the publishing module (the AMQP user_id of the ingress
// delivery) on an event the ingress forwards.
const HeaderModule = "x-zhianhub-module"

func moduleHeader(user string) amqp.Table {
	if user == "" {
		return nil
	}
	return amqp.Table{HeaderModule: user}
}

// ingressReason is the Chinese reason of a refusal.
func ingressReason(kind string, err error) string {
	var fe *contracts.FieldError
	switch {
	case errors.As(err, &fe):
		return fe.Reason
	case errors.Is(err, contracts.ErrUnknownKind):
		return fmt.Sprintf("kind：未知的事件类型 %.64q", kind)
	case errors.Is(err, contracts.ErrNotObject):
		return "消息体不是一个合法的 JSON 对象"
	}
	return reasonOf(err)
}
