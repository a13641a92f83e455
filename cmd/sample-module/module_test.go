package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

const testURL = "amqp://guest:guest@127.0.0.1:5672/%2f"

// TestSampleModule runs the hub's ingress route on exchanges of the test's
// own and the sample module against it: a valid event reaches the
// subscriber once (a republished duplicate is skipped), an invalid one comes
// back as the hub's coded rejection.
func TestSampleModule(t *testing.T) {
	pool := storetest.NewPool(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	cfg := Config{URL: testURL, Ingress: "test.ingress." + suffix, Events: "test.events." + suffix}
	queue := cfg.Ingress + ".hub"
	conn, err := amqp.Dial(testURL)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := routes.DeclareIngress(ch, cfg.Ingress, queue, cfg.Events); err != nil {
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
	in, err := routes.NewIngress(routes.IngressConfig{AMQPURL: testURL, Pool: pool, Contracts: reg, DeadLetters: dl,
		Exchange: cfg.Ingress, Queue: queue, EventsExchange: cfg.Events})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = in.Run(ctx) })

	var mu sync.Mutex
	var got []Event
	subscribed := make(chan error, 1)
	wg.Go(func() {
		subscribed <- Subscribe(ctx, cfg, []string{"warning.issued"}, func(e Event) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, e)
			return nil
		})
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		ch.QueueDelete("module.guest.events", false, false, false)
		ch.QueueDelete(queue, false, false, false)
		ch.ExchangeDelete(cfg.Ingress, false, false)
		ch.ExchangeDelete(cfg.Events, false, false)
		conn.Close()
	})
	// Wait for the subscriber's binding.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if q, err := ch.QueueDeclarePassive("module.guest.events", true, false, false, false, nil); err == nil && q.Consumers == 1 {
			break
		} else if err != nil {
			ch, _ = conn.Channel() // a failed passive declare closes the channel
		}
		if time.Now().After(deadline) {
			t.Fatal("subscriber not ready")
		}
	}

	ev, err := sampleEvent("warning.issued", "guest", false)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second is a duplicate (same messageId)
		rej, err := Publish(ctx, cfg, "warning.issued", ev, 300*time.Millisecond)
		if err != nil || rej != nil {
			t.Fatalf("publish: %+v %v", rej, err)
		}
	}
	bad, err := sampleEvent("warning.issued", "guest", true)
	if err != nil {
		t.Fatal(err)
	}
	rej, err := Publish(ctx, cfg, "warning.issued", bad, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rej == nil || rej.Code != "E120" || rej.Path != "data.ethnicity" || rej.MessageID != bad["messageId"] {
		t.Fatalf("rejection %+v", rej)
	}

	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].MessageID != ev["messageId"] || got[0].From != "guest" || !bytes.Contains(got[0].Data, []byte("warningId")) {
		t.Fatalf("subscriber got %+v", got)
	}
	select {
	case err := <-subscribed:
		t.Fatalf("subscriber stopped: %v", err)
	default:
	}
}

func TestRunUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"publish", "--kind", "keyperson.register"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "not a kind modules publish") {
		t.Errorf("exit %d: %s", code, errb.String())
	}
	if code := run(context.Background(), nil, &out, &errb); code != 2 {
		t.Errorf("no arguments: exit %d", code)
	}
}
