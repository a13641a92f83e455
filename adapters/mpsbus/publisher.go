package mpsbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var (
	// ErrUnroutable reports a message that no queue took: the broker
	// returned it (mandatory flag). It is never a silent success.
	ErrUnroutable = errors.New("mpsbus: message unroutable")
	// ErrNacked reports a message the broker refused (basic.nack).
	ErrNacked = errors.New("mpsbus: message not confirmed by the broker")
	// ErrClosed reports a publisher or channel that is closed; open a new
	// Publisher on a new connection and publish again.
	ErrClosed = errors.New("mpsbus: publisher closed")
)

// Connection is the part of *amqp.Connection a Publisher needs.
type Connection interface {
	Channel() (*amqp.Channel, error)
}

var _ Connection = (*amqp.Connection)(nil)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Exchange is the exchange published to; default Exchange.
	Exchange string
	// MaxInFlight bounds the publishes awaiting their confirm at the same
	// time (further callers wait); default 256.
	MaxInFlight int
	// ConfirmTimeout bounds the wait for a confirm when ctx has no
	// deadline; default 30s.
	ConfirmTimeout time.Duration
}

func (c *PublisherConfig) setDefaults() {
	if c.Exchange == "" {
		c.Exchange = Exchange
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = 30 * time.Second
	}
}

// Validate reports an unusable setting.
func (c PublisherConfig) Validate() error {
	if c.Exchange == "" {
		return errors.New("mpsbus: PublisherConfig.Exchange is empty")
	}
	if c.MaxInFlight < 1 {
		return fmt.Errorf("mpsbus: PublisherConfig.MaxInFlight %d is not positive", c.MaxInFlight)
	}
	if c.ConfirmTimeout <= 0 {
		return fmt.Errorf("mpsbus: PublisherConfig.ConfirmTimeout %s is not positive", c.ConfirmTimeout)
	}
	return nil
}

// Publisher publishes with publisher confirms on its own channel. Every
// message is mandatory; Publish returns after the broker's confirm, and an
// unroutable message is ErrUnroutable. It is safe for concurrent use.
//
// A Publisher does not reconnect: when its channel or connection closes,
// Publish returns an error wrapping ErrClosed or amqp.ErrClosed, and the
// caller opens a new one and retries.
type Publisher struct {
	cfg     PublisherConfig
	ch      *amqp.Channel
	sem     chan struct{}
	returns chan amqp.Return
	closed  atomic.Bool

	mu       sync.Mutex
	returned map[returnKey]int // returns drained, not yet claimed
}

type returnKey struct{ id, key string }

// NewPublisher opens a channel on conn and puts it in confirm mode.
func NewPublisher(conn Connection, cfg PublisherConfig) (*Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("mpsbus: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("mpsbus: confirm mode: %w", err)
	}
	p := &Publisher{
		cfg: cfg,
		ch:  ch,
		sem: make(chan struct{}, cfg.MaxInFlight),
		// The broker sends basic.return before the basic.ack of the same
		// message, and the client hands the return to this channel before
		// it resolves the confirm. With room for every publish in flight
		// the hand-over never blocks, and a publisher that drains the
		// channel after its confirm is sure to see its own return.
		returns:  ch.NotifyReturn(make(chan amqp.Return, cfg.MaxInFlight)),
		returned: make(map[returnKey]int),
	}
	return p, nil
}

// Exchange returns the exchange the publisher publishes to.
func (p *Publisher) Exchange() string { return p.cfg.Exchange }

// Publish publishes msg with routing key key (mandatory) and waits for the
// broker's confirm. It returns nil only when the broker confirmed the
// message and routed it to at least one queue. When ctx ends first, the
// outcome is unknown: the message may still be delivered, so resend with
// the same message id.
func (p *Publisher) Publish(ctx context.Context, key string, msg amqp.Publishing) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.ConfirmTimeout)
		defer cancel()
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	release := true
	defer func() {
		if release {
			<-p.sem
		}
	}()
	if p.closed.Load() {
		return ErrClosed
	}
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, key, true, false, msg)
	if err != nil {
		return p.wrapClosed(fmt.Errorf("mpsbus: publish %s: %w", key, err))
	}
	if dc == nil {
		return errors.New("mpsbus: channel is not in confirm mode")
	}
	rk := returnKey{id: msg.MessageId, key: key}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		// Keep the slot until the confirm arrives, so that a late return
		// still finds room, then discard that return.
		release = false
		go func() {
			<-dc.Done()
			p.takeReturn(rk)
			<-p.sem
		}()
		return fmt.Errorf("mpsbus: publish %s: waiting for confirm: %w", key, err)
	}
	if ret, ok := p.takeReturn(rk); ok {
		return fmt.Errorf("%w: %s %s: %d %s", ErrUnroutable, p.cfg.Exchange, key, ret.code, ret.text)
	}
	if !acked {
		if p.ch.IsClosed() {
			return fmt.Errorf("mpsbus: publish %s: channel closed before the confirm: %w", key, ErrClosed)
		}
		return fmt.Errorf("%w: %s %s", ErrNacked, p.cfg.Exchange, key)
	}
	return nil
}

type returnInfo struct {
	code uint16
	text string
}

// takeReturn drains the returns received so far and claims one for rk.
func (p *Publisher) takeReturn(rk returnKey) (returnInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last returnInfo
drain:
	for {
		select {
		case r, ok := <-p.returns:
			if !ok {
				break drain
			}
			k := returnKey{id: r.MessageId, key: r.RoutingKey}
			p.returned[k]++
			if k == rk {
				last = returnInfo{code: r.ReplyCode, text: r.ReplyText}
			}
		default:
			break drain
		}
	}
	if n := p.returned[rk]; n > 0 {
		if n == 1 {
			delete(p.returned, rk)
		} else {
			p.returned[rk] = n - 1
		}
		if last.text == "" {
			last = returnInfo{code: amqp.NoRoute, text: "NO_ROUTE"}
		}
		return last, true
	}
	return returnInfo{}, false
}

func (p *Publisher) wrapClosed(err error) error {
	if errors.Is(err, amqp.ErrClosed) || p.ch.IsClosed() {
		return fmt.Errorf("%w (%w)", err, ErrClosed)
	}
	return err
}

// Close closes the publisher's channel. Publishes in flight fail.
func (p *Publisher) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	if err := p.ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("mpsbus: close channel: %w", err)
	}
	return nil
}
