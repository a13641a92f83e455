package deadletter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpsbus"
	"zhianhub/store/deadletter"
	"zhianhub/store/storetest"
)

// amqpURL is the broker of the tests: ZHIANHUB_TEST_AMQP_URL, else the local
// development RabbitMQ.
func amqpURL() string {
	if u := os.Getenv("ZHIANHUB_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/%2f"
}

// testBus is a uniquely named topic exchange with one queue bound to
// "to.310000000000.#", deleted when the test ends.
type testBus struct {
	exchange, queue string
	ch              *amqp.Channel
}

func newTestBus(t *testing.T) *testBus {
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
	name := "zhianhub.test.dlq." + hex.EncodeToString(b[:])
	bus := &testBus{exchange: name, queue: name + ".node.310000000000", ch: ch}
	if err := ch.ExchangeDeclare(bus.exchange, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(bus.queue, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(bus.queue, "to.310000000000.#", bus.exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := ch.QueueDelete(bus.queue, false, false, false); err != nil {
			t.Errorf("delete queue: %v", err)
		}
		if err := ch.ExchangeDelete(bus.exchange, false, false); err != nil {
			t.Errorf("delete exchange: %v", err)
		}
	})
	return bus
}

// next returns the next message of the queue, waiting up to 10s.
func (b *testBus) next(t *testing.T) amqp.Delivery {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		d, ok, err := b.ch.Get(b.queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return d
		}
	}
	t.Fatal("no message in the queue")
	return amqp.Delivery{}
}

func (b *testBus) empty(t *testing.T) {
	t.Helper()
	q, err := b.ch.QueueDeclarePassive(b.queue, false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 0 {
		t.Errorf("%d messages in the queue, want none", q.Messages)
	}
}

// busPublisher publishes each message with a fresh mpsbus.Publisher on the
// exchange of the message, as `zhianhub dlq replay` does.
type busPublisher struct {
	conn   *amqp.Connection
	closed bool
}

func (b *busPublisher) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if b.closed {
		return errPublisherClosed
	}
	if exchange == "" {
		return errors.New("the default exchange is not supported")
	}
	p, err := mpsbus.NewPublisher(b.conn, mpsbus.PublisherConfig{Exchange: exchange, MaxInFlight: 1})
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Publish(ctx, key, msg)
}

var errPublisherClosed = errors.New("test publisher closed")

func newPublisher(t *testing.T) *busPublisher {
	t.Helper()
	conn, err := amqp.DialConfig(amqpURL(), amqp.Config{Properties: amqp.Table{"connection_name": "zhianhub-test-" + t.Name()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &busPublisher{conn: conn}
}

// TestReplay replays letters through RabbitMQ: the exact bytes arrive with
// the letter's message id and kind, persistent, and each replay is counted.
func TestReplay(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	bus := newTestBus(t)
	pub := newPublisher(t)

	tests := []struct {
		name        string
		raw         []byte
		contentType string
		clear       bool // stored before the encryption (raw_encrypted false)
	}{
		{"envelope JSON", []byte(`{"v":1,"id":"0190a0b0-0000-7000-8000-000000000001","kind":"keyperson.register","ct":"5paw"}` + "\n"), "application/json", false},
		{"internal event with personal data", []byte(leadEvent), "application/json", false},
		{"binary", []byte{0x00, 0xff, '{', 0x80, 0x0a, 0x00}, "application/octet-stream", false},
		{"empty", []byte{}, "application/octet-stream", false},
		{"stored in clear before the encryption", []byte(leadEvent), "application/json", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := sample()
			l.Exchange, l.Raw = bus.exchange, tt.raw
			var id int64
			if tt.clear {
				id = putClear(t, ctx, pool, l)
			} else {
				id = put(t, ctx, s, pool, l)
			}
			for n := 1; n <= 2; n++ {
				got, err := s.Replay(ctx, id, pub)
				if err != nil {
					t.Fatal(err)
				}
				if got.ReplayCount != n || got.LastReplayedAt.IsZero() {
					t.Errorf("replay %d: count %d at %v", n, got.ReplayCount, got.LastReplayedAt)
				}
				d := bus.next(t)
				if string(d.Body) != string(tt.raw) {
					t.Fatalf("body %q, want %q", d.Body, tt.raw)
				}
				if d.MessageId != l.MessageID || d.Type != l.Kind || d.DeliveryMode != amqp.Persistent ||
					d.ContentType != tt.contentType || d.RoutingKey != l.RoutingKey || d.Exchange != bus.exchange {
					t.Errorf("properties: id %q type %q mode %d content type %q route %s %s", d.MessageId, d.Type,
						d.DeliveryMode, d.ContentType, d.Exchange, d.RoutingKey)
				}
				if d.Headers[deadletter.HeaderDeadLetterID] != id || d.Headers[deadletter.HeaderReplay] != int64(n) {
					t.Errorf("headers %v", d.Headers)
				}
			}
			stored, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if stored.ReplayCount != 2 || string(stored.Raw) != string(tt.raw) {
				t.Errorf("stored count %d raw %q", stored.ReplayCount, stored.Raw)
			}
		})
	}
	bus.empty(t)
}

// TestReplayFailures: an unroutable route, a missing exchange and a letter
// without a route fail and are not counted; replay still works after a
// channel error.
func TestReplayFailures(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	bus := newTestBus(t)
	pub := newPublisher(t)

	tests := []struct {
		name     string
		exchange string
		key      string
		want     error
	}{
		{"unroutable key", bus.exchange, "to.440000000000.keyperson.register", mpsbus.ErrUnroutable},
		{"missing exchange", bus.exchange + ".missing", "to.310000000000.receipt", mpsbus.ErrClosed},
		{"no route", "", "", deadletter.ErrNoRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := sample()
			l.Exchange, l.RoutingKey = tt.exchange, tt.key
			id := put(t, ctx, s, pool, l)
			_, err := s.Replay(ctx, id, pub)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Replay = %v, want %v", err, tt.want)
			}
			t.Logf("%s: %v", tt.name, err)
			if stored, _ := s.Get(ctx, id); stored.ReplayCount != 0 || !stored.LastReplayedAt.IsZero() {
				t.Errorf("failed replay counted: %d at %v", stored.ReplayCount, stored.LastReplayedAt)
			}
		})
	}
	if _, err := s.Replay(ctx, 999999, pub); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("Replay(missing) = %v, want ErrNotFound", err)
	}

	// The same publisher still delivers after the channel errors above.
	l := sample()
	l.Exchange = bus.exchange
	id := put(t, ctx, s, pool, l)
	if _, err := s.Replay(ctx, id, pub); err != nil {
		t.Fatal(err)
	}
	if d := bus.next(t); string(d.Body) != string(l.Raw) {
		t.Errorf("body %q", d.Body)
	}
	bus.empty(t)

	if l, _ := s.Get(ctx, id); l.ReplayCount != 1 {
		t.Errorf("count %d after one replay", l.ReplayCount)
	}
}

// failingPublisher fails every publish.
type failingPublisher struct{ calls int }

func (p *failingPublisher) Publish(context.Context, string, string, amqp.Publishing) error {
	p.calls++
	return errors.New("broker away")
}

func TestReplayPublisherError(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := newStore(t, deadletter.Config{})
	id := put(t, ctx, s, pool, sample())
	pub := &failingPublisher{}
	if _, err := s.Replay(ctx, id, pub); err == nil || !strings.Contains(err.Error(), "broker away") {
		t.Fatalf("Replay = %v", err)
	}
	noRoute := sample()
	noRoute.Exchange, noRoute.RoutingKey = "", ""
	id2 := put(t, ctx, s, pool, noRoute)
	if _, err := s.Replay(ctx, id2, pub); !errors.Is(err, deadletter.ErrNoRoute) {
		t.Fatalf("Replay(no route) = %v", err)
	}
	if pub.calls != 1 {
		t.Errorf("%d publishes, want 1 (none for the letter without a route)", pub.calls)
	}
	if l, _ := s.Get(ctx, id); l.ReplayCount != 0 {
		t.Errorf("failed replay counted")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	pool := storetest.NewPool(t)
	kr := storetest.Keyring(t, pool)
	if _, err := deadletter.New(nil, deadletter.Config{Cipher: kr}); err == nil {
		t.Error("nil database accepted")
	}
	tests := []struct {
		name string
		cfg  deadletter.Config
		want string // in the error; "" = valid
	}{
		{"no cipher", deadletter.Config{Actor: "310000000000"}, "Cipher"},
		{"blank actor", deadletter.Config{Cipher: kr, Actor: " "}, "Actor"},
		{"valid", deadletter.Config{Cipher: kr, Actor: "310000000000"}, ""},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate = %v, want an error naming %q", tt.name, err, tt.want)
		}
	}
	if _, err := deadletter.New(pool, deadletter.Config{}); err == nil {
		t.Error("New without a cipher accepted")
	}
}
