package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/httpapi"
	"zhianhub/adapters/secplatform"
	"zhianhub/cmd/zhianhub/internal/config"
	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/logs"
)

func runServe(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "serve")
	cfgPath := fs.String("config", "", "configuration file (default: env ZHIANHUB_CONFIG, else none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *cfgPath)
	if err != nil {
		return err
	}
	// The process log (JSON lines on stderr) is teed into the system log,
	// which the hub writes once its database is open.
	stderrLog := config.NewLogger(env.stderr, cfg.Log.Level)
	host, _ := os.Hostname()
	syslog, err := logs.NewWriter(logs.Config{Instance: fmt.Sprintf("%s:%d", host, os.Getpid()), Errors: stderrLog})
	if err != nil {
		return err
	}
	sysLevel, _ := config.ParseLevel(cfg.Log.SystemLevel)
	logger := slog.New(logs.NewHandler(stderrLog.Handler(), syslog, logs.HandlerOptions{Level: sysLevel, RequestID: httpapi.RequestID}))
	h, err := startHub(ctx, cfg, logger, syslog)
	if err != nil {
		logger.Error("start failed", "err", err)
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down", "timeout", cfg.Shutdown.Timeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Shutdown.Timeout)
	defer cancel()
	return h.stop(sctx)
}

// hub is the running service: every component with its own lifetime.
type hub struct {
	cfg     config.Config
	logger  *slog.Logger
	logs    *logs.Writer // the system and operation logs
	keys    *keystore.Store
	pool    *pgxpool.Pool
	audit   *audit.Writer
	keyring *fieldenc.Keyring
	http    *httpapi.Server
	started bool // hub.start was audited

	bus     *busRoutes
	portal  *portal            // the inbox streams' listener, the smart-push route
	cancel  context.CancelFunc // stops the routes
	routesW sync.WaitGroup
}

// startHub builds and starts every component, in dependency order; on
// failure it stops what was started.
func startHub(ctx context.Context, cfg config.Config, logger *slog.Logger, logw *logs.Writer) (_ *hub, err error) {
	h := &hub{cfg: cfg, logger: logger, logs: logw}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if h.audit != nil {
				// A failed start is audited too, with its reason.
				_, _ = h.audit.Append(sctx, audit.Entry{Actor: h.keys.Node(), Action: "hub.start", Object: Version, Result: "error", Reason: err.Error()})
			}
			_ = h.stop(sctx)
		}
	}()
	logger.Info("starting zhianhub", "version", Version, "mode", string(cfg.Mode), "config", cfg.Redacted())

	if h.keys, err = loadKeystore(cfg); err != nil {
		return nil, err
	}
	logger.Info("keys loaded", "node", h.keys.Node(), "sign", string(h.keys.Signer().KeyID()), "peers", h.keys.Peers())

	if err = store.Migrate(ctx, cfg.Database.URL); err != nil {
		return nil, err
	}
	// One connection per inbound shard, plus the relay, the audit writer,
	// the gap sweeper and the API (pgx's default, 4 on two cores, halved
	// the inbound route's throughput in BenchmarkInboundRoute).
	if h.pool, err = store.Open(ctx, cfg.Database.URL, store.PoolConfig{MaxConns: inboundShards + 8}); err != nil {
		return nil, err
	}
	h.logs.Start(h.pool)
	if h.audit, err = audit.NewWriter(h.pool, audit.WriterConfig{
		Signer:             h.keys.Signer(),
		CheckpointInterval: cfg.Audit.CheckpointInterval,
		Logger:             logger,
	}); err != nil {
		return nil, err
	}
	if h.keyring, err = fieldenc.Open(ctx, store.NewDataKeys(h.pool), h.keys); err != nil {
		return nil, err
	}

	if h.bus, err = newBusRoutes(ctx, cfg, logger, h.keys, h.pool, h.audit, h.keyring); err != nil {
		return nil, err
	}

	apiAuth, err := newAPIAuth(ctx, cfg, h.pool, logger)
	if err != nil {
		return nil, err
	}
	if h.bus.casework, err = newCasework(cfg, logger, h.bus, apiAuth.units); err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	checks := []httpapi.Check{
		{Name: "postgresql", Fn: h.pool.Ping},
		{Name: "rabbitmq", Fn: amqpCheck(cfg.AMQP.URL)},
		{Name: "mps-bus", Fn: h.bus.ready},
	}
	if h.bus.city != nil {
		checks = append(checks, httpapi.Check{Name: "city-bus", Fn: h.bus.city.ready})
	}
	if h.http, err = httpapi.New(httpapi.Config{
		Addr:            cfg.HTTP.Addr,
		Logger:          logger,
		Registry:        reg,
		ShutdownTimeout: cfg.Shutdown.Timeout,
		TLS:             apiAuth.tls,
		Checks:          checks,
	}); err != nil {
		return nil, err
	}
	if h.portal, err = newPortal(cfg, h.pool, h.bus, apiAuth, h.audit, h.keys.Node(), logger); err != nil {
		return nil, err
	}
	h.bus.live = h.portal.live
	h.bus.mount(h.http.Router(), apiAuth, h.logs)
	if err = h.http.Start(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	h.bus.start(rctx, &h.routesW)
	h.bus.casework.start(rctx, &h.routesW)
	h.portal.start(rctx, &h.routesW)
	h.routesW.Go(func() { h.archiveLoop(rctx) })
	h.routesW.Go(func() { h.verifyLoop(rctx) })
	if cfg.SecPlatform.Addr != "" {
		f, err := newSecForwarder(cfg, h.pool, logger)
		if err != nil {
			return nil, err
		}
		h.routesW.Go(func() { _ = f.Run(rctx) })
		logger.Info("forwarding security events", "addr", cfg.SecPlatform.Addr, "tls", cfg.SecPlatform.TLS)
	}
	// The start is recorded even when a shutdown signal arrives meanwhile
	// (readyz answers from here on): a signal is no start failure.
	// With it, any change of the configuration or of the key set since the
	// previous start (config.change, key.change): the keys are rotated and
	// the configuration edited offline, the hub records it when it runs
	// with them.
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Shutdown.Timeout)
	defer acancel()
	cfgMap, keyInv := cfg.RedactedMap(), keyInventory(h.keys)
	changes, err := startChanges(actx, h.pool, h.keys.Node(), cfgMap, keyInv)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for _, e := range append(changes, audit.Entry{
		Actor: h.keys.Node(), Action: "hub.start", Object: Version, Result: "ok",
		Detail: map[string]any{"mode": cfg.Mode, "http": h.http.Addr(), "auth": apiAuth.methods, "tls": apiAuth.tls != nil,
			"config": cfgMap, "keys": keyInv},
	}) {
		if _, err = h.audit.Append(actx, e); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	h.started = true
	logger.Info("zhianhub ready", "http", h.http.Addr())
	return h, nil
}

// stop shuts the components down in reverse order: no new requests, then
// flush the audit chain, then the database.
func (h *hub) stop(ctx context.Context) error {
	var errs []error
	if h.portal != nil {
		h.portal.stopStreams() // the inbox streams say bye; the HTTP shutdown need not wait for them
	}
	if h.http != nil {
		errs = append(errs, h.http.Shutdown(ctx))
	}
	if h.cancel != nil {
		// The routes finish their batches in flight (commit, then ack);
		// unacked deliveries go back to the queue.
		h.cancel()
		done := make(chan struct{})
		go func() { h.routesW.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("routes did not stop in time: %w", ctx.Err()))
		}
	}
	if h.audit != nil {
		if h.started {
			if _, err := h.audit.Append(ctx, audit.Entry{Actor: h.keys.Node(), Action: "hub.stop", Object: Version, Result: "ok"}); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, h.audit.Close(ctx))
	}
	if h.logs != nil {
		// The last records (this shutdown's) are written before the pool
		// closes; later ones are on stderr only.
		errs = append(errs, h.logs.Close(ctx))
	}
	if h.pool != nil {
		h.pool.Close()
	}
	err := errors.Join(errs...)
	if err != nil {
		h.logger.Error("shutdown", "err", err)
	} else {
		h.logger.Info("zhianhub stopped")
	}
	return err
}

// amqpCheck opens and closes one AMQP connection: the broker is up, the
// credentials and the vhost are right.
func amqpCheck(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		timeout := 3 * time.Second
		if d, ok := ctx.Deadline(); ok {
			timeout = time.Until(d)
		}
		conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(timeout), Properties: amqp.Table{"connection_name": "zhianhub-readiness"}})
		if err != nil {
			return fmt.Errorf("amqp: %w", err)
		}
		return conn.Close()
	}
}

// newSecForwarder sends the security events of the audit chain to the
// security-protection platform.
func newSecForwarder(cfg config.Config, pool *pgxpool.Pool, logger *slog.Logger) (*secplatform.Forwarder, error) {
	fc := secplatform.ForwarderConfig{Pool: pool, Addr: cfg.SecPlatform.Addr, Version: Version, Logger: logger}
	if cfg.SecPlatform.TLS {
		host, _, _ := net.SplitHostPort(cfg.SecPlatform.Addr)
		fc.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if cfg.SecPlatform.CAFile != "" {
			pem, err := os.ReadFile(cfg.SecPlatform.CAFile)
			if err != nil {
				return nil, fmt.Errorf("security_platform.ca_file: %w", err)
			}
			fc.TLS.RootCAs = x509.NewCertPool()
			if !fc.TLS.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("security_platform.ca_file %s: no PEM certificate", cfg.SecPlatform.CAFile)
			}
		}
	}
	return secplatform.NewForwarder(fc)
}

// archiveLoop archives the audit entries past audit.retention and the
// system and operation log records past log.retention, a minute after the
// start and then daily (file and signed manifest first, then deletion).
func (h *hub) archiveLoop(ctx context.Context) {
	wait := time.Minute
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = 24 * time.Hour
		res, err := audit.Archive(ctx, audit.ArchiveConfig{Pool: h.pool, Writer: h.audit, Dir: h.cfg.Audit.ArchiveDir,
			Before: time.Now().Add(-h.cfg.Audit.Retention), Signer: h.keys.Signer(), Keys: h.keys.SelfVerifier})
		switch {
		case errors.Is(err, audit.ErrNothingToArchive):
			h.logger.Debug("audit archive: nothing past the retention", "retention", h.cfg.Audit.Retention.String())
		case err != nil:
			if ctx.Err() == nil {
				h.logger.Error("audit archive failed; retrying in an hour", "err", err)
				wait = time.Hour
			}
		default:
			h.logger.Info("audit entries archived", "from", res.From, "to", res.To, "file", res.File, "manifest", res.Manifest)
		}
		for _, l := range []logs.Log{logs.LogOperation, logs.LogSystem} {
			res, err := logs.Archive(ctx, logs.ArchiveConfig{Pool: h.pool, Log: l, Dir: h.cfg.Log.ArchiveDir,
				Before: time.Now().Add(-h.cfg.Log.Retention), Signer: h.keys.Signer(), Audit: h.audit})
			switch {
			case errors.Is(err, logs.ErrNothingToArchive):
				h.logger.Debug("log archive: nothing past the retention", "log", l, "retention", h.cfg.Log.Retention.String())
			case err != nil:
				if ctx.Err() == nil {
					h.logger.Error("log archive failed; retrying in an hour", "log", l, "err", err)
					wait = time.Hour
				}
			default:
				h.logger.Info("log records archived", "log", l, "from", res.Manifest.FromID, "to", res.Manifest.ToID,
					"rows", res.Manifest.Rows, "file", res.File, "manifest", res.ManifestPath)
			}
		}
	}
}

// verifyLoop verifies the audit chain every audit.verify_interval. A break
// is logged each time and audited once per first bad entry, as
// security.chain_break: the security-protection platform hears of it (the
// chain carries the event after its head; the break is before it).
func (h *hub) verifyLoop(ctx context.Context) {
	reported := map[audit.Problem]bool{}
	t := time.NewTicker(h.cfg.Audit.VerifyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := audit.Verify(ctx, h.pool, h.keys.SelfVerifier)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				h.logger.Error("audit chain verification failed to run", "err", err)
			}
		case rep.OK:
			h.logger.Info("audit chain verified", "entries", rep.Entries, "last_seq", rep.LastSeq)
		default:
			h.logger.Error("audit chain BROKEN", "seq", rep.FirstBad.Seq, "kind", rep.FirstBad.Kind, "detail", rep.FirstBad.Detail)
			if reported[*rep.FirstBad] {
				continue
			}
			if err := audit.StageChainBreak(ctx, h.pool, rep, audit.Entry{Actor: h.keys.Node()}); err != nil {
				h.logger.Error("the chain break could not be audited", "err", err)
				continue
			}
			reported[*rep.FirstBad] = true
			h.audit.Notify()
		}
	}
}
