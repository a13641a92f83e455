package routes_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/citybus"
	"zhianhub/adapters/mpsbus"
	"zhianhub/contracts"
	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
	"zhianhub/routes"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
	"zhianhub/store/dispatch"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
	"zhianhub/store/storetest"
	"zhianhub/transforms"
)

const (
	amqpURL  = "amqp://guest:guest@127.0.0.1:5672/%2f"
	hubNode  = "310000000000"
	ministry = "000000000000"
	cityNode = "310000000001"
)

// harness is a hub (inbound route, relay, filing) on a bus exchange of the
// test's own, with the Ministry side played by the test: it seals downward
// messages and reads what the hub publishes to the Ministry's queue.
type harness struct {
	t        *testing.T
	pool     *pgxpool.Pool
	exchange string
	hubKeys  *keystore.Store
	minKeys  *keystore.Store
	sealer   *envelope.Sealer // the Ministry's
	opener   *envelope.Opener // the Ministry's
	inbound  *routes.Inbound
	relay    *routes.Relay
	filing   *routes.Filing
	registry *registry.Registry
	keyring  *fieldenc.Keyring // the hub's field encryption
	dispatch *dispatch.Store   // the city bus's Registry (opts.city)
	peer     string            // the Ministry, or the city bureau (opts.city)
	audit    *audit.Writer
	conn     *amqp.Connection
	ch       *amqp.Channel
	toMin    <-chan amqp.Delivery
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	newRelay func() *routes.Relay
	rootCtx  context.Context
	relayCtl struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
}

type harnessOpts struct {
	gap    time.Duration
	resend routes.ResendPolicy
	now    func() time.Time
	// city plays the city bureau on a city feedback bus instead of the
	// Ministry: same routes, configured as serve configures the city bus.
	city bool
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, pool: storetest.NewPool(t), peer: ministry}
	if o.city {
		h.peer = cityNode
	}
	root := t.TempDir()
	hubDir, minDir := filepath.Join(root, "hub"), filepath.Join(root, "ministry")
	must(t, keystore.Generate(hubDir, hubNode, nil))
	must(t, keystore.Generate(minDir, h.peer, nil))
	_, err := keystore.ExportPublic(hubDir, keystore.LoadOptions{}, filepath.Join(minDir, "peers"))
	must(t, err)
	_, err = keystore.ExportPublic(minDir, keystore.LoadOptions{}, filepath.Join(hubDir, "peers"))
	must(t, err)
	h.hubKeys, err = keystore.Load(hubDir, keystore.LoadOptions{})
	must(t, err)
	h.minKeys, err = keystore.Load(minDir, keystore.LoadOptions{})
	must(t, err)

	b := make([]byte, 4)
	rand.Read(b)
	h.exchange = "test.routes." + hex.EncodeToString(b)
	h.conn, err = amqp.Dial(amqpURL)
	must(t, err)
	h.ch, err = h.conn.Channel()
	must(t, err)
	must(t, mpsbus.DeclareBus(h.ch, h.exchange))
	declare := mpsbus.DeclareNodeQueue
	if o.city {
		declare = citybus.DeclareNodeQueue
	}
	hubQueue, err := declare(h.ch, h.exchange, hubNode)
	must(t, err)
	minQueue, err := declare(h.ch, h.exchange, h.peer)
	must(t, err)
	t.Cleanup(func() {
		h.stop()
		h.ch.QueueDelete(hubQueue, false, false, false)
		h.ch.QueueDelete(minQueue, false, false, false)
		h.ch.ExchangeDelete(h.exchange, false, false)
		h.conn.Close()
	})
	h.toMin, err = h.ch.Consume(minQueue, "", true, false, false, false, nil)
	must(t, err)

	now := o.now
	if now == nil {
		now = time.Now
	}
	ctx := context.Background()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	validator, err := contracts.NewValidator(contracts.Config{})
	must(t, err)
	kr, err := fieldenc.Open(ctx, store.NewDataKeys(h.pool), h.hubKeys)
	must(t, err)
	h.registry, err = registry.New(registry.Config{Keyring: kr, Validator: validator})
	must(t, err)
	h.audit, err = audit.NewWriter(h.pool, audit.WriterConfig{Signer: h.hubKeys.Signer(), Logger: logger})
	must(t, err)
	h.keyring = kr
	dl, err := deadletter.New(h.pool, deadletter.Config{Cipher: kr, Auditor: h.audit, Actor: hubNode})
	must(t, err)
	jr := journal.New(h.pool)
	var checker routes.Payloads = transforms.Checker{Validator: validator}
	var reg routes.Registry = h.registry
	ordering, kindList := routes.PersonOrdering, contracts.Kinds()
	if o.city {
		h.dispatch = dispatch.New()
		checker, reg, ordering, kindList = transforms.CityChecker{Validator: validator}, h.dispatch, routes.RefOrdering, contracts.CityKinds()
	}
	kinds, hubKinds := envelope.KindSet{}, envelope.KindSet{}
	for _, k := range kindList {
		kinds[k], hubKinds[k] = true, true
	}
	if o.city {
		hubKinds = envelope.KindSet{}
		for _, k := range contracts.CityKindsToHub() {
			hubKinds[k] = true
		}
	}
	hubOpener, err := envelope.NewOpener(envelope.OpenerConfig{Keys: h.hubKeys, Kinds: hubKinds, Now: now})
	must(t, err)
	// The hub seals with the real clock: the injected one drives the
	// receiving side (time window, gap timeout) only.
	hubSealer, err := envelope.NewSealer(envelope.SealerConfig{Keys: h.hubKeys})
	must(t, err)
	resend := o.resend
	if resend == (routes.ResendPolicy{}) {
		resend = routes.ResendPolicy{Initial: time.Hour, Max: time.Hour, GiveUp: 24 * time.Hour}
	}
	h.newRelay = func() *routes.Relay {
		r, err := routes.NewRelay(routes.RelayConfig{Pool: h.pool, AMQPURL: amqpURL, Sealer: hubSealer, Cipher: kr, Journal: jr, Audit: h.audit,
			Logger: logger, Resend: resend, PollInterval: 50 * time.Millisecond, RetryDelay: 100 * time.Millisecond})
		must(t, err)
		return r
	}
	h.relay = h.newRelay()
	h.inbound, err = routes.NewInbound(routes.InboundConfig{
		Node: hubNode, Pool: h.pool, AMQPURL: amqpURL, Queue: hubQueue, Exchange: h.exchange, RoutingKey: mpsbus.RoutingKey,
		Ordering: ordering, Opener: hubOpener, Payloads: checker, Registry: reg, Cipher: kr, Journal: jr, Audit: h.audit, DeadLetters: dl,
		Logger: logger, Notify: h.relay.Notify, GapTimeout: o.gap, GapSweep: 50 * time.Millisecond, Now: now,
	})
	must(t, err)
	h.filing, err = routes.NewFiling(routes.FilingConfig{Pool: h.pool, Self: hubNode, To: h.peer, Exchange: h.exchange, Ordering: ordering,
		RoutingKey: mpsbus.RoutingKey, Payloads: checker, Registry: reg, Cipher: kr, Audit: h.audit, Notify: h.relay.Notify, Now: now})
	must(t, err)
	h.sealer, err = envelope.NewSealer(envelope.SealerConfig{Keys: h.minKeys})
	must(t, err)
	h.opener, err = envelope.NewOpener(envelope.OpenerConfig{Keys: h.minKeys, Kinds: kinds})
	must(t, err)

	rctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.rootCtx = cancel, rctx
	h.wg.Add(1)
	go func() { defer h.wg.Done(); h.inbound.Run(rctx) }()
	h.startRelay(rctx)
	return h
}

// startRelay runs h.relay until ctx ends or stopRelay.
func (h *harness) startRelay(ctx context.Context) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	h.relayCtl.cancel, h.relayCtl.done = cancel, done
	r := h.relay
	h.wg.Add(1)
	go func() { defer h.wg.Done(); defer close(done); r.Run(rctx) }()
}

// restartRelay stops the relay and starts a new one on the same database,
// as a hub restart does: what it knows comes from the outbox rows only.
func (h *harness) restartRelay() {
	h.relayCtl.cancel()
	<-h.relayCtl.done
	h.relay = h.newRelay()
	h.startRelay(h.rootCtx)
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		h.wg.Wait()
		h.cancel = nil
		h.audit.Close(context.Background())
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// down seals payload as the Ministry and publishes it to the hub; it returns
// the envelope (to publish again as a broker redelivery would).
func (h *harness) down(kind, id string, payload any) (string, []byte) {
	h.t.Helper()
	p, err := json.Marshal(payload)
	must(h.t, err)
	env, id, err := h.sealer.Seal(envelope.Outgoing{ID: id, Kind: kind, To: hubNode, Payload: p})
	must(h.t, err)
	h.publish(kind, id, env)
	return id, env
}

func (h *harness) publish(kind, id string, env []byte) {
	h.t.Helper()
	must(h.t, h.ch.PublishWithContext(context.Background(), h.exchange, mpsbus.RoutingKey(hubNode, kind), false, false,
		mpsbus.Publishing(env, id, kind, time.Now())))
}

// received is one message the hub sent to the Ministry, opened.
type received struct {
	msg     *envelope.Message
	receipt map[string]any
}

// next waits for the next message from the hub to the Ministry.
func (h *harness) next(timeout time.Duration) (received, bool) {
	h.t.Helper()
	select {
	case d := <-h.toMin:
		msg, err := h.opener.Open(d.Body)
		if err != nil {
			h.t.Fatalf("the Ministry cannot open what the hub sent: %v", err)
		}
		r := received{msg: msg}
		if msg.Kind == "receipt" {
			must(h.t, json.Unmarshal(msg.Payload, &r.receipt))
		}
		return r, true
	case <-time.After(timeout):
		return received{}, false
	}
}

// receipts collects n receipts by the id they answer.
func (h *harness) receipts(n int) map[string]map[string]any {
	h.t.Helper()
	out := map[string]map[string]any{}
	for len(out) < n {
		r, ok := h.next(15 * time.Second)
		if !ok {
			h.t.Fatalf("got %d receipts, want %d: %v", len(out), n, out)
		}
		if r.receipt == nil {
			h.t.Fatalf("unexpected %s", r.msg.Kind)
		}
		ref := r.receipt["ref"].(string)
		if _, dup := out[ref]; dup {
			h.t.Fatalf("second receipt for %s: %v", ref, r.receipt)
		}
		if r.msg.Corr != ref {
			h.t.Errorf("receipt corr %s, ref %s", r.msg.Corr, ref)
		}
		out[ref] = r.receipt
	}
	return out
}

// quiet checks that nothing more arrives for a while.
func (h *harness) quiet(d time.Duration) {
	h.t.Helper()
	if r, ok := h.next(d); ok {
		h.t.Fatalf("unexpected message from the hub: %s %v", r.msg.Kind, r.receipt)
	}
}

func newUUID() string { return uuid.Must(uuid.NewV7()).String() }

func resendPolicy(initial, max, giveUp time.Duration) routes.ResendPolicy {
	return routes.ResendPolicy{Initial: initial, Max: max, GiveUp: giveUp}
}

func fileReq(kind string, payload []byte) routes.FileRequest {
	return routes.FileRequest{Kind: kind, Payload: payload, Actor: "test-officer"}
}
