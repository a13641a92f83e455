package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/citybus"
	"zhianhub/contracts"
	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/routes"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/dispatch"
	"zhianhub/store/exchange"
	"zhianhub/store/storetest"
	"zhianhub/store/warning"
	"zhianhub/transforms"
)

// TestWarningFeedbackToCity: a warning's final disposition is filed as
// feedback.warning on the city bus in the warning's own transaction: the
// outbox row (ordered by the warning number), its sequence and its audit
// entry (under the request's correlation id) commit with the state change.
func TestWarningFeedbackToCity(t *testing.T) {
	ctx := context.Background()
	pool := storetest.NewPool(t)
	keysDir := filepath.Join(t.TempDir(), "keys")
	if err := keystore.Generate(keysDir, "310000000000", nil); err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Load(keysDir, keystore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := fieldenc.Open(ctx, store.NewDataKeys(pool), ks)
	if err != nil {
		t.Fatal(err)
	}
	aw, err := audit.NewWriter(pool, audit.WriterConfig{Signer: ks.Signer()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = aw.Close(context.Background()) })
	validator, err := contracts.NewValidator(contracts.Config{})
	if err != nil {
		t.Fatal(err)
	}
	filing, err := routes.NewFiling(routes.FilingConfig{Pool: pool, Self: "310000000000", To: "310000000001", Exchange: "test.city",
		RoutingKey: citybus.RoutingKey, Ordering: routes.RefOrdering, Payloads: transforms.CityChecker{Validator: validator},
		Registry: dispatch.New(), Cipher: kr, Audit: aw})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := warning.New(warning.Config{Pool: pool, Units: auth.DemoUnitTree(),
		Feedback: warningFeedback{f: &citybus.Feedbacks{Filing: filing, Numbers: pool}}})
	if err != nil {
		t.Fatal(err)
	}
	const xuhui = "310104000000"
	for _, id := range []string{"31000020261127000001"} {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := svc.Issue(ctx, tx, uuid.NewString(), "analysis", warning.Issue{WarningID: id, Level: 2, Category: "0301",
				Title: "异常聚集预警（测试）", Content: "请核实（测试数据）", Unit: xuhui, Deadline: time.Now().Add(time.Hour), IssuedAt: time.Now()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	actor := warning.Actor{User: "li.officer", Unit: xuhui, Role: "officer", Officer: "1023456", Scope: auth.DemoUnitTree().Subtree(xuhui),
		CorrelationID: "req-finish-1"}
	for _, step := range []func(string, warning.Actor) error{
		func(id string, a warning.Actor) error { _, err := svc.Sign(ctx, id, a); return err },
		func(id string, a warning.Actor) error { _, err := svc.Start(ctx, id, a); return err },
	} {
		for _, id := range []string{"31000020261127000001"} {
			if err := step(id, actor); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := svc.Finish(ctx, "31000020261127000001", actor, warning.ResultHandled, "已现场核实（测试数据）"); err != nil {
		t.Fatal(err)
	}
	var sealed []byte
	var kind, key, id string
	var seq int64
	if err := pool.QueryRow(ctx, `SELECT id::text, kind, payload, person_no, seq FROM outbox WHERE to_node = '310000000001' AND payload_encrypted`).Scan(&id, &kind, &sealed, &key, &seq); err != nil {
		t.Fatalf("no encrypted feedback in the outbox: %v", err)
	}
	payload, err := kr.Decrypt(sealed, exchange.PayloadAAD(id))
	if err != nil {
		t.Fatal(err)
	}
	var fb map[string]any
	if err := json.Unmarshal(payload, &fb); err != nil {
		t.Fatal(err)
	}
	if kind != "feedback.warning" || key != "31000020261127000001" || seq != 1 || fb["result"] != "done" || fb["refType"] != "warning" ||
		fb["unit"] != xuhui || fb["officer"] != "1023456" || fb["detail"] != "已现场核实（测试数据）" {
		t.Fatalf("feedback %s key %s seq %d: %s", kind, key, seq, payload)
	}
	var staged int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_pending WHERE action = 'filing.submit' AND correlation_id = 'req-finish-1'`).Scan(&staged); err != nil || staged != 1 {
		// Chained already, perhaps.
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry WHERE action = 'filing.submit' AND correlation_id = 'req-finish-1'`).Scan(&staged); err != nil || staged != 1 {
			t.Errorf("the feedback's filing.submit audit entry: %d (%v)", staged, err)
		}
	}

	// (A filer's failure rolls the step back whole: store/warning's
	// TestFeedbackInTransaction covers it with a failing filer.)
}
