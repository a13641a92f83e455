package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// tlsCA is an ECDSA certificate authority for the TLS layer.
type tlsCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTLSCA(t *testing.T, cn string) *tlsCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	return &tlsCA{cert: cert, key: key}
}

// client issues a TLS client certificate.
func (ca *tlsCA) client(t *testing.T, cn string, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"上海市公安局（测试）"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	leaf, err := x509.ParseCertificate(der)
	must(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// officerCA is an SM2 certificate authority issuing officers' certificates,
// as the police PKI does.
type officerCA struct {
	cert *smx509.Certificate
	key  *sm2.PrivateKey
}

func newOfficerCA(t *testing.T) *officerCA {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	must(t, err)
	tpl := &smx509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "公安数字证书测试CA", Organization: []string{"公安部（测试）"}, Country: []string{"CN"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: smx509.KeyUsageCertSign}
	der, err := smx509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	must(t, err)
	cert, err := smx509.ParseCertificate(der)
	must(t, err)
	return &officerCA{cert: cert, key: key}
}

// officerCert is an officer's certificate as the gateway forwards it.
type officerCert struct {
	pem     string
	serial  *big.Int
	subject string
	issuer  string
}

// escaped is the certificate as nginx's $ssl_client_escaped_cert.
func (o officerCert) escaped() string { return url.QueryEscape(o.pem) }

func (ca *officerCA) issue(t *testing.T, cn string, serial *big.Int, notAfter time.Time) officerCert {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	must(t, err)
	tpl := &smx509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, OrganizationalUnit: []string{"310104000000"}, Country: []string{"CN"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, KeyUsage: smx509.KeyUsageDigitalSignature}
	der, err := smx509.CreateCertificate(rand.Reader, tpl, ca.cert, key.Public(), ca.key)
	must(t, err)
	cert, err := smx509.ParseCertificate(der)
	must(t, err)
	return officerCert{pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), serial: serial,
		subject: cert.Subject.String(), issuer: cert.Issuer.String()}
}
