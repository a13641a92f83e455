// Package citybus holds what the hub and the city-bus simulator share about
// the city bureau's feedback bus (市局反馈总线, shared/specs/feedback-bus.md)
// on RabbitMQ. Transport, envelope, AMQP properties, receipts and resends
// are those of the Ministry bus, so the names and declarations of
// adapters/mpsbus are reused; only the exchange, the nodes and the queue
// name differ:
//
//	exchange city.feedback           topic, durable; owned by the city bureau
//	queue    node.<N>.feedback       durable classic queue of node N, no arguments
//	binding  to.<N>.#                node.<N>.feedback <- city.feedback
//	key      to.<N>.<kind>           a message for node N (to.310000000001.feedback.dispatch)
//
// On an exchange other than city.feedback (tests, a second bus on one
// vhost) the queue is prefixed with the exchange name, as on the Ministry
// bus.
package citybus

import (
	"errors"

	"zhianhub/adapters/mpsbus"
)

// Bus names and node codes.
const (
	// Exchange is the city bus exchange (topic, durable).
	Exchange = "city.feedback"
	// NodeCity is the city bureau's node (市局指挥系统).
	NodeCity = "310000000001"
	// NodeHub is the hub's node on the city bus.
	NodeHub = mpsbus.NodeShanghai
)

// RoutingKey is the key of a message of kind for node to:
// "to.<to>.<kind>", as on the Ministry bus.
func RoutingKey(to, kind string) string { return mpsbus.RoutingKey(to, kind) }

// QueueName is node's queue on the standard exchange: "node.<N>.feedback".
func QueueName(node string) string { return mpsbus.QueueName(node) + ".feedback" }

// NodeQueue is node's queue on exchange: QueueName(node) on Exchange,
// "<exchange>.node.<N>.feedback" on any other.
func NodeQueue(exchange, node string) string {
	if exchange == Exchange {
		return QueueName(node)
	}
	return exchange + "." + QueueName(node)
}

// DeclareBus declares the bus exchange (topic, durable, no arguments). Only
// the bus owner (the city bureau, its simulator) calls it.
func DeclareBus(ch mpsbus.Declarer, exchange string) error { return mpsbus.DeclareBus(ch, exchange) }

// CheckBus checks passively that the bus exchange exists.
func CheckBus(ch mpsbus.Declarer, exchange string) error { return mpsbus.CheckBus(ch, exchange) }

// DeclareNodeQueue declares node's queue on exchange (NodeQueue), classic
// and durable with no arguments, bound with "to.<N>.#"; it returns its name.
func DeclareNodeQueue(ch mpsbus.Declarer, exchange, node string) (string, error) {
	if exchange == "" || node == "" {
		return "", errors.New("citybus: empty exchange or node")
	}
	return mpsbus.DeclareQueue(ch, exchange, NodeQueue(exchange, node), node)
}
