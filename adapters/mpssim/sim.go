// Package mpssim is the Ministry bus simulator (公安部业务总线模拟器): it
// plays node 000000000000 of shared/specs/mps-bus.md against the hub, for
// operators integrating offline and for tests.
//
// Upward, it answers every filing of a known sender with exactly one
// receipt per distinct id, keeping the Ministry's view of the registry per
// (sender, personNo): envelope checks and contract validation, the state
// machine (E130/E131), seq order with held messages and E140 after the gap
// timeout, DUPLICATE for a repeated id. Downward, it sends scripted and
// random traffic for the hub, tracks each message until its receipt and
// resends it on the resend schedule. Faults (duplicates, reordering, gaps,
// bad signatures, unknown keys, stale timestamps, invalid payloads, lost
// receipts) are injected on demand through Config.Faults or the control
// HTTP API (see Handler).
//
// Decisions where the specs leave room:
//   - Rejections at envelope steps 3-5 (E112-E114) are answered but not
//     recorded under the id: the id of an envelope whose timestamp,
//     recipient or encryption failed is not trusted as the message's
//     identity, so a correct resend of the same id is processed normally.
//     Outcomes of step 6 and later (E100, E102, E120-E122, E130, E131,
//     0000) are recorded; a repeated id gets them as DUPLICATE. E140 is
//     not recorded either: the sender resends from the gap with the same
//     ids, which must then be processed (as the hub does, see
//     contracts/mps-exchange.md).
//   - A filing whose payload fails validation but whose personNo and seq
//     can be read still takes its place in the sequence (mps-bus.md: a
//     rejected message fills its place); otherwise it is answered at once.
//   - A new id with a seq already used (or already held) is E130.
//   - When the gap timeout expires, every message held for that
//     (sender, personNo) is rejected with E140; the expected seq stays at
//     the gap and the rejected ids are forgotten.
//   - keyperson.task.sign is checked against the tasks the simulator sent
//     down to that sender (and the sender's own filed tasks): unknown
//     taskNo E131, signed twice E130.
//   - A change is merged into the stored register payload and the result
//     re-validated as a register (ID agreement, reviewBy): failures are
//     answered with the validator's code.
package mpssim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpsbus"
	"zhianhub/contracts"
	"zhianhub/crypto"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
)

// errNotConnected reports a send while the simulator has no bus connection.
var errNotConnected = errors.New("mpssim: not connected to the bus")

// Sim is the Ministry bus simulator. Create it with New and start it with
// Run.
type Sim struct {
	cfg       Config
	log       *slog.Logger
	keys      *keystore.Store
	validator *contracts.Validator
	opener    *envelope.Opener
	sealer    *envelope.Sealer // normal
	stale     *envelope.Sealer // ts 25 h old
	stranger  *envelope.Sealer // signed with a key nobody knows
	script    []ScriptLine

	started     atomic.Bool
	running     chan struct{}
	runningOnce sync.Once
	controlAddr atomic.Value // string

	pubMu sync.RWMutex
	pub   *mpsbus.Publisher

	wg sync.WaitGroup

	mu  sync.Mutex // guards everything below
	rng *rand.Rand
	gen *Generator
	// Downward.
	out        map[string]*outMsg // every message sent, by id
	pending    map[string]*outMsg // awaiting a receipt
	seqs       map[string]int64   // last seq per personNo
	stories    []*Story
	lastPerson string // personNo of the last scripted message
	downTasks  map[taskKey]*downTask
	// Upward: the Ministry's view.
	persons  map[personKey]*personState
	outcomes map[string]*outcome
	// Faults.
	faults       map[Fault]float64
	lostReceipts int // one-shot receipts to drop
	invalidNext  int // rotates the invalid-payload variants
	stats        counters
}

// New loads the keys, the category table and the script, and returns a
// simulator ready to Run.
func New(cfg Config) (*Sim, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := keystore.Load(cfg.KeyDir, keystore.LoadOptions{Passphrase: cfg.Passphrase})
	if err != nil {
		return nil, fmt.Errorf("mpssim: %w", err)
	}
	if keys.Node() != mpsbus.NodeMinistry {
		cfg.Logger.Warn("the simulator's key directory is not the Ministry's", "node", keys.Node(), "want", mpsbus.NodeMinistry)
	}
	if p, ok := keys.Peer(cfg.HubNode); !ok || p.Enc == nil || len(p.Sign) == 0 {
		return nil, fmt.Errorf("mpssim: %s holds no public keys of the hub node %s (peers/%s/sign.pub.pem, enc.pub.pem; see zhianhub keys gen --demo-peers)", cfg.KeyDir, cfg.HubNode, cfg.HubNode)
	}
	v, err := contracts.NewValidator(contracts.Config{CategoriesPath: cfg.CategoriesPath})
	if err != nil {
		return nil, fmt.Errorf("mpssim: %w", err)
	}
	pv := payloadValidator{v: v}
	opener, err := envelope.NewOpener(envelope.OpenerConfig{Keys: keys, Kinds: pv, Payload: pv, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("mpssim: %w", err)
	}
	sealer, err := envelope.NewSealer(envelope.SealerConfig{Keys: keys, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("mpssim: %w", err)
	}
	stale, err := envelope.NewSealer(envelope.SealerConfig{Keys: keys, Now: func() time.Time { return cfg.Now().Add(-StaleAge) }, KeyMaxAge: -1})
	if err != nil {
		return nil, fmt.Errorf("mpssim: %w", err)
	}
	strangerKey, err := crypto.GenerateSM2()
	if err != nil {
		return nil, fmt.Errorf("mpssim: stranger key: %w", err)
	}
	stranger, err := envelope.NewSealer(envelope.SealerConfig{Keys: strangerKeys{Store: keys, signer: strangerKey}, Now: cfg.Now, KeyMaxAge: -1})
	if err != nil {
		return nil, fmt.Errorf("mpssim: %w", err)
	}
	var script []ScriptLine
	if cfg.ScriptPath != "" {
		if script, err = LoadScript(cfg.ScriptPath); err != nil {
			return nil, err
		}
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	gen, err := NewGenerator(GeneratorConfig{Categories: v.Categories(), Seed: seed})
	if err != nil {
		return nil, err
	}
	faults := make(map[Fault]float64, len(cfg.Faults))
	for f, p := range cfg.Faults {
		faults[f] = p
	}
	return &Sim{
		cfg:       cfg,
		log:       cfg.Logger.With("sim", "mps", "node", keys.Node()),
		keys:      keys,
		validator: v,
		opener:    opener,
		sealer:    sealer,
		stale:     stale,
		stranger:  stranger,
		script:    script,
		running:   make(chan struct{}),
		rng:       rand.New(rand.NewPCG(seed, ^seed)),
		gen:       gen,
		out:       make(map[string]*outMsg),
		pending:   make(map[string]*outMsg),
		seqs:      make(map[string]int64),
		downTasks: make(map[taskKey]*downTask),
		persons:   make(map[personKey]*personState),
		outcomes:  make(map[string]*outcome),
		faults:    faults,
		stats:     newCounters(),
	}, nil
}

// strangerKeys signs with a key no peer knows (the unknown-key fault).
type strangerKeys struct {
	*keystore.Store
	signer crypto.Signer
}

func (k strangerKeys) Signer() crypto.Signer { return k.signer }

// payloadValidator adapts the contract validators to the envelope's step 6.
type payloadValidator struct{ v *contracts.Validator }

// Known implements envelope.Kinds.
func (p payloadValidator) Known(kind string) bool { return contracts.Known(kind) }

// ValidatePayload implements envelope.PayloadValidator.
func (p payloadValidator) ValidatePayload(kind string, payload []byte) error {
	_, err := p.v.ValidatePayload(kind, payload)
	if err == nil {
		return nil
	}
	e := &envelope.Error{Code: envelope.Code(contracts.ErrorCode(err)), Step: 6, Err: err}
	var fe *contracts.FieldError
	if errors.As(err, &fe) {
		e.Field, e.Reason, e.Err = fe.Path, fe.Reason, nil
	}
	return e
}

// Running is closed once the simulator has declared the bus topology and
// consumes its queue for the first time.
func (s *Sim) Running() <-chan struct{} { return s.running }

// ControlAddr returns the address the control API listens on ("" when off
// or not started yet).
func (s *Sim) ControlAddr() string {
	a, _ := s.controlAddr.Load().(string)
	return a
}

// Node returns the simulator's node code.
func (s *Sim) Node() string { return s.keys.Node() }

// Run runs the simulator until ctx ends: the control API, the bus
// connection (reconnecting with backoff), the script, the random traffic,
// resends and the gap timeout. It returns nil after a clean shutdown, or an
// error when the control API cannot listen.
func (s *Sim) Run(ctx context.Context) error {
	if s.started.Swap(true) {
		return errors.New("mpssim: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var srv *http.Server
	if s.cfg.ControlAddr != "" {
		ln, err := net.Listen("tcp", s.cfg.ControlAddr)
		if err != nil {
			return fmt.Errorf("mpssim: control API: %w", err)
		}
		s.controlAddr.Store(ln.Addr().String())
		srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
		s.wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("control API stopped", "err", err)
			}
		})
		s.log.Info("control API listening", "addr", ln.Addr().String())
	}
	s.log.Info("simulator starting", "exchange", s.cfg.Exchange, "hub", s.cfg.HubNode, "rate", s.cfg.Rate,
		"script", len(s.script), "categories", s.validator.Categories().Source(), "faults", s.FaultProbabilities())

	s.wg.Go(func() { KeepSession(ctx, s.log, s.session) })
	s.wg.Go(func() { Every(ctx, Tick(s.cfg.Resend.Initial), s.resendDue) })
	s.wg.Go(func() { Every(ctx, Tick(s.cfg.GapTimeout), s.expireGaps) })
	s.wg.Go(func() { s.runScript(ctx) })
	if s.cfg.Rate > 0 {
		s.wg.Go(func() { Every(ctx, time.Duration(float64(time.Second)/s.cfg.Rate), s.randomStep) })
	}

	<-ctx.Done()
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
	s.wg.Wait()
	st := s.Stats()
	s.log.Info("simulator stopped", "sent", st.Sent, "resends", st.Resends, "flagged", st.Flagged,
		"filings", st.FilingsReceived, "receiptsSent", st.ReceiptsSent)
	return nil
}

// Tick returns the period of a loop that must react within d: a quarter
// of d, between 5 ms and 1 s.
func Tick(d time.Duration) time.Duration {
	return min(max(d/4, 5*time.Millisecond), time.Second)
}

// Every runs fn every period until ctx ends.
func Every(ctx context.Context, period time.Duration, fn func(context.Context)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

func (s *Sim) publisher() *mpsbus.Publisher {
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	return s.pub
}

func (s *Sim) setPublisher(p *mpsbus.Publisher) {
	s.pubMu.Lock()
	s.pub = p
	s.pubMu.Unlock()
}

// publish sends one envelope with routing key to.<to>.<kind>.
func (s *Sim) publish(ctx context.Context, to, kind, id string, env []byte) error {
	p := s.publisher()
	if p == nil {
		return errNotConnected
	}
	return p.Publish(ctx, mpsbus.RoutingKey(to, kind), mpsbus.Publishing(env, id, kind, s.cfg.Now()))
}

// KeepSession keeps a bus session up until ctx ends: it runs session
// again each time it returns, after a backoff from 0.5 s doubling to 30 s,
// back to 0.5 s after a session that got as far as consuming (ready).
func KeepSession(ctx context.Context, log *slog.Logger, session func(context.Context) (ready bool, err error)) {
	const minBackoff, maxBackoff = 500 * time.Millisecond, 30 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		ready, err := session(ctx)
		if ctx.Err() != nil {
			return
		}
		if ready {
			backoff = minBackoff
		}
		log.Warn("bus session ended; reconnecting", "err", err, "in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session connects, declares the bus topology, consumes the simulator's
// queue and handles deliveries until the connection fails or ctx ends.
// ready reports whether it got as far as consuming.
func (s *Sim) session(ctx context.Context) (ready bool, err error) {
	conn, err := amqp.DialConfig(s.cfg.AMQPURL, amqp.Config{
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": s.cfg.ConnectionName},
	})
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("channel: %w", err)
	}
	// The simulator owns the bus: it declares the exchange, its own queue
	// and the hub's queue, exactly as the hub declares it.
	if err := mpsbus.DeclareBus(ch, s.cfg.Exchange); err != nil {
		return false, err
	}
	queue, err := mpsbus.DeclareNodeQueue(ch, s.cfg.Exchange, s.keys.Node())
	if err != nil {
		return false, err
	}
	if _, err := mpsbus.DeclareNodeQueue(ch, s.cfg.Exchange, s.cfg.HubNode); err != nil {
		return false, err
	}
	pub, err := mpsbus.NewPublisher(conn, mpsbus.PublisherConfig{Exchange: s.cfg.Exchange})
	if err != nil {
		return false, err
	}
	defer pub.Close()
	if err := ch.Qos(s.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("qos: %w", err)
	}
	// Exclusive: a second simulator on the same queue fails instead of
	// silently taking half of the traffic.
	deliveries, err := ch.Consume(queue, s.cfg.ConnectionName, false, true, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", queue, err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	s.setPublisher(pub)
	defer s.setPublisher(nil)
	s.runningOnce.Do(func() { close(s.running) })
	s.log.Info("bus ready", "exchange", s.cfg.Exchange, "queue", queue, "hubQueue", mpsbus.NodeQueue(s.cfg.Exchange, s.cfg.HubNode))
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case e := <-closed:
			return true, fmt.Errorf("connection closed: %v", e)
		case d, ok := <-deliveries:
			if !ok {
				return true, errors.New("consumer closed")
			}
			if err := s.handleDelivery(ctx, d); err != nil {
				// The receipt could not be published: requeue and start
				// a new session (the redelivery answers again).
				_ = d.Nack(false, true)
				return true, fmt.Errorf("delivery %s requeued: %w", d.MessageId, err)
			}
			_ = d.Ack(false)
		}
	}
}
