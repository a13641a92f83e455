// Package mpsbus holds what the hub and the Ministry bus simulator share about
// the Ministry business bus (公安部业务总线, shared/specs/mps-bus.md) on
// RabbitMQ: names, AMQP properties, the topology declarations and a publisher
// with confirms that treats an unroutable message as an error.
//
// Topology (mps-bus.md, "Nodes and transport"):
//
//	exchange mps.bus       topic, durable; owned and declared by the bus
//	queue    node.<N>      durable classic queue of node N, no arguments
//	binding  to.<N>.#      node.<N> <- mps.bus
//	key      to.<N>.<kind> a message for node N
//
// Only the bus owner (the simulator here, the Ministry in production)
// declares the exchange; the hub checks it with CheckBus. Both sides may
// declare a node queue with DeclareNodeQueue: the declaration is identical
// and idempotent.
package mpsbus

import (
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Bus names and node codes.
const (
	// Exchange is the bus exchange (topic, durable).
	Exchange = "mps.bus"
	// ExchangeKind is the AMQP type of Exchange.
	ExchangeKind = amqp.ExchangeTopic
	// NodeMinistry is the node code of the Ministry bus.
	NodeMinistry = "000000000000"
	// NodeShanghai is the node code of the Shanghai Public Security Bureau,
	// the hub.
	NodeShanghai = "310000000000"
	// ContentType is the content type of every bus message.
	ContentType = "application/json"
)

// RoutingKey is the key of a message of kind for node to: "to.<to>.<kind>".
func RoutingKey(to, kind string) string { return "to." + to + "." + kind }

// QueueName is the queue node consumes on the standard exchange: "node.<N>".
func QueueName(node string) string { return "node." + node }

// BindingKey binds the queue of node: "to.<N>.#".
func BindingKey(node string) string { return "to." + node + ".#" }

// NodeQueue is the queue of node on exchange: QueueName(node) on the
// standard exchange Exchange, "<exchange>.node.<N>" on any other. A
// non-standard exchange (tests, a second bus on one vhost) thereby never
// touches the production queues, and both sides derive the same name from
// the exchange name alone.
func NodeQueue(exchange, node string) string {
	if exchange == Exchange {
		return QueueName(node)
	}
	return exchange + "." + QueueName(node)
}

// Publishing returns the AMQP message of one envelope: message_id = the
// envelope id, type = its kind, content_type application/json, persistent,
// timestamp = send time.
func Publishing(env []byte, id, kind string, ts time.Time) amqp.Publishing {
	return amqp.Publishing{
		ContentType:  ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Type:         kind,
		Timestamp:    ts,
		Body:         env,
	}
}

// Declarer is the part of *amqp.Channel that declares topology.
type Declarer interface {
	ExchangeDeclare(name, kind string, durable, autoDelete, internal, noWait bool, args amqp.Table) error
	ExchangeDeclarePassive(name, kind string, durable, autoDelete, internal, noWait bool, args amqp.Table) error
	QueueDeclare(name string, durable, autoDelete, exclusive, noWait bool, args amqp.Table) (amqp.Queue, error)
	QueueBind(name, key, exchange string, noWait bool, args amqp.Table) error
}

var _ Declarer = (*amqp.Channel)(nil)

// DeclareBus declares the bus exchange: topic, durable, not auto-deleted,
// not internal, no arguments. Only the bus owner calls it.
func DeclareBus(ch Declarer, exchange string) error {
	if exchange == "" {
		return errors.New("mpsbus: empty exchange name")
	}
	if err := ch.ExchangeDeclare(exchange, ExchangeKind, true, false, false, false, nil); err != nil {
		return fmt.Errorf("mpsbus: declare exchange %s: %w", exchange, err)
	}
	return nil
}

// CheckBus checks passively that the bus exchange exists, without
// redeclaring it. On failure the broker closes the channel (404).
func CheckBus(ch Declarer, exchange string) error {
	if err := ch.ExchangeDeclarePassive(exchange, ExchangeKind, true, false, false, false, nil); err != nil {
		return fmt.Errorf("mpsbus: exchange %s: %w", exchange, err)
	}
	return nil
}

// DeclareNodeQueue declares the queue of node on exchange (NodeQueue) and
// binds it with BindingKey(node); it returns the queue name.
//
// The queue is a classic durable queue: durable, not exclusive, not
// auto-deleted, and no arguments at all (no x-queue-type, no dead-lettering,
// no TTL or length limit). Every party declares it exactly so, which makes
// the declaration idempotent: RabbitMQ refuses (406 PRECONDITION_FAILED) a
// redeclaration with other arguments, so changing them needs a migration of
// the queue, agreed by every side.
func DeclareNodeQueue(ch Declarer, exchange, node string) (string, error) {
	if exchange == "" || node == "" {
		return "", errors.New("mpsbus: empty exchange or node")
	}
	return DeclareQueue(ch, exchange, NodeQueue(exchange, node), node)
}

// DeclareQueue declares queue, classic and durable with no arguments as
// DeclareNodeQueue describes, and binds it to exchange with
// BindingKey(node). Another bus of the same conventions (the city feedback
// bus, adapters/citybus) names its queues differently and declares them
// with it.
func DeclareQueue(ch Declarer, exchange, queue, node string) (string, error) {
	if exchange == "" || queue == "" || node == "" {
		return "", errors.New("mpsbus: empty exchange, queue or node")
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return "", fmt.Errorf("mpsbus: declare queue %s: %w", queue, err)
	}
	if err := ch.QueueBind(queue, BindingKey(node), exchange, false, nil); err != nil {
		return "", fmt.Errorf("mpsbus: bind queue %s to %s: %w", queue, exchange, err)
	}
	return queue, nil
}
