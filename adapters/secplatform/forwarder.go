package secplatform

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/store"
	"zhianhub/store/audit"
)

// Audit actions that are security events. Other packages write them; the
// names are the contract between them and the platform.
const (
	ActionAuthFailure      = "auth.failure"
	ActionAuthFailureGW    = "security.auth_failure"
	ActionSignatureFailure = "security.signature_failure"
	ActionChainBreak       = audit.ActionChainBreak
	ActionDeadLetterGrowth = "security.dead_letter_growth"
	ActionUnmask           = "person.unmask"
	ActionLeadUnmask       = "lead.unmask" // a lead's text in clear
	ActionMessageReceive   = "message.receive"
)

// Entry is the part of an audit entry the classifier reads.
type Entry struct {
	Seq           int64
	At            time.Time
	Actor         string
	Unit          string
	Role          string
	Action        string
	Object        string
	Result        string
	Reason        string
	CorrelationID string
	Detail        map[string]any
}

// candidates are the actions Classify may turn into events: the forwarder
// reads only these.
var candidates = []string{ActionAuthFailure, ActionAuthFailureGW, ActionSignatureFailure, ActionChainBreak,
	ActionDeadLetterGrowth, ActionUnmask, ActionLeadUnmask, ActionMessageReceive}

// Classify turns a security-relevant audit entry into an event: an
// authentication failure, a signature failure (bad signature or unknown
// signing key), a replay (an envelope outside the time window, E113), a
// break of the audit chain, a growth of the dead letters, an unmasking of
// personal data. Other entries give false.
func Classify(e Entry) (Event, bool) {
	ev := Event{At: e.At, Ext: map[string]string{
		"externalId": strconv.FormatInt(e.Seq, 10),
		"act":        e.Action,
		"outcome":    e.Result,
		"suser":      e.Actor,
	}}
	if e.Reason != "" {
		ev.Ext["reason"] = e.Reason
	}
	if e.CorrelationID != "" {
		ev.Ext["cs1Label"], ev.Ext["cs1"] = "correlationId", e.CorrelationID
	}
	if e.Unit != "" {
		ev.Ext["cs2Label"], ev.Ext["cs2"] = "unit", e.Unit
	}
	if e.Object != "" {
		ev.Ext["cs3Label"], ev.Ext["cs3"] = "object", e.Object
	}
	if s, ok := e.Detail["remote"].(string); ok {
		if host, _, err := net.SplitHostPort(s); err == nil {
			s = host
		}
		if net.ParseIP(s) != nil {
			ev.Ext["src"] = s
		}
	}
	switch {
	case e.Action == ActionAuthFailure || e.Action == ActionAuthFailureGW:
		ev.SignatureID, ev.Name, ev.Severity = "AUTH_FAILURE", "身份认证失败", 6
	case e.Action == ActionSignatureFailure:
		ev.SignatureID, ev.Name, ev.Severity = "SIGNATURE_FAILURE", "消息签名验证失败", 8
	case e.Action == ActionMessageReceive && e.Result == "E113":
		ev.SignatureID, ev.Name, ev.Severity = "REPLAY", "疑似重放：消息时间戳超出有效窗口", 7
	case e.Action == ActionChainBreak:
		ev.SignatureID, ev.Name, ev.Severity = "AUDIT_CHAIN_BREAK", "审计链完整性被破坏", 10
	case e.Action == ActionDeadLetterGrowth:
		ev.SignatureID, ev.Name, ev.Severity = "DEAD_LETTER_GROWTH", "死信数量增长", 5
		if n, ok := e.Detail["unresolved"].(float64); ok {
			ev.Ext["cn1Label"], ev.Ext["cn1"] = "unresolved", strconv.FormatInt(int64(n), 10)
		}
	case e.Action == ActionUnmask || e.Action == ActionLeadUnmask:
		ev.SignatureID, ev.Name, ev.Severity = "UNMASK", "个人信息明文查看", 3
	default:
		return Event{}, false
	}
	return ev, true
}

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	Pool *pgxpool.Pool
	// Addr is the platform's syslog receiver, host:port (TCP).
	Addr string
	// TLS, when not nil, wraps the connection (server name and roots as
	// the platform requires).
	TLS *tls.Config
	// Facility of the syslog messages; default FacilityAuthPriv.
	Facility int
	// Hostname and AppName of the syslog header; defaults os.Hostname()
	// and "zhianhub". Version is the CEF product version; default "dev".
	Hostname, AppName, Version string
	// Interval between rounds; default 2s. Window is the most audit
	// entries one round reads; default 10,000.
	Interval time.Duration
	Window   int64
	// DeadLetterStep: a growth of the unresolved dead letters by this many
	// since the last report is audited (ActionDeadLetterGrowth) and so
	// reported; default 100, negative disables.
	DeadLetterStep int64
	// DialTimeout and WriteTimeout bound the connection; default 5s each.
	DialTimeout, WriteTimeout time.Duration
	Logger                    *slog.Logger
}

func (c *ForwarderConfig) setDefaults() {
	if c.Facility == 0 {
		c.Facility = FacilityAuthPriv
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
	if c.AppName == "" {
		c.AppName = "zhianhub"
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Interval == 0 {
		c.Interval = 2 * time.Second
	}
	if c.Window == 0 {
		c.Window = 10000
	}
	if c.DeadLetterStep == 0 {
		c.DeadLetterStep = 100
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a missing or bad setting.
func (c *ForwarderConfig) Validate() error {
	var errs []error
	if c.Pool == nil {
		errs = append(errs, errors.New("secplatform: ForwarderConfig.Pool is required"))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("secplatform: ForwarderConfig.Addr %q: %w", c.Addr, err))
	}
	if c.Facility < 0 || c.Facility > 23 {
		errs = append(errs, fmt.Errorf("secplatform: facility %d is not 0-23", c.Facility))
	}
	if c.Interval <= 0 || c.Window <= 0 || c.DialTimeout <= 0 || c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("secplatform: intervals, window and timeouts must be positive"))
	}
	return errors.Join(errs...)
}

// Cursor names in table forward_cursor.
const (
	cursorAudit       = "secplatform.audit"
	cursorDeadLetters = "secplatform.dead_letters"
)

// Forwarder sends security events from the audit chain to the platform.
type Forwarder struct {
	cfg  ForwarderConfig
	mu   sync.Mutex // one round at a time
	conn net.Conn
}

// NewForwarder returns a forwarder; Run starts it.
func NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Forwarder{cfg: cfg}, nil
}

// Run forwards until ctx ends. A platform that is down delays the events;
// they wait in the chain.
func (f *Forwarder) Run(ctx context.Context) error {
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	defer f.close()
	for {
		if _, err := f.ForwardOnce(ctx); err != nil && ctx.Err() == nil {
			f.cfg.Logger.Warn("security events not forwarded; will retry", "addr", f.cfg.Addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ForwardOnce checks the dead letters, then sends the security events of
// the next window of the audit chain and moves the cursor past it. It
// returns the number of events sent.
func (f *Forwarder) ForwardOnce(ctx context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.watchDeadLetters(ctx); err != nil {
		return 0, err
	}
	total := 0
	for {
		n, more, err := f.forwardWindow(ctx)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// forwardWindow forwards the events among the next Window entries.
func (f *Forwarder) forwardWindow(ctx context.Context) (sent int, more bool, err error) {
	from, err := f.cursor(ctx, cursorAudit)
	if err != nil {
		return 0, false, err
	}
	var last int64
	if err := f.cfg.Pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM audit_entry`).Scan(&last); err != nil {
		return 0, false, fmt.Errorf("secplatform: audit head: %w", err)
	}
	if last <= from {
		return 0, false, nil
	}
	to := min(last, from+f.cfg.Window)
	rows, err := f.cfg.Pool.Query(ctx, `SELECT seq, at, actor, unit, role, action, object, result, reason, correlation_id, detail
		FROM audit_entry WHERE seq > $1 AND seq <= $2 AND action = ANY($3) ORDER BY seq`, from, to, candidates)
	if err != nil {
		return 0, false, fmt.Errorf("secplatform: read audit: %w", err)
	}
	var frames [][]byte
	for rows.Next() {
		var e Entry
		var detail []byte
		if err := rows.Scan(&e.Seq, &e.At, &e.Actor, &e.Unit, &e.Role, &e.Action, &e.Object, &e.Result, &e.Reason, &e.CorrelationID, &detail); err != nil {
			rows.Close()
			return 0, false, fmt.Errorf("secplatform: read audit: %w", err)
		}
		_ = json.Unmarshal(detail, &e.Detail)
		ev, ok := Classify(e)
		if !ok {
			continue
		}
		msg := RFC5424(f.cfg.Facility, syslogSeverity(ev.Severity), ev.At, f.cfg.Hostname, f.cfg.AppName,
			strconv.Itoa(os.Getpid()), ev.SignatureID, ev.CEF(f.cfg.Version))
		frames = append(frames, frame(msg))
	}
	if err := rows.Err(); err != nil {
		return 0, false, fmt.Errorf("secplatform: read audit: %w", err)
	}
	if err := f.send(ctx, frames); err != nil {
		return 0, false, err
	}
	if err := f.setCursor(ctx, cursorAudit, to); err != nil {
		return len(frames), false, err
	}
	return len(frames), to < last, nil
}

// watchDeadLetters audits a growth of the unresolved dead letters by
// DeadLetterStep or more since the last report (the audit chain carries it
// to the platform).
func (f *Forwarder) watchDeadLetters(ctx context.Context) error {
	if f.cfg.DeadLetterStep < 0 {
		return nil
	}
	return pgx.BeginFunc(ctx, f.cfg.Pool, func(tx pgx.Tx) error {
		var reported, now int64
		err := tx.QueryRow(ctx, `SELECT position FROM forward_cursor WHERE name = $1 FOR UPDATE`, cursorDeadLetters).Scan(&reported)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("secplatform: dead-letter cursor: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM dead_letter WHERE resolved_at IS NULL`).Scan(&now); err != nil {
			return fmt.Errorf("secplatform: count dead letters: %w", err)
		}
		if now >= reported && now-reported < f.cfg.DeadLetterStep {
			return nil
		}
		if now > reported {
			if err := audit.Stage(ctx, tx, audit.Entry{Actor: "system", Action: ActionDeadLetterGrowth, Object: "dead_letter", Result: "warning",
				Reason: fmt.Sprintf("unresolved dead letters grew from %d to %d", reported, now),
				Detail: map[string]any{"unresolved": now, "previous": reported, "step": f.cfg.DeadLetterStep}}); err != nil {
				return err
			}
		}
		// Resolved ones lower the mark, so that new growth is seen.
		return setCursor(ctx, tx, cursorDeadLetters, now)
	})
}

func (f *Forwarder) cursor(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := f.cfg.Pool.QueryRow(ctx, `SELECT position FROM forward_cursor WHERE name = $1`, name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("secplatform: cursor %s: %w", name, err)
	}
	return pos, nil
}

func (f *Forwarder) setCursor(ctx context.Context, name string, pos int64) error {
	return setCursor(ctx, f.cfg.Pool, name, pos)
}

func setCursor(ctx context.Context, q store.Querier, name string, pos int64) error {
	_, err := q.Exec(ctx, `INSERT INTO forward_cursor (name, position) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = clock_timestamp()`, name, pos)
	if err != nil {
		return fmt.Errorf("secplatform: move cursor %s: %w", name, err)
	}
	return nil
}

// send writes frames to the platform, connecting first when needed. On a
// failure the connection is dropped: the next round reconnects and sends
// the window again.
func (f *Forwarder) send(ctx context.Context, frames [][]byte) error {
	if len(frames) == 0 {
		return nil
	}
	if f.conn != nil && !alive(f.conn) {
		// A write into a connection the platform has closed succeeds
		// locally and is lost: reconnect first.
		f.close()
	}
	if f.conn == nil {
		d := &net.Dialer{Timeout: f.cfg.DialTimeout}
		var conn net.Conn
		var err error
		if f.cfg.TLS != nil {
			conn, err = (&tls.Dialer{NetDialer: d, Config: f.cfg.TLS}).DialContext(ctx, "tcp", f.cfg.Addr)
		} else {
			conn, err = d.DialContext(ctx, "tcp", f.cfg.Addr)
		}
		if err != nil {
			return fmt.Errorf("secplatform: connect %s: %w", f.cfg.Addr, err)
		}
		f.conn = conn
	}
	buf := make([]byte, 0, 512*len(frames))
	for _, fr := range frames {
		buf = append(buf, fr...)
	}
	_ = f.conn.SetWriteDeadline(time.Now().Add(f.cfg.WriteTimeout))
	if _, err := f.conn.Write(buf); err != nil {
		f.close()
		return fmt.Errorf("secplatform: send %d events to %s: %w", len(frames), f.cfg.Addr, err)
	}
	return nil
}

func (f *Forwarder) close() {
	if f.conn != nil {
		_ = f.conn.Close()
		f.conn = nil
	}
}

// alive reports whether the peer has not closed c: a short read times out
// (the platform sends nothing on a syslog connection).
func alive(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
