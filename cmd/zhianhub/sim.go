package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"zhianhub/adapters/citybus"
	"zhianhub/adapters/citysim"
	"zhianhub/adapters/mpsbus"
	"zhianhub/adapters/mpssim"
	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/contracts"
)

// runSim runs a bus simulator: `zhianhub sim mps [flags]`.
func runSim(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return &exitError{code: 2, err: errors.New("usage: zhianhub sim mps|city [flags]")}
	}
	switch args[0] {
	case "mps":
		return simMPS(ctx, env, args[1:])
	case "city":
		return simCity(ctx, env, args[1:])
	}
	return &exitError{code: 2, err: fmt.Errorf("zhianhub sim: unknown simulator %q (mps|city)", args[0])}
}

// simMPS runs the Ministry bus simulator until ctx ends.
func simMPS(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "sim mps")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: zhianhub sim mps [flags]\n\n"+
			"Plays the Ministry bus (node 000000000000) against the hub: answers its filings\n"+
			"with receipts, sends random and scripted downward traffic, injects faults.\n"+
			"Control API (--control): GET /stats, GET|POST /faults, POST /send, GET /messages/{id}.\n\nflags:")
		fs.PrintDefaults()
	}
	amqpURL := env.getenv("ZHIANHUB_AMQP_URL")
	if amqpURL == "" {
		amqpURL = config.DefaultAMQPURL
	}
	var cfg mpssim.Config
	fs.StringVar(&cfg.AMQPURL, "amqp-url", amqpURL, "RabbitMQ URL (env ZHIANHUB_AMQP_URL)")
	fs.StringVar(&cfg.Exchange, "exchange", mpsbus.Exchange, "bus exchange; node queues of another exchange are prefixed with its name")
	fs.StringVar(&cfg.KeyDir, "keys", "var/demo-peers/"+mpsbus.NodeMinistry, "the Ministry's key directory (peers/<hub> holds the hub's public keys)")
	passFile := fs.String("passphrase-file", "", "file holding the passphrase of the simulator's private keys")
	fs.StringVar(&cfg.HubNode, "hub", mpsbus.NodeShanghai, "node code of the hub the downward traffic goes to")
	fs.Float64Var(&cfg.Rate, "rate", 1, "random downward traffic, messages per second (0 = off)")
	fs.IntVar(&cfg.Stories, "stories", 4, "persons the random traffic follows at the same time")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the random traffic (0 = random)")
	fs.StringVar(&cfg.ScriptPath, "script", "", `file of JSON lines {"kind":...,"payload":{...}} sent in order at start (personNo/seq filled in if absent)`)
	fs.StringVar(&cfg.CategoriesPath, "categories", env.getenv(contracts.EnvCategories), "category table (env "+contracts.EnvCategories+"; default the demo table)")
	fs.StringVar(&cfg.ControlAddr, "control", mpssim.DefaultControlAddr, `control HTTP API address ("" = off)`)
	fs.DurationVar(&cfg.Resend.Initial, "resend-initial", 60*time.Second, "first resend of a message without receipt")
	fs.Float64Var(&cfg.Resend.Multiplier, "resend-multiplier", 2, "factor between resend intervals")
	fs.DurationVar(&cfg.Resend.Max, "resend-max", 30*time.Minute, "longest resend interval")
	fs.DurationVar(&cfg.Resend.GiveUp, "resend-give-up", 24*time.Hour, "flag a message without receipt after this long")
	fs.DurationVar(&cfg.GapTimeout, "gap-timeout", mpssim.DefaultGapTimeout, "reject filings held ahead of a sequence gap with E140 after this long")
	fs.DurationVar(&cfg.GapFill, "gap-fill", 0, "send a message withheld by the gap fault after this delay (0 = never)")
	skew := fs.Duration("clock-skew", 0, "shift the simulator's clock (envelope ts, payload times, timestamp window)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	faults := map[mpssim.Fault]*float64{}
	for _, f := range mpssim.AllFaults() {
		faults[f] = fs.Float64("fault-"+kebab(string(f)), 0, "probability 0..1: "+mpssim.FaultDoc(f))
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("zhianhub sim mps: unexpected argument %q", fs.Arg(0))}
	}
	if _, err := config.ParseLevel(*logLevel); err != nil {
		return &exitError{code: 2, err: fmt.Errorf("zhianhub sim mps: --log-level %w", err)}
	}
	pass, err := readPassphrase(*passFile)
	if err != nil {
		return err
	}
	cfg.Passphrase = pass
	if *skew != 0 {
		d := *skew
		cfg.Now = func() time.Time { return time.Now().Add(d) }
	}
	cfg.Faults = map[mpssim.Fault]float64{}
	for f, p := range faults {
		if *p != 0 {
			cfg.Faults[f] = *p
		}
	}
	cfg.Logger = config.NewLogger(env.stderr, *logLevel)
	sim, err := mpssim.New(cfg)
	if err != nil {
		return err
	}
	return sim.Run(ctx)
}

// kebab turns a camelCase name into kebab-case: badSignature -> bad-signature.
func kebab(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('-')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// simCity runs the city-bureau feedback bus simulator until ctx ends.
func simCity(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "sim city")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: zhianhub sim city [flags]\n\n"+
			"Plays the city bureau (node 310000000001) on the city feedback bus: answers the\n"+
			"hub's feedback with receipts, sends random, scripted and on-demand dispatch\n"+
			"orders, injects faults.\n"+
			"Control API (--control): GET /stats, GET|POST /faults, POST /send, GET /messages/{id}, GET /feedback.\n\nflags:")
		fs.PrintDefaults()
	}
	amqpURL := env.getenv("ZHIANHUB_AMQP_URL")
	if amqpURL == "" {
		amqpURL = config.DefaultAMQPURL
	}
	var cfg citysim.Config
	fs.StringVar(&cfg.AMQPURL, "amqp-url", amqpURL, "RabbitMQ URL (env ZHIANHUB_AMQP_URL)")
	fs.StringVar(&cfg.Exchange, "exchange", citybus.Exchange, "bus exchange; node queues of another exchange are prefixed with its name")
	fs.StringVar(&cfg.KeyDir, "keys", "var/demo-peers/"+citybus.NodeCity, "the city bureau's key directory (peers/<hub> holds the hub's public keys)")
	passFile := fs.String("passphrase-file", "", "file holding the passphrase of the simulator's private keys")
	fs.StringVar(&cfg.HubNode, "hub", citybus.NodeHub, "node code of the hub the orders go to")
	fs.Float64Var(&cfg.Rate, "rate", 0.1, "random dispatch orders per second (0 = off)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the random traffic (0 = random)")
	units := fs.String("units", strings.Join(citysim.DefaultUnits, ","), "comma-separated unit codes the random orders target (1-3 each)")
	fs.StringVar(&cfg.ScriptPath, "script", "", "file of JSON lines, each an Order (missing fields generated), sent in order at start")
	fs.StringVar(&cfg.ControlAddr, "control", citysim.DefaultControlAddr, `control HTTP API address ("" = off)`)
	fs.DurationVar(&cfg.Resend.Initial, "resend-initial", 60*time.Second, "first resend of an order without receipt")
	fs.Float64Var(&cfg.Resend.Multiplier, "resend-multiplier", 2, "factor between resend intervals")
	fs.DurationVar(&cfg.Resend.Max, "resend-max", 30*time.Minute, "longest resend interval")
	fs.DurationVar(&cfg.Resend.GiveUp, "resend-give-up", 24*time.Hour, "flag an order without receipt after this long")
	fs.DurationVar(&cfg.GapTimeout, "gap-timeout", citysim.DefaultGapTimeout, "reject feedback held ahead of a sequence gap with E140 after this long")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	faults := map[mpssim.Fault]*float64{}
	for _, f := range citysim.Faults() {
		faults[f] = fs.Float64("fault-"+kebab(string(f)), 0, "probability 0..1: "+citysim.FaultDoc(f))
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("zhianhub sim city: unexpected argument %q", fs.Arg(0))}
	}
	if _, err := config.ParseLevel(*logLevel); err != nil {
		return &exitError{code: 2, err: fmt.Errorf("zhianhub sim city: --log-level %w", err)}
	}
	pass, err := readPassphrase(*passFile)
	if err != nil {
		return err
	}
	cfg.Passphrase = pass
	for _, u := range strings.Split(*units, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.Units = append(cfg.Units, u)
		}
	}
	cfg.Faults = map[mpssim.Fault]float64{}
	for f, p := range faults {
		if *p != 0 {
			cfg.Faults[f] = *p
		}
	}
	cfg.Logger = config.NewLogger(env.stderr, *logLevel)
	sim, err := citysim.New(cfg)
	if err != nil {
		return err
	}
	return sim.Run(ctx)
}
