package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/contracts/events"
	"zhianhub/routes"
	"zhianhub/store/storetest"
)

// TestServeIngress: `zhianhub serve` (ingress.enabled defaults to true in
// development) forwards a module's valid event from zhian.ingress to
// zhian.events, and serves the AsyncAPI document. The exchanges and the
// hub's ingress queue are the real (shared) names; the event is told apart
// by a fresh messageId.
func TestServeIngress(t *testing.T) {
	dbURL := storetest.NewEmptyDatabase(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	conn, err := amqp.Dial(testAMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := routes.DeclareIngress(ch, events.IngressExchange, routes.IngressQueue, events.EventsExchange); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, events.KindLeadRegistered, events.EventsExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	got, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	env := map[string]string{
		"ZHIANHUB_DATABASE_URL": dbURL,
		"ZHIANHUB_KEYS_DIR":     keys,
		"ZHIANHUB_HTTP_ADDR":    addr,
		"ZHIANHUB_AMQP_URL":     testAMQPURL,
		"ZHIANHUB_MPS_EXCHANGE": testBus(t, "310000000000"),
	}
	hub := startServe(t, env)
	base, logs := hub.Base, hub.Logs

	reg, err := events.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	ex, _ := reg.Get(events.KindLeadRegistered)
	var m map[string]any
	if err := json.Unmarshal([]byte(ex.Example), &m); err != nil {
		t.Fatal(err)
	}
	id := uuid.Must(uuid.NewV7()).String()
	m["messageId"] = id
	body, _ := json.Marshal(m)
	// The route may still be connecting: publish until the event arrives.
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	publish := func() {
		if err := ch.PublishWithContext(context.Background(), events.IngressExchange, events.KindLeadRegistered, false, false,
			amqp.Publishing{ContentType: "application/json", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	publish()
wait:
	for {
		select {
		case d := <-got:
			if d.MessageId == id {
				if string(d.Body) != string(body) {
					t.Errorf("forwarded body %s", d.Body)
				}
				break wait
			}
		case <-tick.C:
			publish()
		case <-deadline:
			t.Fatalf("event not forwarded\n%s", logs.String())
		}
	}

	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/asyncapi.json", nil)
	req.Header.Set("X-Dev-User", "li.officer")
	req.Header.Set("X-Dev-Unit", "310000000000")
	req.Header.Set("X-Dev-Roles", "officer")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != 200 || doc["asyncapi"] != "3.0.0" {
		t.Fatalf("asyncapi.json: %d %v %v", resp.StatusCode, err, doc["asyncapi"])
	}
}
