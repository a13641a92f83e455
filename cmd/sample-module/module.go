package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/contracts/events"
)

// Config is a module's connection to the hub's pub/sub.
type Config struct {
	// URL is the RabbitMQ URL with the module's own user: its user name is
	// the module name, sent as user_id and as the events' from.
	URL string
	// Ingress and Events are the exchanges; defaults zhian.ingress and
	// zhian.events.
	Ingress, Events string
	Logger          *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Ingress == "" {
		c.Ingress = events.IngressExchange
	}
	if c.Events == "" {
		c.Events = events.EventsExchange
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// moduleOf is the user name of an AMQP URL: the module name.
func moduleOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return ""
	}
	return u.User.Username()
}

// Event is an event as a subscriber reads it.
type Event struct {
	MessageID string          `json:"messageId"`
	Kind      string          `json:"kind"`
	From      string          `json:"from"`
	Data      json.RawMessage `json:"data"`
}

// Publish sends ev to the ingress exchange with routing key kind and waits
// for the broker's confirm, then up to wait for the hub's rejection. The hub
// answers only a refusal: nil, nil means the broker took the event and the
// hub did not refuse it within wait.
func Publish(ctx context.Context, cfg Config, kind string, ev map[string]any, wait time.Duration) (*events.Rejection, error) {
	cfg.setDefaults()
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	conn, err := amqp.Dial(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		return nil, err
	}
	// An exclusive, server-named reply queue (amq.gen-…), allowed by the
	// module's configure permission.
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, fmt.Errorf("reply queue: %w", err)
	}
	replies, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return nil, err
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	id, _ := ev["messageId"].(string)
	confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx, cfg.Ingress, kind, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Type: kind,
		UserId: moduleOf(cfg.URL), ReplyTo: q.Name, CorrelationId: id, Timestamp: time.Now(), Body: body,
	})
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	ok, err := confirm.WaitContext(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		if e := <-closed; e != nil {
			return nil, fmt.Errorf("broker refused the event (ACL?): %w", e)
		}
		return nil, errors.New("broker nacked the event")
	}
	cfg.Logger.Info("event published", "kind", kind, "message_id", id)
	select {
	case d := <-replies:
		if d.CorrelationId != id {
			return nil, fmt.Errorf("reply for another event %q", d.CorrelationId)
		}
		var rej events.Rejection
		if err := json.Unmarshal(d.Body, &rej); err != nil {
			return nil, fmt.Errorf("reply: %w", err)
		}
		return &rej, nil
	case <-time.After(wait):
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Subscribe reads the given kinds from the events exchange through the
// module's durable queue module.<name>.events until ctx ends, calling handle
// once per messageId (redeliveries and republished duplicates are skipped);
// a handle error returns the event to the queue.
func Subscribe(ctx context.Context, cfg Config, kinds []string, handle func(Event) error) error {
	cfg.setDefaults()
	module := moduleOf(cfg.URL)
	conn, err := amqp.Dial(cfg.URL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	queue := "module." + module + ".events"
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", queue, err)
	}
	for _, k := range kinds {
		if err := ch.QueueBind(queue, k, cfg.Events, false, nil); err != nil {
			return fmt.Errorf("bind %s (is it in the module's ACL?): %w", k, err)
		}
	}
	if err := ch.Qos(32, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	cfg.Logger.Info("subscribed", "queue", queue, "kinds", kinds)
	seen := newSeen(10000)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
			var e Event
			if err := json.Unmarshal(d.Body, &e); err != nil {
				// The hub only forwards valid events; keep nothing we
				// cannot read in the queue forever.
				cfg.Logger.Error("unreadable event", "err", err)
				_ = d.Nack(false, false)
				continue
			}
			if seen.has(e.MessageID) {
				_ = d.Ack(false)
				continue
			}
			if err := handle(e); err != nil {
				cfg.Logger.Warn("handler failed; event returned to the queue", "message_id", e.MessageID, "err", err)
				_ = d.Nack(false, true)
				continue
			}
			seen.add(e.MessageID)
			_ = d.Ack(false)
		}
	}
}

// seen remembers the last n message ids (a module would keep them in its
// database, with its effect).
type seen struct {
	n     int
	order []string
	set   map[string]bool
}

func newSeen(n int) *seen { return &seen{n: n, set: map[string]bool{}} }

func (s *seen) has(id string) bool { return s.set[id] }

func (s *seen) add(id string) {
	s.set[id] = true
	s.order = append(s.order, id)
	if len(s.order) > s.n {
		delete(s.set, s.order[0])
		s.order = s.order[1:]
	}
}

// sampleEvent returns the contract's example of kind with a fresh
// messageId, from = module and the time now; invalid breaks it (an unknown
// data member).
func sampleEvent(kind, module string, invalid bool) (map[string]any, error) {
	reg, err := events.NewRegistry()
	if err != nil {
		return nil, err
	}
	e, ok := reg.Get(kind)
	if !ok || !e.Module {
		return nil, fmt.Errorf("%q is not a kind modules publish", kind)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(e.Example), &m); err != nil {
		return nil, err
	}
	m["messageId"] = uuid.Must(uuid.NewV7()).String()
	m["from"] = module
	m["occurredAt"] = time.Now().Format("2006-01-02T15:04:05.000Z07:00")
	if invalid {
		m["data"].(map[string]any)["ethnicity"] = "01" // no event may carry it
	}
	return m, nil
}
