package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/api"
	"zhianhub/adapters/auth"
	"zhianhub/adapters/citybus"
	"zhianhub/adapters/httpapi"
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
	"zhianhub/store/inbox"
	"zhianhub/store/journal"
	"zhianhub/store/logs"
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

// harness is a whole hub (inbound route, relay, filing service, HTTP API)
// on a database and a bus exchange of the test's own, with the Ministry
// played by the test: it seals downward messages and receipts and reads
// what the hub publishes to the Ministry's queue.
type harness struct {
	t        *testing.T
	pool     *pgxpool.Pool
	exchange string
	minKeys  *keystore.Store
	sealer   *envelope.Sealer // the Ministry's
	opener   *envelope.Opener // the Ministry's
	registry *registry.Registry
	dispatch *dispatch.Store      // the city bus's Registry
	toCity   <-chan amqp.Delivery // what the hub publishes on the city bus
	cityOpen *envelope.Opener     // the city bureau's
	audit    *audit.Writer
	oplog    *logs.Writer
	ch       *amqp.Channel
	toMin    <-chan amqp.Delivery
	held     []fromHub // read from toMin, not yet collected
	srv      *httptest.Server
	url      string          // of the API server (srv's, or server's with timeouts)
	server   *httpapi.Server // started for real with harnessOpts.timeouts
	client   *http.Client    // of srv; a test may swap it (another TLS client certificate)
	header   http.Header     // sent with every request when set
	doc      *openAPIDoc
	live     *inbox.Listener    // the inbox streams' listener
	stopLive context.CancelFunc // stops live (as the hub's shutdown does)
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

type harnessOpts struct {
	noDevIdentity bool
	// authn, when set, makes the authenticator (after the database exists).
	authn func(h *harness) auth.Authenticator
	// tls, when set, serves the API over TLS with this configuration.
	tls    *tls.Config
	resend routes.ResendPolicy
	// maxExportRows is api.Config.MaxExportRows (0: the default).
	maxExportRows int
	// noCityBus mounts the API without the city bus's feedback filing.
	noCityBus bool
	// heartbeat is api.Config.Heartbeat (0: the default).
	heartbeat time.Duration
	// timeouts, when set, serves the API with httpapi.Server itself (not
	// httptest), with this read and write timeout.
	timeouts time.Duration
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, pool: storetest.NewPool(t), doc: loadOpenAPI(t)}
	root := t.TempDir()
	hubDir, minDir, cityDir := filepath.Join(root, "hub"), filepath.Join(root, "ministry"), filepath.Join(root, "city")
	must(t, keystore.Generate(hubDir, hubNode, nil))
	must(t, keystore.Generate(minDir, ministry, nil))
	must(t, keystore.Generate(cityDir, cityNode, nil))
	_, err := keystore.ExportPublic(hubDir, keystore.LoadOptions{}, filepath.Join(minDir, "peers"))
	must(t, err)
	_, err = keystore.ExportPublic(minDir, keystore.LoadOptions{}, filepath.Join(hubDir, "peers"))
	must(t, err)
	_, err = keystore.ExportPublic(hubDir, keystore.LoadOptions{}, filepath.Join(cityDir, "peers"))
	must(t, err)
	_, err = keystore.ExportPublic(cityDir, keystore.LoadOptions{}, filepath.Join(hubDir, "peers"))
	must(t, err)
	cityKeys, err := keystore.Load(cityDir, keystore.LoadOptions{})
	must(t, err)
	hubKeys, err := keystore.Load(hubDir, keystore.LoadOptions{})
	must(t, err)
	h.minKeys, err = keystore.Load(minDir, keystore.LoadOptions{})
	must(t, err)

	b := make([]byte, 4)
	rand.Read(b)
	h.exchange = "test.api." + hex.EncodeToString(b)
	conn, err := amqp.Dial(amqpURL)
	must(t, err)
	h.ch, err = conn.Channel()
	must(t, err)
	must(t, mpsbus.DeclareBus(h.ch, h.exchange))
	hubQueue, err := mpsbus.DeclareNodeQueue(h.ch, h.exchange, hubNode)
	must(t, err)
	minQueue, err := mpsbus.DeclareNodeQueue(h.ch, h.exchange, ministry)
	must(t, err)
	cityExchange := h.exchange + ".city"
	must(t, citybus.DeclareBus(h.ch, cityExchange))
	cityQueue, err := citybus.DeclareNodeQueue(h.ch, cityExchange, cityNode)
	must(t, err)
	t.Cleanup(func() {
		h.stop()
		h.ch.QueueDelete(hubQueue, false, false, false)
		h.ch.QueueDelete(minQueue, false, false, false)
		h.ch.QueueDelete(cityQueue, false, false, false)
		h.ch.ExchangeDelete(h.exchange, false, false)
		h.ch.ExchangeDelete(cityExchange, false, false)
		conn.Close()
	})
	h.toCity, err = h.ch.Consume(cityQueue, "", true, false, false, false, nil)
	must(t, err)
	h.toMin, err = h.ch.Consume(minQueue, "", true, false, false, false, nil)
	must(t, err)

	ctx := context.Background()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	validator, err := contracts.NewValidator(contracts.Config{})
	must(t, err)
	kr, err := fieldenc.Open(ctx, store.NewDataKeys(h.pool), hubKeys)
	must(t, err)
	h.registry, err = registry.New(registry.Config{Keyring: kr, Validator: validator})
	must(t, err)
	h.audit, err = audit.NewWriter(h.pool, audit.WriterConfig{Signer: hubKeys.Signer(), Logger: logger})
	must(t, err)
	dl, err := deadletter.New(h.pool, deadletter.Config{Cipher: kr, Auditor: h.audit, Actor: hubNode})
	must(t, err)
	jr := journal.New(h.pool)
	checker := transforms.Checker{Validator: validator}
	kinds := envelope.KindSet{}
	for _, k := range contracts.Kinds() {
		kinds[k] = true
	}
	hubOpener, err := envelope.NewOpener(envelope.OpenerConfig{Keys: hubKeys, Kinds: kinds})
	must(t, err)
	hubSealer, err := envelope.NewSealer(envelope.SealerConfig{Keys: hubKeys})
	must(t, err)
	resend := o.resend
	if resend == (routes.ResendPolicy{}) {
		resend = routes.ResendPolicy{Initial: time.Hour, Max: time.Hour, GiveUp: 24 * time.Hour}
	}
	relay, err := routes.NewRelay(routes.RelayConfig{Pool: h.pool, AMQPURL: amqpURL, Sealer: hubSealer, Cipher: kr, Journal: jr, Audit: h.audit,
		Logger: logger, Resend: resend, PollInterval: 50 * time.Millisecond, RetryDelay: 100 * time.Millisecond})
	must(t, err)
	inbound, err := routes.NewInbound(routes.InboundConfig{
		Node: hubNode, Pool: h.pool, AMQPURL: amqpURL, Queue: hubQueue, Exchange: h.exchange, RoutingKey: mpsbus.RoutingKey,
		Opener: hubOpener, Payloads: checker, Registry: h.registry, Cipher: kr, Journal: jr, Audit: h.audit, DeadLetters: dl,
		Logger: logger, Notify: relay.Notify, GapSweep: 50 * time.Millisecond,
	})
	must(t, err)
	filing, err := routes.NewFiling(routes.FilingConfig{Pool: h.pool, Self: hubNode, To: ministry, Exchange: h.exchange,
		RoutingKey: mpsbus.RoutingKey, Payloads: checker, Registry: h.registry, Cipher: kr, Audit: h.audit, Notify: relay.Notify})
	must(t, err)
	h.sealer, err = envelope.NewSealer(envelope.SealerConfig{Keys: h.minKeys})
	must(t, err)
	h.opener, err = envelope.NewOpener(envelope.OpenerConfig{Keys: h.minKeys, Kinds: kinds})
	must(t, err)
	// The city bus: the hub's feedback filing (its inbound route is tested
	// in routes and cmd/zhianhub; orders are stored here with the store).
	h.dispatch = dispatch.New()
	cityFiling, err := routes.NewFiling(routes.FilingConfig{Pool: h.pool, Self: hubNode, To: cityNode, Exchange: cityExchange,
		RoutingKey: citybus.RoutingKey, Ordering: routes.RefOrdering, Payloads: transforms.CityChecker{Validator: validator},
		Registry: h.dispatch, Cipher: kr, Audit: h.audit, Notify: relay.Notify})
	must(t, err)
	cityKinds := envelope.KindSet{}
	for _, k := range contracts.CityKinds() {
		cityKinds[k] = true
	}
	h.cityOpen, err = envelope.NewOpener(envelope.OpenerConfig{Keys: cityKeys, Kinds: cityKinds})
	must(t, err)

	server, err := httpapi.New(httpapi.Config{Addr: "127.0.0.1:0", Logger: logger, ReadTimeout: o.timeouts, WriteTimeout: o.timeouts})
	must(t, err)
	h.oplog, err = logs.NewWriter(logs.Config{FlushInterval: 20 * time.Millisecond})
	must(t, err)
	h.oplog.Start(h.pool)
	var authn auth.Authenticator
	if o.authn != nil {
		authn = o.authn(h)
	}
	h.live, err = inbox.NewListener(inbox.ListenerConfig{Pool: h.pool, Logger: logger})
	must(t, err)
	var feedbacks *citybus.Feedbacks
	if !o.noCityBus {
		feedbacks = &citybus.Feedbacks{Filing: cityFiling, Numbers: h.pool}
	}
	must(t, api.Mount(server.Router(), api.Config{Pool: h.pool, Registry: h.registry, Filing: filing, Audit: h.audit,
		Journal: jr, DevIdentity: !o.noDevIdentity, Logger: logger, Authenticator: authn, MaxExportRows: o.maxExportRows,
		AuditKeys: hubKeys.SelfVerifier, Live: h.live, OperationLog: h.oplog, Keyring: kr, Heartbeat: o.heartbeat,
		Feedbacks: feedbacks}))
	if o.timeouts > 0 {
		must(t, server.Start(ctx))
		h.server, h.url, h.client = server, "http://"+server.Addr(), &http.Client{}
	} else {
		h.srv = httptest.NewUnstartedServer(server.Handler())
		if o.tls != nil {
			h.srv.TLS = o.tls
			h.srv.StartTLS()
		} else {
			h.srv.Start()
		}
		h.url, h.client = h.srv.URL, h.srv.Client()
	}

	rctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	lctx, stopLive := context.WithCancel(rctx)
	h.stopLive = stopLive
	h.wg.Add(3)
	go func() { defer h.wg.Done(); h.live.Run(lctx) }()
	go func() { defer h.wg.Done(); relay.Run(rctx) }()
	go func() { defer h.wg.Done(); inbound.Run(rctx) }()
	return h
}

func (h *harness) stop() {
	if h.stopLive != nil {
		h.stopLive() // the streams end first, as at the hub's shutdown
	}
	if h.srv != nil {
		h.srv.Close()
	}
	if h.server != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h.server.Shutdown(sctx)
		cancel()
		h.server = nil
	}
	if h.cancel != nil {
		h.cancel()
		h.wg.Wait()
		h.cancel = nil
	}
	if h.oplog != nil {
		h.oplog.Close(context.Background())
	}
	if h.audit != nil {
		h.audit.Close(context.Background())
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// user is a development identity.
type user struct {
	id, unit, roles string
}

var (
	officer  = user{id: "li.officer", unit: "310104000000", roles: "officer"}
	reviewer = user{id: "wang.reviewer", unit: "310104000000", roles: "officer, unmask"}
	nobody   = user{}
)

// response is an API answer, checked against the OpenAPI document.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// call sends one request as u and checks that its status is documented
// for the operation and that its body matches the documented schema.
func (h *harness) call(u user, method, path string, body any) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		must(h.t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	must(h.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if u.id != "" {
		req.Header.Set(auth.HeaderDevUser, u.id)
	}
	if u.unit != "" {
		req.Header.Set(auth.HeaderDevUnit, u.unit)
	}
	if u.roles != "" {
		req.Header.Set(auth.HeaderDevRoles, u.roles)
	}
	for k, vs := range h.header {
		req.Header[k] = vs
	}
	resp, err := h.client.Do(req)
	must(h.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(h.t, err)
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	h.doc.check(h.t, method, req.URL.Path, r)
	return r
}

// expectError checks a coded error answer.
func expectError(t *testing.T, r response, status int, code string, msgParts ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	m := r.json(t)
	if m["code"] != code {
		t.Fatalf("code %v, want %s: %s", m["code"], code, r.body)
	}
	for _, p := range msgParts {
		if !strings.Contains(m["message"].(string), p) {
			t.Errorf("message %q lacks %q", m["message"], p)
		}
	}
}

// fromHub is one message the hub sent to the Ministry, opened.
type fromHub struct {
	msg     *envelope.Message
	payload map[string]any
}

// next waits for the next message from the hub to the Ministry.
func (h *harness) next(timeout time.Duration) (fromHub, bool) {
	h.t.Helper()
	select {
	case d := <-h.toMin:
		msg, err := h.opener.Open(d.Body)
		if err != nil {
			h.t.Fatalf("the Ministry cannot open what the hub sent: %v", err)
		}
		r := fromHub{msg: msg}
		must(h.t, json.Unmarshal(msg.Payload, &r.payload))
		return r, true
	case <-time.After(timeout):
		return fromHub{}, false
	}
}

// collect returns the next n receipts (receipts) or the next n other
// messages from the hub, in arrival order; messages of the other sort
// are kept for a later collect.
func (h *harness) collect(n int, receipts bool) []fromHub {
	h.t.Helper()
	var out, keep []fromHub
	for _, r := range h.held {
		if len(out) < n && (r.msg.Kind == contracts.KindReceipt) == receipts {
			out = append(out, r)
		} else {
			keep = append(keep, r)
		}
	}
	for len(out) < n {
		r, ok := h.next(15 * time.Second)
		if !ok {
			h.t.Fatalf("got %d messages, want %d", len(out), n)
		}
		if (r.msg.Kind == contracts.KindReceipt) == receipts {
			out = append(out, r)
		} else {
			keep = append(keep, r)
		}
	}
	h.held = keep
	return out
}

// down seals payload as the Ministry and publishes it to the hub.
func (h *harness) down(kind, corr string, payload any) string {
	h.t.Helper()
	p, err := json.Marshal(payload)
	must(h.t, err)
	env, id, err := h.sealer.Seal(envelope.Outgoing{Kind: kind, To: hubNode, Corr: corr, Payload: p})
	must(h.t, err)
	must(h.t, h.ch.PublishWithContext(context.Background(), h.exchange, mpsbus.RoutingKey(hubNode, kind), false, false,
		mpsbus.Publishing(env, id, kind, time.Now())))
	return id
}

// receipt answers one of the hub's filings as the Ministry.
func (h *harness) receipt(ref, status, code, reason string) {
	h.t.Helper()
	h.down(contracts.KindReceipt, ref, map[string]string{"ref": ref, "status": status, "code": code, "reason": reason,
		"at": time.Now().Format(time.RFC3339)})
}

// auditRow is one stored audit entry.
type auditRow struct {
	Actor, Unit, Role, Action, Object, Result, Reason, CorrelationID string
	Detail                                                           map[string]any
}

// audits returns the audit entries of action, oldest first.
func (h *harness) audits(action string) []auditRow {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT actor, unit, role, action, object, result, reason, correlation_id, detail
		FROM audit_entry WHERE action = $1 ORDER BY seq`, action)
	must(h.t, err)
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var a auditRow
		must(h.t, rows.Scan(&a.Actor, &a.Unit, &a.Role, &a.Action, &a.Object, &a.Result, &a.Reason, &a.CorrelationID, &a.Detail))
		out = append(out, a)
	}
	must(h.t, rows.Err())
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in time", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
