package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"zhianhub/store/audit"
)

// Defaults of BearerConfig.
const (
	DefaultUserClaim  = "sub"
	DefaultUnitClaim  = "unit"
	DefaultRolesClaim = "roles"
	// DefaultDiscoveryRetry is how long a failed discovery is remembered
	// before the next request tries again.
	DefaultDiscoveryRetry = 10 * time.Second
)

// BearerConfig configures Bearer.
type BearerConfig struct {
	// Issuer is the unified portal's OpenID Connect issuer URL; its
	// /.well-known/openid-configuration names the JWKS. Required.
	Issuer string
	// ClientID is the hub's client id at the portal: tokens must name it
	// in their audience. Required.
	ClientID string
	// UserClaim holds the user id (警号 or account). Default "sub".
	UserClaim string
	// UnitClaim holds the 12-digit unit code; a token without it has no
	// unit (and so sees no records). Default "unit".
	UnitClaim string
	// RolesClaim holds the roles, a list of strings or one space- or
	// comma-separated string; "-" takes no roles from tokens. Default
	// "roles". The separated administrators' roles (AdminRoles) are never
	// taken from a token: they are granted locally only.
	RolesClaim string
	// SigningAlgs are the accepted signature algorithms. Default: those the
	// provider announces (RS256 when it announces none).
	SigningAlgs []string
	// HTTPClient fetches the discovery document and the JWKS. Default
	// http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock of expiry checks. Default time.Now.
	Now func() time.Time
	// DiscoveryRetry is how long a failed discovery is remembered. Default
	// DefaultDiscoveryRetry.
	DiscoveryRetry time.Duration
}

func (c *BearerConfig) setDefaults() {
	if c.UserClaim == "" {
		c.UserClaim = DefaultUserClaim
	}
	if c.UnitClaim == "" {
		c.UnitClaim = DefaultUnitClaim
	}
	if c.RolesClaim == "" {
		c.RolesClaim = DefaultRolesClaim
	}
	if c.HTTPClient == nil {
		c.HTTPClient = http.DefaultClient
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DiscoveryRetry == 0 {
		c.DiscoveryRetry = DefaultDiscoveryRetry
	}
}

// Validate reports whether the configuration can be used (after defaults).
func (c BearerConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("Issuer %q is not an http(s) URL", c.Issuer))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("ClientID is required"))
	}
	if c.UserClaim == "" || c.UnitClaim == "" || c.RolesClaim == "" {
		errs = append(errs, errors.New("claim names must not be empty"))
	}
	if c.DiscoveryRetry < 0 {
		errs = append(errs, errors.New("DiscoveryRetry must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auth: invalid bearer config: %w", err)
	}
	return nil
}

// Bearer authenticates "Authorization: Bearer <token>" with a JWT of the
// unified portal, verified by go-oidc: the issuer's keys from its JWKS
// (found by discovery, refetched when a token names an unknown key id),
// the issuer, the audience (ClientID) and the expiry. The claims give the
// user id, unit and roles.
//
// Discovery happens at the first request, not at start, so that the hub
// starts while the portal is down; a failed discovery is retried after
// DiscoveryRetry, and the requests in between are refused.
type Bearer struct {
	cfg BearerConfig

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	failed   time.Time
	failure  error
}

// NewBearer returns a Bearer.
func NewBearer(cfg BearerConfig) (*Bearer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Bearer{cfg: cfg}, nil
}

// Discover fetches the provider's discovery document now, if not done yet
// (serve calls it at start to log a misconfiguration early).
func (b *Bearer) Discover(ctx context.Context) error {
	_, err := b.verifierFor(ctx)
	return err
}

func (b *Bearer) verifierFor(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.verifier != nil {
		return b.verifier, nil
	}
	if b.failure != nil && time.Since(b.failed) < b.cfg.DiscoveryRetry {
		return nil, b.failure
	}
	// The key set keeps this context for its JWKS fetches.
	kctx := oidc.ClientContext(context.WithoutCancel(ctx), b.cfg.HTTPClient)
	dctx, cancel := context.WithTimeout(kctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, b.cfg.Issuer)
	if err != nil {
		b.failed, b.failure = time.Now(), fmt.Errorf("auth: oidc discovery of %s: %w", b.cfg.Issuer, err)
		return nil, b.failure
	}
	b.verifier = p.VerifierContext(kctx, &oidc.Config{ClientID: b.cfg.ClientID, SupportedSigningAlgs: b.cfg.SigningAlgs, Now: b.cfg.Now})
	b.failure = nil
	return b.verifier, nil
}

// Authenticate implements Authenticator.
func (b *Bearer) Authenticate(r *http.Request) (Identity, error) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Identity{}, &AuthError{Message: "未提供统一门户令牌（Authorization: Bearer）", Absent: true}
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return Identity{}, &AuthError{Message: "身份认证未通过：令牌为空"}
	}
	v, err := b.verifierFor(r.Context())
	if err != nil {
		return Identity{}, &AuthError{Message: "统一门户身份服务暂不可用，请稍后重试", Err: err}
	}
	tok, err := v.Verify(r.Context(), token)
	if err != nil {
		msg := "身份认证未通过：令牌无效"
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			msg = "身份认证未通过：令牌已过期"
		}
		return Identity{}, &AuthError{Message: msg, Err: err, Detail: map[string]any{"tokenError": audit.Text(err.Error(), 256)}}
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, &AuthError{Message: "身份认证未通过：令牌声明无法解析", Err: err}
	}
	var user, unit string
	if raw, ok := claims[b.cfg.UserClaim]; !ok || json.Unmarshal(raw, &user) != nil || !ValidUser(user) {
		return Identity{}, &AuthError{Message: "身份认证未通过：令牌缺少有效的用户标识（" + b.cfg.UserClaim + "）",
			Detail: map[string]any{"subject": audit.Text(tok.Subject, 64)}}
	}
	if raw, ok := claims[b.cfg.UnitClaim]; ok {
		if json.Unmarshal(raw, &unit) != nil || !ValidUnit(unit) {
			return Identity{}, &AuthError{Message: "身份认证未通过：令牌的机构代码（" + b.cfg.UnitClaim + "）无效", Claimed: user}
		}
	}
	id := Identity{User: user, Unit: unit, Method: MethodBearer, Session: "bearer:" + sessionDigest(token), Expires: tok.Expiry}
	if raw, ok := claims[b.cfg.RolesClaim]; ok && b.cfg.RolesClaim != "-" {
		roles, err := rolesOf(raw)
		if err != nil {
			return Identity{}, &AuthError{Message: "身份认证未通过：令牌的角色（" + b.cfg.RolesClaim + "）无效", Claimed: user, Err: err}
		}
		for _, role := range roles {
			if !slices.Contains(AdminRoles, role) && !slices.Contains(id.Roles, role) {
				id.Roles = append(id.Roles, role)
			}
		}
		if len(id.Roles) > MaxRoles {
			return Identity{}, &AuthError{Message: "身份认证未通过：令牌的角色过多", Claimed: user}
		}
	}
	return id, nil
}

// rolesOf reads a roles claim: a list of strings, or one string of roles
// separated by spaces or commas. Every role must be ValidRole.
func rolesOf(raw json.RawMessage) ([]string, error) {
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("roles claim is neither a list of strings nor a string")
		}
		list = strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
	}
	for _, role := range list {
		if !ValidRole(role) {
			return nil, fmt.Errorf("role %q is not a role name", audit.Text(role, 40))
		}
	}
	return list, nil
}
