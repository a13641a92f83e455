package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"

	"zhianhub/adapters/auth"
)

var claimRe = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,64}$`)

// validateTLS checks http.tls_cert and http.tls_key: both or neither, a
// certificate and its key.
func (c Config) validateTLS(add func(string, error)) {
	h := c.HTTP
	switch {
	case h.TLSCert == "" && h.TLSKey == "":
	case h.TLSCert == "":
		add("http.tls_cert", errors.New("required with http.tls_key"))
	case h.TLSKey == "":
		add("http.tls_key", errors.New("required with http.tls_cert"))
	default:
		if _, err := tls.LoadX509KeyPair(h.TLSCert, h.TLSKey); err != nil {
			add("http.tls_cert", fmt.Errorf("certificate and key (http.tls_key) do not load: %w", err))
		}
	}
}

// validateAuth checks the auth keys. Production needs a unit tree and an
// authenticator (the development identity is refused there).
func (c Config) validateAuth(add func(string, error), prod bool) {
	a := c.Auth
	switch {
	case a.Units != "":
		if _, err := auth.LoadUnitTree(a.Units); err != nil {
			add("auth.units", err)
		}
	case prod:
		add("auth.units", errors.New("required in production: the unit tree bounds what users see"))
	}
	for _, f := range a.GatewayCerts {
		if _, err := LoadCertificates(f); err != nil {
			add("auth.gateway_certs", err)
		}
	}
	for _, f := range a.GatewayFingerprints {
		if _, err := auth.ParseFingerprint(f); err != nil {
			add("auth.gateway_fingerprints", err)
		}
	}
	switch {
	case a.GatewayClientCA != "":
		if _, err := LoadCertificates(a.GatewayClientCA); err != nil {
			add("auth.gateway_client_ca", err)
		}
		if !a.Gateway() {
			add("auth.gateway_client_ca", errors.New("set without auth.gateway_certs or auth.gateway_fingerprints"))
		}
	case a.Gateway():
		add("auth.gateway_client_ca", errors.New("required with the security gateway: the CAs that verify the gateways' client certificates"))
	}
	if a.Gateway() && c.HTTP.TLSCert == "" {
		add("http.tls_cert", errors.New("required with the security gateway, which connects with a client certificate (mTLS)"))
	}
	if a.OIDCIssuer != "" {
		u, err := url.Parse(a.OIDCIssuer)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			add("auth.oidc_issuer", fmt.Errorf("must be an http(s) URL, not %q", a.OIDCIssuer))
		case prod && u.Scheme != "https":
			add("auth.oidc_issuer", errors.New("must be https in production"))
		}
		if a.OIDCClientID == "" {
			add("auth.oidc_client_id", errors.New("required with auth.oidc_issuer"))
		}
	} else if a.OIDCClientID != "" {
		add("auth.oidc_client_id", errors.New("set without auth.oidc_issuer"))
	}
	for key, v := range map[string]string{"auth.oidc_user_claim": a.OIDCUserClaim, "auth.oidc_unit_claim": a.OIDCUnitClaim,
		"auth.oidc_roles_claim": a.OIDCRolesClaim} {
		if !claimRe.MatchString(v) {
			add(key, fmt.Errorf("must be a claim name (1-64 of A-Z a-z 0-9 _ . : / -), not %q", v))
		}
	}
	if prod && !a.Gateway() && !a.OIDC() {
		add("auth.oidc_issuer", errors.New("production needs an authenticator: the security gateway (auth.gateway_certs or auth.gateway_fingerprints) or the portal's OIDC (auth.oidc_issuer)"))
	}
}

// LoadCertificates reads the PEM certificates of a file (at least one).
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("file %q: %w", path, err)
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("file %q: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("file %q holds no PEM certificate", path)
	}
	return out, nil
}
