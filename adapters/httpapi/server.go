// Package httpapi is the hub's HTTP listener: liveness (/healthz), readiness
// (/readyz), Prometheus metrics (/metrics), request logging, request
// metrics and panic recovery. Later features mount their routes on Router(),
// e.g. s.Router().Route("/api/v1", ...), before Start.
//
// User-facing messages are Chinese (zh-CN); logs are English JSON (slog).
package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultAddr              = "127.0.0.1:8080"
	DefaultCheckTimeout      = 2 * time.Second
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 1 << 20
	DefaultShutdownTimeout   = 30 * time.Second
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Addr is the TCP address to listen on, host:port (port 0 picks one).
	Addr string
	// Logger receives access logs, panics and server errors. Default: discard.
	Logger *slog.Logger
	// Registry receives the HTTP metrics and is served on /metrics.
	// Default: a new registry of this server's own (no global registry is used).
	Registry *prometheus.Registry
	// Checks are run by /readyz, concurrently, each within CheckTimeout.
	Checks []Check
	// CheckTimeout bounds each readiness check.
	CheckTimeout time.Duration

	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// ShutdownTimeout bounds the graceful shutdown done by Run.
	ShutdownTimeout time.Duration
	// TLS, when set, makes the server serve HTTPS with this configuration
	// (its certificates, and ClientAuth for client certificates).
	TLS *tls.Config
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDur(&c.CheckTimeout, DefaultCheckTimeout)
	setDur(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDur(&c.ReadTimeout, DefaultReadTimeout)
	setDur(&c.WriteTimeout, DefaultWriteTimeout)
	setDur(&c.IdleTimeout, DefaultIdleTimeout)
	setDur(&c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
}

// Validate checks a Config after defaults are applied.
func (c Config) Validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("httpapi: Addr %q is not host:port", c.Addr))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		errs = append(errs, fmt.Errorf("httpapi: Addr %q: bad port", c.Addr))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("httpapi: Logger is nil"))
	}
	if c.Registry == nil {
		errs = append(errs, errors.New("httpapi: Registry is nil"))
	}
	for name, d := range map[string]time.Duration{
		"CheckTimeout":      c.CheckTimeout,
		"ReadHeaderTimeout": c.ReadHeaderTimeout,
		"ReadTimeout":       c.ReadTimeout,
		"WriteTimeout":      c.WriteTimeout,
		"IdleTimeout":       c.IdleTimeout,
		"ShutdownTimeout":   c.ShutdownTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("httpapi: %s must not be negative, got %s", name, d))
		}
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		errs = append(errs, errors.New("httpapi: TLS has no certificate"))
	}
	if c.MaxHeaderBytes < 0 {
		errs = append(errs, fmt.Errorf("httpapi: MaxHeaderBytes must not be negative, got %d", c.MaxHeaderBytes))
	}
	seen := map[string]bool{}
	for i, ch := range c.Checks {
		switch {
		case ch.Name == "":
			errs = append(errs, fmt.Errorf("httpapi: Checks[%d] has no Name", i))
		case seen[ch.Name]:
			errs = append(errs, fmt.Errorf("httpapi: check %q appears twice", ch.Name))
		}
		seen[ch.Name] = true
		if ch.Fn == nil {
			errs = append(errs, fmt.Errorf("httpapi: check %q has no Fn", ch.Name))
		}
	}
	return errors.Join(errs...)
}

// Server is the HTTP listener. Routes are added through Router before
// Start; the server is then safe for concurrent use.
type Server struct {
	cfg     Config
	router  *chi.Mux
	metrics *metrics

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	done     chan struct{} // closed when Serve returns
	serveErr error
}

// New builds a server with /healthz, /readyz and /metrics mounted.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Checks = append([]Check(nil), cfg.Checks...)
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, router: chi.NewRouter(), metrics: m}
	s.router.Use(requestID, s.instrument, s.recoverer)
	s.router.Get("/healthz", s.healthz)
	s.router.Get("/readyz", s.readyz)
	s.router.Handle("/metrics", metricsHandler(cfg.Registry))
	return s, nil
}

// Router returns the root router, to mount further routes on (before
// Start). Add middleware with Group, Route or With: the root's own
// middleware is fixed.
func (s *Server) Router() chi.Router { return s.router }

// Handler returns the server's whole HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.router }

// Start listens on Addr and serves in the background. It returns once the
// listener is bound (or failed to bind). ctx bounds the bind and provides
// the values of request contexts; its cancellation does not stop the server:
// call Shutdown (or use Run).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("httpapi: server already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("httpapi: listen on %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.TLS != nil {
		tc := s.cfg.TLS.Clone()
		if len(tc.NextProtos) == 0 {
			tc.NextProtos = []string{"http/1.1"}
		}
		ln = tls.NewListener(ln, tc)
	}
	base := context.WithoutCancel(ctx)
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.router,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
	}
	s.done = make(chan struct{})
	srv, done := s.srv, s.done
	go func() {
		defer close(done)
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.mu.Lock()
		s.serveErr = err
		s.mu.Unlock()
	}()
	s.cfg.Logger.InfoContext(ctx, "http server listening", "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil)
	return nil
}

// Addr returns the bound address once started (useful with port 0), else
// the configured one.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.cfg.Addr
}

// Done is closed when the server stops serving; nil before Start.
func (s *Server) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Shutdown stops accepting connections and waits for in-flight requests
// until ctx ends; then it closes what is left and returns ctx's error. It
// returns the serving error, if serving had failed. Shutdown before Start
// does nothing.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
		<-done
		return fmt.Errorf("httpapi: graceful shutdown: %w", err)
	}
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serveErr != nil {
		return fmt.Errorf("httpapi: serve: %w", s.serveErr)
	}
	s.cfg.Logger.InfoContext(ctx, "http server stopped", "addr", s.ln.Addr().String())
	return nil
}

// Run starts the server, serves until ctx is cancelled (or serving fails),
// then shuts down gracefully within ShutdownTimeout.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	return s.Shutdown(sctx)
}
