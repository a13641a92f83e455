package deadletter

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Publisher publishes one message and returns nil only once the broker has
// confirmed it and routed it to at least one queue (publisher confirms,
// mandatory publishing): an unroutable message is an error.
type Publisher interface {
	Publish(ctx context.Context, exchange, routingKey string, msg amqp.Publishing) error
}

// Headers a replayed message carries, so that the inbound path and the logs
// can tell a replay from a first delivery.
const (
	// HeaderDeadLetterID is the id of the dead letter replayed (int64).
	HeaderDeadLetterID = "x-zhianhub-dead-letter-id"
	// HeaderReplay is the number of this replay of the letter, from 1 (int64).
	HeaderReplay = "x-zhianhub-replay"
)

// Publishing returns the AMQP message a replay of l publishes: the exact raw
// bytes, persistent, with message_id and type from the letter, the content
// type application/json when the bytes are JSON, and the replay headers.
func Publishing(l Letter, now time.Time) amqp.Publishing {
	contentType := "application/octet-stream"
	if json.Valid(l.Raw) {
		contentType = "application/json"
	}
	return amqp.Publishing{
		Headers: amqp.Table{
			HeaderDeadLetterID: l.ID,
			HeaderReplay:       int64(l.ReplayCount) + 1,
		},
		ContentType:  contentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    l.MessageID,
		Type:         l.Kind,
		Timestamp:    now,
		Body:         l.Raw,
	}
}

// Replay republishes letter id exactly as it was recorded to its route with
// pub and, once pub confirms, counts the replay (MarkReplayed). It returns
// the letter as replayed, with the new count. A letter without a route is
// ErrNoRoute; a publishing error leaves the count unchanged. Resolved letters
// may be replayed too.
func (s *Store) Replay(ctx context.Context, id int64, pub Publisher) (Letter, error) {
	l, err := s.Get(ctx, id)
	if err != nil {
		return Letter{}, err
	}
	if !l.HasRoute() {
		return l, fmt.Errorf("%w: id %d (source %q)", ErrNoRoute, id, l.Source)
	}
	if err := pub.Publish(ctx, l.Exchange, l.RoutingKey, Publishing(l, time.Now())); err != nil {
		return l, fmt.Errorf("deadletter: replay %d: %w", id, err)
	}
	count, at, err := s.markReplayed(ctx, id)
	if err != nil {
		return l, fmt.Errorf("deadletter: replay %d was published but not counted: %w", id, err)
	}
	l.ReplayCount, l.LastReplayedAt = count, at
	return l, nil
}
