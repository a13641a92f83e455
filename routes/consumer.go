package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// handleTimeout bounds the handling of one delivery by a consumer.
const handleTimeout = 30 * time.Second

// consumer is the loop the event routes share (ingress, portal, push): one
// delivery at a time from a durable queue, each finished (acked, or kept
// as a dead letter and acked) by handle in its own transaction. An error
// of handle returns the delivery to the queue (nack, requeue) and
// reconnects with backoff; so does a broken channel. A delivery in hand
// when ctx ends is finished first, within handleTimeout.
type consumer struct {
	name     string // in logs and the consumer tag: "zhianhub-<name>"
	queue    string
	prefetch int
	dialer   *dialer
	logger   *slog.Logger
	// declare sets up the topology on the channel before consuming.
	declare func(*amqp.Channel) error
	handle  func(context.Context, amqp.Delivery) error
	// logAttrs are logged with "consuming".
	logAttrs []any
}

// run consumes until ctx ends.
func (c *consumer) run(ctx context.Context) {
	defer c.dialer.close()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := c.consume(ctx)
		if ctx.Err() != nil {
			break
		}
		c.logger.Warn(c.name+" consumer stopped; reconnecting", "queue", c.queue, "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (c *consumer) consume(ctx context.Context) error {
	conn, err := c.dialer.get(ctx)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp channel: %w", err)
	}
	defer ch.Close()
	if err := c.declare(ch); err != nil {
		return err
	}
	if err := ch.Qos(c.prefetch, 0, false); err != nil {
		return fmt.Errorf("amqp qos: %w", err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, c.queue, "zhianhub-"+c.name, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.queue, err)
	}
	c.logger.Info(c.name+" route consuming", append([]any{"queue", c.queue}, c.logAttrs...)...)
	for d := range deliveries {
		// A delivery in hand is finished even when ctx ends, within a
		// bound: a hung broker or database returns it to the queue.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handleTimeout)
		err := c.handle(hctx, d)
		cancel()
		if err != nil {
			_ = d.Nack(false, true)
			return err
		}
	}
	return errors.New("delivery channel closed")
}

// declareEventQueue declares the events exchange (topic, durable) and a
// route's durable queue bound to it with each of kinds.
func declareEventQueue(ch *amqp.Channel, exchange, queue string, kinds []string) error {
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", exchange, err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue %s: %w", queue, err)
	}
	for _, k := range kinds {
		if err := ch.QueueBind(queue, k, exchange, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s with %s: %w", queue, exchange, k, err)
		}
	}
	return nil
}
