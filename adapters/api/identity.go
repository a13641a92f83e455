package api

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"zhianhub/adapters/httpapi"
	"zhianhub/store/audit"
)

// Identity is who makes a request.
type Identity struct {
	// User is the user id (警号 or account), never empty.
	User string
	// Unit is the user's 12-digit unit code ("" when unknown).
	Unit string
	// Roles are the roles the user holds, e.g. RoleUnmask.
	Roles []string
}

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
}

func (e *AuthError) Error() string { return "api: authentication refused: " + e.Message }

// Development identity headers.
const (
	HeaderDevUser  = "X-Dev-User"
	HeaderDevUnit  = "X-Dev-Unit"
	HeaderDevRoles = "X-Dev-Roles"
)

var (
	devUserRe = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)
	devUnitRe = regexp.MustCompile(`^[0-9]{12}$`)
	devRoleRe = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)
)

// maxRoles bounds X-Dev-Roles.
const maxRoles = 16

// DevHeaders is the development identity: the user from X-Dev-User
// (1-64 of A-Z a-z 0-9 . _ @ -), an optional 12-digit X-Dev-Unit and an
// optional comma list X-Dev-Roles. The headers are trusted as they are:
// use it only where the configuration allows the development identity.
type DevHeaders struct{}

// Authenticate implements Authenticator.
func (DevHeaders) Authenticate(r *http.Request) (Identity, error) {
	user := r.Header.Get(HeaderDevUser)
	if user == "" {
		return Identity{}, &AuthError{Message: "未提供身份：请求须带 " + HeaderDevUser + " 头"}
	}
	if !devUserRe.MatchString(user) {
		return Identity{}, &AuthError{Message: HeaderDevUser + " 格式无效：须为 1-64 个字母、数字或 . _ @ -"}
	}
	id := Identity{User: user, Unit: r.Header.Get(HeaderDevUnit)}
	if id.Unit != "" && !devUnitRe.MatchString(id.Unit) {
		return Identity{}, &AuthError{Message: HeaderDevUnit + " 格式无效：须为 12 位机构代码", Claimed: user}
	}
	if roles := r.Header.Get(HeaderDevRoles); roles != "" {
		for _, role := range strings.Split(roles, ",") {
			role = strings.TrimSpace(role)
			if !devRoleRe.MatchString(role) {
				return Identity{}, &AuthError{Message: HeaderDevRoles + " 格式无效：须为逗号分隔的角色名（小写字母开头）", Claimed: user}
			}
			if !slices.Contains(id.Roles, role) {
				id.Roles = append(id.Roles, role)
			}
		}
		if len(id.Roles) > maxRoles {
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

// authenticate puts the caller's identity in the request context, or
// answers 401 E401 and audits the failure (auth.failure).
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.cfg.Authenticator.Authenticate(r)
		if err == nil && id.User != "" {
			next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
			return
		}
		msg, claimed := "身份认证未通过", ""
		if ae, ok := err.(*AuthError); ok { //nolint:errorlint // authenticators return it unwrapped
			msg, claimed = ae.Message, ae.Claimed
		}
		detail := map[string]any{"method": r.Method, "path": clip(r.URL.Path, 256), "remote": r.RemoteAddr}
		if claimed != "" {
			detail["claimedUser"] = clip(claimed, 64)
		}
		if aerr := s.record(r.Context(), audit.Entry{Actor: "anonymous", Action: "auth.failure", Object: clip(r.URL.Path, 256),
			Result: "denied", Reason: msg, Detail: detail}); aerr != nil {
			s.cfg.Logger.ErrorContext(r.Context(), "audit of an authentication failure failed", "err", aerr,
				"request_id", httpapi.RequestID(r.Context()))
		}
		httpapi.WriteError(w, http.StatusUnauthorized, CodeUnauthenticated, msg)
	})
}

// clip makes s acceptable audit text: valid UTF-8, no NUL, at most max
// bytes.
func clip(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
