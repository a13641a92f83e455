//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/mpsbus"
	"zhianhub/envelope"
)

// This file is the rig of TestCrashSIGKILL (crash_test.go): the hub as a
// separate process that the test can SIGKILL and restart, and the Ministry
// side of the bus played by the test.

// crashBuildHub builds the hub binary from this package into dir.
func crashBuildHub(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "zhianhub")
	args := []string{"build", "-o", bin}
	if crashRace {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, ".")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out.String())
	}
	t.Logf("built the hub (race detector: %v) in %s", crashRace, time.Since(start).Round(time.Millisecond))
	return bin
}

// crashHub runs `zhianhub serve` as a child process, configured by
// environment variables only, its stderr (and stdout) in one log file per run.
type crashHub struct {
	t    *testing.T
	bin  string
	dir  string
	env  []string
	addr string

	runs    int
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process is gone
	exitErr error         // its Wait error, once exited is closed
	logs    []string
}

func newCrashHub(t *testing.T, bin, dir, addr string, vars map[string]string) *crashHub {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ZHIANHUB_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	h := &crashHub{t: t, bin: bin, dir: dir, env: env, addr: addr}
	t.Cleanup(func() {
		if h.running() {
			h.signal(syscall.SIGKILL)
			<-h.exited
		}
	})
	return h
}

func (h *crashHub) running() bool {
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// start launches the hub and waits until /readyz answers 200 (database,
// broker and bus topology ready).
func (h *crashHub) start(timeout time.Duration) {
	h.t.Helper()
	h.runs++
	path := filepath.Join(h.dir, fmt.Sprintf("hub-run%d.log", h.runs))
	f, err := os.Create(path)
	if err != nil {
		h.t.Fatal(err)
	}
	h.logs = append(h.logs, path)
	cmd := exec.Command(h.bin, "serve")
	cmd.Env = h.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		h.t.Fatalf("start hub: %v", err)
	}
	h.cmd = cmd
	exited := make(chan struct{})
	h.exited = exited
	go func() {
		err := cmd.Wait()
		f.Close()
		h.exitErr = err
		close(exited)
	}()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + h.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !h.running() {
			h.t.Fatalf("hub run %d exited before it was ready: %v\n%s", h.runs, h.exitErr, h.logTail(40))
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("hub run %d not ready after %s: %v\n%s", h.runs, timeout, err, h.logTail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *crashHub) pid() int { return h.cmd.Process.Pid }

// signal sends sig to the hub process this rig started (by its pid).
func (h *crashHub) signal(sig syscall.Signal) {
	if err := syscall.Kill(h.pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		h.t.Errorf("kill -%d %d: %v", sig, h.pid(), err)
	}
}

// kill SIGKILLs the hub and waits for it to be gone.
func (h *crashHub) kill() {
	h.t.Helper()
	h.signal(syscall.SIGKILL)
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		h.t.Fatal("hub did not die after SIGKILL")
	}
}

// stop stops the hub with SIGTERM (graceful) and returns its exit error.
func (h *crashHub) stop(timeout time.Duration) error {
	h.signal(syscall.SIGTERM)
	select {
	case <-h.exited:
		return h.exitErr
	case <-time.After(timeout):
		h.signal(syscall.SIGKILL)
		<-h.exited
		return fmt.Errorf("hub did not stop within %s after SIGTERM", timeout)
	}
}

// logTail returns the last n lines of every run's log.
func (h *crashHub) logTail(n int) string {
	var b strings.Builder
	for _, p := range h.logs {
		data, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", filepath.Base(p), len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}

// problems returns the lines of every run's log at level WARN or ERROR,
// and the race detector's reports.
func (h *crashHub) problems() []string {
	var out []string
	for i, p := range h.logs {
		data, _ := os.ReadFile(p)
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, "DATA RACE") {
				out = append(out, fmt.Sprintf("run%d: %s", i+1, l))
			}
		}
	}
	return out
}

// keepLogs copies the logs out of the test's temporary directory.
func (h *crashHub) keepLogs() string {
	dir, err := os.MkdirTemp("", "zhianhub-crash-")
	if err != nil {
		return ""
	}
	for _, p := range h.logs {
		if data, err := os.ReadFile(p); err == nil {
			_ = os.WriteFile(filepath.Join(dir, filepath.Base(p)), data, 0o644)
		}
	}
	return dir
}

// crashBus is the test-owned bus exchange with the hub's and the Ministry's
// queues, deleted when the test ends.
type crashBus struct {
	exchange string
	hubQueue string
	minQueue string
	conn     *amqp.Connection
}

func newCrashBus(t *testing.T) *crashBus {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	bus := &crashBus{exchange: "test.crash." + hex.EncodeToString(b)}
	conn, err := amqp.Dial(testAMQPURL)
	if err != nil {
		t.Fatalf("rabbitmq: %v", err)
	}
	bus.conn = conn
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := mpsbus.DeclareBus(ch, bus.exchange); err != nil {
		t.Fatal(err)
	}
	if bus.hubQueue, err = mpsbus.DeclareNodeQueue(ch, bus.exchange, mpsbus.NodeShanghai); err != nil {
		t.Fatal(err)
	}
	if bus.minQueue, err = mpsbus.DeclareNodeQueue(ch, bus.exchange, mpsbus.NodeMinistry); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ch.IsClosed() {
			ch, _ = conn.Channel()
		}
		if ch != nil {
			ch.QueueDelete(bus.hubQueue, false, false, false)
			ch.QueueDelete(bus.minQueue, false, false, false)
			ch.ExchangeDelete(bus.exchange, false, false)
		}
		conn.Close()
	})
	return bus
}

// seenReceipt is one receipt the Ministry got from the hub.
type seenReceipt struct {
	ID     string
	Status string
	Code   string
	Reason string
	Copies int
}

// seenFiling is one filing the Ministry got from the hub.
type seenFiling struct {
	ID       string
	Kind     string
	PersonNo string
	Seq      int64
	Corr     string
	Copies   int
	Answers  []string // statuses the Ministry answered, in order
}

// crashMinistry plays the Ministry node on the bus: it seals downward
// messages to the hub, reads what the hub publishes to the Ministry's queue
// and answers each filing with a receipt (ACCEPTED the first time an id
// arrives, DUPLICATE when it arrives again).
type crashMinistry struct {
	t      *testing.T
	bus    *crashBus
	sealer *envelope.Sealer
	opener *envelope.Opener

	downMu sync.Mutex
	downCh *amqp.Channel
	ansCh  *amqp.Channel

	mu       sync.Mutex
	receipts map[string]map[string]*seenReceipt // ref -> receipt id -> receipt
	order    []string                           // refs in the order of their first receipt
	filings  map[string]*seenFiling
	upOrder  map[string][]int64 // personNo -> seqs of filings in order of first arrival
	problems []string
	changed  chan struct{}

	// onReceipt is called (outside the lock) with the ref of every first
	// receipt of a distinct ref.
	onReceipt func(ref, status string)
}

func newCrashMinistry(t *testing.T, bus *crashBus, sealer *envelope.Sealer, opener *envelope.Opener) *crashMinistry {
	t.Helper()
	m := &crashMinistry{t: t, bus: bus, sealer: sealer, opener: opener,
		receipts: map[string]map[string]*seenReceipt{}, filings: map[string]*seenFiling{},
		upOrder: map[string][]int64{}, changed: make(chan struct{}, 1)}
	var err error
	if m.downCh, err = bus.conn.Channel(); err != nil {
		t.Fatal(err)
	}
	if m.ansCh, err = bus.conn.Channel(); err != nil {
		t.Fatal(err)
	}
	return m
}

// consume reads the Ministry's queue until ctx ends.
func (m *crashMinistry) consume(ctx context.Context) {
	ch, err := m.bus.conn.Channel()
	if err != nil {
		m.problem("ministry channel: %v", err)
		return
	}
	defer ch.Close()
	deliveries, err := ch.ConsumeWithContext(ctx, m.bus.minQueue, "", true, false, false, false, nil)
	if err != nil {
		m.problem("ministry consume: %v", err)
		return
	}
	for d := range deliveries {
		m.handle(d)
	}
}

func (m *crashMinistry) problem(format string, args ...any) {
	m.mu.Lock()
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
	m.mu.Unlock()
}

func (m *crashMinistry) handle(d amqp.Delivery) {
	msg, err := m.opener.Open(d.Body)
	if err != nil {
		m.problem("the Ministry cannot open a %s from the hub: %v", d.Type, err)
		return
	}
	if msg.Kind == "receipt" {
		var r receiptJSONPayload
		if err := json.Unmarshal(msg.Payload, &r); err != nil {
			m.problem("receipt %s does not decode: %v", msg.ID, err)
			return
		}
		if msg.Corr != r.Ref {
			m.problem("receipt %s: corr %s, ref %s", msg.ID, msg.Corr, r.Ref)
		}
		first := false
		m.mu.Lock()
		byID := m.receipts[r.Ref]
		if byID == nil {
			byID = map[string]*seenReceipt{}
			m.receipts[r.Ref] = byID
			m.order = append(m.order, r.Ref)
			first = true
		}
		if s := byID[msg.ID]; s != nil {
			s.Copies++
		} else {
			byID[msg.ID] = &seenReceipt{ID: msg.ID, Status: r.Status, Code: r.Code, Reason: r.Reason, Copies: 1}
		}
		m.mu.Unlock()
		m.notify()
		if first && m.onReceipt != nil {
			m.onReceipt(r.Ref, r.Status)
		}
		return
	}
	// A filing: answer it.
	var hdr struct {
		PersonNo string `json:"personNo"`
		Seq      int64  `json:"seq"`
	}
	_ = json.Unmarshal(msg.Payload, &hdr)
	m.mu.Lock()
	f := m.filings[msg.ID]
	status := "ACCEPTED"
	if f == nil {
		f = &seenFiling{ID: msg.ID, Kind: msg.Kind, PersonNo: hdr.PersonNo, Seq: hdr.Seq, Corr: msg.Corr}
		m.filings[msg.ID] = f
		m.upOrder[hdr.PersonNo] = append(m.upOrder[hdr.PersonNo], hdr.Seq)
	} else {
		status = "DUPLICATE"
	}
	f.Copies++
	f.Answers = append(f.Answers, status)
	m.mu.Unlock()
	m.notify()
	payload, _ := json.Marshal(receiptJSONPayload{Ref: msg.ID, Status: status, Code: "0000", Reason: "",
		At: time.Now().In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339)})
	env, id, err := m.sealer.Seal(envelope.Outgoing{Kind: "receipt", To: mpsbus.NodeShanghai, Corr: msg.ID, Payload: payload})
	if err != nil {
		m.problem("seal receipt for %s: %v", msg.ID, err)
		return
	}
	if err := m.ansCh.PublishWithContext(context.Background(), m.bus.exchange, mpsbus.RoutingKey(mpsbus.NodeShanghai, "receipt"),
		false, false, mpsbus.Publishing(env, id, "receipt", time.Now())); err != nil {
		m.problem("publish receipt for %s: %v", msg.ID, err)
	}
}

func (m *crashMinistry) notify() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// down seals payload as the Ministry with the given id and publishes it to
// the hub.
func (m *crashMinistry) down(kind, id string, payload []byte) error {
	env, _, err := m.sealer.Seal(envelope.Outgoing{ID: id, Kind: kind, To: mpsbus.NodeShanghai, Payload: payload})
	if err != nil {
		return err
	}
	m.downMu.Lock()
	defer m.downMu.Unlock()
	return m.downCh.PublishWithContext(context.Background(), m.bus.exchange, mpsbus.RoutingKey(mpsbus.NodeShanghai, kind),
		false, false, mpsbus.Publishing(env, id, kind, time.Now()))
}

// counts returns the number of distinct refs receipted and of distinct
// filings seen.
func (m *crashMinistry) counts() (receipts, filings int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.receipts), len(m.filings)
}

// receiptJSONPayload is the Receipt of mps-bus.md.
type receiptJSONPayload struct {
	Ref    string `json:"ref"`
	Status string `json:"status"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
	At     string `json:"at"`
}
