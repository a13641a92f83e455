package secplatform_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"

	"zhianhub/adapters/secplatform"
	"zhianhub/crypto"
	"zhianhub/store/audit"
	"zhianhub/store/deadletter"
	"zhianhub/store/storetest"
)

// platform is a syslog receiver on a real TCP port: it parses what arrives
// with go-syslog (octet counting, RFC 5424, strict).
type platform struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []*rfc5424.SyslogMessage
	errs []error
	conn []net.Conn
}

func newPlatform(t *testing.T, addr string) *platform {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &platform{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conn = append(p.conn, c)
			p.mu.Unlock()
			go octetcounting.NewParser(syslog.WithListener(func(r *syslog.Result) {
				p.mu.Lock()
				defer p.mu.Unlock()
				if r.Error != nil {
					p.errs = append(p.errs, r.Error)
					return
				}
				p.msgs = append(p.msgs, r.Message.(*rfc5424.SyslogMessage))
			})).Parse(c)
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// stop closes the listener and every connection.
func (p *platform) stop() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conn {
		c.Close()
	}
}

// wait returns the messages once n have arrived.
func (p *platform) wait(t *testing.T, n int) []*rfc5424.SyslogMessage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		got, errs := append([]*rfc5424.SyslogMessage(nil), p.msgs...), p.errs
		p.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("the platform could not parse: %v", errs)
		}
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("%d syslog messages, want %d", len(got), n)
			}
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cef splits a CEF record (written independently of the package's
// formatter): the 7 header fields and the extensions.
func cef(t *testing.T, s string) ([]string, map[string]string) {
	t.Helper()
	var head []string
	var cur strings.Builder
	i := 0
	for ; i < len(s) && len(head) < 7; i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '|':
			head = append(head, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if len(head) != 7 || head[0] != "CEF:0" {
		t.Fatalf("not a CEF record: %q", s)
	}
	ext := map[string]string{}
	rest := s[i:]
	// key=value pairs; a value runs to the next " key=" (unescaped '=').
	var key string
	cur.Reset()
	for j := 0; j < len(rest); j++ {
		c := rest[j]
		switch {
		case c == '\\' && j+1 < len(rest):
			j++
			switch rest[j] {
			case 'n':
				cur.WriteByte('\n')
			case 'r':
				cur.WriteByte('\r')
			default:
				cur.WriteByte(rest[j])
			}
		case c == '=':
			// The word before '=' is the next key.
			v := cur.String()
			k := v
			if sp := strings.LastIndexByte(v, ' '); sp >= 0 {
				k, v = v[sp+1:], v[:sp]
				if key != "" {
					ext[key] = v
				}
			}
			key = k
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if key != "" {
		ext[key] = cur.String()
	}
	return head, ext
}

func newAudit(t *testing.T, pool *pgxpool.Pool) *audit.Writer {
	t.Helper()
	k, err := crypto.GenerateSM2()
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.NewWriter(pool, audit.WriterConfig{Signer: k, PendingPoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	return w
}

func TestForwarder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool := storetest.NewPool(t)
	w := newAudit(t, pool)
	appendAll := func(es ...audit.Entry) []int64 {
		t.Helper()
		var seqs []int64
		for _, e := range es {
			seq, err := w.Append(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, seq)
		}
		return seqs
	}
	seqs := appendAll(
		audit.Entry{Actor: "x-forged", Action: secplatform.ActionAuthFailureGW, Result: "denied", Reason: "X-SSL-Client-Cert without the gateway's certificate",
			Detail: map[string]any{"remote": "10.1.2.3:50123"}},
		audit.Entry{Actor: "100000000000", Action: "message.receive", Object: "01a21a8d-5640-729c-abcc-000000000001", Result: "E113",
			Reason: "ts：时间戳超出窗口", CorrelationID: "01a21a8d-5640-729c-abcc-000000000001"},
		audit.Entry{Actor: "100000000000", Action: "message.receive", Result: "0000"}, // not a security event
		audit.Entry{Actor: "officer7", Unit: "310101000000", Role: "unmask", Action: secplatform.ActionUnmask, Object: "32010620261126000017",
			Result: "ok", Reason: "案件编号 A=1|2 核查\n复核"}, // '=', '|' and a line break in a value
		audit.Entry{Actor: "100000000000", Action: secplatform.ActionSignatureFailure, Result: "E110", Reason: "bad signature"},
		audit.Entry{Actor: "system", Action: "hub.start", Result: "ok"}, // not a security event
	)
	p := newPlatform(t, "127.0.0.1:0")
	addr := p.ln.Addr().String()
	f, err := secplatform.NewForwarder(secplatform.ForwarderConfig{Pool: pool, Addr: addr, Hostname: "hub-1", Version: "1.2.3", DeadLetterStep: 2})
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.ForwardOnce(ctx)
	if err != nil || n != 4 {
		t.Fatalf("ForwardOnce = %d, %v; want 4 events", n, err)
	}
	got := p.wait(t, 4)
	want := []struct {
		seq      int64
		sig      string
		severity uint8 // syslog
		ext      map[string]string
	}{
		{seqs[0], "AUTH_FAILURE", 4, map[string]string{"src": "10.1.2.3", "suser": "x-forged", "outcome": "denied"}},
		{seqs[1], "REPLAY", 3, map[string]string{"cs1": "01a21a8d-5640-729c-abcc-000000000001", "cs1Label": "correlationId"}},
		{seqs[3], "UNMASK", 5, map[string]string{"suser": "officer7", "cs2": "310101000000", "cs3": "32010620261126000017", "reason": "案件编号 A=1|2 核查\n复核"}},
		{seqs[4], "SIGNATURE_FAILURE", 3, map[string]string{"outcome": "E110"}},
	}
	for i, m := range got {
		if *m.Facility != secplatform.FacilityAuthPriv || *m.Severity != want[i].severity || *m.Hostname != "hub-1" || *m.Appname != "zhianhub" ||
			*m.MsgID != want[i].sig || m.Version != 1 || m.Timestamp == nil {
			t.Errorf("message %d header: facility %d severity %d host %s app %s msgid %s", i, *m.Facility, *m.Severity, *m.Hostname, *m.Appname, *m.MsgID)
		}
		head, ext := cef(t, *m.Message)
		if head[1] != "Shanghai PSB" || head[2] != "zhianhub" || head[3] != "1.2.3" || head[4] != want[i].sig {
			t.Errorf("message %d CEF header %q", i, head)
		}
		if ext["externalId"] != fmt.Sprint(want[i].seq) || ext["rt"] == "" {
			t.Errorf("message %d: externalId %q rt %q, want seq %d", i, ext["externalId"], ext["rt"], want[i].seq)
		}
		for k, v := range want[i].ext {
			if ext[k] != v {
				t.Errorf("message %d: %s = %q, want %q (all: %v)", i, k, ext[k], v, ext)
			}
		}
	}

	// Nothing again; a new event goes alone, also from a new forwarder
	// (the cursor is in the database).
	if n, err := f.ForwardOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second round = %d, %v", n, err)
	}
	appendAll(audit.Entry{Actor: "u9", Action: secplatform.ActionAuthFailure, Result: "denied"})
	f2, err := secplatform.NewForwarder(secplatform.ForwarderConfig{Pool: pool, Addr: addr, DeadLetterStep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f2.ForwardOnce(ctx); err != nil || n != 1 {
		t.Fatalf("after restart = %d, %v", n, err)
	}
	p.wait(t, 5)

	// The platform goes away: the events wait in the chain and arrive
	// once it is back, none lost, none twice.
	p.stop()
	appendAll(audit.Entry{Actor: "100000000000", Action: secplatform.ActionSignatureFailure, Result: "E111"})
	if _, err := f2.ForwardOnce(ctx); err == nil {
		t.Fatal("forwarding to a closed port succeeded")
	}
	// Dead letters grow by the step: audited, then forwarded.
	dl, err := deadletter.New(pool, deadletter.Config{Cipher: storetest.Keyring(t, pool)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := dl.Put(ctx, pool, deadletter.Letter{Source: "amqp:test", Raw: []byte{byte(i)}, Code: "E100", Reason: "not JSON"}); err != nil {
			t.Fatal(err)
		}
	}
	back := newPlatform(t, addr)
	if _, err := f2.ForwardOnce(ctx); err != nil { // audits the growth, sends E111
		t.Fatal(err)
	}
	if _, err := w.ChainPending(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f2.ForwardOnce(ctx); err != nil { // sends the growth
		t.Fatal(err)
	}
	got = back.wait(t, 2)
	if *got[0].MsgID != "SIGNATURE_FAILURE" || *got[1].MsgID != "DEAD_LETTER_GROWTH" {
		t.Fatalf("after the outage: %s, %s", *got[0].MsgID, *got[1].MsgID)
	}
	if _, ext := cef(t, *got[1].Message); ext["cn1"] != "2" {
		t.Errorf("growth event: %v", ext)
	}
	// No second growth report without new growth.
	if n, err := f2.ForwardOnce(ctx); err != nil || n != 0 {
		t.Fatalf("quiet round = %d, %v", n, err)
	}
}

// TestClassifyUnmask: the clear reading of a person's record and of a
// lead's text are both UNMASK events; a masked read is none.
func TestClassifyUnmask(t *testing.T) {
	for _, tc := range []struct {
		action string
		event  bool
	}{
		{secplatform.ActionUnmask, true},
		{secplatform.ActionLeadUnmask, true},
		{"lead.read", false},
		{"person.read", false},
	} {
		ev, ok := secplatform.Classify(secplatform.Entry{Action: tc.action, Result: "ok", Actor: "officer7", Object: "31010420261127900001"})
		if ok != tc.event || ok && (ev.SignatureID != "UNMASK" || ev.Ext["cs3"] != "31010420261127900001") {
			t.Errorf("%s: %+v %v", tc.action, ev, ok)
		}
	}
}
