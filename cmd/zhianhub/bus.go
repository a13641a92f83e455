package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/api"
	"zhianhub/adapters/mpsbus"
	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/contracts"
	"zhianhub/contracts/events"
	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
	"zhianhub/routes"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
	"zhianhub/store/inbox"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
	"zhianhub/transforms"
)

// EventsExchange is the hub's internal topic exchange (routing key = kind).
const EventsExchange = "zhian.events"

// Inbound route sizing, measured with BenchmarkInboundRoute on the 2-core
// development machine: 4 shards with batches of up to 256 messages were
// 15-30% faster than 8 shards of 64.
const (
	inboundShards    = 4
	inboundBatchSize = 256
)

// busRoutes is the Ministry-bus exchange of the hub: the inbound route of
// its queue, the outbox relay and the filing service.
type busRoutes struct {
	cfg      config.Config
	logger   *slog.Logger
	keys     *keystore.Store
	pool     *pgxpool.Pool
	audit    *audit.Writer
	registry *registry.Registry
	keyring  *fieldenc.Keyring // field encryption (registry, leads)
	inbound  *routes.Inbound
	relay    *routes.Relay
	filing   *routes.Filing
	events   *events.Registry
	ingress  *routes.Ingress // nil when ingress.enabled is false
	casework *casework       // warnings and leads (set by startHub)
	live     *inbox.Listener // wakes the inbox streams of the API
	exchange string
	queue    string
	topo     topology
	city     *cityRoutes // nil when city_bus.enabled is false
}

// topology is the state of a bus topology declared in the background: the
// readiness check answers from it.
type topology struct {
	ok  atomic.Bool
	err atomic.Value // string
}

func (t *topology) ready(context.Context) error {
	if t.ok.Load() {
		return nil
	}
	if s, _ := t.err.Load().(string); s != "" {
		return errors.New(s)
	}
	return errors.New("not yet declared")
}

// declare runs once until it succeeds or ctx ends, with backoff from 1 s
// to 30 s, recording each failure for the readiness check.
func (t *topology) declare(ctx context.Context, logger *slog.Logger, once func() error, ready ...any) bool {
	backoff := time.Second
	for {
		err := once()
		if err == nil {
			t.ok.Store(true)
			logger.Info("bus topology ready", ready...)
			return true
		}
		t.err.Store(err.Error())
		logger.Warn("bus topology not ready; retrying", "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func newBusRoutes(ctx context.Context, cfg config.Config, logger *slog.Logger, ks *keystore.Store, pool *pgxpool.Pool, aw *audit.Writer, kr *fieldenc.Keyring) (*busRoutes, error) {
	validator, err := contracts.NewValidator(contracts.Config{CategoriesPath: cfg.Categories})
	if err != nil {
		return nil, err
	}
	logger.Info("category table", "source", validator.Categories().Source(), "codes", validator.Categories().Len())
	reg, err := registry.New(registry.Config{Keyring: kr, Validator: validator})
	if err != nil {
		return nil, err
	}
	dl, err := deadletter.New(pool, deadletter.Config{Cipher: kr, Auditor: aw, Actor: ks.Node()})
	if err != nil {
		return nil, err
	}
	opener, err := envelope.NewOpener(envelope.OpenerConfig{Keys: ks, Kinds: envelope.KindSet(kindSet())})
	if err != nil {
		return nil, err
	}
	sealer, err := envelope.NewSealer(envelope.SealerConfig{Keys: ks})
	if err != nil {
		return nil, err
	}
	jr := journal.New(pool)
	checker := transforms.Checker{Validator: validator}
	b := &busRoutes{cfg: cfg, logger: logger, keys: ks, pool: pool, audit: aw, registry: reg, keyring: kr,
		exchange: cfg.Exchange.MPSExchange, queue: mpsbus.NodeQueue(cfg.Exchange.MPSExchange, ks.Node())}
	if b.relay, err = routes.NewRelay(routes.RelayConfig{
		Pool: pool, AMQPURL: cfg.AMQP.URL, Sealer: sealer, Cipher: kr, Journal: jr, Audit: aw, Logger: logger,
		Resend: routes.ResendPolicy{Initial: cfg.Exchange.ResendInitial, Max: cfg.Exchange.ResendMax, GiveUp: cfg.Exchange.ResendGiveUp},
	}); err != nil {
		return nil, err
	}
	if b.inbound, err = routes.NewInbound(routes.InboundConfig{
		Node: ks.Node(), Pool: pool, AMQPURL: cfg.AMQP.URL, Queue: b.queue, Exchange: b.exchange, RoutingKey: mpsbus.RoutingKey,
		EventsExchange: EventsExchange, Opener: opener, Payloads: checker, Registry: reg, Cipher: kr, Journal: jr, Audit: aw,
		DeadLetters: dl, Logger: logger, Notify: b.relay.Notify, GapTimeout: cfg.Exchange.GapTimeout,
		Shards: inboundShards, BatchSize: inboundBatchSize,
	}); err != nil {
		return nil, err
	}
	if b.filing, err = routes.NewFiling(routes.FilingConfig{
		Pool: pool, Self: ks.Node(), To: mpsbus.NodeMinistry, Exchange: b.exchange, RoutingKey: mpsbus.RoutingKey,
		Payloads: checker, Registry: reg, Cipher: kr, Audit: aw, Notify: b.relay.Notify,
	}); err != nil {
		return nil, err
	}
	if cfg.CityBus.Enabled {
		if b.city, err = newCityRoutes(cfg, logger, ks, pool, aw, dl, jr, validator, b.relay, kr); err != nil {
			return nil, err
		}
	}
	if b.events, err = events.NewRegistry(); err != nil {
		return nil, err
	}
	if cfg.Ingress.Enabled {
		if b.ingress, err = routes.NewIngress(routes.IngressConfig{
			AMQPURL: cfg.AMQP.URL, Pool: pool, Contracts: b.events, DeadLetters: dl, Logger: logger,
			EventsExchange: EventsExchange,
		}); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func kindSet() map[string]bool {
	out := map[string]bool{}
	for _, k := range contracts.Kinds() {
		out[k] = true
	}
	return out
}

// ready is the readiness check of the bus topology.
func (b *busRoutes) ready(context.Context) error {
	return b.topo.ready(context.Background())
}

// mount adds the bus API to the router (the portal API mounts more).
func (b *busRoutes) mount(r chi.Router, a *apiAuth, oplog api.OperationLog) {
	cfg := api.Config{
		Pool: b.pool, Registry: b.registry, Filing: b.filing, Audit: b.audit, Journal: journal.New(b.pool),
		DevIdentity: b.cfg.DevIdentity, Logger: b.logger, Authenticator: a.authn, Units: a.units, Events: b.events, AuditKeys: b.keys.SelfVerifier,
		OperationLog: oplog, Keyring: b.keyring,
		Live: b.live,
	}
	b.casework.apiConfig(&cfg)
	if b.city != nil {
		cfg.Feedbacks = b.city.feedbacks
	}
	if err := api.Mount(r, cfg); err != nil {
		// Only a programming error (a nil dependency) gets here.
		b.logger.Error("the HTTP API is not mounted", "err", err)
	}
}

// start runs the topology set-up, then the relay, the inbound route and
// the control-expiry job (and the ingress route when enabled), until ctx
// ends.
func (b *busRoutes) start(ctx context.Context, wg *sync.WaitGroup) {
	if b.ingress != nil {
		wg.Go(func() { _ = b.ingress.Run(ctx) })
	}
	if b.city != nil {
		b.city.start(ctx, wg)
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		_ = b.relay.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		if !b.declareTopology(ctx) {
			return
		}
		_ = b.inbound.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		b.expireControls(ctx)
	}()
}

// declareTopology declares the hub's own queue and events exchange; the bus
// exchange belongs to the bus and is only checked (passively). It retries
// until the bus exists or ctx ends.
func (b *busRoutes) declareTopology(ctx context.Context) bool {
	return b.topo.declare(ctx, b.logger, b.declareOnce, "exchange", b.exchange, "queue", b.queue, "events", EventsExchange)
}

func (b *busRoutes) declareOnce() error {
	conn, err := amqp.DialConfig(b.cfg.AMQP.URL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second), Properties: amqp.Table{"connection_name": "zhianhub-topology"}})
	if err != nil {
		return fmt.Errorf("amqp: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(EventsExchange, "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", EventsExchange, err)
	}
	if err := mpsbus.CheckBus(ch, b.exchange); err != nil {
		return fmt.Errorf("the Ministry bus exchange is missing (started by the bus or `zhianhub sim mps`): %w", err)
	}
	ch, err = conn.Channel() // a failed passive check closes the channel; this one is fresh
	if err != nil {
		return err
	}
	if _, err := mpsbus.DeclareNodeQueue(ch, b.exchange, b.keys.Node()); err != nil {
		return err
	}
	return nil
}

// expireControls closes controls past their validity every minute and
// reports each (log and audit); they are never extended silently.
func (b *busRoutes) expireControls(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		expired, err := b.registry.ExpireControls(ctx, b.pool, time.Now())
		if err != nil && ctx.Err() == nil {
			b.logger.Error("control expiry failed", "err", err)
		}
		for _, c := range expired {
			b.logger.Warn("control expired and closed; report to the responsible unit", "controlNo", c.ControlNo, "personNo", c.PersonNo, "validTo", c.ValidTo)
			_, _ = b.audit.Append(context.WithoutCancel(ctx), audit.Entry{Actor: "system", Action: "control.expired", Object: c.ControlNo,
				Result: "closed", Reason: "布控期限已到，已关闭，不自动延期", Detail: map[string]any{"personNo": c.PersonNo}})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
