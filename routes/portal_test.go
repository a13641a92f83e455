package routes_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/auth"
	"zhianhub/contracts/events"
	"zhianhub/routes"
	"zhianhub/store/deadletter"
	"zhianhub/store/lead"
	"zhianhub/store/storetest"
	"zhianhub/store/warning"
)

// portalRig runs the portal route on an events exchange and a queue of the
// test's own, against a database of its own.
type portalRig struct {
	t        *testing.T
	pool     *pgxpool.Pool
	ch       *amqp.Channel
	exchange string
	reg      *events.Registry
	dl       *deadletter.Store
}

func newPortalRig(t *testing.T) *portalRig {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	r := &portalRig{t: t, pool: storetest.NewPool(t), exchange: "test.events." + suffix}
	queue := "test.portal." + suffix
	conn, err := amqp.Dial(amqpURL)
	must(t, err)
	r.ch, err = conn.Channel()
	must(t, err)
	must(t, routes.DeclarePortal(r.ch, r.exchange, queue))
	r.reg, err = events.NewRegistry()
	must(t, err)
	kr := storetest.Keyring(t, r.pool)
	r.dl, err = deadletter.New(r.pool, deadletter.Config{Cipher: kr})
	must(t, err)
	ws, err := warning.New(warning.Config{Pool: r.pool, Units: auth.DemoUnitTree()})
	must(t, err)
	ls, err := lead.New(lead.Config{Pool: r.pool, Keyring: kr})
	must(t, err)
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	p, err := routes.NewPortal(routes.PortalConfig{AMQPURL: amqpURL, Pool: r.pool, Contracts: r.reg, DeadLetters: r.dl,
		Warnings: ws, Leads: ls, Logger: logger, Exchange: r.exchange, Queue: queue})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		r.ch.QueueDelete(queue, false, false, false)
		r.ch.ExchangeDelete(r.exchange, false, false)
		conn.Close()
	})
	return r
}

// event returns the contract's example of kind with messageId id and the
// data members in set changed (a nil value removes the member).
func (r *portalRig) event(kind, id string, set map[string]any) []byte {
	r.t.Helper()
	ev, ok := r.reg.Get(kind)
	if !ok {
		r.t.Fatalf("no contract %s", kind)
	}
	var m map[string]any
	must(r.t, json.Unmarshal([]byte(ev.Example), &m))
	m["messageId"] = id
	data := m["data"].(map[string]any)
	for k, v := range set {
		if v == nil {
			delete(data, k)
		} else {
			data[k] = v
		}
	}
	b, err := json.Marshal(m)
	must(r.t, err)
	return b
}

func (r *portalRig) publish(kind string, body []byte) {
	r.t.Helper()
	must(r.t, r.ch.PublishWithContext(context.Background(), r.exchange, kind, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: messageID(body), Body: body}))
}

func messageID(body []byte) string {
	var m struct {
		MessageID string `json:"messageId"`
	}
	_ = json.Unmarshal(body, &m)
	return m.MessageID
}

func (r *portalRig) count(sql string, args ...any) int {
	r.t.Helper()
	var n int
	must(r.t, r.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// TestPortalRoute: against RabbitMQ and PostgreSQL, the same warning.issued
// twice (same messageId) and once more under another messageId give one
// warning and one inbox item; lead.registered twice gives one lead, and a
// lead with the same text in other widths and spacing is merged into it;
// unusable events are dead letters with their raw bytes and reasons, and
// the route goes on.
func TestPortalRoute(t *testing.T) {
	r := newPortalRig(t)
	issued := r.event(events.KindWarningIssued, uuid.NewString(), nil)
	r.publish(events.KindWarningIssued, issued)
	r.publish(events.KindWarningIssued, issued)
	r.publish(events.KindWarningIssued, r.event(events.KindWarningIssued, uuid.NewString(), nil))

	invalid := r.event(events.KindWarningIssued, uuid.NewString(), map[string]any{"title": nil, "warningId": "31000020261127000002"})
	r.publish(events.KindWarningIssued, invalid)
	noUnit := r.event(events.KindWarningIssued, uuid.NewString(), map[string]any{"unit": "319999000000", "warningId": "31000020261127000003"})
	r.publish(events.KindWarningIssued, noUnit)
	r.publish(events.KindWarningSigned, r.event(events.KindWarningSigned, uuid.NewString(), nil)) // not bound: never arrives

	registered := r.event(events.KindLeadRegistered, uuid.NewString(), nil)
	r.publish(events.KindLeadRegistered, registered)
	r.publish(events.KindLeadRegistered, registered)
	r.publish(events.KindLeadRegistered, r.event(events.KindLeadRegistered, uuid.NewString(), map[string]any{
		"leadId": "31010420261127000043", "content": "群众反映某小区夜间有可疑人员聚集　（测试数据）\n", "officer": "1023999"}))
	conflict := r.event(events.KindLeadRegistered, uuid.NewString(), map[string]any{"content": "另一条线索（测试数据）"})
	r.publish(events.KindLeadRegistered, conflict)
	// Sentinel: handled last (one consumer, in order).
	r.publish(events.KindWarningIssued, r.event(events.KindWarningIssued, uuid.NewString(), map[string]any{"warningId": "31000020261127000099"}))

	deadline := time.Now().Add(20 * time.Second)
	for r.count(`SELECT count(*) FROM warning WHERE warning_id = '31000020261127000099'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sentinel warning did not arrive")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if n := r.count(`SELECT count(*) FROM warning WHERE warning_id = '31000020261127000001'`); n != 1 {
		t.Errorf("%d warnings of 001", n)
	}
	if n := r.count(`SELECT count(*) FROM inbox_item WHERE recipient = '310104000000' AND kind = 'warning' AND ref = '31000020261127000001'`); n != 1 {
		t.Errorf("%d inbox items of 001", n)
	}
	var source, msg string
	must(t, r.pool.QueryRow(context.Background(), `SELECT source, message_id::text FROM warning WHERE warning_id = '31000020261127000001'`).Scan(&source, &msg))
	if source != "analysis" || msg != messageID(issued) {
		t.Errorf("warning from %q by event %s", source, msg)
	}
	if n := r.count(`SELECT count(*) FROM lead`); n != 2 {
		t.Errorf("%d leads, want 2", n)
	}
	var merged string
	must(t, r.pool.QueryRow(context.Background(), `SELECT coalesce(merged_into, '') FROM lead WHERE lead_id = '31010420261127000043'`).Scan(&merged))
	if merged != "31010420261127000042" {
		t.Errorf("the same text was not merged: merged_into %q", merged)
	}
	if n := r.count(`SELECT count(*) FROM portal_event_seen`); n != 5 {
		t.Errorf("%d events seen, want 5 (three warnings, two leads)", n)
	}

	// Dead letters: raw bytes (stored only encrypted: a lead's text is
	// personal data), code, reason.
	for _, tc := range []struct {
		body []byte
		code string
	}{{invalid, "E120"}, {noUnit, "E122"}, {conflict, "E130"}} {
		var id int64
		var stored []byte
		var encrypted bool
		err := r.pool.QueryRow(context.Background(), `SELECT id, raw, raw_encrypted FROM dead_letter WHERE message_id = $1`,
			messageID(tc.body)).Scan(&id, &stored, &encrypted)
		if err != nil {
			t.Errorf("no dead letter for a %s event: %v", tc.code, err)
			continue
		}
		if !encrypted || bytes.Contains(stored, tc.body) {
			t.Errorf("%s dead letter stored in clear (raw_encrypted %v)", tc.code, encrypted)
		}
		l, err := r.dl.Get(context.Background(), id)
		if err != nil {
			t.Errorf("%s dead letter: %v", tc.code, err)
			continue
		}
		if string(l.Raw) != string(tc.body) || l.Code != tc.code || l.Reason == "" {
			t.Errorf("dead letter %s %q, raw kept: %v", l.Code, l.Reason, string(l.Raw) == string(tc.body))
		}
	}
	if n := r.count(`SELECT count(*) FROM dead_letter`); n != 3 {
		t.Errorf("%d dead letters, want 3", n)
	}
}
