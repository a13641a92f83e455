package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// authFiles are the files the auth keys name, made for a test.
type authFiles struct {
	units, units2, tlsCert, tlsKey, tlsCert2, tlsKey2, gwCert, gwCert2, ca, notPEM string
}

func newAuthFiles(t *testing.T) authFiles {
	t.Helper()
	dir := t.TempDir()
	cert := func(name string) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, dir, name+".crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
			writeFile(t, dir, name+".key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	}
	var f authFiles
	f.units = writeFile(t, dir, "units.yaml", "units:\n  - {code: \"310000000000\", name: 上海市公安局}\n")
	f.units2 = writeFile(t, dir, "units2.yaml", "units:\n  - {code: \"310104000000\", name: 徐汇分局}\n")
	f.tlsCert, f.tlsKey = cert("hub")
	f.tlsCert2, f.tlsKey2 = cert("hub2")
	f.gwCert, _ = cert("gateway")
	f.gwCert2, _ = cert("gateway2")
	f.ca, _ = cert("ca")
	f.notPEM = writeFile(t, dir, "not.pem", "hello\n")
	return f
}

// TestAuthRules: the rules across the auth keys, each error naming its key.
func TestAuthRules(t *testing.T) {
	f := newAuthFiles(t)
	pf := writeFile(t, t.TempDir(), "pass", "secret\n")
	gw := map[string]string{"ZHIANHUB_AUTH_GATEWAY_CERTS": f.gwCert + ", " + f.gwCert2, "ZHIANHUB_AUTH_GATEWAY_CLIENT_CA": f.ca,
		"ZHIANHUB_HTTP_TLS_CERT": f.tlsCert, "ZHIANHUB_HTTP_TLS_KEY": f.tlsKey}
	prod := map[string]string{"ZHIANHUB_MODE": "production", "ZHIANHUB_KEYS_PASSPHRASE_FILE": pf, "ZHIANHUB_AUTH_UNITS": f.units}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}

	c, err := Load("", env(gw))
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	if !c.Auth.Gateway() || len(c.Auth.GatewayCerts) != 2 || c.Auth.GatewayCerts[1] != f.gwCert2 || c.Auth.OIDC() {
		t.Fatalf("gateway config %+v", c.Auth)
	}
	if _, err := Load("", env(merge(prod, gw))); err != nil {
		t.Fatalf("production with the gateway: %v", err)
	}
	if _, err := Load("", env(merge(prod, map[string]string{"ZHIANHUB_AUTH_OIDC_ISSUER": "https://portal.example", "ZHIANHUB_AUTH_OIDC_CLIENT_ID": "zhianhub"}))); err != nil {
		t.Fatalf("production with OIDC: %v", err)
	}

	for _, tc := range []struct {
		name string
		env  map[string]string
		key  string
		want string
	}{
		{"production without authenticator", prod, "auth.oidc_issuer", "production needs an authenticator"},
		{"production without units", merge(prod, gw, map[string]string{"ZHIANHUB_AUTH_UNITS": ""}), "auth.units", "required in production"},
		{"production http issuer", merge(prod, map[string]string{"ZHIANHUB_AUTH_OIDC_ISSUER": "http://portal.example", "ZHIANHUB_AUTH_OIDC_CLIENT_ID": "x"}), "auth.oidc_issuer", "https in production"},
		{"production dev identity", merge(prod, gw, map[string]string{"ZHIANHUB_DEV_IDENTITY": "true"}), "dev_identity", "must be false in production"},
		{"gateway without CA", merge(gw, map[string]string{"ZHIANHUB_AUTH_GATEWAY_CLIENT_CA": ""}), "auth.gateway_client_ca", "required with the security gateway"},
		{"gateway without TLS", merge(gw, map[string]string{"ZHIANHUB_HTTP_TLS_CERT": "", "ZHIANHUB_HTTP_TLS_KEY": ""}), "http.tls_cert", "mTLS"},
		{"CA without gateway", map[string]string{"ZHIANHUB_AUTH_GATEWAY_CLIENT_CA": f.ca}, "auth.gateway_client_ca", "set without"},
		{"cert without key", map[string]string{"ZHIANHUB_HTTP_TLS_CERT": f.tlsCert}, "http.tls_key", "required with http.tls_cert"},
		{"client id without issuer", map[string]string{"ZHIANHUB_AUTH_OIDC_CLIENT_ID": "x"}, "auth.oidc_client_id", "without auth.oidc_issuer"},
		{"issuer without client id", map[string]string{"ZHIANHUB_AUTH_OIDC_ISSUER": "https://portal.example"}, "auth.oidc_client_id", "required with auth.oidc_issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("", env(tc.env))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if want := "config: " + envOf(tc.key) + " (" + tc.key + "): "; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q naming %s", err, tc.want, tc.key)
			}
		})
	}
}
