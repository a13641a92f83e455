package routes

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/contracts"
	"zhianhub/crypto"
	"zhianhub/envelope"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
	"zhianhub/store/exchange"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
)

// DeadLetters stores dead letters (rejected or undeliverable messages with
// their raw bytes, stored encrypted, and reason) in the caller's transaction;
// *deadletter.Store satisfies it. Has tells whether a letter like l is
// stored already (a redelivered message).
type DeadLetters interface {
	Put(ctx context.Context, q store.Querier, l deadletter.Letter) (int64, error)
	Has(ctx context.Context, q store.Querier, l deadletter.Letter) (bool, error)
}

// InboundConfig configures the inbound route of one bus queue.
type InboundConfig struct {
	// Node is this node's code (the recipient of the queue's messages).
	Node     string
	Pool     *pgxpool.Pool
	AMQPURL  string
	Queue    string
	Exchange string // the bus exchange, for receipts and dead-letter replay routes
	// RoutingKey gives the routing key of a message to node of kind on the
	// bus (for receipts).
	RoutingKey func(to, kind string) string
	// Ordering is the ordering header of the bus's payloads; default
	// PersonOrdering (the Ministry bus).
	Ordering Ordering
	// EventsExchange receives an internal event per applied message
	// (routing key = kind); "" disables events.
	EventsExchange string

	Opener   *envelope.Opener
	Payloads Payloads
	Registry Registry
	// Cipher encrypts the payloads of messages held for a gap.
	Cipher      Cipher
	Journal     *journal.Journal
	Audit       *audit.Writer
	DeadLetters DeadLetters
	Logger      *slog.Logger
	Now         func() time.Time
	// Notify is called after a commit that put messages in the outbox.
	Notify func()

	// GapTimeout is how long held messages wait for a gap to fill before
	// E140; default 10 minutes. GapSweep is how often that is checked;
	// default GapTimeout/20, at most 5s.
	GapTimeout time.Duration
	GapSweep   time.Duration

	Prefetch   int           // default 1024
	Openers    int           // default GOMAXPROCS
	Shards     int           // default 8
	BatchSize  int           // default 64
	BatchDelay time.Duration // default 2ms
}

func (c *InboundConfig) setDefaults() {
	if c.Prefetch == 0 {
		c.Prefetch = 1024
	}
	if c.Openers == 0 {
		c.Openers = runtime.GOMAXPROCS(0)
	}
	if c.Shards == 0 {
		c.Shards = 8
	}
	if c.BatchSize == 0 {
		c.BatchSize = 64
	}
	if c.BatchDelay == 0 {
		c.BatchDelay = 2 * time.Millisecond
	}
	if c.GapTimeout == 0 {
		c.GapTimeout = 10 * time.Minute
	}
	if c.GapSweep == 0 {
		c.GapSweep = min(c.GapTimeout/20, 5*time.Second)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Notify == nil {
		c.Notify = func() {}
	}
	c.Ordering = c.Ordering.orDefault()
}

// Validate reports a missing dependency.
func (c *InboundConfig) Validate() error {
	var errs []error
	for name, missing := range map[string]bool{
		"Node": !envelope.ValidNode(c.Node), "Pool": c.Pool == nil, "AMQPURL": c.AMQPURL == "", "Queue": c.Queue == "", "Exchange": c.Exchange == "",
		"RoutingKey": c.RoutingKey == nil, "Opener": c.Opener == nil, "Payloads": c.Payloads == nil,
		"Registry": c.Registry == nil, "Cipher": c.Cipher == nil, "Journal": c.Journal == nil, "Audit": c.Audit == nil, "DeadLetters": c.DeadLetters == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("routes: InboundConfig.%s is required", name))
		}
	}
	if c.Prefetch < 1 || c.Openers < 1 || c.Shards < 1 || c.BatchSize < 1 || c.GapTimeout <= 0 || c.GapSweep <= 0 {
		errs = append(errs, errors.New("routes: InboundConfig sizes must be positive"))
	}
	return errors.Join(errs...)
}

// Inbound consumes one bus queue.
type Inbound struct {
	cfg    InboundConfig
	dialer *dialer
	shards []chan *item
	wg     sync.WaitGroup
}

// item is one delivery on its way through the route.
type item struct {
	d      amqp.Delivery
	raw    []byte
	rawSM3 [32]byte

	msg     *envelope.Message // nil when the envelope failed steps 1-2
	openErr error

	// After the payload checks (only when Open succeeded).
	payload   []byte
	typed     any
	cleanings []string
	code      string // "0000" or the payload's rejection code
	reason    string

	personNo string // the ordering key: personNo, or refNo on the city bus
	seq      int64
	ordered  bool
}

// NewInbound returns the route; Run starts it.
func NewInbound(cfg InboundConfig) (*Inbound, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Inbound{cfg: cfg, dialer: newDialer(cfg.AMQPURL, "zhianhub-inbound-"+cfg.Queue, cfg.Logger)}, nil
}

// Run consumes until ctx ends, then finishes the messages in flight (their
// acks) and returns. Unacked messages return to the queue when the channel
// closes: nothing is lost.
func (in *Inbound) Run(ctx context.Context) error {
	opened := make(chan *item, in.cfg.Prefetch)
	in.shards = make([]chan *item, in.cfg.Shards)
	var shardWG sync.WaitGroup
	for i := range in.shards {
		in.shards[i] = make(chan *item, in.cfg.BatchSize*4)
		shardWG.Add(1)
		go func(ch chan *item) {
			defer shardWG.Done()
			in.shardLoop(ch)
		}(in.shards[i])
	}
	raw := make(chan *item, in.cfg.Prefetch)
	var openWG sync.WaitGroup
	for range in.cfg.Openers {
		openWG.Add(1)
		go func() {
			defer openWG.Done()
			for it := range raw {
				in.open(it)
				opened <- it
			}
		}()
	}
	go func() {
		for it := range opened {
			in.shards[in.shardOf(it)] <- it
		}
		for _, ch := range in.shards {
			close(ch)
		}
	}()
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		in.sweepGaps(ctx)
	}()
	err := in.consume(ctx, raw)
	<-sweepDone
	close(raw)
	openWG.Wait()
	close(opened)
	shardWG.Wait()
	in.dialer.close()
	return err
}

// consume reads deliveries until ctx ends, reconnecting on failures.
func (in *Inbound) consume(ctx context.Context, out chan<- *item) error {
	for ctx.Err() == nil {
		conn, err := in.dialer.get(ctx)
		if err != nil {
			return nil // ctx ended while dialling
		}
		ch, err := conn.Channel()
		if err != nil {
			in.cfg.Logger.Warn("amqp channel failed", "err", err)
			time.Sleep(time.Second)
			continue
		}
		if err := ch.Qos(in.cfg.Prefetch, 0, false); err != nil {
			ch.Close()
			continue
		}
		deliveries, err := ch.ConsumeWithContext(ctx, in.cfg.Queue, "", false, false, false, false, nil)
		if err != nil {
			in.cfg.Logger.Error("consume failed", "queue", in.cfg.Queue, "err", err)
			ch.Close()
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
			continue
		}
		in.cfg.Logger.Info("consuming", "queue", in.cfg.Queue)
		for d := range deliveries {
			out <- &item{d: d, raw: d.Body}
		}
		// Deliveries closed: ctx ended or the channel broke. Items in
		// flight still ack on this channel if it is open.
		if ctx.Err() == nil {
			in.cfg.Logger.Warn("consumer channel closed; reconnecting", "queue", in.cfg.Queue)
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

// open applies the envelope rules and the payload checks. CPU only.
func (in *Inbound) open(it *item) {
	it.rawSM3 = crypto.SM3(it.raw)
	it.msg, it.openErr = in.cfg.Opener.Open(it.raw)
	if it.openErr != nil || it.msg == nil {
		if it.msg != nil && it.msg.Payload != nil {
			// Step 6 failures before payload checks (E100 payload, E102):
			// they still fill their place in the sequence when readable.
			it.personNo, it.seq, it.ordered = in.cfg.Ordering.read(it.msg.Payload)
		}
		return
	}
	it.code = string(envelope.CodeOK)
	cleaned, typed, cleanings, err := in.cfg.Payloads.Check(it.msg.Kind, it.msg.Payload)
	it.payload, it.typed, it.cleanings = cleaned, typed, cleanings
	if it.payload == nil {
		it.payload = it.msg.Payload
	}
	if err != nil {
		it.code, it.reason = string(envelope.CodeOf(err)), reasonOf(err)
	}
	if it.msg.Kind == "receipt" {
		return
	}
	if o, ok := it.typed.(contracts.Sequenced); ok && err == nil {
		// Validated: the typed payload holds the ordering header already.
		it.personNo, it.seq = o.SeqKey()
		it.ordered = true
		return
	}
	it.personNo, it.seq, it.ordered = in.cfg.Ordering.read(it.payload)
}

// shardOf keeps every message of one (sender, personNo) on one shard, and
// every receipt answering one message: two batches then never lock the same
// outbox row in opposite orders (a deadlock when a filing's ACCEPTED and
// DUPLICATE receipts wait in the queue together, as after a crash).
func (in *Inbound) shardOf(it *item) int {
	h := fnv.New32a()
	switch {
	case it.ordered:
		h.Write([]byte(it.msg.From))
		h.Write([]byte{0})
		h.Write([]byte(it.personNo))
	case it.msg != nil && it.msg.Kind == "receipt" && it.msg.Corr != "":
		h.Write([]byte(it.msg.From))
		h.Write([]byte{1})
		h.Write([]byte(it.msg.Corr))
	default:
		h.Write(it.rawSM3[:8])
	}
	return int(h.Sum32() % uint32(len(in.shards)))
}

// shardLoop collects batches and processes each in one transaction. A
// message whose (sender, id) is in the batch already (a redelivery or a
// resend) starts the next batch: its claim depends on the first copy's
// outcome.
func (in *Inbound) shardLoop(ch <-chan *item) {
	batch := make([]*item, 0, in.cfg.BatchSize)
	ids := map[claimKey]bool{}
	var carry *item
	for {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = <-ch; !ok {
				return
			}
		}
		batch = append(batch[:0], first)
		clear(ids)
		if first.msg != nil {
			ids[claimKey{first.msg.From, first.msg.ID}] = true
		}
		timer := time.NewTimer(in.cfg.BatchDelay)
	collect:
		for len(batch) < in.cfg.BatchSize {
			select {
			case it, ok := <-ch:
				if !ok {
					break collect
				}
				if it.msg != nil {
					k := claimKey{it.msg.From, it.msg.ID}
					if ids[k] {
						carry = it
						break collect
					}
					ids[k] = true
				}
				batch = append(batch, it)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		in.processBatch(batch)
	}
}

// work is the transaction of a batch. The batch is claimed and its
// ordering keys locked up front (set-wise); the sequence positions are then
// kept here, and the outbox rows, the inbox outcomes, the new positions and
// the journal writes go out set-wise at the end, with the commit. Through
// the Pipe, the remaining per-message writes travel with the next statement
// that needs an answer.
type work struct {
	*store.Pipe
	journal *journal.Pending

	registry *registry.Batch // nil when the Registry cannot batch

	claims   map[claimKey]exchange.ClaimResult
	seqs     map[exchange.Key]exchange.SeqState
	dirty    map[exchange.Key]bool
	outbox   []exchange.Out
	finishes []exchange.Finish
}

type claimKey struct{ sender, id string }

// inTx runs fn in a transaction and commits it with its pending writes.
func (in *Inbound) inTx(ctx context.Context, fn func(tx *work) error) error {
	return store.BeginPipe(ctx, in.cfg.Pool, func(p *store.Pipe) error {
		w := &work{Pipe: p, journal: journal.NewPending(nil), claims: map[claimKey]exchange.ClaimResult{},
			seqs: map[exchange.Key]exchange.SeqState{}, dirty: map[exchange.Key]bool{}}
		if b, ok := in.cfg.Registry.(interface{ NewBatch() *registry.Batch }); ok {
			w.registry = b.NewBatch()
		}
		if err := fn(w); err != nil {
			return err
		}
		return w.flush(ctx)
	})
}

// prepare claims the batch's messages and locks their ordering keys.
func (w *work) prepare(ctx context.Context, batch []*item) error {
	var reqs []exchange.ClaimRequest
	var keys []exchange.Key
	var persons []string
	seen := map[exchange.Key]bool{}
	for _, it := range batch {
		if it.msg == nil {
			continue
		}
		m := it.msg
		reqs = append(reqs, exchange.ClaimRequest{Sender: m.From, ID: m.ID, RawSM3: it.rawSM3[:], Kind: m.Kind, PersonNo: it.personNo, Seq: it.seq})
		if k := (exchange.Key{Sender: m.From, PersonNo: it.personNo}); it.ordered && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
			persons = append(persons, it.personNo)
		}
	}
	claims, err := exchange.ClaimAll(ctx, w, reqs)
	if err != nil {
		return err
	}
	for i, r := range reqs {
		w.claims[claimKey{r.Sender, r.ID}] = claims[i]
	}
	seqs, err := exchange.LockSeqs(ctx, w, keys)
	if err != nil {
		return err
	}
	w.seqs = seqs
	if w.registry != nil {
		return w.registry.Prepare(ctx, w, persons)
	}
	return nil
}

// applyRegistry applies m through the batch when there is one.
func (in *Inbound) applyRegistry(ctx context.Context, w *work, m registry.Message) error {
	if w.registry != nil {
		return w.registry.Apply(ctx, w, m)
	}
	return in.cfg.Registry.Apply(ctx, w, m)
}

// claim returns the claim prepared for it (claiming it now when it was not).
func (w *work) claim(ctx context.Context, it *item) (exchange.Claim, exchange.InboxEntry, error) {
	m := it.msg
	if c, ok := w.claims[claimKey{m.From, m.ID}]; ok {
		delete(w.claims, claimKey{m.From, m.ID}) // a claim is used once
		return c.Claim, c.Prev, nil
	}
	return exchange.ClaimInbound(ctx, w, m.From, m.ID, it.rawSM3[:], m.Kind, it.personNo, it.seq)
}

// seqState returns the position of k, locked in this transaction.
func (w *work) seqState(ctx context.Context, k exchange.Key) (exchange.SeqState, error) {
	if st, ok := w.seqs[k]; ok {
		return st, nil
	}
	next, held, err := exchange.NextSeq(ctx, w, k.Sender, k.PersonNo)
	if err != nil {
		return exchange.SeqState{}, err
	}
	st := exchange.SeqState{Next: next, Held: held}
	w.seqs[k] = st
	return st, nil
}

func (w *work) setSeq(k exchange.Key, st exchange.SeqState) {
	if w.seqs[k].Next != st.Next {
		w.dirty[k] = true
	}
	w.seqs[k] = st
}

func (w *work) enqueue(o exchange.Out) { w.outbox = append(w.outbox, o) }

func (w *work) finish(sender, id, code, reason string) {
	w.finishes = append(w.finishes, exchange.Finish{Sender: sender, ID: id, Code: code, Reason: reason})
}

// flush writes what the batch kept for its end.
func (w *work) flush(ctx context.Context) error {
	if w.registry != nil {
		if err := w.registry.Flush(ctx, w.Pipe); err != nil {
			return err
		}
	}
	next := make(map[exchange.Key]int64, len(w.dirty))
	for k := range w.dirty {
		next[k] = w.seqs[k].Next
	}
	if err := exchange.SetNextSeqs(ctx, w.Pipe, next); err != nil {
		return err
	}
	if err := exchange.EnqueueAll(ctx, w.Pipe, w.outbox); err != nil {
		return err
	}
	if err := exchange.FinishAll(ctx, w.Pipe, w.finishes); err != nil {
		return err
	}
	return w.journal.Flush(ctx, w.Pipe)
}

// processBatch applies a batch in one transaction; if it fails, each item
// gets its own transaction so that one bad message cannot block the others.
func (in *Inbound) processBatch(batch []*item) {
	ctx := context.Background()
	err := in.inTx(ctx, func(tx *work) error {
		if err := tx.prepare(ctx, batch); err != nil {
			return err
		}
		var entries []audit.Entry
		for _, it := range batch {
			e, err := in.process(ctx, tx, it)
			if err != nil {
				return err
			}
			entries = append(entries, e...)
		}
		// The audit entries commit with their effects; the audit writer
		// chains them afterwards.
		return audit.StageBatch(ctx, tx, entries)
	})
	if err != nil {
		in.cfg.Logger.Warn("batch failed; retrying one by one", "size", len(batch), "err", err)
		for _, it := range batch {
			in.processOne(ctx, it)
		}
		return
	}
	in.finish(batch)
}

func (in *Inbound) processOne(ctx context.Context, it *item) {
	err := in.inTx(ctx, func(tx *work) error {
		if err := tx.prepare(ctx, []*item{it}); err != nil {
			return err
		}
		entries, err := in.process(ctx, tx, it)
		if err != nil {
			return err
		}
		return audit.StageBatch(ctx, tx, entries)
	})
	if err != nil {
		in.cfg.Logger.Error("message failed; keeping it as a dead letter", "err", err)
		if err := in.internalError(ctx, it, err); err != nil {
			// The database is unreachable: leave the message to the broker.
			in.cfg.Logger.Error("cannot record the failure; message returned to the queue", "err", err)
			_ = it.d.Nack(false, true)
			return
		}
	}
	in.finish([]*item{it})
}

// finish acks after the commit and wakes the relay and the audit chainer.
func (in *Inbound) finish(batch []*item) {
	for _, it := range batch {
		if err := it.d.Ack(false); err != nil {
			in.cfg.Logger.Warn("ack failed; the broker will redeliver (de-duplicated by the inbox)", "err", err)
		}
	}
	in.cfg.Notify()
	in.cfg.Audit.Notify()
}

// internalError keeps a message that could not be processed (E199): dead
// letter, journal, and a REJECTED E199 receipt when the sender is known, so
// that it resends later.
func (in *Inbound) internalError(ctx context.Context, it *item, cause error) error {
	return pgx.BeginFunc(ctx, in.cfg.Pool, func(tx pgx.Tx) error {
		reason := "接收方内部错误，请稍后重发"
		id, from, kind := "", "", ""
		if it.msg != nil {
			id, from, kind = it.msg.ID, it.msg.From, it.msg.Kind
		}
		if _, err := in.cfg.DeadLetters.Put(ctx, tx, deadletter.Letter{
			Source: "amqp:" + in.cfg.Queue, Exchange: in.cfg.Exchange, RoutingKey: it.d.RoutingKey,
			MessageID: id, Sender: from, Kind: kind, Raw: it.raw, Code: string(envelope.CodeInternal), Reason: reason + ": " + cause.Error(),
		}); err != nil {
			return err
		}
		if err := audit.Stage(ctx, tx, audit.Entry{
			Actor: nodeOr(from), Action: "message.receive", Object: id, Result: string(envelope.CodeInternal),
			Reason: cause.Error(), CorrelationID: id, Detail: map[string]any{"kind": kind, "queue": in.cfg.Queue},
		}); err != nil {
			return err
		}
		if it.msg != nil && it.msg.Kind != "receipt" {
			return exchange.Enqueue(ctx, tx, in.receiptOut(it.msg, StatusRejected, string(envelope.CodeInternal), reason))
		}
		return nil
	})
}
