package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestServer(t *testing.T, cfg Config) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, logs
}

func do(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// openAddr returns a loopback address that accepts connections.
func openAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestHealthz(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	rec := do(t, s.Handler(), http.MethodGet, "/healthz")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if got := strings.TrimSpace(rec.Body.String()); got != `{"status":"ok"}` {
		t.Errorf("body %s", got)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if rec.Header().Get(HeaderRequestID) == "" {
		t.Error("no request id in the answer")
	}
}

func TestReadyz(t *testing.T) {
	okCheck := DialCheck("postgres", openAddr(t))
	down := closedAddr(t)
	tests := []struct {
		name       string
		checks     []Check
		wantStatus int
		wantFailed []string
		wantErr    map[string]string // check -> part of its error
	}{
		{"no checks", nil, http.StatusOK, nil, nil},
		{"all pass", []Check{okCheck, {Name: "noop", Fn: func(context.Context) error { return nil }}}, http.StatusOK, nil, nil},
		{"closed port", []Check{okCheck, DialCheck("amqp", down)}, http.StatusServiceUnavailable,
			[]string{"amqp"}, map[string]string{"amqp": "connection refused"}},
		{"error and panic", []Check{
			{Name: "disk", Fn: func(context.Context) error { return errors.New("disk full") }},
			{Name: "boom", Fn: func(context.Context) error { panic("kaput") }},
		}, http.StatusServiceUnavailable, []string{"disk", "boom"},
			map[string]string{"disk": "disk full", "boom": "check panicked: kaput"}},
		{"ignores its context", []Check{{Name: "stuck", Fn: func(context.Context) error {
			time.Sleep(2 * time.Second)
			return nil
		}}}, http.StatusServiceUnavailable, []string{"stuck"}, map[string]string{"stuck": "timed out after 100ms"}},
		{"honours its context", []Check{{Name: "slow", Fn: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}}}, http.StatusServiceUnavailable, []string{"slow"}, map[string]string{"slow": "timed out after 100ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, Config{Checks: tt.checks, CheckTimeout: 100 * time.Millisecond})
			start := time.Now()
			rec := do(t, s.Handler(), http.MethodGet, "/readyz")
			if el := time.Since(start); el > time.Second {
				t.Errorf("readyz took %s", el)
			}
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			var body ReadyBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			wantStatus := "ok"
			if len(tt.wantFailed) > 0 {
				wantStatus = "unavailable"
			}
			if body.Status != wantStatus || strings.Join(body.Failed, ",") != strings.Join(tt.wantFailed, ",") {
				t.Errorf("status %q failed %v, want %q %v", body.Status, body.Failed, wantStatus, tt.wantFailed)
			}
			if len(body.Checks) != len(tt.checks) {
				t.Fatalf("%d results for %d checks", len(body.Checks), len(tt.checks))
			}
			for i, r := range body.Checks {
				if r.Name != tt.checks[i].Name {
					t.Errorf("result %d is %q, want %q", i, r.Name, tt.checks[i].Name)
				}
				want, fails := tt.wantErr[r.Name]
				switch {
				case fails && (r.Status != "fail" || !strings.Contains(r.Error, want)):
					t.Errorf("check %s: %s %q, want fail with %q", r.Name, r.Status, r.Error, want)
				case !fails && (r.Status != "ok" || r.Error != ""):
					t.Errorf("check %s: %s %q, want ok", r.Name, r.Status, r.Error)
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "zhianhub_test_messages_total", Help: "test counter"})
	reg.MustRegister(c)
	c.Add(3)
	s, _ := newTestServer(t, Config{Registry: reg, Checks: []Check{DialCheck("amqp", closedAddr(t))}})
	do(t, s.Handler(), http.MethodGet, "/healthz")
	do(t, s.Handler(), http.MethodGet, "/readyz")
	do(t, s.Handler(), http.MethodGet, "/no/such/page")

	rec := do(t, s.Handler(), http.MethodGet, "/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		"zhianhub_test_messages_total 3",
		`zhianhub_http_requests_total{code="200",method="GET",route="/healthz"} 1`,
		`zhianhub_http_requests_total{code="503",method="GET",route="/readyz"} 1`,
		`zhianhub_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`zhianhub_http_request_duration_seconds_bucket{code="200",method="GET",route="/healthz",le="+Inf"} 1`,
		`zhianhub_readiness_check_up{check="amqp"} 0`,
		"zhianhub_http_requests_in_flight 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics miss %q", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// TestSharedRegistry: two servers may share one registry.
func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := New(Config{Registry: reg}); err != nil {
			t.Fatalf("New: %v", err)
		}
	}
}

func TestRecoverer(t *testing.T) {
	s, logs := newTestServer(t, Config{})
	s.Router().Get("/boom", func(http.ResponseWriter, *http.Request) { panic("kaput") })
	s.Router().Get("/late", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		panic("after the header")
	})
	s.Router().Get("/abort", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })

	rec := do(t, s.Handler(), http.MethodGet, "/boom")
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", rec.Code)
	}
	var e ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	if e != (ErrorBody{Code: "E199", Message: "内部错误"}) {
		t.Errorf("body %+v", e)
	}
	if !strings.Contains(logs.String(), `"msg":"http handler panic","panic":"kaput"`) ||
		!strings.Contains(logs.String(), `"stack":"goroutine`) {
		t.Errorf("panic not logged with its stack: %s", logs)
	}
	if !strings.Contains(logs.String(), `"route":"/boom","status":500`) {
		t.Errorf("access log does not show the 500: %s", logs)
	}

	// The server goes on answering.
	if rec := do(t, s.Handler(), http.MethodGet, "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("healthz after a panic: %d", rec.Code)
	}

	// A panic after the header keeps that header and adds no body.
	rec = do(t, s.Handler(), http.MethodGet, "/late")
	if rec.Code != http.StatusAccepted || rec.Body.Len() != 0 {
		t.Errorf("late panic: %d %q", rec.Code, rec.Body)
	}

	// http.ErrAbortHandler goes up to net/http.
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler { //nolint:errorlint
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		do(t, s.Handler(), http.MethodGet, "/abort")
	}()
}

func TestRequestIDAndAccessLog(t *testing.T) {
	s, logs := newTestServer(t, Config{})
	s.Router().Get("/api/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"id": RequestID(r.Context())})
	})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/things/42", nil)
	req.Header.Set(HeaderRequestID, "abc-123")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if got := rec.Header().Get(HeaderRequestID); got != "abc-123" {
		t.Errorf("request id %q", got)
	}
	if !strings.Contains(rec.Body.String(), `"id":"abc-123"`) {
		t.Errorf("handler saw %s", rec.Body)
	}
	var line map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
	}
	for k, want := range map[string]any{
		"msg": "http request", "level": "INFO", "method": "GET", "path": "/api/v1/things/42",
		"route": "/api/v1/things/{id}", "status": 200.0, "request_id": "abc-123",
	} {
		if line[k] != want {
			t.Errorf("log %s = %v, want %v", k, line[k], want)
		}
	}

	// A malformed incoming id is replaced.
	req = httptest.NewRequest(http.MethodGet, "/healthz", nil)
	req.Header.Set(HeaderRequestID, "bad id\x01")
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if got := rec.Header().Get(HeaderRequestID); len(got) != 36 {
		t.Errorf("replacement id %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	fn := func(context.Context) error { return nil }
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad addr", Config{Addr: "8080"}, "not host:port"},
		{"bad port", Config{Addr: "127.0.0.1:70000"}, "bad port"},
		{"negative timeout", Config{ReadHeaderTimeout: -time.Second}, "ReadHeaderTimeout"},
		{"unnamed check", Config{Checks: []Check{{Fn: fn}}}, "has no Name"},
		{"duplicate check", Config{Checks: []Check{{"db", fn}, {"db", fn}}}, `"db" appears twice`},
		{"nil Fn", Config{Checks: []Check{{Name: "db"}}}, `"db" has no Fn`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want %q", err, tt.want)
			}
		})
	}
	var c Config
	c.setDefaults()
	if c.Addr != DefaultAddr || c.CheckTimeout != DefaultCheckTimeout || c.Registry == nil || c.Logger == nil ||
		c.ReadHeaderTimeout != DefaultReadHeaderTimeout || c.MaxHeaderBytes != DefaultMaxHeaderBytes {
		t.Errorf("defaults %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

// TestStartShutdown serves on a real port and drains an in-flight request.
func TestStartShutdown(t *testing.T) {
	s, _ := newTestServer(t, Config{Addr: "127.0.0.1:0"})
	entered := make(chan struct{})
	s.Router().Get("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		WriteJSON(w, http.StatusOK, map[string]string{"done": "yes"})
	})
	if err := s.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Start(t.Context()); err == nil {
		t.Error("second Start succeeded")
	}
	base := "http://" + s.Addr()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", resp.StatusCode)
	}

	type result struct {
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{string(b), err}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r := <-slow
	if r.err != nil || !strings.Contains(r.body, `"done":"yes"`) {
		t.Errorf("in-flight request: %q %v", r.body, r.err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after Shutdown")
	}
	select {
	case <-s.Done():
	default:
		t.Error("Done not closed after Shutdown")
	}
}

func TestStartBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, _ := newTestServer(t, Config{Addr: ln.Addr().String()})
	if err := s.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Errorf("Start on a used port: %v", err)
	}
}

func TestRun(t *testing.T) {
	s, _ := newTestServer(t, Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.Done() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
