package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/adapters/auth"
	"zhianhub/cmd/zhianhub/internal/config"
)

// apiAuth is the API's authentication, data scope and listener TLS, made
// from the configuration (already validated by config.Load).
type apiAuth struct {
	authn   auth.Authenticator
	units   *auth.UnitTree
	tls     *tls.Config // nil: plain HTTP
	methods []string    // the authenticators, in the order asked
}

// newAPIAuth builds the authenticator chain: the security gateway, then
// the portal's bearer tokens, then the development identity where the
// configuration allows it (never in production); none configured refuses
// every request. A failed OIDC discovery is logged, not fatal: the hub
// starts while the portal is down and discovers at the first token.
func newAPIAuth(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, logger *slog.Logger) (*apiAuth, error) {
	a := &apiAuth{methods: []string{}}
	var chain auth.Chain
	if cfg.HTTP.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("http.tls_cert: %w", err)
		}
		a.tls = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	if ac := cfg.Auth; ac.Gateway() {
		if a.tls == nil {
			return nil, fmt.Errorf("http.tls_cert: required with the security gateway")
		}
		gc := auth.GatewayConfig{Bindings: auth.BindingStore{Q: pool}}
		for _, f := range ac.GatewayCerts {
			certs, err := config.LoadCertificates(f)
			if err != nil {
				return nil, fmt.Errorf("auth.gateway_certs: %w", err)
			}
			gc.Certificates = append(gc.Certificates, certs...)
		}
		for _, s := range ac.GatewayFingerprints {
			fp, err := auth.ParseFingerprint(s)
			if err != nil {
				return nil, fmt.Errorf("auth.gateway_fingerprints: %w", err)
			}
			gc.Fingerprints = append(gc.Fingerprints, fp)
		}
		gw, err := auth.NewGateway(gc)
		if err != nil {
			return nil, err
		}
		cas, err := config.LoadCertificates(ac.GatewayClientCA)
		if err != nil {
			return nil, fmt.Errorf("auth.gateway_client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		for _, c := range cas {
			pool.AddCert(c)
		}
		a.tls.ClientAuth, a.tls.ClientCAs = tls.VerifyClientCertIfGiven, pool
		chain = append(chain, gw)
		a.methods = append(a.methods, auth.MethodGateway)
	}
	if ac := cfg.Auth; ac.OIDC() {
		b, err := auth.NewBearer(auth.BearerConfig{Issuer: ac.OIDCIssuer, ClientID: ac.OIDCClientID, UserClaim: ac.OIDCUserClaim,
			UnitClaim: ac.OIDCUnitClaim, RolesClaim: ac.OIDCRolesClaim})
		if err != nil {
			return nil, err
		}
		if err := b.Discover(ctx); err != nil {
			logger.Warn("OIDC discovery failed; bearer tokens are refused until it succeeds", "err", err)
		}
		chain = append(chain, b)
		a.methods = append(a.methods, auth.MethodBearer)
	}
	if cfg.DevIdentity && cfg.Mode != config.ModeProduction {
		chain = append(chain, auth.DevHeaders{})
		a.methods = append(a.methods, auth.MethodDev)
	}
	switch len(chain) {
	case 0:
		a.authn = auth.Refuse{}
	case 1:
		a.authn = chain[0]
	default:
		a.authn = chain
	}
	if cfg.Auth.Units != "" {
		t, err := auth.LoadUnitTree(cfg.Auth.Units)
		if err != nil {
			return nil, fmt.Errorf("auth.units: %w", err)
		}
		a.units = t
	} else {
		a.units = auth.DemoUnitTree()
	}
	logger.Info("API authentication", "methods", strings.Join(a.methods, ","), "tls", a.tls != nil, "units", a.units.Len())
	return a, nil
}
