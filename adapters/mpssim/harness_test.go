package mpssim_test

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

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpsbus"
	"zhianhub/adapters/mpssim"
	"zhianhub/contracts"
	"zhianhub/crypto"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
)

// amqpURL is the broker of the tests: ZHIANHUB_TEST_AMQP_URL, else the local
// development RabbitMQ.
func amqpURL() string {
	if u := os.Getenv("ZHIANHUB_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/%2f"
}

// keyDirs generates the key directories of the Ministry and the hub, each
// trusting the other.
func keyDirs(t *testing.T) (ministry, hub string) {
	t.Helper()
	dir := t.TempDir()
	ministry, hub = filepath.Join(dir, "ministry"), filepath.Join(dir, "hub")
	if err := keystore.Generate(ministry, mpsbus.NodeMinistry, nil); err != nil {
		t.Fatal(err)
	}
	if err := keystore.Generate(hub, mpsbus.NodeShanghai, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.ExportPublic(ministry, keystore.LoadOptions{}, filepath.Join(hub, "peers")); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.ExportPublic(hub, keystore.LoadOptions{}, filepath.Join(ministry, "peers")); err != nil {
		t.Fatal(err)
	}
	return ministry, hub
}

// payloadValidator adapts the contracts to the envelope's step 6 (as the
// hub does).
type payloadValidator struct{ v *contracts.Validator }

func (p payloadValidator) Known(kind string) bool { return contracts.Known(kind) }

func (p payloadValidator) ValidatePayload(kind string, payload []byte) error {
	_, err := p.v.ValidatePayload(kind, payload)
	if err == nil {
		return nil
	}
	return &envelope.Error{Code: envelope.Code(contracts.ErrorCode(err)), Step: 6, Err: err}
}

// hubMsg is a message the test hub received, opened with the hub's keys.
type hubMsg struct {
	d   amqp.Delivery
	msg *envelope.Message
	err error
}

func (m hubMsg) code() envelope.Code { return envelope.CodeOf(m.err) }

func (m hubMsg) receipt(t *testing.T) contracts.Receipt {
	t.Helper()
	var r contracts.Receipt
	if m.err != nil || m.msg.Kind != contracts.KindReceipt {
		t.Fatalf("not a valid receipt: %v", m.err)
	}
	if err := json.Unmarshal(m.msg.Payload, &r); err != nil {
		t.Fatal(err)
	}
	if m.msg.Corr != r.Ref {
		t.Errorf("receipt corr %s != ref %s", m.msg.Corr, r.Ref)
	}
	return r
}

// harness runs a simulator on a unique exchange and plays the hub.
type harness struct {
	t        *testing.T
	sim      *mpssim.Sim
	cfg      mpssim.Config
	exchange string
	hubKeys  *keystore.Store
	sealer   *envelope.Sealer
	opener   *envelope.Opener
	pub      *mpsbus.Publisher
	gen      *mpssim.Generator
	ctx      context.Context

	mu      sync.Mutex
	got     []hubMsg
	changed chan struct{} // closed and replaced on each message
}

func newHarness(t *testing.T, configure ...func(*mpssim.Config)) *harness {
	t.Helper()
	ministryDir, hubDir := keyDirs(t)
	var b [6]byte
	rand.Read(b[:])
	h := &harness{t: t, exchange: "zhianhub.test.mpssim." + hex.EncodeToString(b[:]), changed: make(chan struct{})}

	conn, err := amqp.Dial(amqpURL())
	if err != nil {
		t.Fatalf("RabbitMQ at %s: %v (see /work/shared/specs/local-services.md)", amqpURL(), err)
	}
	t.Cleanup(func() { conn.Close() })
	// Registered first, so it runs last: delete what the test declared.
	t.Cleanup(func() {
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer ch.Close()
		for _, node := range []string{mpsbus.NodeMinistry, mpsbus.NodeShanghai} {
			if _, err := ch.QueueDelete(mpsbus.NodeQueue(h.exchange, node), false, false, false); err != nil {
				t.Errorf("delete queue: %v", err)
			}
		}
		if err := ch.ExchangeDelete(h.exchange, false, false); err != nil {
			t.Errorf("delete exchange: %v", err)
		}
	})

	h.cfg = mpssim.Config{
		AMQPURL:     amqpURL(),
		Exchange:    h.exchange,
		KeyDir:      ministryDir,
		Resend:      mpssim.ResendPolicy{Initial: 200 * time.Millisecond, Max: time.Second, GiveUp: time.Minute},
		GapTimeout:  400 * time.Millisecond,
		ControlAddr: "127.0.0.1:0",
		Seed:        7,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, c := range configure {
		c(&h.cfg)
	}
	h.sim, err = mpssim.New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- h.sim.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("simulator did not stop")
		}
	})
	select {
	case <-h.sim.Running():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("simulator not running after 10 s")
	}

	// The hub side.
	if h.hubKeys, err = keystore.Load(hubDir, keystore.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if h.sealer, err = envelope.NewSealer(envelope.SealerConfig{Keys: h.hubKeys}); err != nil {
		t.Fatal(err)
	}
	v, err := contracts.NewValidator(contracts.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if h.opener, err = envelope.NewOpener(envelope.OpenerConfig{Keys: h.hubKeys, Kinds: payloadValidator{v}, Payload: payloadValidator{v}}); err != nil {
		t.Fatal(err)
	}
	if h.pub, err = mpsbus.NewPublisher(conn, mpsbus.PublisherConfig{Exchange: h.exchange}); err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := mpsbus.CheckBus(ch, h.exchange); err != nil {
		t.Fatal(err)
	}
	// The hub declares its queue exactly as the simulator did.
	queue, err := mpsbus.DeclareNodeQueue(ch, h.exchange, mpsbus.NodeShanghai)
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for d := range deliveries {
			msg, err := h.opener.Open(d.Body)
			h.mu.Lock()
			h.got = append(h.got, hubMsg{d: d, msg: msg, err: err})
			close(h.changed)
			h.changed = make(chan struct{})
			h.mu.Unlock()
		}
	}()
	if h.gen, err = mpssim.NewGenerator(mpssim.GeneratorConfig{Seed: 99}); err != nil {
		t.Fatal(err)
	}
	return h
}

// file seals payload as the hub and publishes it to the Ministry; id ""
// means a new id. It returns the id.
func (h *harness) file(kind string, payload []byte, id string) string {
	h.t.Helper()
	env, id, err := h.sealer.Seal(envelope.Outgoing{ID: id, Kind: kind, To: mpsbus.NodeMinistry, Payload: payload})
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishRaw(kind, id, env)
	return id
}

func (h *harness) publishRaw(kind, id string, env []byte) {
	h.t.Helper()
	if err := h.pub.Publish(context.Background(), mpsbus.RoutingKey(mpsbus.NodeMinistry, kind), mpsbus.Publishing(env, id, kind, time.Now())); err != nil {
		h.t.Fatal(err)
	}
}

// answer sends the hub's receipt for a downward message.
func (h *harness) answer(ref, status, code string) {
	h.t.Helper()
	reason := ""
	if code != contracts.CodeAccepted {
		reason = "测试拒收"
	}
	p, _ := json.Marshal(contracts.Receipt{Ref: ref, Status: status, Code: code, Reason: reason, At: time.Now()})
	env, id, err := h.sealer.Seal(envelope.Outgoing{Kind: contracts.KindReceipt, To: mpsbus.NodeMinistry, Corr: ref, Payload: p})
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishRaw(contracts.KindReceipt, id, env)
}

// waitFor waits until pred holds for the messages received, or fails.
func (h *harness) waitFor(what string, timeout time.Duration, pred func([]hubMsg) bool) []hubMsg {
	h.t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		got, changed := append([]hubMsg(nil), h.got...), h.changed
		h.mu.Unlock()
		if pred(got) {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			h.t.Fatalf("timeout waiting for %s (%d messages received)", what, len(got))
		}
	}
}

// receipts returns the receipts for ref received so far.
func receiptsFor(got []hubMsg, ref string) []hubMsg {
	var out []hubMsg
	for _, m := range got {
		if m.err == nil && m.msg.Kind == contracts.KindReceipt && m.msg.Corr == ref {
			out = append(out, m)
		}
	}
	return out
}

// receipt waits for the n-th receipt (1-based) for ref.
func (h *harness) receipt(ref string, n int) contracts.Receipt {
	h.t.Helper()
	got := h.waitFor("receipt for "+ref, 5*time.Second, func(got []hubMsg) bool { return len(receiptsFor(got, ref)) >= n })
	return receiptsFor(got, ref)[n-1].receipt(h.t)
}

// noReceipt checks that no receipt for ref arrives within d.
func (h *harness) noReceipt(ref string, d time.Duration) {
	h.t.Helper()
	time.Sleep(d)
	h.mu.Lock()
	defer h.mu.Unlock()
	if rs := receiptsFor(h.got, ref); len(rs) > 0 {
		h.t.Fatalf("unexpected receipt for %s", ref)
	}
}

// byID returns the messages with envelope id (message_id) id.
func byID(got []hubMsg, id string) []hubMsg {
	var out []hubMsg
	for _, m := range got {
		if m.d.MessageId == id {
			out = append(out, m)
		}
	}
	return out
}

// person is a generated person's story as payloads, by kind, so that tests
// can file them in any order with any seq.
type person struct {
	no       string
	payloads map[string][]byte
}

func (h *harness) newPerson() person {
	st := h.gen.NewStory(time.Now())
	p := person{no: st.PersonNo, payloads: map[string][]byte{}}
	for seq := int64(1); ; seq++ {
		kind, payload, ok := st.Next(time.Now(), seq)
		if !ok {
			return p
		}
		p.payloads[kind] = payload
	}
}

// payload returns the person's payload of kind with seq and the edits
// (a nil value deletes the member).
func (p person) payload(t *testing.T, kind string, seq int64, edits ...any) []byte {
	t.Helper()
	return edit(t, p.payloads[kind], append([]any{"seq", seq}, edits...)...)
}

func edit(t *testing.T, payload []byte, kv ...any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// strangerSealer seals as node 310000000000 with a key nobody knows.
func strangerSealer(t *testing.T, keys *keystore.Store) *envelope.Sealer {
	t.Helper()
	k, err := crypto.GenerateSM2()
	if err != nil {
		t.Fatal(err)
	}
	s, err := envelope.NewSealer(envelope.SealerConfig{Keys: otherSigner{keys, k}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type otherSigner struct {
	*keystore.Store
	signer crypto.Signer
}

func (o otherSigner) Signer() crypto.Signer { return o.signer }
