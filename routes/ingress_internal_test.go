package routes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/contracts/events"
	"zhianhub/store/deadletter"
	"zhianhub/store/storetest"
)

// acks records what the route did with a delivery (amqp.Acknowledger).
type acks struct {
	mu          sync.Mutex
	acked, nack int
}

func (a *acks) Ack(uint64, bool) error        { a.mu.Lock(); defer a.mu.Unlock(); a.acked++; return nil }
func (a *acks) Nack(uint64, bool, bool) error { a.mu.Lock(); defer a.mu.Unlock(); a.nack++; return nil }
func (a *acks) Reject(uint64, bool) error     { a.mu.Lock(); defer a.mu.Unlock(); a.nack++; return nil }

// TestIngressRedelivery: a redelivered invalid event is kept once and acked
// again; a redelivered valid event is published again with the same
// messageId (at-least-once); an event the broker does not confirm is not
// acked.
func TestIngressRedelivery(t *testing.T) {
	const url = "amqp://guest:guest@127.0.0.1:5672/%2f"
	pool := storetest.NewPool(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	exchange, queue, eventsExc := "test.ingress."+suffix, "test.ingress."+suffix+".hub", "test.events."+suffix
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := DeclareIngress(ch, exchange, queue, eventsExc); err != nil {
		t.Fatal(err)
	}
	evq, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(evq.Name, "#", eventsExc, false, nil); err != nil {
		t.Fatal(err)
	}
	published, err := ch.Consume(evq.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := events.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	dl, err := deadletter.New(pool, deadletter.Config{Cipher: storetest.Keyring(t, pool)})
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewIngress(IngressConfig{AMQPURL: url, Pool: pool, Contracts: reg, DeadLetters: dl,
		Exchange: exchange, Queue: queue, EventsExchange: eventsExc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.pub.close()
		_ = in.dialer.close()
		ch.QueueDelete(queue, false, false, false)
		ch.ExchangeDelete(exchange, false, false)
		ch.ExchangeDelete(eventsExc, false, false)
		conn.Close()
	})
	ctx := context.Background()
	ex, _ := reg.Get(events.KindDispatchOrder)

	t.Run("invalid", func(t *testing.T) {
		body := []byte(`{"messageId":"0193a0b4-0000-7000-8000-00000000abcd","kind":"dispatch.order"}`)
		a := &acks{}
		for _, redelivered := range []bool{false, true, true} {
			if err := in.handle(ctx, amqp.Delivery{Acknowledger: a, RoutingKey: events.KindDispatchOrder, Body: body, Redelivered: redelivered}); err != nil {
				t.Fatal(err)
			}
		}
		if a.acked != 3 || a.nack != 0 {
			t.Errorf("acked %d, nacked %d", a.acked, a.nack)
		}
		n, err := dl.Count(ctx, deadletter.Filter{Code: "E120"})
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%d dead letters, want 1", n)
		}
		// The same bytes delivered afresh (not a redelivery: a second
		// publication) are a second letter.
		if err := in.handle(ctx, amqp.Delivery{Acknowledger: a, RoutingKey: events.KindDispatchOrder, Body: body}); err != nil {
			t.Fatal(err)
		}
		if n, _ := dl.Count(ctx, deadletter.Filter{Code: "E120"}); n != 2 {
			t.Errorf("%d dead letters after a new publication, want 2", n)
		}
	})

	t.Run("valid", func(t *testing.T) {
		a := &acks{}
		for _, redelivered := range []bool{false, true} {
			if err := in.handle(ctx, amqp.Delivery{Acknowledger: a, RoutingKey: ex.Kind, Body: []byte(ex.Example), Redelivered: redelivered}); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			select {
			case d := <-published:
				if d.MessageId != "0193a0b8-0000-7000-8000-000000000004" || string(d.Body) != ex.Example {
					t.Errorf("published %s %s", d.MessageId, d.Body)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("event not published")
			}
		}
		if a.acked != 2 {
			t.Errorf("acked %d", a.acked)
		}
	})

	t.Run("not confirmed, not acked", func(t *testing.T) {
		broken, err := NewIngress(IngressConfig{AMQPURL: url, Pool: pool, Contracts: reg, DeadLetters: dl,
			Exchange: exchange, Queue: queue, EventsExchange: "test.events.missing." + suffix})
		if err != nil {
			t.Fatal(err)
		}
		defer broken.dialer.close()
		a := &acks{}
		if err := broken.handle(ctx, amqp.Delivery{Acknowledger: a, RoutingKey: ex.Kind, Body: []byte(ex.Example)}); err == nil {
			t.Fatal("publishing to a missing exchange succeeded")
		}
		if a.acked != 0 {
			t.Error("acked an event that was not published")
		}
	})
}
