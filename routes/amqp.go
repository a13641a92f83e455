package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Why amqp091-go directly and not watermill-amqp for the bus routes: the
// watermill-amqp subscriber hands a handler its next message only after the
// previous one is acked, and its publisher waits for each confirm (measured
// here: ~1,260 msg/s ceiling, shared/notes/watermill-rabbitmq.md). The
// inbound route must reach several thousand messages per second with one
// database transaction per batch of messages and per-key order, and the
// relay must publish with windowed confirms and read mandatory returns;
// neither fits a per-message Watermill handler without giving up the
// transaction boundary.

// dialer keeps one AMQP connection and reopens it with backoff.
type dialer struct {
	url    string
	name   string
	logger *slog.Logger

	mu   sync.Mutex
	conn *amqp.Connection
}

func newDialer(url, name string, logger *slog.Logger) *dialer {
	return &dialer{url: url, name: name, logger: logger}
}

// get returns an open connection, dialling (with backoff) until ctx ends.
func (d *dialer) get(ctx context.Context) (*amqp.Connection, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil && !d.conn.IsClosed() {
		return d.conn, nil
	}
	backoff := 200 * time.Millisecond
	for {
		conn, err := amqp.DialConfig(d.url, amqp.Config{
			Dial:       amqp.DefaultDial(5 * time.Second),
			Heartbeat:  10 * time.Second,
			Properties: amqp.Table{"connection_name": d.name},
		})
		if err == nil {
			d.conn = conn
			return conn, nil
		}
		d.logger.Warn("amqp dial failed", "conn", d.name, "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("amqp dial %s: %w (last error: %v)", d.name, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (d *dialer) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil || d.conn.IsClosed() {
		return nil
	}
	return d.conn.Close()
}

// Pub is one message for the batch publisher.
type Pub struct {
	Exchange   string
	RoutingKey string
	// Mandatory makes an unroutable message an error (bus messages);
	// internal events without a subscriber are not.
	Mandatory bool
	Msg       amqp.Publishing
}

// ErrUnroutable reports a mandatory message the broker returned: no queue
// is bound for its routing key.
var ErrUnroutable = errors.New("routes: message unroutable (returned by the broker)")

// batchPublisher publishes with publisher confirms in windows: it sends a
// whole batch, then waits for all confirms, reading mandatory returns so that
// an unroutable message is an error rather than a silent success. One
// goroutine uses it at a time.
type batchPublisher struct {
	d   *dialer
	ch  *amqp.Channel
	ret chan amqp.Return
}

func (p *batchPublisher) channel(ctx context.Context) (*amqp.Channel, error) {
	if p.ch != nil && !p.ch.IsClosed() {
		return p.ch, nil
	}
	conn, err := p.d.get(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("amqp confirm mode: %w", err)
	}
	p.ret = ch.NotifyReturn(make(chan amqp.Return, 1024))
	p.ch = ch
	return ch, nil
}

// Publish sends pubs and returns one error per message (nil = confirmed and
// routed). A channel failure fails the remaining messages.
func (p *batchPublisher) Publish(ctx context.Context, pubs []Pub) []error {
	errs := make([]error, len(pubs))
	ch, err := p.channel(ctx)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	confirms := make([]*amqp.DeferredConfirmation, len(pubs))
	for i, m := range pubs {
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, m.Exchange, m.RoutingKey, m.Mandatory, false, m.Msg)
		if err != nil {
			for j := i; j < len(pubs); j++ {
				errs[j] = fmt.Errorf("amqp publish: %w", err)
			}
			p.ch = nil
			break
		}
		confirms[i] = c
	}
	for i, c := range confirms {
		if c == nil {
			continue
		}
		ok, err := c.WaitContext(ctx)
		switch {
		case err != nil:
			errs[i] = fmt.Errorf("amqp confirm: %w", err)
		case !ok:
			errs[i] = errors.New("amqp: broker nacked the message")
		}
	}
	// Returns arrive before the confirm of the same message.
	returned := map[string]bool{}
	for drained := false; !drained; {
		select {
		case r, ok := <-p.ret:
			if !ok {
				drained = true
				p.ch = nil
				break
			}
			returned[r.MessageId] = true
		default:
			drained = true
		}
	}
	for i, m := range pubs {
		if errs[i] == nil && returned[m.Msg.MessageId] {
			errs[i] = fmt.Errorf("%w: %s %s", ErrUnroutable, m.Exchange, m.RoutingKey)
		}
	}
	return errs
}

func (p *batchPublisher) close() {
	if p.ch != nil {
		p.ch.Close()
		p.ch = nil
	}
}
