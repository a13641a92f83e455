package apiload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"zhianhub/adapters/citybus"
	"zhianhub/adapters/mpsbus"
)

// HubConfig configures a hub process (`zhianhub serve`).
type HubConfig struct {
	// Binary is the built zhianhub binary. Required.
	Binary string
	// Dir holds the hub's keys and its log (hub.log). Required.
	Dir string
	// DatabaseURL is the hub's own database (serve migrates it). Required.
	DatabaseURL string
	// AMQPURL is the broker. Required.
	AMQPURL string
	// Exchange is the Ministry bus exchange of this run (DeclareBus);
	// the hub's queue name derives from it. Required.
	Exchange string
	// CityExchange is the city feedback bus exchange of this run
	// (DeclareCityBus): when set, the hub runs the city bus on it (city
	// bureau 310000000001, keys from `keys gen --demo-peers`); "" leaves
	// the city bus off.
	CityExchange string
	// Issuer and ClientID turn on the OIDC bearer tokens. Required: the
	// development identity is off, so every request is authenticated for
	// real.
	Issuer, ClientID string
	// Env are further NAME=value settings (ZHIANHUB_*), after the above.
	Env []string
	// ReadyTimeout bounds the wait for /readyz. Default 60 s.
	ReadyTimeout time.Duration
}

// Validate reports whether the configuration can be used.
func (c HubConfig) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{{"Binary", c.Binary}, {"Dir", c.Dir}, {"DatabaseURL", c.DatabaseURL},
		{"AMQPURL", c.AMQPURL}, {"Exchange", c.Exchange}, {"Issuer", c.Issuer}, {"ClientID", c.ClientID}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("apiload: invalid hub config: %w", err)
	}
	return nil
}

// Hub is a running `zhianhub serve` process.
type Hub struct {
	// Base is the API's base URL, http://addr.
	Base string
	// Log is the file of the hub's stderr (JSON logs).
	Log string

	dir  string
	cmd  *exec.Cmd
	done chan error
}

// PeerDir is the key directory StartHub made for the demo peer node
// (`keys gen --demo-peers`: 000000000000 the Ministry, 310000000001 the
// city bureau), each trusting the hub's keys and trusted by it.
func (h *Hub) PeerDir(node string) string { return filepath.Join(h.dir, "peers", node) }

// StartHub generates the hub's keys (`zhianhub keys gen`), starts
// `zhianhub serve` on a free port with the bearer authenticator only, and
// returns once /readyz answers 200.
func StartHub(ctx context.Context, cfg HubConfig) (*Hub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	keys := filepath.Join(cfg.Dir, "keys")
	if out, err := exec.CommandContext(ctx, cfg.Binary, "keys", "gen", "--dir", keys, "--demo-peers", filepath.Join(cfg.Dir, "peers")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apiload: keys gen: %w: %s", err, out)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(cfg.Dir, "hub.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("apiload: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(cfg.Binary, "serve")
	cmd.Env = append(os.Environ(),
		"ZHIANHUB_CONFIG=",
		"ZHIANHUB_DATABASE_URL="+cfg.DatabaseURL,
		"ZHIANHUB_AMQP_URL="+cfg.AMQPURL,
		"ZHIANHUB_MPS_EXCHANGE="+cfg.Exchange,
		"ZHIANHUB_KEYS_DIR="+keys,
		"ZHIANHUB_HTTP_ADDR="+addr,
		"ZHIANHUB_DEV_IDENTITY=false",
		"ZHIANHUB_AUTH_OIDC_ISSUER="+cfg.Issuer,
		"ZHIANHUB_AUTH_OIDC_CLIENT_ID="+cfg.ClientID,
		// The ingress queue (zhian.ingress) is one per broker: a second
		// hub on it would take the other's events.
		"ZHIANHUB_INGRESS_ENABLED=false",
		"ZHIANHUB_AUDIT_ARCHIVE_DIR="+filepath.Join(cfg.Dir, "archive"),
	)
	if cfg.CityExchange != "" {
		cmd.Env = append(cmd.Env, "ZHIANHUB_CITY_BUS_ENABLED=true", "ZHIANHUB_CITY_EXCHANGE="+cfg.CityExchange, "ZHIANHUB_CITY_NODE="+citybus.NodeCity)
	}
	cmd.Env = append(cmd.Env, cfg.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("apiload: start hub: %w", err)
	}
	h := &Hub{Base: "http://" + addr, Log: logPath, dir: cfg.Dir, cmd: cmd, done: make(chan error, 1)}
	go func() { h.done <- cmd.Wait() }()
	if err := h.waitReady(ctx, cfg.ReadyTimeout); err != nil {
		_ = h.Stop(10 * time.Second)
		log, _ := os.ReadFile(logPath)
		if len(log) > 4000 {
			log = log[len(log)-4000:]
		}
		return nil, fmt.Errorf("%w; hub log (tail):\n%s", err, log)
	}
	return h, nil
}

func (h *Hub) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		select {
		case err := <-h.done:
			h.done <- err
			return fmt.Errorf("apiload: the hub exited before it was ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(h.Base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz %d", resp.StatusCode)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("apiload: the hub is not ready after %s: %v", timeout, last)
		}
	}
}

// PID returns the hub's process id.
func (h *Hub) PID() int { return h.cmd.Process.Pid }

// Memory is what the kernel reports of the hub's resident memory.
type Memory struct {
	// Peak is VmHWM, the peak resident set size; Current is VmRSS.
	Peak, Current int64 // bytes
}

// Memory reads /proc/<pid>/status of the running hub.
func (h *Hub) Memory() (Memory, error) { return ProcMemory(h.PID()) }

// ProcMemory reads VmHWM and VmRSS of process pid (Linux).
func ProcMemory(pid int) (Memory, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, fmt.Errorf("apiload: %w", err)
	}
	defer f.Close()
	var m Memory
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmHWM" && name != "VmRSS") {
			continue
		}
		fields := strings.Fields(rest) // "123456 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return Memory{}, fmt.Errorf("apiload: /proc/%d/status: %s: %q", pid, name, rest)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("apiload: /proc/%d/status: %s: %w", pid, name, err)
		}
		if name == "VmHWM" {
			m.Peak = kb << 10
		} else {
			m.Current = kb << 10
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return Memory{}, fmt.Errorf("apiload: /proc/%d/status: %w", pid, err)
	}
	if found != 2 {
		return Memory{}, fmt.Errorf("apiload: /proc/%d/status has no VmHWM/VmRSS", pid)
	}
	return m, nil
}

// Stop sends SIGTERM and waits up to timeout for the hub to exit (then
// kills it). A non-zero exit after SIGTERM is an error.
func (h *Hub) Stop(timeout time.Duration) error {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-h.done:
		h.done <- err
		if err != nil {
			return fmt.Errorf("apiload: hub exit: %w (log %s)", err, h.Log)
		}
		return nil
	case <-time.After(timeout):
		_ = h.cmd.Process.Kill()
		return fmt.Errorf("apiload: the hub did not stop in %s; killed (log %s)", timeout, h.Log)
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("apiload: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// DeclareBus declares a Ministry bus exchange of the run's own (the hub
// only checks it) and the Ministry's node queue on it, so that the
// filings the hub publishes while seeding are routed and kept, not
// returned. The returned function deletes both and the hub's queue.
func DeclareBus(amqpURL, exchange string) (cleanup func() error, err error) {
	return declareBus(amqpURL, exchange, mpsbus.DeclareBus, []string{mpsbus.NodeQueue(exchange, HubNode)},
		func(ch *amqp.Channel) (string, error) {
			return mpsbus.DeclareNodeQueue(ch, exchange, mpsbus.NodeMinistry)
		})
}

// DeclareCityBus declares a city feedback bus exchange of the run's own,
// as its owner the city bureau does (citybus.DeclareBus; the hub only
// checks it), the city bureau's node queue on it, so that what the hub
// publishes to the city bureau (receipts of the dispatch orders, the
// units' feedback) is routed and kept, not returned, and the hub's city
// queue, so that orders published before the hub consumes are kept. The
// returned function deletes the queues and the exchange.
func DeclareCityBus(amqpURL, exchange string) (cleanup func() error, err error) {
	return declareBus(amqpURL, exchange, citybus.DeclareBus, nil,
		func(ch *amqp.Channel) (string, error) {
			return citybus.DeclareNodeQueue(ch, exchange, citybus.NodeCity)
		},
		func(ch *amqp.Channel) (string, error) { return citybus.DeclareNodeQueue(ch, exchange, HubNode) })
}

// declareBus declares exchange with declare and the queues, each on a
// channel of its own. The returned function deletes the queues declared,
// the further queues others (the hub) declared, and the exchange.
func declareBus(amqpURL, exchange string, declare func(mpsbus.Declarer, string) error, others []string,
	queues ...func(*amqp.Channel) (string, error)) (cleanup func() error, err error) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return nil, fmt.Errorf("apiload: rabbitmq: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("apiload: rabbitmq: %w", err)
	}
	if err := declare(ch, exchange); err != nil {
		conn.Close()
		return nil, fmt.Errorf("apiload: declare bus %s: %w", exchange, err)
	}
	del := append([]string(nil), others...)
	for _, q := range queues {
		name, err := q(ch)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("apiload: declare a queue on %s: %w", exchange, err)
		}
		del = append(del, name)
	}
	return func() error {
		defer conn.Close()
		// One channel per deletion: a failed one closes its channel.
		do := func(fn func(ch *amqp.Channel) error) error {
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			defer ch.Close()
			return fn(ch)
		}
		var errs []error
		for _, q := range del {
			errs = append(errs, do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err }))
		}
		errs = append(errs, do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(exchange, false, false) }))
		return errors.Join(errs...)
	}, nil
}

// HubNode is the node of the keys `zhianhub keys gen` makes by default.
const HubNode = "310000000000"
