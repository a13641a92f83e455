package routes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/contracts"
	"zhianhub/contracts/events"
	"zhianhub/store/deadletter"
	"zhianhub/store/exchange"
	"zhianhub/store/inbox"
	"zhianhub/store/push"
)

// PushQueue is the smart-push route's queue on the events exchange.
const PushQueue = "zhian.events.push"

// KindPush is the inbox item kind of a smart-push reminder.
const KindPush = "push"

// PushModule is the from of the push.delivered events the route publishes.
const PushModule = "push"

// UnitScope bounds a rule's unit scope; *auth.UnitTree satisfies it.
type UnitScope interface {
	// InScope reports whether unit is scope or below it.
	InScope(scope, unit string) bool
}

// PushConfig configures the smart-push route.
type PushConfig struct {
	AMQPURL     string
	Pool        *pgxpool.Pool
	Contracts   EventContracts
	DeadLetters DeadLetters
	Units       UnitScope
	Logger      *slog.Logger
	// Exchange is the events exchange consumed, and where push.delivered
	// goes (through the outbox); default events.EventsExchange.
	Exchange string
	// Queue is the route's durable queue, bound to Exchange with every
	// kind of PushKinds; default PushQueue.
	Queue string
	// Prefetch bounds the unacked deliveries; default 32.
	Prefetch int
	// Now is the clock of push.delivered; default time.Now.
	Now func() time.Time
}

func (c *PushConfig) setDefaults() {
	if c.Exchange == "" {
		c.Exchange = events.EventsExchange
	}
	if c.Queue == "" {
		c.Queue = PushQueue
	}
	if c.Prefetch == 0 {
		c.Prefetch = 32
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a missing dependency.
func (c *PushConfig) Validate() error {
	var errs []error
	for name, missing := range map[string]bool{
		"AMQPURL": c.AMQPURL == "", "Pool": c.Pool == nil, "Contracts": c.Contracts == nil,
		"DeadLetters": c.DeadLetters == nil, "Units": c.Units == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("routes: PushConfig.%s is required", name))
		}
	}
	if c.Prefetch < 1 {
		errs = append(errs, errors.New("routes: PushConfig.Prefetch must be positive"))
	}
	return errors.Join(errs...)
}

// Push is the smart-push route (智能推送): it consumes the internal events
// (its own durable queue on the events exchange), finds the enabled rules
// matching each event (push.Candidates by kind, category and level, then
// the unit scope against the unit tree) and, in one transaction, delivers
// one inbox item (kind "push", ref and dedup key the event's messageId) to
// each rule owner, a user or a unit, and enqueues a push.delivered event
// (channel "portal") in the outbox for each item that was new. A
// redelivered event, or one matching several rules of one owner, reminds
// each owner once and publishes nothing again. The delivery is acked after
// the commit; a failure returns it to the queue and the route reconnects.
// An event that breaks its contract is kept as a dead letter and acked.
//
// Matching uses only the event's kind, category codes, level and unit: the
// events carry no ethnicity, religion or health (nor, for keyperson.*, ID
// number, name, sex, birth date or address), and a rule has no field that
// could select on them.
//
// push.delivered's contract names only warning.issued, dispatch.order,
// keyperson.task and keyperson.control as refKind, so the other kinds'
// reminders are delivered without one.
type Push struct {
	cfg    PushConfig
	dialer *dialer
}

// NewPush returns the route; Run starts it.
func NewPush(cfg PushConfig) (*Push, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Push{cfg: cfg, dialer: newDialer(cfg.AMQPURL, "zhianhub-push", cfg.Logger)}, nil
}

// pushKinds are the kinds the route binds and reads: label of a reminder's
// title, and the data members of its ref, title and body.
var pushKinds = map[string]struct{ label, ref, title, body string }{
	events.KindWarningIssued:     {"信息预警", "warningId", "title", "content"},
	events.KindWarningSigned:     {"预警签收", "warningId", "", ""},
	events.KindWarningFeedback:   {"预警反馈", "warningId", "", "content"},
	events.KindLeadRegistered:    {"线索登记", "leadId", "", ""},
	events.KindDispatchOrder:     {"指挥调度", "orderId", "title", "content"},
	events.KindDispatchFeedback:  {"指令反馈", "orderId", "", "content"},
	events.KindKeyPersonRegister: {"重点人员登记", "personNo", "", ""},
	events.KindKeyPersonChange:   {"重点人员变更", "personNo", "", ""},
	events.KindKeyPersonCancel:   {"重点人员注销", "personNo", "", ""},
	events.KindKeyPersonControl:  {"重点人员布控", "controlNo", "", ""},
	events.KindKeyPersonRelease:  {"重点人员解控", "controlNo", "", ""},
	events.KindKeyPersonTask:     {"核实任务下发", "taskNo", "", "note"},
	events.KindKeyPersonTaskSign: {"核实任务签收", "taskNo", "", ""},
	// Not push.delivered: the route's own output.
}

// PushKinds returns the event kinds a rule may name, sorted.
func PushKinds() []string {
	var out []string
	for k := range pushKinds {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// deliveredRefKinds are the refKind values push.delivered allows.
var deliveredRefKinds = map[string]bool{events.KindWarningIssued: true, events.KindDispatchOrder: true,
	events.KindKeyPersonTask: true, events.KindKeyPersonControl: true}

// DeclarePush declares the route's queue bound to exchange (topic,
// durable, declared too) with every kind of PushKinds.
func DeclarePush(ch *amqp.Channel, exchange, queue string) error {
	return declareEventQueue(ch, exchange, queue, PushKinds())
}

// Run consumes until ctx ends. A delivery in hand when ctx ends is
// finished first.
func (p *Push) Run(ctx context.Context) error {
	c := consumer{name: "push", queue: p.cfg.Queue, prefetch: p.cfg.Prefetch, dialer: p.dialer, logger: p.cfg.Logger,
		declare: func(ch *amqp.Channel) error { return DeclarePush(ch, p.cfg.Exchange, p.cfg.Queue) },
		handle:  p.handle, logAttrs: []any{"exchange", p.cfg.Exchange}}
	c.run(ctx)
	return nil
}

// pushEvent is what a rule looks at, and what a reminder says.
type pushEvent struct {
	messageID  string
	kind       string
	unit       string   // "" when the event names none
	categories []string // category codes
	level      int      // 0 when the event has none
	ref        string
	title      string
	body       string
}

// parsePushEvent reads a valid event of kind.
func parsePushEvent(kind string, body []byte) (pushEvent, error) {
	var f struct {
		MessageID string         `json:"messageId"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &f); err != nil {
		return pushEvent{}, err
	}
	spec := pushKinds[kind]
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	ev := pushEvent{messageID: f.MessageID, kind: kind, ref: str(f.Data, spec.ref)}
	data := f.Data
	if ch, ok := data["changes"].(map[string]any); ok { // keyperson.change: what changed
		data = ch
	}
	for _, k := range []string{"unit", "assignedUnit"} {
		if u := str(data, k); u != "" {
			ev.unit = u
			break
		}
	}
	if c := str(data, "category"); c != "" {
		ev.categories = []string{c}
	}
	if cs, ok := data["categories"].([]any); ok {
		for _, c := range cs {
			if s, ok := c.(string); ok {
				ev.categories = append(ev.categories, s)
			}
		}
	}
	for _, k := range []string{"level", "priority"} {
		if n, ok := f.Data[k].(float64); ok {
			ev.level = int(n)
			break
		}
	}
	ev.title = spec.label + "：" + ev.ref
	if spec.title != "" && str(f.Data, spec.title) != "" {
		ev.title = spec.label + "：" + str(f.Data, spec.title)
	}
	if spec.body != "" {
		ev.body = str(f.Data, spec.body)
	}
	return ev, nil
}

// handle processes one delivery and acks it; an error means nothing was
// committed (the caller returns it to the queue).
func (p *Push) handle(ctx context.Context, d amqp.Delivery) error {
	kind := d.RoutingKey
	if _, ok := pushKinds[kind]; !ok {
		return d.Ack(false) // not bound; a stray binding made by hand
	}
	if err := p.cfg.Contracts.Validate(kind, d.Body); err != nil {
		if contracts.ErrorCode(err) == contracts.CodeInternal {
			return err
		}
		if err := p.keep(ctx, d, err); err != nil {
			return err
		}
		return d.Ack(false)
	}
	ev, err := parsePushEvent(kind, d.Body)
	if err != nil {
		return fmt.Errorf("push: %s: %w", kind, err)
	}
	var delivered int
	err = pgx.BeginFunc(ctx, p.cfg.Pool, func(tx pgx.Tx) error {
		rules, err := push.Candidates(ctx, tx, kind, ev.categories, ev.level)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, r := range rules {
			if r.UnitScope != "" && (ev.unit == "" || !p.cfg.Units.InScope(r.UnitScope, ev.unit)) {
				continue
			}
			key := r.OwnerKind + ":" + r.Owner
			if seen[key] {
				continue
			}
			seen[key] = true
			ids, err := inbox.Deliver(ctx, tx, inbox.Item{RecipientKind: r.OwnerKind, Recipient: r.Owner, Kind: KindPush,
				Ref: ev.messageID, DedupKey: KindPush + ":" + ev.messageID, Title: clipRunes(ev.title, 200), Body: ev.body, Level: ev.level})
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				continue // delivered before (a redelivery)
			}
			delivered++
			if err := p.enqueueDelivered(ctx, tx, ev, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if delivered > 0 {
		p.cfg.Logger.Debug("push delivered", "kind", kind, "message_id", ev.messageID, "reminders", delivered)
	}
	return d.Ack(false)
}

var officerRe = regexp.MustCompile(`^[0-9]{6,8}$`)

// enqueueDelivered adds push.delivered for a new reminder to the outbox
// (when the contract allows the event's kind as refKind).
func (p *Push) enqueueDelivered(ctx context.Context, tx pgx.Tx, ev pushEvent, r push.Rule) error {
	if !deliveredRefKinds[ev.kind] {
		return nil
	}
	now := p.cfg.Now().In(shanghai).Format("2006-01-02T15:04:05.000Z07:00")
	data := map[string]any{"pushId": newID(), "channel": "portal", "refKind": ev.kind, "refId": ev.messageID,
		"unit": r.OwnerUnit, "deliveredAt": now}
	if r.OwnerKind == push.ToUser && officerRe.MatchString(r.Owner) {
		data["officer"] = r.Owner
	}
	id := newID()
	b, err := json.Marshal(map[string]any{"messageId": id, "kind": events.KindPushDelivered, "from": PushModule, "occurredAt": now, "data": data})
	if err != nil {
		return err
	}
	if err := p.cfg.Contracts.Validate(events.KindPushDelivered, b); err != nil {
		// A rule whose owner has no unit code, say: the reminder stands.
		p.cfg.Logger.Warn("push.delivered not valid; not published", "err", err, "rule", r.ID, "ref", ev.messageID)
		return nil
	}
	return exchange.Enqueue(ctx, tx, exchange.Out{ID: id, Kind: events.KindPushDelivered, Exchange: p.cfg.Exchange,
		RoutingKey: events.KindPushDelivered, Corr: ev.messageID, Payload: b, Actor: PushModule})
}

// keep stores the dead letter of an event breaking its contract, once.
func (p *Push) keep(ctx context.Context, d amqp.Delivery, verr error) error {
	code := contracts.ErrorCode(verr)
	reason := ingressReason(d.RoutingKey, verr)
	id := messageIDOf(d.Body)
	l := deadletter.Letter{Source: "amqp:" + p.cfg.Queue, Exchange: p.cfg.Exchange,
		RoutingKey: d.RoutingKey, MessageID: id, Sender: d.UserId, Kind: d.RoutingKey, Raw: d.Body, Code: code, Reason: reason}
	if d.Redelivered {
		exists, err := p.cfg.DeadLetters.Has(ctx, p.cfg.Pool, l)
		if err != nil {
			return fmt.Errorf("dead letter lookup: %w", err)
		}
		if exists {
			return nil
		}
	}
	p.cfg.Logger.Warn("push: event breaks its contract; kept", "kind", d.RoutingKey, "code", code, "message_id", id)
	_, err := p.cfg.DeadLetters.Put(ctx, p.cfg.Pool, l)
	return err
}

// clipRunes cuts s to at most n characters.
func clipRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
