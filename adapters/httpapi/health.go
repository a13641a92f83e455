package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Check is one named readiness check. Fn must honour ctx; one that does not
// is reported as timed out all the same.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// DialCheck returns a check that a TCP address accepts
// connections, e.g. DialCheck("amqp", "127.0.0.1:5672").
func DialCheck(name, addr string) Check {
	return Check{Name: name, Fn: func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}}
}

// CheckResult is the outcome of one check in the /readyz body.
type CheckResult struct {
	Name       string  `json:"name"`
	Status     string  `json:"status"` // "ok" or "fail"
	Error      string  `json:"error,omitempty"`
	DurationMS float64 `json:"duration_ms"`
}

// ReadyBody is the /readyz body.
type ReadyBody struct {
	Status string        `json:"status"` // "ok" or "unavailable"
	Failed []string      `json:"failed,omitempty"`
	Checks []CheckResult `json:"checks"`
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	body := s.runChecks(r.Context())
	w.Header().Set("Cache-Control", "no-store")
	if len(body.Failed) > 0 {
		s.cfg.Logger.WarnContext(r.Context(), "not ready", "failed", body.Failed, "request_id", RequestID(r.Context()))
		WriteJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	WriteJSON(w, http.StatusOK, body)
}

// runChecks runs every check concurrently, each within CheckTimeout.
func (s *Server) runChecks(ctx context.Context) ReadyBody {
	results := make([]CheckResult, len(s.cfg.Checks))
	var wg sync.WaitGroup
	for i, ch := range s.cfg.Checks {
		wg.Go(func() {
			start := time.Now()
			err := s.runCheck(ctx, ch)
			res := CheckResult{Name: ch.Name, Status: "ok", DurationMS: float64(time.Since(start).Microseconds()) / 1000}
			up := 1.0
			if err != nil {
				res.Status, res.Error, up = "fail", err.Error(), 0
			}
			s.metrics.checkUp.WithLabelValues(ch.Name).Set(up)
			results[i] = res
		})
	}
	wg.Wait()
	body := ReadyBody{Status: "ok", Checks: results}
	for _, r := range results {
		if r.Status != "ok" {
			body.Failed = append(body.Failed, r.Name)
		}
	}
	if len(body.Failed) > 0 {
		body.Status = "unavailable"
	}
	return body
}

// runCheck runs one check within CheckTimeout, turning a panic into an
// error and not waiting for a check that ignores its context.
func (s *Server) runCheck(ctx context.Context, ch Check) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
	defer cancel()
	errc := make(chan error, 1) // buffered: a late check must not block
	go func() {
		defer func() {
			if v := recover(); v != nil {
				errc <- fmt.Errorf("check panicked: %v", v)
			}
		}()
		errc <- ch.Fn(ctx)
	}()
	select {
	case err := <-errc:
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s: %w", s.cfg.CheckTimeout, err)
		}
		return err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s", s.cfg.CheckTimeout)
		}
		return ctx.Err()
	}
}
