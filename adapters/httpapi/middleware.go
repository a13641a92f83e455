package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
)

// HeaderRequestID carries the request id in requests and responses.
const HeaderRequestID = "X-Request-Id"

type ctxKey int

const requestIDKey ctxKey = 0

var requestIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// RequestID returns the id of the request ctx belongs to ("" outside one).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestID keeps a well-formed incoming X-Request-Id or makes a UUIDv7,
// stores it in the context and echoes it in the response.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !requestIDRe.MatchString(id) {
			u, err := uuid.NewV7()
			if err != nil {
				u = uuid.New()
			}
			id = u.String()
		}
		w.Header().Set(HeaderRequestID, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// probePaths are logged at debug level: orchestrators poll them.
var probePaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// instrument records request metrics and writes one access log line per
// request.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		s.metrics.inFlight.Inc()
		defer func() {
			s.metrics.inFlight.Dec()
			d := time.Since(start)
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // nothing written: net/http sends 200
			}
			route := routePattern(r)
			s.metrics.observe(r.Method, route, status, d)

			level := slog.LevelInfo
			switch {
			case status >= 500:
				level = slog.LevelError
			case probePaths[route]:
				level = slog.LevelDebug
			}
			s.cfg.Logger.LogAttrs(r.Context(), level, "http request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Int("bytes", ww.BytesWritten()),
				slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				slog.String("remote", r.RemoteAddr),
				slog.String("request_id", RequestID(r.Context())),
			)
		}()
		next.ServeHTTP(ww, r)
	})
}

// routePattern is the matched chi route ("unmatched" when none), which keeps
// metric labels bounded.
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

// recoverer turns a handler panic into a logged E199 answer. It re-panics
// http.ErrAbortHandler, which net/http uses to abort a response.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
				panic(v)
			}
			s.metrics.panics.Inc()
			s.cfg.Logger.ErrorContext(r.Context(), "http handler panic",
				"panic", fmt.Sprint(v),
				"method", r.Method,
				"path", r.URL.Path,
				"request_id", RequestID(r.Context()),
				"stack", string(debug.Stack()),
			)
			if ww, ok := w.(middleware.WrapResponseWriter); ok && ww.Status() != 0 {
				return // the answer has begun: nothing sensible to add
			}
			WriteError(w, http.StatusInternalServerError, CodeInternal, MessageInternal)
		}()
		next.ServeHTTP(w, r)
	})
}
