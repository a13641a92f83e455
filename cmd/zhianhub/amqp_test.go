package main

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpsbus"
)

// testBus declares a bus exchange of the test's own (what the Ministry's bus
// or the simulator does in production) and deletes it and the hub's queue on
// it at the end. It returns the exchange name.
func testBus(t *testing.T, node string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "test.mps." + hex.EncodeToString(b)
	conn, err := amqp.Dial(testAMQPURL)
	if err != nil {
		t.Fatalf("rabbitmq: %v", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := mpsbus.DeclareBus(ch, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ch.QueueDelete(mpsbus.NodeQueue(name, node), false, false, false)
		ch.ExchangeDelete(name, false, false)
		conn.Close()
	})
	return name
}
