package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/citybus"
	"zhianhub/adapters/citysim"
	"zhianhub/adapters/mpsbus"
	"zhianhub/contracts"
	"zhianhub/store/dispatch"
	"zhianhub/store/storetest"
)

// TestCityDispatchEndToEnd is issue 4's end-to-end test of the city
// feedback bus: the city-bus simulator sends a dispatch order to two
// units; the hub answers ACCEPTED and delivers it to both units (their
// order rows, state delivered); each unit reports its feedback through the
// API; two feedback.dispatch messages reach the simulator, which answers
// each ACCEPTED, and the hub correlates both receipts.
func TestCityDispatchEndToEnd(t *testing.T) {
	dbURL := storetest.NewEmptyDatabase(t)
	root := t.TempDir()
	keys, peers := filepath.Join(root, "keys"), filepath.Join(root, "peers")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys, "--demo-peers", peers); code != 0 {
		t.Fatal(errs)
	}
	mps := testBus(t, mpsbus.NodeShanghai)
	b := make([]byte, 4)
	rand.Read(b)
	city := "test.city." + hex.EncodeToString(b)
	t.Cleanup(func() {
		conn, err := amqp.Dial(testAMQPURL)
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		for _, n := range []string{citybus.NodeHub, citybus.NodeCity} {
			ch.QueueDelete(citybus.NodeQueue(city, n), false, false, false)
		}
		ch.ExchangeDelete(city, false, false)
	})

	// The city bureau owns its bus: the simulator declares it first.
	sim, err := citysim.New(citysim.Config{AMQPURL: testAMQPURL, Exchange: city, KeyDir: filepath.Join(peers, citybus.NodeCity),
		ControlAddr: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Run(sctx) }()
	t.Cleanup(func() { stopSim(); <-simDone })
	select {
	case <-sim.Running():
	case <-time.After(20 * time.Second):
		t.Fatal("the city simulator did not start")
	}

	hub := startServe(t, map[string]string{
		"ZHIANHUB_DATABASE_URL":     dbURL,
		"ZHIANHUB_KEYS_DIR":         keys,
		"ZHIANHUB_HTTP_ADDR":        freeAddr(t),
		"ZHIANHUB_AMQP_URL":         testAMQPURL,
		"ZHIANHUB_MPS_EXCHANGE":     mps,
		"ZHIANHUB_CITY_BUS_ENABLED": "true",
		"ZHIANHUB_CITY_EXCHANGE":    city,
	})
	call := func(unit, method, path string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			j, _ := json.Marshal(body)
			rd = bytes.NewReader(j)
		}
		req, _ := http.NewRequest(method, hub.Base+path, rd)
		req.Header.Set("X-Dev-User", "officer."+unit)
		req.Header.Set("X-Dev-Unit", unit)
		req.Header.Set("X-Dev-Roles", "officer")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in time\n%s", what, hub.Logs.String())
			}
		}
	}

	// 1. The city bureau sends an order to two units (the control API).
	units := []string{"310101000000", "310104000000"}
	order, _ := json.Marshal(map[string]any{"title": "外滩区域加强巡逻", "targetUnits": units})
	resp, err := http.Post("http://"+sim.ControlAddr()+"/send", "application/json", bytes.NewReader(order))
	if err != nil {
		t.Fatal(err)
	}
	var sent citysim.MessageInfo
	json.NewDecoder(resp.Body).Decode(&sent)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || sent.OrderNo == "" {
		t.Fatalf("POST /send: %d %+v", resp.StatusCode, sent)
	}
	wait("the hub's receipt of the order", func() bool {
		m, _ := sim.Message(sent.ID)
		return m.Receipt != nil
	})
	if m, _ := sim.Message(sent.ID); m.Receipt.Status != contracts.StatusAccepted || m.Receipt.Code != "0000" {
		t.Fatalf("order receipt %+v", m.Receipt)
	}

	// 2. It is in both units' inboxes (the portal's GET /inbox); each unit
	// finds it delivered, and reports.
	feedbackIDs := map[string]string{}
	for _, u := range units {
		status, body := call(u, http.MethodGet, "/api/v1/inbox", nil)
		var box struct {
			Items []struct{ Kind, Ref, Title, RecipientKind, Recipient string }
		}
		json.Unmarshal(body, &box)
		if status != http.StatusOK || len(box.Items) != 1 || box.Items[0].Kind != dispatch.InboxKind || box.Items[0].Ref != sent.OrderNo ||
			box.Items[0].RecipientKind != "unit" || box.Items[0].Recipient != u || box.Items[0].Title != "调度指令：外滩区域加强巡逻" {
			t.Fatalf("inbox of %s: %d %s", u, status, body)
		}
		status, body = call(u, http.MethodGet, "/api/v1/dispatch/orders?state=delivered", nil)
		var list struct {
			Orders []struct {
				OrderNo string
				Units   []struct{ Unit, State string }
			}
		}
		json.Unmarshal(body, &list)
		if status != http.StatusOK || len(list.Orders) != 1 || list.Orders[0].OrderNo != sent.OrderNo ||
			len(list.Orders[0].Units) != 1 || list.Orders[0].Units[0].Unit != u || list.Orders[0].Units[0].State != "delivered" {
			t.Fatalf("unit %s's orders: %d %s", u, status, body)
		}
		status, body = call(u, http.MethodPost, "/api/v1/dispatch/orders/"+sent.OrderNo+"/feedback",
			map[string]any{"officer": "123456", "result": "done", "detail": "单位 " + u + " 已到场处置完毕。"})
		var res struct{ ID, Kind string }
		json.Unmarshal(body, &res)
		if status != http.StatusAccepted || res.Kind != contracts.KindFeedbackDispatch {
			t.Fatalf("unit %s's feedback: %d %s", u, status, body)
		}
		feedbackIDs[res.ID] = u
	}

	// 3. Two feedback.dispatch on the city bus, each answered ACCEPTED by the
	// city bureau, and each receipt correlated by the hub.
	wait("two feedback at the city bureau", func() bool { return len(sim.Feedback()) >= 2 })
	got := sim.Feedback()
	if len(got) != 2 {
		t.Fatalf("the city bureau received %+v", got)
	}
	for _, f := range got {
		if u, ok := feedbackIDs[f.ID]; !ok || f.Kind != contracts.KindFeedbackDispatch || f.RefNo != sent.OrderNo || f.Unit != u ||
			f.From != citybus.NodeHub || f.Corr != sent.ID || f.Status != contracts.StatusAccepted || f.Code != "0000" {
			t.Errorf("feedback at the city bureau %+v (ids %v)", f, feedbackIDs)
		}
	}
	// The simulator counts a receipt once it is published, after it lists
	// the feedback.
	wait("the city bureau's two receipts", func() bool {
		st := sim.Stats()
		return st.ReceiptsSent[contracts.StatusAccepted]["0000"] == 2 && st.FeedbackReceived[contracts.KindFeedbackDispatch] == 2
	})
	for id := range feedbackIDs {
		wait("the hub correlates the receipt of "+id, func() bool {
			status, body := call("310000000000", http.MethodGet, "/api/v1/filings/"+id, nil)
			var f struct {
				State   string
				Receipt struct{ Status string }
			}
			json.Unmarshal(body, &f)
			return status == http.StatusOK && f.State == "receipted" && f.Receipt.Status == contracts.StatusAccepted
		})
	}
	status, body := call("310000000000", http.MethodGet, "/api/v1/dispatch/orders/"+sent.OrderNo, nil)
	if status != http.StatusOK || strings.Count(string(body), `"state":"submitted"`) != 2 {
		t.Fatalf("the order after both feedbacks: %d %s", status, body)
	}
}
