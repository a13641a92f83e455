package mpssim

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"zhianhub/adapters/mpsbus"
	"zhianhub/envelope"
)

// Defaults.
const (
	DefaultAMQPURL     = "amqp://guest:guest@127.0.0.1:5672/%2f"
	DefaultControlAddr = "127.0.0.1:8091"
	DefaultGapTimeout  = 10 * time.Minute
)

// ResendPolicy is when a downward message without a receipt is sent again
// (mps-bus.md, "Delivery rules"): after Initial, then at intervals
// multiplied by Multiplier up to Max; after GiveUp since the first send the
// message is flagged (logged and counted), never dropped.
type ResendPolicy struct {
	Initial    time.Duration // default 60s
	Multiplier float64       // default 2
	Max        time.Duration // default 30 min
	GiveUp     time.Duration // default 24 h
}

// SetDefaults fills the zero fields with the spec's schedule (60 s
// doubling to 30 min, flagged after 24 h); the city-bus simulator shares it.
func (p *ResendPolicy) SetDefaults() {
	if p.Initial == 0 {
		p.Initial = 60 * time.Second
	}
	if p.Multiplier == 0 {
		p.Multiplier = 2
	}
	if p.Max == 0 {
		p.Max = 30 * time.Minute
	}
	if p.GiveUp == 0 {
		p.GiveUp = 24 * time.Hour
	}
}

// Validate reports an unusable policy.
func (p ResendPolicy) Validate() error {
	switch {
	case p.Initial <= 0:
		return fmt.Errorf("resend initial interval %s is not positive", p.Initial)
	case p.Multiplier < 1:
		return fmt.Errorf("resend multiplier %g is less than 1", p.Multiplier)
	case p.Max < p.Initial:
		return fmt.Errorf("resend maximum interval %s is less than the initial %s", p.Max, p.Initial)
	case p.GiveUp <= 0:
		return fmt.Errorf("resend give-up time %s is not positive", p.GiveUp)
	}
	return nil
}

// Config configures the simulator. The zero value plus KeyDir is usable:
// New applies the defaults.
type Config struct {
	// AMQPURL locates RabbitMQ; default DefaultAMQPURL.
	AMQPURL string
	// ConnectionName is shown by the broker; default "zhianhub-mps-sim".
	ConnectionName string
	// Exchange is the bus exchange; default mpsbus.Exchange. Tests use a
	// unique name; the node queues follow it (mpsbus.NodeQueue).
	Exchange string
	// KeyDir is the Ministry's key directory (self node 000000000000,
	// peers/<hub node> with the hub's public keys). Required.
	KeyDir string
	// Passphrase decrypts the private keys of KeyDir, if protected.
	Passphrase []byte
	// HubNode is the node the downward traffic goes to; default
	// mpsbus.NodeShanghai.
	HubNode string
	// Now is the clock of envelope timestamps, payload times and the
	// timestamp window; default time.Now. Schedules (resends, gap
	// timeout, traffic rate) run on real time.
	Now func() time.Time
	// Resend is the resend policy of downward messages.
	Resend ResendPolicy
	// GapTimeout is how long a filing ahead of a sequence gap is held
	// before it is rejected with E140; default 10 minutes.
	GapTimeout time.Duration
	// GapFill is when a message withheld by the gap fault is sent after
	// all; 0 never sends it.
	GapFill time.Duration
	// Rate is the random downward traffic in messages per second; 0 = off.
	Rate float64
	// Stories is how many persons the random traffic follows at the same
	// time; default 4.
	Stories int
	// Seed makes the random traffic reproducible; 0 seeds at random.
	Seed uint64
	// ScriptPath names a file of JSON lines {"kind": ..., "payload": {...}}
	// sent in order at start (see ParseScript); "" = none.
	ScriptPath string
	// CategoriesPath is the category table (contracts.Config); "" = the
	// embedded demo table.
	CategoriesPath string
	// ControlAddr is the listen address of the control HTTP API; "" = off.
	// The command line defaults to DefaultControlAddr.
	ControlAddr string
	// Faults are the fault probabilities (0..1) applied to the random
	// traffic and to the receipts received.
	Faults map[Fault]float64
	// Prefetch bounds the unacknowledged deliveries; default 32.
	Prefetch int
	// Logger receives one line per message; default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.AMQPURL == "" {
		c.AMQPURL = DefaultAMQPURL
	}
	if c.ConnectionName == "" {
		c.ConnectionName = "zhianhub-mps-sim"
	}
	if c.Exchange == "" {
		c.Exchange = mpsbus.Exchange
	}
	if c.HubNode == "" {
		c.HubNode = mpsbus.NodeShanghai
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Resend.SetDefaults()
	if c.GapTimeout == 0 {
		c.GapTimeout = DefaultGapTimeout
	}
	if c.Stories == 0 {
		c.Stories = 4
	}
	if c.Prefetch == 0 {
		c.Prefetch = 32
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every unusable setting.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(c.AMQPURL); err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") {
		add("AMQP URL must be amqp:// or amqps://")
	}
	if c.Exchange == "" {
		add("exchange is empty")
	}
	if c.KeyDir == "" {
		add("key directory is required")
	}
	if !envelope.ValidNode(c.HubNode) {
		add("hub node %q is not 12 digits", c.HubNode)
	}
	if c.Now == nil {
		add("no clock")
	}
	if err := c.Resend.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.GapTimeout <= 0 {
		add("gap timeout %s is not positive", c.GapTimeout)
	}
	if c.GapFill < 0 {
		add("gap fill delay %s is negative", c.GapFill)
	}
	if c.Rate < 0 || c.Rate > 1000 {
		add("rate %g is not in 0..1000 messages per second", c.Rate)
	}
	if c.Stories < 1 {
		add("stories %d is not positive", c.Stories)
	}
	if c.Prefetch < 1 {
		add("prefetch %d is not positive", c.Prefetch)
	}
	for f, p := range c.Faults {
		if err := checkFault(f, p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mpssim: invalid config: %w", err)
	}
	return nil
}
