package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/auth"
	"zhianhub/store"
	"zhianhub/store/access"
	"zhianhub/store/storetest"
)

// testCA issues ECDSA certificates for the TLS layer.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "测试CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// issue writes a certificate and key signed by the CA to dir and returns
// the pair and the file paths.
func (ca *testCA) issue(t *testing.T, dir, name string, serial int64, usage x509.ExtKeyUsage) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certFile, keyFile
}

// TestServeGatewayAuth runs serve with HTTPS, the security gateway and the
// example unit tree, the development identity off: forged gateway headers
// (no gateway certificate) are 401 and a security event; through the
// gateway a bound officer is identified, with the locally granted roles;
// the development headers are refused.
func TestServeGatewayAuth(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	root := t.TempDir()
	keys := filepath.Join(root, "keys")
	if code, _, errs := runCLI(t, "", nil, "keys", "gen", "--dir", keys); code != 0 {
		t.Fatal(errs)
	}
	ca := newTestCA(t)
	_, hubCert, hubKey := ca.issue(t, root, "hub", 10, x509.ExtKeyUsageServerAuth)
	gateway, gatewayCert, _ := ca.issue(t, root, "gateway", 11, x509.ExtKeyUsageClientAuth)
	caFile := filepath.Join(root, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	// An SM2 officer certificate, bound to 1023456 of 徐汇分局, who holds officer.
	offKey, _ := sm2.GenerateKey(rand.Reader)
	offTpl := &smx509.Certificate{SerialNumber: big.NewInt(0xBEEF), Subject: pkix.Name{CommonName: "李警官"}, Issuer: pkix.Name{CommonName: "测试CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	offDER, err := smx509.CreateCertificate(rand.Reader, offTpl, offTpl, offKey.Public(), offKey)
	if err != nil {
		t.Fatal(err)
	}
	offCert, _ := smx509.ParseCertificate(offDER)
	pool := storetest.OpenPool(t, dbURL, store.PoolConfig{})
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := access.CreateBinding(ctx, tx, access.Binding{Serial: "BEEF", Issuer: offCert.Issuer.String(), User: "1023456",
			Unit: "310104000000", CreatedBy: "deploy", CreatedAt: time.Now()}); err != nil {
			return err
		}
		return access.GrantRole(ctx, tx, access.Grant{User: "1023456", Role: auth.RoleOfficer, GrantedBy: "deploy", GrantedAt: time.Now()})
	}); err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	env := map[string]string{
		"ZHIANHUB_DATABASE_URL":           dbURL,
		"ZHIANHUB_KEYS_DIR":               keys,
		"ZHIANHUB_HTTP_ADDR":              addr,
		"ZHIANHUB_AMQP_URL":               testAMQPURL,
		"ZHIANHUB_MPS_EXCHANGE":           testBus(t, "310000000000"),
		"ZHIANHUB_DEV_IDENTITY":           "false",
		"ZHIANHUB_HTTP_TLS_CERT":          hubCert,
		"ZHIANHUB_HTTP_TLS_KEY":           hubKey,
		"ZHIANHUB_AUTH_GATEWAY_CERTS":     gatewayCert,
		"ZHIANHUB_AUTH_GATEWAY_CLIENT_CA": caFile,
		"ZHIANHUB_AUTH_UNITS":             filepath.Join("..", "..", "deploy", "units.example.yaml"),
	}
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		e := &cliEnv{stdin: strings.NewReader(""), stdout: io.Discard, stderr: logs, getenv: func(k string) string { return env[k] }}
		done <- run(sctx, e, []string{"serve"})
	}()
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	client := func(cert *tls.Certificate) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	}
	base := "https://" + addr
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := client(nil).Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub not ready: %v\n%s", err, logs.String())
		}
	}
	get := func(c *http.Client, h map[string]string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/me", nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	officer := map[string]string{
		auth.HeaderClientVerify: "SUCCESS",
		auth.HeaderClientCert:   url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: offDER}))),
	}
	if code, m := get(client(nil), officer); code != 401 || !strings.Contains(m["message"].(string), "安全网关") {
		t.Fatalf("forged headers: %d %v", code, m)
	}
	if code, m := get(client(&gateway), officer); code != 200 || m["user"] != "1023456" || m["unitName"] != "徐汇分局" || m["method"] != "gateway" ||
		len(m["roles"].([]any)) != 1 {
		t.Fatalf("through the gateway: %d %v", code, m)
	}
	if code, _ := get(client(nil), map[string]string{auth.HeaderDevUser: "li", auth.HeaderDevRoles: "secadmin"}); code != 401 {
		t.Fatalf("development identity while off: %d", code)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_entry WHERE action = $1 AND detail->'forgedHeaders' IS NOT NULL`,
		auth.ActionSecurityFailure).Scan(&n); err != nil || n != 1 {
		t.Fatalf("security events: %d %v", n, err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d\n%s", code, logs.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(logs.String(), `"methods":"gateway"`) {
		t.Errorf("the authenticators are not logged:\n%s", logs.String())
	}
}
