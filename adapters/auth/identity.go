package auth

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Identity is who makes a request.
type Identity struct {
	// User is the user id (警号 or account), never empty.
	User string
	// Unit is the user's 12-digit unit code ("" when unknown).
	Unit string
	// Roles are the roles the user holds, e.g. RoleUnmask.
	Roles []string
	// Method is how the identity was established: MethodGateway,
	// MethodBearer or MethodDev ("" when set by hand, e.g. in tests).
	Method string
	// Session names the credential presented, without revealing it: the
	// SM3 of a bearer token, a certificate's serial and issuer, the
	// development user. Its first use is a login (ActionLogin).
	Session string
	// Expires is when the credential stops being valid (a token's exp, a
	// certificate's NotAfter); zero when it does not say.
	Expires time.Time
}

// Authentication methods (Identity.Method).
const (
	MethodGateway = "gateway" // security gateway, officer's certificate
	MethodBearer  = "bearer"  // OIDC token of the unified portal
	MethodDev     = "dev"     // development identity headers
)

// HasRole reports whether the identity holds role.
func (id Identity) HasRole(role string) bool { return slices.Contains(id.Roles, role) }

// RoleList returns the roles comma-separated.
func (id Identity) RoleList() string { return strings.Join(id.Roles, ",") }

// Authenticator identifies the caller of a request. A refusal is an
// *AuthError whose Message is shown to the caller.
type Authenticator interface {
	Authenticate(r *http.Request) (Identity, error)
}

// AuthError is a refused authentication.
type AuthError struct {
	// Message is the Chinese text for the caller.
	Message string
	// Claimed is the user the request claimed to be ("" when none), for
	// the audit only.
	Claimed string
	// Absent means the request carries no credentials of the refusing
	// authenticator's kind at all (Chain then asks the next one).
	Absent bool
	// Security marks a refusal that is a security event (forged gateway
	// headers): it is audited as ActionSecurityFailure, not ActionFailure.
	Security bool
	// Detail is added to the audit entry's detail (never shown).
	Detail map[string]any
	// Err is the underlying cause, for logs and errors.Is ("" to the caller).
	Err error
}

func (e *AuthError) Error() string {
	if e.Err != nil {
		return "auth: authentication refused: " + e.Message + ": " + e.Err.Error()
	}
	return "auth: authentication refused: " + e.Message
}

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

// asAuthError returns err as an *AuthError, or a generic one.
func asAuthError(err error) *AuthError {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae
	}
	return &AuthError{Message: "身份认证未通过", Err: err}
}

// Development identity headers.
const (
	HeaderDevUser  = "X-Dev-User"
	HeaderDevUnit  = "X-Dev-Unit"
	HeaderDevRoles = "X-Dev-Roles"
)

var (
	userRe = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)
	unitRe = regexp.MustCompile(`^[0-9]{12}$`)
	roleRe = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)
)

// ValidUser reports whether s is an acceptable user id: 1-64 of
// A-Z a-z 0-9 . _ @ -.
func ValidUser(s string) bool { return userRe.MatchString(s) }

// ValidUnit reports whether s is a 12-digit unit code.
func ValidUnit(s string) bool { return unitRe.MatchString(s) }

// ValidRole reports whether s is an acceptable role name: a lower-case
// letter, then up to 31 of a-z 0-9 . _ -.
func ValidRole(s string) bool { return roleRe.MatchString(s) }

// MaxRoles bounds the roles of an identity.
const MaxRoles = 16

// DevHeaders is the development identity: the user from X-Dev-User
// (1-64 of A-Z a-z 0-9 . _ @ -), an optional 12-digit X-Dev-Unit and an
// optional comma list X-Dev-Roles. The headers are trusted as they are:
// use it only where the configuration allows the development identity.
type DevHeaders struct{}

// Authenticate implements Authenticator.
func (DevHeaders) Authenticate(r *http.Request) (Identity, error) {
	user := r.Header.Get(HeaderDevUser)
	if user == "" {
		return Identity{}, &AuthError{Message: "未提供身份：请求须带 " + HeaderDevUser + " 头", Absent: true}
	}
	if !ValidUser(user) {
		return Identity{}, &AuthError{Message: HeaderDevUser + " 格式无效：须为 1-64 个字母、数字或 . _ @ -"}
	}
	id := Identity{User: user, Unit: r.Header.Get(HeaderDevUnit), Method: MethodDev, Session: "dev:" + user}
	if id.Unit != "" && !ValidUnit(id.Unit) {
		return Identity{}, &AuthError{Message: HeaderDevUnit + " 格式无效：须为 12 位机构代码", Claimed: user}
	}
	if roles := r.Header.Get(HeaderDevRoles); roles != "" {
		for _, role := range strings.Split(roles, ",") {
			role = strings.TrimSpace(role)
			if !ValidRole(role) {
				return Identity{}, &AuthError{Message: HeaderDevRoles + " 格式无效：须为逗号分隔的角色名（小写字母开头）", Claimed: user}
			}
			if !slices.Contains(id.Roles, role) {
				id.Roles = append(id.Roles, role)
			}
		}
		if len(id.Roles) > MaxRoles {
			return Identity{}, &AuthError{Message: HeaderDevRoles + " 角色过多", Claimed: user}
		}
	}
	return id, nil
}

// Refuse refuses every request: the hub has no authentication configured
// (the development identity is off).
type Refuse struct{}

// Authenticate implements Authenticator.
func (Refuse) Authenticate(r *http.Request) (Identity, error) {
	return Identity{}, &AuthError{Message: "身份认证未通过：未配置身份认证，开发身份（" + HeaderDevUser + "）已禁用", Claimed: r.Header.Get(HeaderDevUser)}
}

// Chain asks its authenticators in order. An authenticator that finds no
// credentials of its kind (an *AuthError with Absent) passes the request
// on; the first one that finds its credentials decides, whether it accepts
// or refuses them. When none finds credentials the request is refused with
// the messages of all of them.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(r *http.Request) (Identity, error) {
	var absent []string
	for _, a := range c {
		id, err := a.Authenticate(r)
		if err == nil {
			return id, nil
		}
		var ae *AuthError
		if errors.As(err, &ae) && ae.Absent {
			absent = append(absent, ae.Message)
			continue
		}
		return Identity{}, err
	}
	if len(absent) == 1 {
		return Identity{}, &AuthError{Message: absent[0], Absent: true}
	}
	return Identity{}, &AuthError{Message: "未提供身份凭证：" + strings.Join(absent, "；"), Absent: true}
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity of the request ctx belongs to.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
