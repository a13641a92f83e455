package routes_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/auth"
	"zhianhub/contracts/events"
	"zhianhub/routes"
	"zhianhub/store/deadletter"
	"zhianhub/store/inbox"
	"zhianhub/store/push"
	"zhianhub/store/storetest"
)

// TestPushRoute: events on an events exchange of the test's own become
// inbox items of the owners of the matching rules (kind, category, level,
// unit scope) — once per owner even when the event arrives twice or
// matches two of an owner's rules — with one push.delivered in the outbox
// per new item; an event breaking its contract is kept as a dead letter.
func TestPushRoute(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	reg, err := events.NewRegistry()
	must(t, err)
	dl, err := deadletter.New(pool, deadletter.Config{Cipher: storetest.Keyring(t, pool)})
	must(t, err)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	exc, queue := "test.events."+hex.EncodeToString(b), "test.events."+hex.EncodeToString(b)+".push"

	const xuhui, changning = "310104000000", "310105000000"
	rules := []push.Rule{
		{OwnerKind: push.ToUser, Owner: "1023456", OwnerUnit: xuhui, EventKind: events.KindWarningIssued, Category: "0301", UnitScope: xuhui, MaxLevel: 2},
		{OwnerKind: push.ToUser, Owner: "1023456", OwnerUnit: xuhui, EventKind: events.KindWarningIssued}, // the same owner again
		{OwnerKind: push.ToUnit, Owner: xuhui, OwnerUnit: xuhui, EventKind: events.KindWarningIssued, UnitScope: "310104000000"},
		{OwnerKind: push.ToUser, Owner: "city.watch", OwnerUnit: "310000000000", EventKind: events.KindWarningIssued, UnitScope: ""},
		{OwnerKind: push.ToUser, Owner: "other.unit", OwnerUnit: changning, EventKind: events.KindWarningIssued, UnitScope: changning},
		{OwnerKind: push.ToUser, Owner: "urgent.only", OwnerUnit: xuhui, EventKind: events.KindWarningIssued, MaxLevel: 1},
		{OwnerKind: push.ToUser, Owner: "other.category", OwnerUnit: xuhui, EventKind: events.KindWarningIssued, Category: "0105"},
		{OwnerKind: push.ToUser, Owner: "leads", OwnerUnit: xuhui, EventKind: events.KindLeadRegistered, UnitScope: xuhui},
		{OwnerKind: push.ToUnit, Owner: "310104010000", OwnerUnit: "310104010000", EventKind: events.KindWarningIssued, UnitScope: "310104010000"}, // below the event's unit
	}
	for _, r := range rules {
		r.CreatedBy = "test"
		_, err := push.Create(ctx, pool, r)
		must(t, err)
	}
	off, err := push.Create(ctx, pool, push.Rule{OwnerKind: push.ToUser, Owner: "disabled", OwnerUnit: xuhui, EventKind: events.KindWarningIssued, CreatedBy: "test"})
	must(t, err)
	_, err = push.SetEnabled(ctx, pool, off.ID, false)
	must(t, err)

	conn, err := amqp.Dial(amqpURL)
	must(t, err)
	ch, err := conn.Channel()
	must(t, err)
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	route, err := routes.NewPush(routes.PushConfig{AMQPURL: amqpURL, Pool: pool, Contracts: reg, DeadLetters: dl,
		Units: auth.DemoUnitTree(), Logger: logger, Exchange: exc, Queue: queue})
	must(t, err)
	must(t, routes.DeclarePush(ch, exc, queue)) // before anything is published
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = route.Run(rctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		ch.QueueDelete(queue, false, false, false)
		ch.ExchangeDelete(exc, false, false)
		conn.Close()
	})
	publish := func(kind string, body []byte) {
		t.Helper()
		must(t, ch.PublishWithContext(ctx, exc, kind, false, false, amqp.Publishing{ContentType: "application/json", Body: body}))
	}

	warning := example(t, reg, events.KindWarningIssued, nil) // level 2, category 0301, unit 310104000000
	publish(events.KindWarningIssued, warning)
	publish(events.KindWarningIssued, warning) // delivered twice
	publish(events.KindWarningIssued, []byte(`{"messageId":"0193a0b4-0000-7000-8000-00000000dead","kind":"warning.issued"}`))
	lead := example(t, reg, events.KindLeadRegistered, nil)
	publish(events.KindLeadRegistered, lead) // last: when it is in, the others are done (one at a time)

	leadsInbox := inbox.Viewer{User: "leads"} // the user's own items only
	waitUntil(t, "the lead's reminder", func() bool {
		items, err := inbox.List(ctx, pool, leadsInbox, inbox.Filter{})
		return err == nil && len(items) == 1
	})

	var warnID string
	{
		var m map[string]any
		must(t, json.Unmarshal(warning, &m))
		warnID = m["messageId"].(string)
	}
	got := map[string]int{}
	rows, err := pool.Query(ctx, `SELECT recipient_kind || ':' || recipient, count(*) FROM inbox_item WHERE kind = 'push' AND ref = $1 GROUP BY 1`, warnID)
	must(t, err)
	for rows.Next() {
		var k string
		var n int
		must(t, rows.Scan(&k, &n))
		got[k] = n
	}
	must(t, rows.Err())
	want := map[string]int{"user:1023456": 1, "unit:310104000000": 1, "user:city.watch": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reminders of the warning %v, want %v", got, want)
	}
	items, err := inbox.List(ctx, pool, inbox.Viewer{User: "1023456", Unit: xuhui}, inbox.Filter{Kind: routes.KindPush})
	must(t, err)
	if len(items) != 2 || items[0].Title != "信息预警：重点人员异常聚集预警（测试）" || items[0].Level != 2 || items[0].Body == "" {
		t.Fatalf("the officer's reminders %+v", items)
	}

	// push.delivered: one per new reminder of the warning (lead.registered
	// is not a refKind of its contract), each valid.
	outs, err := pool.Query(ctx, `SELECT payload FROM outbox WHERE kind = 'push.delivered' AND exchange = $1`, exc)
	must(t, err)
	units := map[string]int{}
	for outs.Next() {
		var p []byte
		must(t, outs.Scan(&p))
		must(t, reg.Validate(events.KindPushDelivered, p))
		var m struct {
			Data map[string]any `json:"data"`
		}
		must(t, json.Unmarshal(p, &m))
		if m.Data["refId"] != warnID || m.Data["channel"] != "portal" {
			t.Errorf("push.delivered %s", p)
		}
		units[fmt.Sprint(m.Data["unit"], "/", m.Data["officer"])]++
	}
	must(t, outs.Err())
	if fmt.Sprint(units) != "map[310000000000/<nil>:1 310104000000/1023456:1 310104000000/<nil>:1]" {
		t.Fatalf("push.delivered recipients %v", units)
	}

	letters := countLetters(t, pool, "amqp:"+queue)
	if letters != 1 {
		t.Fatalf("%d dead letters, want the invalid event's 1", letters)
	}
}

func countLetters(t *testing.T, pool *pgxpool.Pool, source string) int {
	t.Helper()
	var n int
	must(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letter WHERE source = $1`, source).Scan(&n))
	return n
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in time", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
