// Package oidctest is a small but real OpenID Connect provider for tests
// and benchmarks: it serves the discovery document and the JWKS over HTTP
// (a real TCP listener, so a hub in another process can use it as its
// issuer) and mints signed JWTs (RS256 or ES256, go-jose) for any user,
// unit and roles. It stands in for the unified portal; the hub's verifier
// (go-oidc, adapters/auth.Bearer) is exercised unchanged.
//
// Decisions:
//
//   - One signing key per provider, generated at Start; its key id is
//     published in the JWKS. Key rotation is not modelled here (the
//     bearer tests of adapters/auth cover it with their own provider).
//   - Tokens are minted locally (Token), not through an authorization
//     flow: the hub only verifies tokens, it never runs the flow.
//   - JWKSFetches counts the key-set fetches, so that a benchmark can show
//     that the hub caches the keys instead of fetching them per request.
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Config configures a Provider.
type Config struct {
	// Addr is the listen address. Default "127.0.0.1:0" (a free port).
	Addr string
	// Algorithm is jose.RS256 or jose.ES256. Default RS256.
	Algorithm jose.SignatureAlgorithm
	// KeyID names the signing key in the JWKS. Default "oidctest-1".
	KeyID string
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Algorithm == "" {
		c.Algorithm = jose.RS256
	}
	if c.KeyID == "" {
		c.KeyID = "oidctest-1"
	}
}

// Validate reports whether the configuration can be used (after defaults).
func (c Config) Validate() error {
	if c.Algorithm != jose.RS256 && c.Algorithm != jose.ES256 {
		return fmt.Errorf("oidctest: Algorithm must be RS256 or ES256, not %q", c.Algorithm)
	}
	return nil
}

// Provider is a running OpenID Connect provider.
type Provider struct {
	// Issuer is the issuer URL (http://host:port), also the base of the
	// discovery document.
	Issuer string

	cfg    Config
	key    crypto.Signer
	signer jose.Signer
	srv    *http.Server
	jwks   atomic.Int64
}

// Start generates the signing key and starts serving.
func Start(cfg Config) (*Provider, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg}
	var err error
	switch cfg.Algorithm {
	case jose.ES256:
		p.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		p.key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return nil, fmt.Errorf("oidctest: key: %w", err)
	}
	p.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: cfg.Algorithm, Key: jose.JSONWebKey{Key: p.key, KeyID: cfg.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("oidctest: signer: %w", err)
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("oidctest: listen: %w", err)
	}
	p.Issuer = "http://" + l.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /keys", p.keys)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// Close stops serving.
func (p *Provider) Close() error { return p.srv.Close() }

// JWKSFetches returns how many times the key set was fetched.
func (p *Provider) JWKSFetches() int64 { return p.jwks.Load() }

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer": p.Issuer, "jwks_uri": p.Issuer + "/keys",
		"authorization_endpoint": p.Issuer + "/authorize", "token_endpoint": p.Issuer + "/token",
		"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(p.cfg.Algorithm)},
	})
}

func (p *Provider) keys(w http.ResponseWriter, _ *http.Request) {
	p.jwks.Add(1)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: p.key.Public(), KeyID: p.cfg.KeyID,
		Algorithm: string(p.cfg.Algorithm), Use: "sig"}}}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// Claims are the claims of a minted token.
type Claims struct {
	// Audience is the client id the token is for. Required.
	Audience string
	// Subject is the "sub" claim. Required.
	Subject string
	// Unit is the "unit" claim; "" leaves it out.
	Unit string
	// Roles is the "roles" claim; nil leaves it out.
	Roles []string
	// TTL is the lifetime from now. Default one hour.
	TTL time.Duration
	// Extra claims are added as they are (and override the above).
	Extra map[string]any
}

// Token returns a signed JWT of c, issued now by p.
func (p *Provider) Token(c Claims) (string, error) {
	if c.Audience == "" || c.Subject == "" {
		return "", errors.New("oidctest: Audience and Subject are required")
	}
	if c.TTL == 0 {
		c.TTL = time.Hour
	}
	now := time.Now()
	m := map[string]any{"iss": p.Issuer, "aud": c.Audience, "sub": c.Subject,
		"iat": now.Unix(), "exp": now.Add(c.TTL).Unix()}
	if c.Unit != "" {
		m["unit"] = c.Unit
	}
	if c.Roles != nil {
		m["roles"] = c.Roles
	}
	for k, v := range c.Extra {
		m[k] = v
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("oidctest: claims: %w", err)
	}
	jws, err := p.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("oidctest: sign: %w", err)
	}
	return jws.CompactSerialize()
}
