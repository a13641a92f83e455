package routes_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/contracts/events"
	"zhianhub/routes"
	"zhianhub/store/deadletter"
	"zhianhub/store/storetest"
)

// ingressRig runs the ingress route on exchanges and a queue of the test's
// own, with a queue bound to every event the route publishes and a reply
// queue for rejections.
type ingressRig struct {
	t                          *testing.T
	ch                         *amqp.Channel
	exchange, queue, eventsExc string
	events, replies            <-chan amqp.Delivery
	replyQueue                 string
	dl                         *deadletter.Store
	reg                        *events.Registry
}

func newIngressRig(t *testing.T) *ingressRig {
	t.Helper()
	pool := storetest.NewPool(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	r := &ingressRig{t: t, exchange: "test.ingress." + suffix, queue: "test.ingress." + suffix + ".hub", eventsExc: "test.events." + suffix}
	conn, err := amqp.Dial(amqpURL)
	must(t, err)
	r.ch, err = conn.Channel()
	must(t, err)
	must(t, routes.DeclareIngress(r.ch, r.exchange, r.queue, r.eventsExc))
	evq, err := r.ch.QueueDeclare("", false, true, true, false, nil)
	must(t, err)
	must(t, r.ch.QueueBind(evq.Name, "#", r.eventsExc, false, nil))
	rq, err := r.ch.QueueDeclare("", false, true, true, false, nil)
	must(t, err)
	r.replyQueue = rq.Name
	r.events, err = r.ch.Consume(evq.Name, "", true, true, false, false, nil)
	must(t, err)
	r.replies, err = r.ch.Consume(rq.Name, "", true, true, false, false, nil)
	must(t, err)

	r.reg, err = events.NewRegistry()
	must(t, err)
	r.dl, err = deadletter.New(pool, deadletter.Config{Cipher: storetest.Keyring(t, pool)})
	must(t, err)
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	in, err := routes.NewIngress(routes.IngressConfig{AMQPURL: amqpURL, Pool: pool, Contracts: r.reg, DeadLetters: r.dl,
		Logger: logger, Exchange: r.exchange, Queue: r.queue, EventsExchange: r.eventsExc})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = in.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		r.ch.QueueDelete(r.queue, false, false, false)
		r.ch.ExchangeDelete(r.exchange, false, false)
		r.ch.ExchangeDelete(r.eventsExc, false, false)
		conn.Close()
	})
	return r
}

func (r *ingressRig) publish(kind string, body []byte, user, corr string, reply bool) {
	r.t.Helper()
	p := amqp.Publishing{ContentType: "application/json", Body: body, UserId: user, CorrelationId: corr}
	if reply {
		p.ReplyTo = r.replyQueue
	}
	must(r.t, r.ch.PublishWithContext(context.Background(), r.exchange, kind, false, false, p))
}

func receive(t *testing.T, ch <-chan amqp.Delivery, what string) amqp.Delivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
	return amqp.Delivery{}
}

func example(t *testing.T, reg *events.Registry, kind string, edit func(m map[string]any)) []byte {
	t.Helper()
	e, ok := reg.Get(kind)
	if !ok {
		t.Fatalf("no kind %s", kind)
	}
	var m map[string]any
	must(t, json.Unmarshal([]byte(e.Example), &m))
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	must(t, err)
	return b
}

// TestIngressRoute: a valid event reaches the events exchange unchanged
// (routing key = kind); each invalid one is kept as a dead letter with its
// raw bytes, code and Chinese reason, answered with a coded rejection to
// reply_to with its correlation_id, and never published.
func TestIngressRoute(t *testing.T) {
	r := newIngressRig(t)

	valid := example(t, r.reg, "warning.issued", nil)
	r.publish("warning.issued", valid, "", "", true)
	d := receive(t, r.events, "event")
	if d.RoutingKey != "warning.issued" || string(d.Body) != string(valid) || d.MessageId != "0193a0b4-6c2e-7d41-8a55-2f3c4d5e6f70" {
		t.Fatalf("event %s %s %s", d.RoutingKey, d.MessageId, d.Body)
	}

	// A module whose AMQP user_id (checked by RabbitMQ) is its from.
	signed := example(t, r.reg, "warning.signed", func(m map[string]any) { m["from"] = "guest" })
	r.publish("warning.signed", signed, "guest", "", false)
	d = receive(t, r.events, "event")
	if d.RoutingKey != "warning.signed" || d.Headers[routes.HeaderModule] != "guest" {
		t.Fatalf("event %s headers %v", d.RoutingKey, d.Headers)
	}

	cases := []struct {
		name, kind string
		body       []byte
		user       string
		code, path string
		reason     string
	}{
		{"schema violation", "warning.issued", example(t, r.reg, "warning.issued", func(m map[string]any) { m["data"].(map[string]any)["level"] = 9 }),
			"guest", "E120", "data.level", "data.level："},
		{"forbidden field", "lead.registered", example(t, r.reg, "lead.registered", func(m map[string]any) { m["data"].(map[string]any)["ethnicity"] = "01" }),
			"", "E120", "data.ethnicity", "不允许的字段"},
		{"from is not the user", "warning.signed", example(t, r.reg, "warning.signed", nil), "guest", "E120", "from", "RabbitMQ 用户"},
		{"unknown kind", "warning.cancelled", []byte(`{"messageId":"0193a0b4-0000-7000-8000-0000000000ff"}`), "", "E102", "kind", "未知的事件类型"},
		{"hub kind", "keyperson.register", example(t, r.reg, "keyperson.register", nil), "", "E102", "kind", "只能由枢纽发布"},
		{"not JSON", "warning.issued", []byte("预警"), "", "E100", "", "JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			corr := "corr-" + c.name
			r.publish(c.kind, c.body, c.user, corr, true)
			rep := receive(t, r.replies, "rejection")
			if rep.CorrelationId != corr {
				t.Errorf("correlation id %q", rep.CorrelationId)
			}
			var rej events.Rejection
			must(t, json.Unmarshal(rep.Body, &rej))
			if rej.Code != c.code || rej.Path != c.path || !strings.Contains(rej.Reason, c.reason) {
				t.Errorf("rejection %+v", rej)
			}
			var want struct {
				MessageID string `json:"messageId"`
			}
			_ = json.Unmarshal(c.body, &want)
			if rej.MessageID != want.MessageID {
				t.Errorf("messageId %q, want %q", rej.MessageID, want.MessageID)
			}
			letters, err := r.dl.List(context.Background(), deadletter.Filter{Code: c.code})
			must(t, err)
			var found *deadletter.Letter
			for _, l := range letters {
				if l.MessageID == want.MessageID && l.Kind == c.kind && l.Size == len(c.body) {
					found = &l
				}
			}
			if found == nil {
				t.Fatalf("no dead letter among %+v", letters)
			}
			full, err := r.dl.Get(context.Background(), found.ID)
			must(t, err)
			if string(full.Raw) != string(c.body) || full.Source != "amqp:"+r.queue || full.Exchange != r.exchange ||
				full.RoutingKey != c.kind || full.Sender != c.user || full.Reason != rej.Reason {
				t.Errorf("letter %+v", full)
			}
		})
	}
	select {
	case d := <-r.events:
		t.Errorf("a refused event was published: %s %s", d.RoutingKey, d.Body)
	case <-time.After(300 * time.Millisecond):
	}
}
