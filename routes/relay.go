package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/envelope"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/exchange"
	"zhianhub/store/journal"
)

// ResendPolicy is the resend schedule of filings (mps-bus.md: no receipt
// after 60 s → resend with the same id, doubling to at most 30 min, for at
// most 24 h, then flag to the operators).
type ResendPolicy struct {
	Initial time.Duration
	Max     time.Duration
	GiveUp  time.Duration
}

// DefaultResendPolicy is the spec's schedule.
var DefaultResendPolicy = ResendPolicy{Initial: time.Minute, Max: 30 * time.Minute, GiveUp: 24 * time.Hour}

// Validate reports an unusable schedule.
func (p ResendPolicy) Validate() error {
	if p.Initial <= 0 || p.Max < p.Initial || p.GiveUp < p.Initial {
		return fmt.Errorf("routes: resend policy needs 0 < initial (%s) <= max (%s) and initial <= give-up (%s)", p.Initial, p.Max, p.GiveUp)
	}
	return nil
}

// Delay returns the wait after the n-th send (n >= 1).
func (p ResendPolicy) Delay(n int) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// RelayConfig configures the outbox relay.
type RelayConfig struct {
	Pool    *pgxpool.Pool
	AMQPURL string
	Sealer  *envelope.Sealer
	// Cipher opens the payloads encrypted at rest (exchange.Out.Encrypted).
	Cipher  Cipher
	Journal *journal.Journal
	Audit   *audit.Writer
	Logger  *slog.Logger
	Now     func() time.Time
	Resend  ResendPolicy
	// RetryDelay is the wait after a failed publish; default 2s.
	RetryDelay time.Duration
	// BatchSize is the most messages per publish window; default 256.
	BatchSize int
	// PollInterval bounds the wait for work when nobody notifies; default 500ms.
	PollInterval time.Duration
}

func (c *RelayConfig) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Resend == (ResendPolicy{}) {
		c.Resend = DefaultResendPolicy
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = 2 * time.Second
	}
	if c.BatchSize == 0 {
		c.BatchSize = 256
	}
	if c.PollInterval == 0 {
		c.PollInterval = 500 * time.Millisecond
	}
}

// Validate reports a missing dependency or a bad setting.
func (c *RelayConfig) Validate() error {
	var errs []error
	if c.Pool == nil || c.AMQPURL == "" || c.Sealer == nil || c.Cipher == nil || c.Journal == nil || c.Audit == nil {
		errs = append(errs, errors.New("routes: RelayConfig needs Pool, AMQPURL, Sealer, Cipher, Journal and Audit"))
	}
	if err := c.Resend.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.BatchSize < 1 || c.RetryDelay <= 0 || c.PollInterval <= 0 {
		errs = append(errs, errors.New("routes: RelayConfig sizes and delays must be positive"))
	}
	return errors.Join(errs...)
}

// Relay publishes the outbox: receipts and events once, filings until their
// receipt arrives (resent on the schedule, which lives in the database and so
// survives restarts), flagging those unanswered past the give-up time.
type Relay struct {
	cfg    RelayConfig
	dialer *dialer
	pub    *batchPublisher
	wake   chan struct{}
}

// NewRelay returns a relay; Run starts it.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := newDialer(cfg.AMQPURL, "zhianhub-relay", cfg.Logger)
	return &Relay{cfg: cfg, dialer: d, pub: &batchPublisher{d: d}, wake: make(chan struct{}, 1)}, nil
}

// Notify wakes the relay: something was committed to the outbox.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends. A batch in flight finishes: its publishes and
// their record commit together, or roll back to be published again.
func (r *Relay) Run(ctx context.Context) error {
	defer r.dialer.close()
	defer r.pub.close()
	for {
		n, err := r.relayOnce(context.WithoutCancel(ctx))
		if err != nil {
			r.cfg.Logger.Error("relay batch failed", "err", err)
		}
		if n == r.cfg.BatchSize && err == nil && ctx.Err() == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-time.After(r.cfg.PollInterval):
		}
	}
}

// relayOnce publishes one batch of due messages.
func (r *Relay) relayOnce(ctx context.Context) (int, error) {
	var n int
	// Through a Pipe, the attempts and the audit entries travel with the
	// COMMIT.
	err := store.BeginPipe(ctx, r.cfg.Pool, func(tx *store.Pipe) error {
		var entries []audit.Entry
		now := r.cfg.Now()
		due, err := exchange.ClaimDue(ctx, tx, now, r.cfg.BatchSize)
		if err != nil {
			return err
		}
		n = len(due)
		if n == 0 {
			return nil
		}
		attempts := make([]exchange.Attempt, 0, n)
		sends := journal.NewPending(nil) // one statement for the batch
		var pubs []Pub
		var sent []exchange.Out
		var raws [][]byte
		for _, m := range due {
			if r.givenUp(m, now) {
				attempts = append(attempts, exchange.Attempt{ID: m.ID, State: exchange.OutFlagged, NextAttemptAt: now})
				entries = append(entries, r.flag(ctx, tx, m))
				continue
			}
			p, raw, err := r.publishing(m, now)
			if err != nil {
				// Cannot seal (e.g. no key for the recipient): retry later,
				// flagged after the give-up time like any other failure.
				attempts = append(attempts, exchange.Attempt{ID: m.ID, Err: err, State: m.State, NextAttemptAt: now.Add(r.cfg.RetryDelay)})
				continue
			}
			pubs, sent, raws = append(pubs, p), append(sent, m), append(raws, raw)
		}
		errs := r.pub.Publish(ctx, pubs)
		for i, m := range sent {
			if errs[i] != nil {
				r.cfg.Logger.Warn("publish failed; will retry", "id", m.ID, "kind", m.Kind, "err", errs[i])
				attempts = append(attempts, exchange.Attempt{ID: m.ID, Err: errs[i], State: m.State, NextAttemptAt: now.Add(r.cfg.RetryDelay)})
				continue
			}
			a := exchange.Attempt{ID: m.ID, Published: true, State: exchange.OutDone, NextAttemptAt: now}
			if m.NeedsReceipt {
				a.State, a.NextAttemptAt = exchange.OutSent, now.Add(r.cfg.Resend.Delay(m.Attempts+1))
			}
			attempts = append(attempts, a)
			if err := r.journal(sends, m, raws[i]); err != nil {
				return err
			}
			entries = append(entries, r.auditEntry(m))
		}
		// Checked: an inbound receipt may journal a filing the moment it
		// is published, before this transaction commits.
		if err := sends.FlushChecked(ctx, tx); err != nil {
			return err
		}
		if err := exchange.RecordAttempts(ctx, tx, now, attempts); err != nil {
			return err
		}
		return audit.StageBatch(ctx, tx, entries)
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		r.cfg.Audit.Notify()
	}
	return n, nil
}

// givenUp reports a message past the give-up time: a filing sent first that
// long ago, or anything that could not be published for that long.
func (r *Relay) givenUp(m exchange.Out, now time.Time) bool {
	since := m.CreatedAt
	if m.FirstSentAt != nil {
		since = *m.FirstSentAt
	}
	return (m.NeedsReceipt || m.FirstSentAt == nil) && now.Sub(since) >= r.cfg.Resend.GiveUp
}

// flag marks an unanswered message for the operators. It is kept, never
// dropped.
func (r *Relay) flag(ctx context.Context, tx pgx.Tx, m exchange.Out) audit.Entry {
	r.cfg.Logger.Warn("no receipt within the give-up time: flagged for the operators", "id", m.ID, "kind", m.Kind, "to", m.ToNode, "attempts", m.Attempts)
	if id, err := uuid.Parse(m.ID); err == nil {
		_ = r.cfg.Journal.Transition(ctx, tx, id, journal.Out, journal.StateFlagged, "", fmt.Sprintf("no receipt after %d attempts", m.Attempts))
	}
	return audit.Entry{Actor: "system", Action: "filing.flagged", Object: m.ID, Result: "flagged", CorrelationID: m.ID,
		Reason: fmt.Sprintf("no receipt after %d attempts", m.Attempts), Detail: map[string]any{"kind": m.Kind, "to": m.ToNode, "personNo": m.PersonNo}}
}

// publishing seals a bus message (fresh ts, same id on resends) or wraps an
// internal event.
func (r *Relay) publishing(m exchange.Out, now time.Time) (Pub, []byte, error) {
	payload := m.Payload
	if m.Encrypted {
		var err error
		if payload, err = r.cfg.Cipher.Decrypt(m.Payload, exchange.PayloadAAD(m.ID)); err != nil {
			return Pub{}, nil, fmt.Errorf("routes: decrypt the payload of %s: %w", m.ID, err)
		}
	}
	body := payload
	if m.ToNode != "" {
		env, _, err := r.cfg.Sealer.Seal(envelope.Outgoing{ID: m.ID, Kind: m.Kind, To: m.ToNode, Corr: m.Corr, Payload: payload})
		if err != nil {
			return Pub{}, nil, err
		}
		body = env
	}
	return Pub{Exchange: m.Exchange, RoutingKey: m.RoutingKey, Mandatory: m.ToNode != "", Msg: amqp.Publishing{
		MessageId: m.ID, Type: m.Kind, ContentType: "application/json", DeliveryMode: amqp.Persistent,
		Timestamp: now, CorrelationId: m.Corr, Body: body,
	}}, body, nil
}

func (r *Relay) journal(sends *journal.Pending, m exchange.Out, raw []byte) error {
	if m.ToNode == "" {
		return nil // internal events are audited, not journaled as bus messages
	}
	id, err := uuid.Parse(m.ID)
	if err != nil {
		return err
	}
	if m.Attempts == 0 {
		return sends.Record(journal.Message{ID: id, Direction: journal.Out, Kind: m.Kind, Peer: m.ToNode, Raw: raw, State: journal.StateSent, CorrelationID: m.Corr})
	}
	return sends.Transition(id, journal.Out, journal.StateSent, "", fmt.Sprintf("resent, attempt %d", m.Attempts+1))
}

func (r *Relay) auditEntry(m exchange.Out) audit.Entry {
	action := "message.send"
	if m.ToNode == "" {
		action = "event.publish"
	}
	return audit.Entry{Actor: "system", Action: action, Object: m.ID, Result: "ok", CorrelationID: firstNonEmpty(m.Corr, m.ID),
		Detail: map[string]any{"kind": m.Kind, "to": m.ToNode, "exchange": m.Exchange, "attempt": m.Attempts + 1}}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
