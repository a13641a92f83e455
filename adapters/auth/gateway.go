package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"zhianhub/store"
	"zhianhub/store/access"
	"zhianhub/store/audit"
)

// Headers the security gateway forwards (nginx: $ssl_client_verify,
// $ssl_client_escaped_cert, $ssl_client_s_dn, $ssl_client_serial).
const (
	HeaderClientVerify = "X-SSL-Client-Verify"
	HeaderClientCert   = "X-SSL-Client-Cert"
	HeaderClientSDN    = "X-SSL-Client-S-DN"
	HeaderClientSerial = "X-SSL-Client-Serial"
)

// gatewayHeaders are the forwarded headers, in the order refusals name them.
var gatewayHeaders = []string{HeaderClientVerify, HeaderClientCert, HeaderClientSDN, HeaderClientSerial}

// Bindings finds the binding in force of an officer certificate;
// *BindingStore is one.
type Bindings interface {
	// ActiveBinding returns the binding of (serial as access.SerialHex
	// renders it, issuer DN as pkix.Name.String renders it), or an error
	// wrapping access.ErrNotFound.
	ActiveBinding(ctx context.Context, serial, issuer string) (access.Binding, error)
}

// Fingerprint is the hash of a DER certificate: "sha256:<hex>" or
// "sm3:<hex>", lower-case.
type Fingerprint string

// Fingerprints returns the SHA-256 and SM3 fingerprints of a DER
// certificate.
func Fingerprints(der []byte) []Fingerprint {
	s, m := sha256.Sum256(der), sm3.Sum(der)
	return []Fingerprint{Fingerprint("sha256:" + hex.EncodeToString(s[:])), Fingerprint("sm3:" + hex.EncodeToString(m[:]))}
}

// ParseFingerprint accepts "sha256:<64 hex>" or "sm3:<64 hex>" (colons
// between bytes and upper case allowed).
func ParseFingerprint(s string) (Fingerprint, error) {
	alg, h, ok := strings.Cut(strings.TrimSpace(s), ":")
	alg = strings.ToLower(alg)
	h = strings.ToLower(strings.ReplaceAll(h, ":", ""))
	if !ok || (alg != "sha256" && alg != "sm3") {
		return "", fmt.Errorf("auth: fingerprint %q: want sha256:<hex> or sm3:<hex>", s)
	}
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		return "", fmt.Errorf("auth: fingerprint %q: want 32 bytes of hex", s)
	}
	return Fingerprint(alg + ":" + h), nil
}

// GatewayConfig configures Gateway.
type GatewayConfig struct {
	// Certificates are the security gateways' TLS client certificates: a
	// connection presenting one of them (verified by the TLS layer) may
	// forward an officer's certificate.
	Certificates []*x509.Certificate
	// Fingerprints name gateway client certificates by hash, as well as or
	// instead of Certificates.
	Fingerprints []Fingerprint
	// Bindings maps officer certificates to users. Required.
	Bindings Bindings
	// Now is the clock that checks the officer certificate's validity.
	// Default time.Now.
	Now func() time.Time
}

// Validate reports whether the configuration can be used.
func (c GatewayConfig) Validate() error {
	var errs []error
	if len(c.Certificates) == 0 && len(c.Fingerprints) == 0 {
		errs = append(errs, errors.New("no gateway certificate configured"))
	}
	for i, f := range c.Fingerprints {
		if _, err := ParseFingerprint(string(f)); err != nil || string(f) != strings.ToLower(string(f)) {
			errs = append(errs, fmt.Errorf("Fingerprints[%d] %q is not a normalized fingerprint", i, f))
		}
	}
	if slices.Contains(c.Certificates, nil) {
		errs = append(errs, errors.New("a nil certificate"))
	}
	if c.Bindings == nil {
		errs = append(errs, errors.New("Bindings is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auth: invalid gateway config: %w", err)
	}
	return nil
}

// Gateway is the security-gateway authenticator. The gateway terminates
// the officer's TLS with the officer's certificate and forwards it in
// X-SSL-Client-Cert (URL-encoded PEM) with X-SSL-Client-Verify (SUCCESS),
// X-SSL-Client-S-DN and X-SSL-Client-Serial. Gateway trusts these headers
// only on a connection whose verified TLS client certificate is one of the
// configured gateway certificates; on any other connection they are forged
// and the request is refused as a security event (AuthError.Security, the
// forged headers named in the detail). It then requires Verify SUCCESS, a
// parseable certificate (SM2 or not) valid now whose serial and subject
// agree with the other headers, and a binding in force of its serial and
// issuer, which gives the user id and unit. Roles come from the local
// grants (Middleware's AccessSource).
//
// A request with none of the headers from a connection that is not a
// gateway's has no gateway credentials (AuthError.Absent), so that Chain
// asks the next authenticator.
type Gateway struct {
	cfg    GatewayConfig
	trusts map[Fingerprint]bool
}

// NewGateway returns a Gateway.
func NewGateway(cfg GatewayConfig) (*Gateway, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, trusts: map[Fingerprint]bool{}}
	for _, c := range cfg.Certificates {
		g.trusts[Fingerprints(c.Raw)[0]] = true
	}
	for _, f := range cfg.Fingerprints {
		g.trusts[f] = true
	}
	return g, nil
}

// fromGateway reports whether the connection presents a verified gateway
// client certificate, and describes the peer for the audit.
func (g *Gateway) fromGateway(r *http.Request) (bool, map[string]any) {
	peer := map[string]any{"tls": r.TLS != nil}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false, peer
	}
	leaf := r.TLS.PeerCertificates[0]
	fps := Fingerprints(leaf.Raw)
	peer["peerCert"] = audit.Text(leaf.Subject.String(), 256)
	peer["peerFingerprint"] = string(fps[0])
	peer["peerVerified"] = len(r.TLS.VerifiedChains) > 0
	if len(r.TLS.VerifiedChains) == 0 {
		return false, peer
	}
	return slices.ContainsFunc(fps, func(f Fingerprint) bool { return g.trusts[f] }), peer
}

// Authenticate implements Authenticator.
func (g *Gateway) Authenticate(r *http.Request) (Identity, error) {
	var present []string
	for _, h := range gatewayHeaders {
		if _, ok := r.Header[http.CanonicalHeaderKey(h)]; ok {
			present = append(present, h)
		}
	}
	trusted, peer := g.fromGateway(r)
	if !trusted {
		if len(present) == 0 {
			return Identity{}, &AuthError{Message: "未经安全网关（数字证书）访问", Absent: true}
		}
		peer["forgedHeaders"] = present
		return Identity{}, &AuthError{Message: "身份认证未通过：证书身份头只接受来自安全网关的连接", Security: true, Detail: peer}
	}
	if len(present) == 0 {
		return Identity{}, &AuthError{Message: "安全网关未转发用户证书", Absent: true}
	}
	refuse := func(msg string, err error, detail map[string]any) (Identity, error) {
		return Identity{}, &AuthError{Message: "身份认证未通过：" + msg, Err: err, Detail: detail}
	}
	if v := r.Header.Get(HeaderClientVerify); v != "SUCCESS" {
		return refuse("安全网关未验证通过用户证书", nil, map[string]any{"verify": audit.Text(v, 64)})
	}
	raw := r.Header.Get(HeaderClientCert)
	if raw == "" {
		return refuse("安全网关未转发用户证书", nil, nil)
	}
	cert, err := parseForwardedCert(raw)
	if err != nil {
		return refuse("用户证书无法解析", err, nil)
	}
	serial := access.SerialHex(cert.SerialNumber)
	issuer := cert.Issuer.String()
	detail := map[string]any{"serial": serial, "issuer": audit.Text(issuer, 512)}
	if s := r.Header.Get(HeaderClientSerial); s != "" && access.NormalizeSerial(s) != serial {
		return refuse("证书序列号与证书不符", nil, detail)
	}
	if dn := r.Header.Get(HeaderClientSDN); dn != "" && !sameDN(dn, cert.Subject.String()) {
		return refuse("证书主题与证书不符", nil, detail)
	}
	if now := g.cfg.Now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return refuse("用户证书不在有效期内", nil, detail)
	}
	b, err := g.cfg.Bindings.ActiveBinding(r.Context(), serial, issuer)
	if errors.Is(err, access.ErrNotFound) {
		return refuse("证书未绑定用户或绑定已撤销", nil, detail)
	}
	if err != nil {
		return Identity{}, &AuthError{Message: "身份认证暂不可用，请稍后重试", Err: err, Detail: detail}
	}
	return Identity{User: b.User, Unit: b.Unit, Method: MethodGateway, Session: "gateway:" + sessionDigest(serial+"\x00"+issuer),
		Expires: cert.NotAfter}, nil
}

// parseForwardedCert parses the URL-encoded PEM certificate the gateway
// forwards (smx509 parses SM2 certificates as well as the others).
func parseForwardedCert(raw string) (*smx509.Certificate, error) {
	if len(raw) > 64<<10 {
		return nil, errors.New("forwarded certificate too long")
	}
	dec, err := url.QueryUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("forwarded certificate: %w", err)
	}
	block, rest := pem.Decode([]byte(dec))
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) > 0 {
		return nil, errors.New("forwarded certificate: want one PEM CERTIFICATE block")
	}
	cert, err := smx509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("forwarded certificate: %w", err)
	}
	return cert, nil
}

// sameDN compares a forwarded subject DN with the certificate's. nginx
// sends RFC 2253 order (since 1.11.6), as Go renders it; a DN in the old
// "/C=CN/O=…" form is compared by its reversed components.
func sameDN(forwarded, subject string) bool {
	if forwarded == subject {
		return true
	}
	if strings.HasPrefix(forwarded, "/") {
		parts := strings.Split(strings.TrimPrefix(forwarded, "/"), "/")
		slices.Reverse(parts)
		return strings.Join(parts, ",") == subject
	}
	return false
}

// BindingStore is Bindings over the cert_binding table.
type BindingStore struct{ Q store.Querier }

// ActiveBinding implements Bindings.
func (s BindingStore) ActiveBinding(ctx context.Context, serial, issuer string) (access.Binding, error) {
	return access.ActiveBinding(ctx, s.Q, serial, issuer)
}

// StoreAccess is AccessSource over the user_role and account_lock tables.
type StoreAccess struct{ Q store.Querier }

// Access implements AccessSource.
func (s StoreAccess) Access(ctx context.Context, user string) (Access, error) {
	roles, reason, locked, err := access.Of(ctx, s.Q, user)
	if err != nil {
		return Access{}, err
	}
	return Access{Roles: roles, Locked: locked, LockReason: reason}, nil
}
