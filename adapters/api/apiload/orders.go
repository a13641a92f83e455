package apiload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/citybus"
	"zhianhub/adapters/mpsbus"
	"zhianhub/contracts"
	"zhianhub/crypto/keystore"
	"zhianhub/envelope"
)

// Order is a seeded dispatch order and its target units.
type Order struct {
	OrderNo string
	Units   []string
}

// OrdersConfig configures SeedOrders.
type OrdersConfig struct {
	// AMQPURL is the broker and Exchange the run's city bus
	// (DeclareCityBus). Required.
	AMQPURL, Exchange string
	// KeyDir is the city bureau's key directory, trusting the hub's keys
	// (Hub.PeerDir(citybus.NodeCity)). Required.
	KeyDir string
	// HubNode is the hub's node; default HubNode.
	HubNode string
	// Units are the target units, taken in turn. Required.
	Units []string
	// PerUnit is the number of orders that target each unit (so its
	// inbox holds as many reminders); default 24.
	PerUnit int
	// TargetsPerOrder is the number of target units of each order
	// (at most len(Units)); default 3.
	TargetsPerOrder int
}

// Validate reports whether the configuration can be used (after defaults).
func (c OrdersConfig) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{{"AMQPURL", c.AMQPURL}, {"Exchange", c.Exchange}, {"KeyDir", c.KeyDir}, {"HubNode", c.HubNode}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if len(c.Units) == 0 {
		errs = append(errs, errors.New("Units is required"))
	}
	if c.PerUnit < 1 {
		errs = append(errs, errors.New("PerUnit must be at least 1"))
	}
	if c.TargetsPerOrder < 1 || c.TargetsPerOrder > len(c.Units) {
		errs = append(errs, fmt.Errorf("TargetsPerOrder must be 1..%d (the units)", len(c.Units)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("apiload: invalid orders config: %w", err)
	}
	return nil
}

var shanghai = time.FixedZone("CST", 8*3600)

// SeedOrders sends dispatch orders to the hub as the city bureau does
// (feedback-bus.md): each a dispatch.order sealed with the city bureau's
// keys and published, with confirms, to the hub's routing key on the city
// bus. Each unit of cfg.Units is a target of cfg.PerUnit orders, the
// units taken in turn cfg.TargetsPerOrder at a time. Order numbers are
// 310000 + today's date (Shanghai) + a serial from 000001; refNo = orderNo,
// seq 1. The hub applies them asynchronously: see WaitOrders.
func SeedOrders(ctx context.Context, cfg OrdersConfig) ([]Order, error) {
	if cfg.HubNode == "" {
		cfg.HubNode = HubNode
	}
	if cfg.PerUnit == 0 {
		cfg.PerUnit = 24
	}
	if cfg.TargetsPerOrder == 0 {
		cfg.TargetsPerOrder = min(3, len(cfg.Units))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := keystore.Load(cfg.KeyDir, keystore.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("apiload: city keys: %w", err)
	}
	sealer, err := envelope.NewSealer(envelope.SealerConfig{Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("apiload: %w", err)
	}
	conn, err := amqp.Dial(cfg.AMQPURL)
	if err != nil {
		return nil, fmt.Errorf("apiload: rabbitmq: %w", err)
	}
	defer conn.Close()
	pub, err := mpsbus.NewPublisher(conn, mpsbus.PublisherConfig{Exchange: cfg.Exchange})
	if err != nil {
		return nil, fmt.Errorf("apiload: %w", err)
	}
	defer pub.Close()

	now := time.Now().In(shanghai)
	n := (len(cfg.Units)*cfg.PerUnit + cfg.TargetsPerOrder - 1) / cfg.TargetsPerOrder
	key := citybus.RoutingKey(cfg.HubNode, contracts.KindDispatchOrder)
	out := make([]Order, n)
	for i := range n {
		units := make([]string, cfg.TargetsPerOrder)
		for j := range units {
			units[j] = cfg.Units[(i*cfg.TargetsPerOrder+j)%len(cfg.Units)]
		}
		o := contracts.Order{
			OrderNo:   fmt.Sprintf("310000%s%06d", now.Format("20060102"), i+1),
			Title:     fmt.Sprintf("压测调度指令 %d", i+1),
			Content:   "请目标单位部署警力并反馈处置情况（压测数据）。",
			Level:     1 + i%3,
			Deadline:  now.Add(24 * time.Hour).Truncate(time.Second),
			IssuedBy:  "0010001",
			RefHeader: contracts.RefHeader{Seq: 1}, TargetUnits: units,
		}
		o.RefNo = o.OrderNo
		payload, err := json.Marshal(&o)
		if err != nil {
			return nil, err
		}
		id := uuid.NewString()
		env, _, err := sealer.Seal(envelope.Outgoing{ID: id, Kind: contracts.KindDispatchOrder, To: cfg.HubNode, Payload: payload})
		if err != nil {
			return nil, fmt.Errorf("apiload: seal order %s: %w", o.OrderNo, err)
		}
		if err := pub.Publish(ctx, key, mpsbus.Publishing(env, id, contracts.KindDispatchOrder, time.Now())); err != nil {
			return nil, fmt.Errorf("apiload: publish order %s: %w", o.OrderNo, err)
		}
		out[i] = Order{OrderNo: o.OrderNo, Units: units}
	}
	return out, nil
}

// WaitOrders waits until the hub has applied n dispatch orders (GET
// /dispatch/orders with token, whose scope must hold every target unit,
// lists n), so that the load runs against a hub at rest with the units'
// inboxes filled.
func WaitOrders(ctx context.Context, c *Client, token string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := countOrders(ctx, c, token)
		if err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("apiload: the hub applied %d of %d dispatch orders in %s", got, n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// countOrders counts the orders token sees, page by page.
func countOrders(ctx context.Context, c *Client, token string) (int, error) {
	total, after := 0, ""
	for {
		path := "/api/v1/dispatch/orders?limit=1000"
		if after != "" {
			path += "&after=" + after
		}
		status, body, err := c.Do(ctx, http.MethodGet, path, token, nil)
		if err != nil {
			return 0, fmt.Errorf("apiload: dispatch orders: %w", err)
		}
		if status != http.StatusOK {
			return 0, fmt.Errorf("apiload: dispatch orders: status %d: %s", status, body)
		}
		var v struct {
			Orders []json.RawMessage `json:"orders"`
			Next   string            `json:"next"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return 0, fmt.Errorf("apiload: dispatch orders: %w", err)
		}
		total += len(v.Orders)
		if v.Next == "" {
			return total, nil
		}
		after = v.Next
	}
}
