package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/citybus"
	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/contracts"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
	"zhianhub/routes"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
	"zhianhub/store/dispatch"
	"zhianhub/store/journal"
	"zhianhub/transforms"
)

// cityRoutes is the city feedback bus of the hub (feedback-bus.md): a
// second inbound route, on the hub's city queue, applying dispatch orders
// to store/dispatch, and the feedback filing. The outbox relay is the
// Ministry bus's: outbox rows carry their own exchange and routing key.
type cityRoutes struct {
	cfg       config.CityBusConfig
	amqpURL   string
	logger    *slog.Logger
	node      string
	pool      *pgxpool.Pool
	queue     string
	store     *dispatch.Store
	inbound   *routes.Inbound
	filing    *routes.Filing
	feedbacks *citybus.Feedbacks
	topo      topology
}

func newCityRoutes(cfg config.Config, logger *slog.Logger, ks *keystore.Store, pool *pgxpool.Pool, aw *audit.Writer,
	dl *deadletter.Store, jr *journal.Journal, validator *contracts.Validator, relay *routes.Relay, cipher routes.Cipher) (*cityRoutes, error) {
	cb := cfg.CityBus
	if p, ok := ks.Peer(cb.Node); !ok || p.Enc == nil || len(p.Sign) == 0 {
		return nil, fmt.Errorf("city_bus: %s holds no public keys of the city bureau %s (peers/%s/sign.pub.pem, enc.pub.pem; see zhianhub keys gen --demo-peers)", cfg.Keys.Dir, cb.Node, cb.Node)
	}
	kinds := envelope.KindSet{}
	for _, k := range contracts.CityKindsToHub() {
		kinds[k] = true
	}
	opener, err := envelope.NewOpener(envelope.OpenerConfig{Keys: ks, Kinds: kinds})
	if err != nil {
		return nil, err
	}
	checker := transforms.CityChecker{Validator: validator}
	c := &cityRoutes{cfg: cb, amqpURL: cfg.AMQP.URL, logger: logger.With("bus", "city"), node: ks.Node(), pool: pool,
		queue: citybus.NodeQueue(cb.Exchange, ks.Node()), store: dispatch.New()}
	if c.inbound, err = routes.NewInbound(routes.InboundConfig{
		Node: ks.Node(), Pool: pool, AMQPURL: cfg.AMQP.URL, Queue: c.queue, Exchange: cb.Exchange, RoutingKey: citybus.RoutingKey,
		Ordering: routes.RefOrdering, Opener: opener, Payloads: checker, Registry: c.store, Cipher: cipher, Journal: jr, Audit: aw,
		DeadLetters: dl, Logger: c.logger, Notify: relay.Notify, GapTimeout: cfg.Exchange.GapTimeout,
	}); err != nil {
		return nil, err
	}
	if c.filing, err = routes.NewFiling(routes.FilingConfig{
		Pool: pool, Self: ks.Node(), To: cb.Node, Exchange: cb.Exchange, RoutingKey: citybus.RoutingKey, Ordering: routes.RefOrdering,
		Payloads: checker, Registry: c.store, Cipher: cipher, Audit: aw, Notify: relay.Notify,
	}); err != nil {
		return nil, err
	}
	c.feedbacks = &citybus.Feedbacks{Filing: c.filing, Numbers: pool}
	return c, nil
}

// ready is the readiness check of the city bus topology.
func (c *cityRoutes) ready(ctx context.Context) error { return c.topo.ready(ctx) }

// start declares the hub's city queue (checking the bus exchange), then
// runs the inbound route until ctx ends.
func (c *cityRoutes) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() {
		if !c.topo.declare(ctx, c.logger, c.declareOnce, "exchange", c.cfg.Exchange, "queue", c.queue) {
			return
		}
		_ = c.inbound.Run(ctx)
	})
}

func (c *cityRoutes) declareOnce() error {
	conn, err := amqp.DialConfig(c.amqpURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second), Properties: amqp.Table{"connection_name": "zhianhub-topology-city"}})
	if err != nil {
		return fmt.Errorf("amqp: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := citybus.CheckBus(ch, c.cfg.Exchange); err != nil {
		return fmt.Errorf("the city bus exchange is missing (started by the city bureau or `zhianhub sim city`): %w", err)
	}
	if ch, err = conn.Channel(); err != nil {
		return err
	}
	_, err = citybus.DeclareNodeQueue(ch, c.cfg.Exchange, c.node)
	return err
}
