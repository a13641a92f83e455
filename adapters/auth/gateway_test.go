package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/auth"
	"zhianhub/store/access"
)

// bind stores a binding in force of the certificate.
func bind(t *testing.T, db *auditDB, c officerCert, user, unit string) access.Binding {
	t.Helper()
	var b access.Binding
	must(t, pgx.BeginFunc(context.Background(), db.pool, func(tx pgx.Tx) error {
		var err error
		b, err = access.CreateBinding(context.Background(), tx, access.Binding{Serial: access.SerialHex(c.serial), Issuer: c.issuer,
			User: user, Unit: unit, CreatedBy: "sec.admin", CreatedAt: time.Now()})
		return err
	}))
	return b
}

// TestGateway runs the gateway authenticator behind a real TLS listener
// that asks for (and verifies) client certificates: the X-SSL-Client-*
// headers are believed only from a connection presenting the gateway's
// certificate; from anyone else they are forged, refused 401 and audited
// as a security event naming the headers.
func TestGateway(t *testing.T) {
	db := newAuditDB(t)
	clientCA := newTLSCA(t, "网关客户端证书测试CA")
	gatewayCert := clientCA.client(t, "security-gateway-1", 100)
	rogueCert := clientCA.client(t, "not-a-gateway", 101) // same CA, verified, but not configured
	officers := newOfficerCA(t)
	li := officers.issue(t, "李警官 1023456", big.NewInt(0x0A1B2C3D4E5F), time.Now().Add(24*time.Hour))
	unbound := officers.issue(t, "王警官 1023457", big.NewInt(0x77), time.Now().Add(24*time.Hour))
	expired := officers.issue(t, "赵警官 1023458", big.NewInt(0x78), time.Now().Add(-time.Minute))
	binding := bind(t, db, li, "1023456", "310104000000")
	bind(t, db, expired, "1023458", "310104000000")

	gw, err := auth.NewGateway(auth.GatewayConfig{Certificates: []*x509.Certificate{gatewayCert.Leaf}, Bindings: auth.BindingStore{Q: db.pool}})
	must(t, err)
	mw, err := auth.Middleware(auth.MiddlewareConfig{Authenticator: gw, Audit: db.writer})
	must(t, err)
	handler := mw(http.HandlerFunc(whoami))

	tlsSrv := httptest.NewUnstartedServer(handler)
	cas := x509.NewCertPool()
	cas.AddCert(clientCA.cert)
	tlsSrv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: cas}
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	plainSrv := httptest.NewServer(handler)
	defer plainSrv.Close()

	clientWith := func(cert *tls.Certificate) *http.Client {
		tr := tlsSrv.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Transport: tr}
	}
	type conn struct {
		name   string
		base   string
		client *http.Client
	}
	plain := conn{"plain HTTP", plainSrv.URL, plainSrv.Client()}
	noCert := conn{"TLS without client certificate", tlsSrv.URL, clientWith(nil)}
	rogue := conn{"TLS with a non-gateway certificate", tlsSrv.URL, clientWith(&rogueCert)}
	gateway := conn{"gateway", tlsSrv.URL, clientWith(&gatewayCert)}

	headersOf := func(c officerCert) map[string]string {
		return map[string]string{auth.HeaderClientVerify: "SUCCESS", auth.HeaderClientCert: c.escaped(),
			auth.HeaderClientSDN: c.subject, auth.HeaderClientSerial: strings.ToLower(c.serial.Text(16))}
	}
	call := func(c conn, headers map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, c.base+"/api/v1/me", nil)
		must(t, err)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := c.client.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		must(t, err)
		return resp.StatusCode, string(b)
	}

	// Forged headers from anything but the gateway: 401 and a security event.
	for i, c := range []conn{plain, noCert, rogue} {
		t.Run("forged/"+c.name, func(t *testing.T) {
			h := headersOf(li)
			if i == 1 {
				delete(h, auth.HeaderClientSerial) // the event names exactly the headers sent
			}
			code, body := call(c, h)
			if code != http.StatusUnauthorized || !strings.Contains(body, "E401") || !strings.Contains(body, "安全网关") {
				t.Fatalf("%d %s", code, body)
			}
			sec := db.entries(t, auth.ActionSecurityFailure)
			if len(sec) != i+1 {
				t.Fatalf("%d security events, want %d", len(sec), i+1)
			}
			e := sec[i]
			forged, _ := e.Detail["forgedHeaders"].([]any)
			want := 4
			if i == 1 {
				want = 3
			}
			if e.Actor != "anonymous" || e.Result != "denied" || !strings.HasPrefix(e.Detail["remote"].(string), "127.0.0.1:") ||
				len(forged) != want || forged[0] != auth.HeaderClientVerify || e.Detail["tls"] != (i > 0) {
				t.Fatalf("security event %+v", e)
			}
			if i == 2 && (e.Detail["peerVerified"] != true || !strings.Contains(e.Detail["peerCert"].(string), "not-a-gateway")) {
				t.Errorf("the rogue peer is not described: %+v", e.Detail)
			}
		})
	}

	// No headers and no gateway: no gateway credentials, not a security event.
	if code, body := call(noCert, nil); code != 401 || !strings.Contains(body, "未经安全网关") {
		t.Errorf("no credentials: %d %s", code, body)
	}

	// The gateway with a bound officer: the binding's user and unit.
	if code, body := call(gateway, headersOf(li)); code != 200 || body != "1023456|310104000000||gateway" {
		t.Fatalf("gateway, bound officer: %d %s", code, body)
	}
	// Old-style slash DN and a serial with colons are accepted too.
	h := headersOf(li)
	h[auth.HeaderClientSDN] = "/C=CN/OU=310104000000/CN=李警官 1023456"
	h[auth.HeaderClientSerial] = "0A:1B:2C:3D:4E:5F"
	if code, body := call(gateway, h); code != 200 || !strings.HasPrefix(body, "1023456|") {
		t.Fatalf("gateway, slash DN: %d %s", code, body)
	}

	// Refusals from the gateway itself: 401, audited as auth.failure.
	before := len(db.entries(t, auth.ActionFailure))
	for _, tc := range []struct {
		name string
		edit func(map[string]string)
		msg  string
	}{
		{"verify failed", func(h map[string]string) { h[auth.HeaderClientVerify] = "FAILED:certificate has expired" }, "未验证通过"},
		{"no certificate", func(h map[string]string) { delete(h, auth.HeaderClientCert) }, "未转发用户证书"},
		{"not PEM", func(h map[string]string) { h[auth.HeaderClientCert] = "%2D%2D%2Dgarbage" }, "无法解析"},
		{"serial differs", func(h map[string]string) { h[auth.HeaderClientSerial] = "0A1B2C3D4E60" }, "序列号"},
		{"subject differs", func(h map[string]string) { h[auth.HeaderClientSDN] = "CN=王警官 1023457" }, "主题"},
		{"unbound", func(h map[string]string) {
			for k, v := range headersOf(unbound) {
				h[k] = v
			}
		}, "未绑定"},
		{"expired", func(h map[string]string) {
			for k, v := range headersOf(expired) {
				h[k] = v
			}
		}, "有效期"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := headersOf(li)
			tc.edit(h)
			if code, body := call(gateway, h); code != 401 || !strings.Contains(body, tc.msg) {
				t.Fatalf("%d %s", code, body)
			}
		})
	}
	if code, body := call(gateway, nil); code != 401 || !strings.Contains(body, "未转发用户证书") {
		t.Errorf("gateway without headers: %d %s", code, body)
	}
	fails := db.entries(t, auth.ActionFailure)
	if len(fails) != before+8 || fails[before+5].Detail["serial"] != "77" {
		t.Errorf("auth.failure entries: %d (want %d): %+v", len(fails), before+8, fails[before:])
	}
	if n := len(db.entries(t, auth.ActionSecurityFailure)); n != 3 {
		t.Errorf("%d security events, want 3 (the gateway's own refusals are not)", n)
	}

	// A revoked binding no longer identifies anyone.
	must(t, pgx.BeginFunc(context.Background(), db.pool, func(tx pgx.Tx) error {
		_, err := access.RevokeBinding(context.Background(), tx, binding.ID, "sec.admin", "证书挂失（测试）", time.Now())
		return err
	}))
	if code, body := call(gateway, headersOf(li)); code != 401 || !strings.Contains(body, "绑定已撤销") {
		t.Fatalf("revoked binding: %d %s", code, body)
	}

	// A gateway named by its SM3 fingerprint only.
	byFP, err := auth.NewGateway(auth.GatewayConfig{Fingerprints: []auth.Fingerprint{auth.Fingerprints(gatewayCert.Leaf.Raw)[1]},
		Bindings: auth.BindingStore{Q: db.pool}})
	must(t, err)
	bind(t, db, li, "1023456", "310104000000")
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	for k, v := range headersOf(li) {
		req.Header.Set(k, v)
	}
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{gatewayCert.Leaf},
		VerifiedChains: [][]*x509.Certificate{{gatewayCert.Leaf, clientCA.cert}}}
	if id, err := byFP.Authenticate(req); err != nil || id.User != "1023456" {
		t.Errorf("gateway by SM3 fingerprint: %+v %v", id, err)
	}
	req.TLS.VerifiedChains = nil // presented but not verified by the TLS layer
	if _, err := byFP.Authenticate(req); err == nil {
		t.Error("an unverified gateway certificate was trusted")
	}
}

func TestGatewayConfig(t *testing.T) {
	if _, err := auth.NewGateway(auth.GatewayConfig{}); err == nil || !strings.Contains(err.Error(), "no gateway certificate") ||
		!strings.Contains(err.Error(), "Bindings is required") {
		t.Errorf("empty config: %v", err)
	}
	for _, tc := range []struct {
		in, want string
	}{
		{"sha256:" + strings.Repeat("AB", 32), "sha256:" + strings.Repeat("ab", 32)},
		{"SM3:" + strings.Repeat("ab:", 31) + "ab", "sm3:" + strings.Repeat("ab", 32)},
		{"md5:" + strings.Repeat("ab", 16), ""},
		{"sha256:" + strings.Repeat("ab", 31), ""},
		{strings.Repeat("ab", 32), ""},
	} {
		got, err := auth.ParseFingerprint(tc.in)
		if string(got) != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ParseFingerprint(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
