// Package citysim is the city-bureau feedback bus simulator (市局反馈总线模拟器):
// it plays node 310000000001 of shared/specs/feedback-bus.md against the
// hub, for operators integrating offline (`zhianhub sim city`, started by
// `make run`) and for tests.
//
// Upward, it answers every feedback.* of a known sender with exactly one
// receipt per distinct id: envelope checks and contract validation
// (contracts.ValidateCityPayload), seq order per (sender, refNo) with held
// messages and E140 after the gap timeout, DUPLICATE with the original
// code for a repeated id. Downward, it sends scripted, random and
// on-demand dispatch orders to the hub, tracks each until its receipt and
// resends it on the resend schedule. Faults (duplicates, reordering, bad
// signatures, stale timestamps, invalid payloads, lost receipts) are
// injected through Config.Faults or the control HTTP API (Handler).
//
// It shares with the Ministry simulator (adapters/mpssim) the fault names,
// the resend policy type and the signature corruption, and with the hub
// the bus helpers (adapters/citybus over adapters/mpsbus: topology,
// publisher with confirms).
//
// Decisions where the specs leave room:
//   - As in mpssim: rejections at envelope steps 3-5 are answered but not
//     recorded under the id, E140 is not recorded either (the hub resends
//     from the gap with the same ids); steps 1-2 are never answered.
//   - A feedback.dispatch whose refNo is not an order this process sent is
//     still accepted: the simulator keeps no state across restarts, while
//     the hub's orders persist. Payload rules are checked in full.
//   - A new id with a seq already used (or held) is E130.
//   - Orders: orderNo = 310000 + today's date + a random 6-digit serial
//     not yet used by this process; refNo = orderNo, seq 1 (one message
//     per order).
package citysim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/citybus"
	"zhianhub/adapters/mpsbus"
	"zhianhub/adapters/mpssim"
	"zhianhub/contracts"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
)

var errNotConnected = errors.New("citysim: not connected to the bus")

// Sim is the city bus simulator; create it with New, start it with Run.
type Sim struct {
	cfg       Config
	log       *slog.Logger
	keys      *keystore.Store
	validator *contracts.Validator
	opener    *envelope.Opener
	sealer    *envelope.Sealer
	stale     *envelope.Sealer
	script    []json.RawMessage

	started     atomic.Bool
	running     chan struct{}
	runningOnce sync.Once
	controlAddr atomic.Value // string

	pubMu sync.RWMutex
	pub   *mpsbus.Publisher

	wg sync.WaitGroup

	mu sync.Mutex // guards everything below
	// Downward.
	rng      *rand.Rand
	serials  map[string]bool
	out      map[string]*outMsg
	pending  map[string]*outMsg
	withheld *outMsg // the reorder fault's order, sent after the next
	// Upward.
	outcomes map[string]*outcome
	next     map[seqKey]int64
	held     map[seqKey]map[int64]*heldMsg
	received []Feedback
	// Faults.
	faults       map[mpssim.Fault]float64
	lostReceipts int
	invalidNext  int
	stats        Stats
}

type seqKey struct{ sender, refNo string }

// outMsg is an order sent to the hub.
type outMsg struct {
	info      MessageInfo
	payload   []byte
	firstSent time.Time
	nextAt    time.Time
	interval  time.Duration
}

// MessageInfo describes an order sent and its receipt.
type MessageInfo struct {
	ID       string     `json:"id"`
	OrderNo  string     `json:"orderNo"`
	Fault    string     `json:"fault,omitempty"`
	Attempts int        `json:"attempts"`
	Flagged  bool       `json:"flagged,omitempty"`
	Receipt  *Receipt   `json:"receipt,omitempty"`
	SentAt   *time.Time `json:"sentAt,omitempty"`
}

// Receipt is a receipt received from the hub.
type Receipt struct {
	Status string `json:"status"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// Feedback is a feedback received from the hub and how it was answered.
type Feedback struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	From       string `json:"from"`
	Corr       string `json:"corr"`
	FeedbackNo string `json:"feedbackNo,omitempty"`
	RefNo      string `json:"refNo,omitempty"`
	Seq        int64  `json:"seq,omitempty"`
	Unit       string `json:"unit,omitempty"`
	Result     string `json:"result,omitempty"`
	Status     string `json:"status"`
	Code       string `json:"code"`
	Reason     string `json:"reason,omitempty"`
}

// outcome is the recorded answer of an upward id.
type outcome struct {
	held     bool
	status   string
	code     string
	reason   string
	answered bool
}

// heldMsg is a feedback waiting for a sequence gap.
type heldMsg struct {
	fb    Feedback
	code  string
	since time.Time
}

// Stats are the simulator's counters (GET /stats).
type Stats struct {
	OrdersSent       int                `json:"ordersSent"`
	Resends          int                `json:"resends"`
	Flagged          int                `json:"flagged"`
	ReceiptsReceived mpssim.StatusCodes `json:"receiptsReceived"` // status → code → count
	LostReceipts     int                `json:"lostReceipts"`
	FeedbackReceived map[string]int     `json:"feedbackReceived"` // kind → count
	ReceiptsSent     mpssim.StatusCodes `json:"receiptsSent"`     // status → code → count
	Unanswered       map[string]int     `json:"unanswered"`       // code → count (steps 1-2)
	Pending          int                `json:"pending"`
}

// New loads the keys and the script and returns a simulator ready to Run.
func New(cfg Config) (*Sim, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := keystore.Load(cfg.KeyDir, keystore.LoadOptions{Passphrase: cfg.Passphrase})
	if err != nil {
		return nil, fmt.Errorf("citysim: %w", err)
	}
	if keys.Node() != citybus.NodeCity {
		cfg.Logger.Warn("the simulator's key directory is not the city bureau's", "node", keys.Node(), "want", citybus.NodeCity)
	}
	if p, ok := keys.Peer(cfg.HubNode); !ok || p.Enc == nil || len(p.Sign) == 0 {
		return nil, fmt.Errorf("citysim: %s holds no public keys of the hub node %s (peers/%s/; see zhianhub keys gen --demo-peers)", cfg.KeyDir, cfg.HubNode, cfg.HubNode)
	}
	v, err := contracts.NewValidator(contracts.Config{})
	if err != nil {
		return nil, fmt.Errorf("citysim: %w", err)
	}
	pv := payloadValidator{v: v}
	opener, err := envelope.NewOpener(envelope.OpenerConfig{Keys: keys, Kinds: pv, Payload: pv, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("citysim: %w", err)
	}
	sealer, err := envelope.NewSealer(envelope.SealerConfig{Keys: keys, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("citysim: %w", err)
	}
	stale, err := envelope.NewSealer(envelope.SealerConfig{Keys: keys, Now: func() time.Time { return cfg.Now().Add(-mpssim.StaleAge) }, KeyMaxAge: -1})
	if err != nil {
		return nil, fmt.Errorf("citysim: %w", err)
	}
	var script []json.RawMessage
	if cfg.ScriptPath != "" {
		if script, err = LoadScript(cfg.ScriptPath); err != nil {
			return nil, err
		}
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	fs := make(map[mpssim.Fault]float64, len(cfg.Faults))
	for f, p := range cfg.Faults {
		fs[f] = p
	}
	return &Sim{
		cfg: cfg, log: cfg.Logger.With("sim", "city", "node", keys.Node()), keys: keys, validator: v,
		opener: opener, sealer: sealer, stale: stale, script: script, running: make(chan struct{}),
		rng: rand.New(rand.NewPCG(seed, ^seed)), serials: map[string]bool{},
		out: map[string]*outMsg{}, pending: map[string]*outMsg{},
		outcomes: map[string]*outcome{}, next: map[seqKey]int64{}, held: map[seqKey]map[int64]*heldMsg{},
		faults: fs,
		stats: Stats{ReceiptsReceived: mpssim.StatusCodes{}, FeedbackReceived: map[string]int{},
			ReceiptsSent: mpssim.StatusCodes{}, Unanswered: map[string]int{}},
	}, nil
}

// payloadValidator adapts the city contract to the envelope's step 6: the
// simulator receives feedback.* and receipts.
type payloadValidator struct{ v *contracts.Validator }

func (p payloadValidator) Known(kind string) bool {
	return contracts.CityKnown(kind) && kind != contracts.KindDispatchOrder
}

func (p payloadValidator) ValidatePayload(kind string, payload []byte) error {
	_, err := p.v.ValidateCityPayload(kind, payload)
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

// Running is closed once the simulator consumes its queue.
func (s *Sim) Running() <-chan struct{} { return s.running }

// ControlAddr is the address of the control API ("" when off).
func (s *Sim) ControlAddr() string { a, _ := s.controlAddr.Load().(string); return a }

// Run runs the simulator until ctx ends.
func (s *Sim) Run(ctx context.Context) error {
	if s.started.Swap(true) {
		return errors.New("citysim: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var srv *http.Server
	if s.cfg.ControlAddr != "" {
		ln, err := net.Listen("tcp", s.cfg.ControlAddr)
		if err != nil {
			return fmt.Errorf("citysim: control API: %w", err)
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
	s.log.Info("simulator starting", "exchange", s.cfg.Exchange, "hub", s.cfg.HubNode, "rate", s.cfg.Rate, "script", len(s.script), "faults", s.FaultProbabilities())
	s.wg.Go(func() { mpssim.KeepSession(ctx, s.log, s.session) })
	s.wg.Go(func() { mpssim.Every(ctx, mpssim.Tick(s.cfg.Resend.Initial), s.resendDue) })
	s.wg.Go(func() { mpssim.Every(ctx, mpssim.Tick(s.cfg.GapTimeout), s.expireGaps) })
	s.wg.Go(func() { s.runScript(ctx) })
	if s.cfg.Rate > 0 {
		s.wg.Go(func() {
			mpssim.Every(ctx, time.Duration(float64(time.Second)/s.cfg.Rate), func(ctx context.Context) {
				if _, err := s.SendOrder(ctx, nil, s.randomFault()); err != nil && !errors.Is(err, errNotConnected) {
					s.log.Warn("random order not sent", "err", err)
				}
			})
		})
	}
	<-ctx.Done()
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
	s.wg.Wait()
	st := s.Stats()
	s.log.Info("simulator stopped", "orders", st.OrdersSent, "resends", st.Resends, "feedback", st.FeedbackReceived)
	return nil
}

func (s *Sim) publish(ctx context.Context, to, kind, id string, env []byte) error {
	s.pubMu.RLock()
	p := s.pub
	s.pubMu.RUnlock()
	if p == nil {
		return errNotConnected
	}
	return p.Publish(ctx, citybus.RoutingKey(to, kind), mpsbus.Publishing(env, id, kind, s.cfg.Now()))
}

// session declares the bus (the city bureau owns it), its queue and the
// hub's, and handles deliveries until the connection fails or ctx ends.
func (s *Sim) session(ctx context.Context) (bool, error) {
	conn, err := amqp.DialConfig(s.cfg.AMQPURL, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second), Properties: amqp.Table{"connection_name": s.cfg.ConnectionName}})
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, err
	}
	if err := citybus.DeclareBus(ch, s.cfg.Exchange); err != nil {
		return false, err
	}
	queue, err := citybus.DeclareNodeQueue(ch, s.cfg.Exchange, s.keys.Node())
	if err != nil {
		return false, err
	}
	if _, err := citybus.DeclareNodeQueue(ch, s.cfg.Exchange, s.cfg.HubNode); err != nil {
		return false, err
	}
	pub, err := mpsbus.NewPublisher(conn, mpsbus.PublisherConfig{Exchange: s.cfg.Exchange})
	if err != nil {
		return false, err
	}
	defer pub.Close()
	if err := ch.Qos(s.cfg.Prefetch, 0, false); err != nil {
		return false, err
	}
	deliveries, err := ch.Consume(queue, s.cfg.ConnectionName, false, true, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", queue, err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	s.pubMu.Lock()
	s.pub = pub
	s.pubMu.Unlock()
	defer func() { s.pubMu.Lock(); s.pub = nil; s.pubMu.Unlock() }()
	s.runningOnce.Do(func() { close(s.running) })
	s.log.Info("bus ready", "exchange", s.cfg.Exchange, "queue", queue, "hubQueue", citybus.NodeQueue(s.cfg.Exchange, s.cfg.HubNode))
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
				_ = d.Nack(false, true)
				return true, fmt.Errorf("delivery %s requeued: %w", d.MessageId, err)
			}
			_ = d.Ack(false)
		}
	}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }
