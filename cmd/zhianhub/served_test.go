package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// served is a `zhianhub serve` running in the test's process.
type served struct {
	Base string // http://addr
	Logs *syncBuffer
	stop context.CancelFunc
	done chan int
}

// startServe runs `zhianhub serve` with env (ZHIANHUB_HTTP_ADDR set) and
// returns once /readyz answers 200 over HTTP. The hub is stopped at
// cleanup if the test did not Stop it.
func startServe(t *testing.T, env map[string]string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{Base: "http://" + env["ZHIANHUB_HTTP_ADDR"], Logs: &syncBuffer{}, stop: cancel, done: make(chan int, 1)}
	go func() {
		e := &cliEnv{stdin: strings.NewReader(""), stdout: io.Discard, stderr: s.Logs, getenv: func(k string) string { return env[k] }}
		s.done <- run(ctx, e, []string{"serve"})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(40 * time.Second):
			t.Error("serve did not stop")
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(s.Base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub not ready: %v\n%s", err, s.Logs.String())
		}
	}
}

// Stop stops the hub as SIGTERM does and returns its exit status.
func (s *served) Stop(t *testing.T) int {
	t.Helper()
	s.stop()
	select {
	case code := <-s.done:
		s.done <- code // for the cleanup
		return code
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop")
	}
	return -1
}
