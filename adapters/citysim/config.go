package citysim

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"time"

	"zhianhub/adapters/citybus"
	"zhianhub/adapters/mpssim"
	"zhianhub/envelope"
)

// Defaults.
const (
	DefaultControlAddr = "127.0.0.1:8092"
	DefaultGapTimeout  = 10 * time.Minute
)

// DefaultUnits are the target units of the random orders: units of the
// demo unit tree (adapters/auth/units_demo.yaml).
var DefaultUnits = []string{"310101000000", "310101010000", "310104000000", "310104010000", "310105000000", "310106000000"}

// Faults the city simulator injects (the Ministry simulator's names and
// meanings, mpssim.Fault).
var faults = []mpssim.Fault{mpssim.FaultDuplicate, mpssim.FaultReorder, mpssim.FaultBadSignature,
	mpssim.FaultStaleTimestamp, mpssim.FaultInvalidPayload, mpssim.FaultLostReceipt}

// Faults lists the faults the city simulator supports.
func Faults() []mpssim.Fault { return slices.Clone(faults) }

// FaultDoc describes f as the city simulator applies it.
func FaultDoc(f mpssim.Fault) string {
	switch f {
	case mpssim.FaultDuplicate:
		return "publish an order twice with the same id (hub: DUPLICATE)"
	case mpssim.FaultReorder:
		return "send an order after the next one (hub: applies both)"
	case mpssim.FaultBadSignature:
		return "flip a bit of an order's signature (hub: E110, no receipt)"
	case mpssim.FaultStaleTimestamp:
		return "order timestamp 25 h old (hub: REJECTED E113)"
	case mpssim.FaultInvalidPayload:
		return "invalid order: refNo not orderNo, empty title or an unknown field (hub: REJECTED E120)"
	case mpssim.FaultLostReceipt:
		return "drop a receipt from the hub, so the order is resent (hub: DUPLICATE)"
	}
	return ""
}

func checkFault(f mpssim.Fault, p float64) error {
	if !slices.Contains(faults, f) {
		return fmt.Errorf("unknown fault %q (city simulator: %v)", f, faults)
	}
	if !(p >= 0 && p <= 1) {
		return fmt.Errorf("fault %s: probability %g is not in 0..1", f, p)
	}
	return nil
}

// Config configures the simulator; New applies the defaults.
type Config struct {
	// AMQPURL locates RabbitMQ; default mpssim.DefaultAMQPURL.
	AMQPURL string
	// ConnectionName is shown by the broker; default "zhianhub-city-sim".
	ConnectionName string
	// Exchange is the bus exchange; default citybus.Exchange.
	Exchange string
	// KeyDir is the city bureau's key directory (self node 310000000001,
	// peers/<hub> with the hub's public keys). Required.
	KeyDir string
	// Passphrase decrypts the private keys of KeyDir, if protected.
	Passphrase []byte
	// HubNode is where orders go; default citybus.NodeHub.
	HubNode string
	// Now is the clock of envelope timestamps and payload times; default
	// time.Now.
	Now func() time.Time
	// Resend is the resend policy of orders without a receipt (the
	// Ministry simulator's type; zero fields take its spec defaults).
	Resend mpssim.ResendPolicy
	// GapTimeout is how long a feedback ahead of a sequence gap is held
	// before E140; default 10 minutes.
	GapTimeout time.Duration
	// Rate is the random order traffic in orders per second; 0 = off.
	Rate float64
	// Seed makes the random traffic reproducible; 0 seeds at random.
	Seed uint64
	// Units are the target units random orders pick from (1-3 each);
	// default DefaultUnits.
	Units []string
	// ScriptPath names a file of JSON lines, each an Order (fields left
	// out are generated), sent in order at start; "" = none.
	ScriptPath string
	// ControlAddr is the listen address of the control API; "" = off.
	ControlAddr string
	// Faults are fault probabilities (0..1) applied to the random orders
	// (lostReceipt: to each receipt received).
	Faults map[mpssim.Fault]float64
	// Prefetch bounds the unacknowledged deliveries; default 32.
	Prefetch int
	// Logger receives one line per message; default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.AMQPURL == "" {
		c.AMQPURL = mpssim.DefaultAMQPURL
	}
	if c.ConnectionName == "" {
		c.ConnectionName = "zhianhub-city-sim"
	}
	if c.Exchange == "" {
		c.Exchange = citybus.Exchange
	}
	if c.HubNode == "" {
		c.HubNode = citybus.NodeHub
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Resend.SetDefaults()
	if c.GapTimeout == 0 {
		c.GapTimeout = DefaultGapTimeout
	}
	if len(c.Units) == 0 {
		c.Units = slices.Clone(DefaultUnits)
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
	if err := c.Resend.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.GapTimeout <= 0 {
		add("gap timeout %s is not positive", c.GapTimeout)
	}
	if c.Rate < 0 || c.Rate > 1000 {
		add("rate %g is not in 0..1000 orders per second", c.Rate)
	}
	for _, u := range c.Units {
		if !envelope.ValidNode(u) { // unit codes are 12 digits, like node codes
			add("unit %q is not 12 digits", u)
		}
	}
	if len(c.Units) > 64 {
		add("%d units: an order targets at most 64", len(c.Units))
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
		return fmt.Errorf("citysim: invalid config: %w", err)
	}
	return nil
}
