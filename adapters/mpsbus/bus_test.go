package mpsbus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpsbus"
)

// amqpURL is the broker of the tests: ZHIANHUB_TEST_AMQP_URL, else the local
// development RabbitMQ.
func amqpURL() string {
	if u := os.Getenv("ZHIANHUB_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/%2f"
}

func TestNames(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"routing key", mpsbus.RoutingKey(mpsbus.NodeShanghai, "keyperson.register"), "to.310000000000.keyperson.register"},
		{"receipt key", mpsbus.RoutingKey(mpsbus.NodeMinistry, "receipt"), "to.000000000000.receipt"},
		{"queue", mpsbus.QueueName(mpsbus.NodeShanghai), "node.310000000000"},
		{"binding", mpsbus.BindingKey(mpsbus.NodeMinistry), "to.000000000000.#"},
		{"standard exchange queue", mpsbus.NodeQueue(mpsbus.Exchange, mpsbus.NodeShanghai), "node.310000000000"},
		{"test exchange queue", mpsbus.NodeQueue("t.x1", mpsbus.NodeShanghai), "t.x1.node.310000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestPublishing(t *testing.T) {
	ts := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	p := mpsbus.Publishing([]byte(`{}`), "id-1", "receipt", ts)
	if p.MessageId != "id-1" || p.Type != "receipt" || p.ContentType != "application/json" ||
		p.DeliveryMode != amqp.Persistent || !p.Timestamp.Equal(ts) || string(p.Body) != "{}" {
		t.Fatalf("unexpected publishing %+v", p)
	}
}

// bus is a uniquely named bus exchange with the queue of one node, deleted
// when the test ends.
type bus struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	exchange string
	queue    string
}

func newBus(t *testing.T) *bus {
	t.Helper()
	conn, err := amqp.Dial(amqpURL())
	if err != nil {
		t.Fatalf("RabbitMQ at %s: %v (see /work/shared/specs/local-services.md)", amqpURL(), err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	b2 := &bus{conn: conn, ch: ch, exchange: "zhianhub.test.mpsbus." + hex.EncodeToString(b[:])}
	t.Cleanup(func() {
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup channel: %v", err)
			return
		}
		defer ch.Close()
		if b2.queue != "" {
			if _, err := ch.QueueDelete(b2.queue, false, false, false); err != nil {
				t.Errorf("delete queue: %v", err)
			}
		}
		if err := ch.ExchangeDelete(b2.exchange, false, false); err != nil {
			t.Errorf("delete exchange: %v", err)
		}
	})
	if err := mpsbus.DeclareBus(ch, b2.exchange); err != nil {
		t.Fatal(err)
	}
	if b2.queue, err = mpsbus.DeclareNodeQueue(ch, b2.exchange, mpsbus.NodeShanghai); err != nil {
		t.Fatal(err)
	}
	return b2
}

func (b *bus) publisher(t *testing.T) *mpsbus.Publisher {
	t.Helper()
	p, err := mpsbus.NewPublisher(b.conn, mpsbus.PublisherConfig{Exchange: b.exchange})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestDeclareIdempotent(t *testing.T) {
	b := newBus(t)
	// Both sides declare the same topology again: no error.
	if err := mpsbus.DeclareBus(b.ch, b.exchange); err != nil {
		t.Fatal(err)
	}
	q, err := mpsbus.DeclareNodeQueue(b.ch, b.exchange, mpsbus.NodeShanghai)
	if err != nil || q != b.queue {
		t.Fatalf("redeclare: %q, %v", q, err)
	}
	if err := mpsbus.CheckBus(b.ch, b.exchange); err != nil {
		t.Fatal(err)
	}
	// A missing exchange fails the passive check (and closes that channel).
	ch, err := b.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := mpsbus.CheckBus(ch, b.exchange+".missing"); err == nil {
		t.Fatal("CheckBus of a missing exchange succeeded")
	}
}

func TestPublisherConfirm(t *testing.T) {
	b := newBus(t)
	p := b.publisher(t)
	ts := time.Now().Truncate(time.Second)
	key := mpsbus.RoutingKey(mpsbus.NodeShanghai, "keyperson.register")
	if err := p.Publish(context.Background(), key, mpsbus.Publishing([]byte(`{"a":1}`), "m-1", "keyperson.register", ts)); err != nil {
		t.Fatal(err)
	}
	d, ok, err := b.ch.Get(b.queue, true)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if d.MessageId != "m-1" || d.Type != "keyperson.register" || d.ContentType != mpsbus.ContentType ||
		d.DeliveryMode != amqp.Persistent || !d.Timestamp.Equal(ts) || d.RoutingKey != key || string(d.Body) != `{"a":1}` {
		t.Fatalf("unexpected delivery %+v", d)
	}
}

func TestPublisherUnroutable(t *testing.T) {
	b := newBus(t)
	p := b.publisher(t)
	err := p.Publish(context.Background(), mpsbus.RoutingKey("440000000000", "receipt"), mpsbus.Publishing([]byte(`{}`), "m-2", "receipt", time.Now()))
	if !errors.Is(err, mpsbus.ErrUnroutable) {
		t.Fatalf("got %v, want ErrUnroutable", err)
	}
	// The channel stays usable.
	if err := p.Publish(context.Background(), mpsbus.RoutingKey(mpsbus.NodeShanghai, "receipt"), mpsbus.Publishing([]byte(`{}`), "m-3", "receipt", time.Now())); err != nil {
		t.Fatal(err)
	}
}

// TestPublisherConcurrent mixes routable and unroutable publishes of many
// goroutines: each caller gets its own outcome.
func TestPublisherConcurrent(t *testing.T) {
	b := newBus(t)
	p, err := mpsbus.NewPublisher(b.conn, mpsbus.PublisherConfig{Exchange: b.exchange, MaxInFlight: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			to := mpsbus.NodeShanghai
			if i%3 == 0 {
				to = "440000000000"
			}
			errs[i] = p.Publish(context.Background(), mpsbus.RoutingKey(to, "receipt"), mpsbus.Publishing([]byte(`{}`), fmt.Sprintf("c-%d", i), "receipt", time.Now()))
		})
	}
	wg.Wait()
	routed := 0
	for i, err := range errs {
		switch {
		case i%3 == 0 && !errors.Is(err, mpsbus.ErrUnroutable):
			t.Errorf("publish %d (unroutable): %v", i, err)
		case i%3 != 0 && err != nil:
			t.Errorf("publish %d: %v", i, err)
		case i%3 != 0:
			routed++
		}
	}
	q, err := b.ch.QueueDeclarePassive(b.queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != routed {
		t.Errorf("queue holds %d messages, want %d", q.Messages, routed)
	}
}

func TestPublisherClose(t *testing.T) {
	b := newBus(t)
	p := b.publisher(t)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	err := p.Publish(context.Background(), mpsbus.RoutingKey(mpsbus.NodeShanghai, "receipt"), mpsbus.Publishing([]byte(`{}`), "m-4", "receipt", time.Now()))
	if !errors.Is(err, mpsbus.ErrClosed) {
		t.Fatalf("publish after Close: %v, want ErrClosed", err)
	}

	// A publisher whose connection went away reports it, so that the
	// caller reconnects.
	conn, err := amqp.Dial(amqpURL())
	if err != nil {
		t.Fatal(err)
	}
	p2, err := mpsbus.NewPublisher(conn, mpsbus.PublisherConfig{Exchange: b.exchange})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	err = p2.Publish(context.Background(), mpsbus.RoutingKey(mpsbus.NodeShanghai, "receipt"), mpsbus.Publishing([]byte(`{}`), "m-5", "receipt", time.Now()))
	if !errors.Is(err, mpsbus.ErrClosed) {
		t.Fatalf("publish on a closed connection: %v, want ErrClosed", err)
	}
}

func TestPublisherContext(t *testing.T) {
	b := newBus(t)
	p := b.publisher(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Publish(ctx, mpsbus.RoutingKey(mpsbus.NodeShanghai, "receipt"), mpsbus.Publishing([]byte(`{}`), "m-6", "receipt", time.Now()))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  mpsbus.PublisherConfig
		ok   bool
	}{
		{"defaults", mpsbus.PublisherConfig{Exchange: "x", MaxInFlight: 1, ConfirmTimeout: time.Second}, true},
		{"no exchange", mpsbus.PublisherConfig{MaxInFlight: 1, ConfirmTimeout: time.Second}, false},
		{"no in-flight", mpsbus.PublisherConfig{Exchange: "x", ConfirmTimeout: time.Second}, false},
		{"no timeout", mpsbus.PublisherConfig{Exchange: "x", MaxInFlight: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
