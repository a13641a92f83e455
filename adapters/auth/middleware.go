package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"zhianhub/adapters/httpapi"
	"zhianhub/store/audit"
)

// Audit actions of refused authentications.
const (
	// ActionFailure is a refused authentication.
	ActionFailure = "auth.failure"
	// ActionSecurityFailure is a refused authentication that is a security
	// event: forged gateway headers, a peer that is not a gateway.
	ActionSecurityFailure = "security.auth_failure"
)

// CodeUnauthenticated is the code of a 401 answer.
const CodeUnauthenticated = "E401"

// Recorder appends audit entries; *audit.Writer is one.
type Recorder interface {
	Append(ctx context.Context, e audit.Entry) (int64, error)
}

// Access is what the hub itself records about a user: the roles granted
// locally and whether the account is locked.
type Access struct {
	Roles  []string
	Locked bool
	// LockReason is why the account is locked (Chinese, for the audit).
	LockReason string
}

// AccessSource gives the local access of a user; a user it does not know
// has no local roles and is not locked.
type AccessSource interface {
	Access(ctx context.Context, user string) (Access, error)
}

// MiddlewareConfig configures Middleware.
type MiddlewareConfig struct {
	// Authenticator identifies the caller. Required.
	Authenticator Authenticator
	// Audit records refusals. Required.
	Audit Recorder
	// Access adds the locally granted roles to the identity and refuses
	// locked accounts. Optional: without it the identity is as the
	// authenticator made it.
	Access AccessSource
	// Logger receives failures to audit. Default: discard.
	Logger *slog.Logger
	// Sessions, when set, audits the first use of each credential as a
	// login (ActionLogin), before the request is served; if that audit
	// fails the request is answered 500 and the next use tries again.
	Sessions *Sessions
	// Now is the clock of Sessions; default time.Now.
	Now func() time.Time
}

// Validate reports whether the configuration can be used.
func (c MiddlewareConfig) Validate() error {
	var errs []error
	if c.Authenticator == nil {
		errs = append(errs, errors.New("Authenticator is required"))
	}
	if c.Audit == nil {
		errs = append(errs, errors.New("Audit is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auth: invalid middleware config: %w", err)
	}
	return nil
}

// Middleware puts the caller's identity in the request context (see
// IdentityFrom), or answers 401 E401 with the refusal's Chinese message
// and audits it (ActionFailure or ActionSecurityFailure, actor
// "anonymous", object the path, detail the method, path, remote address
// and claimed user). A locked account is refused likewise.
func Middleware(cfg MiddlewareConfig) (func(http.Handler) http.Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := cfg.Authenticator.Authenticate(r)
			if err == nil && id.User == "" {
				err = &AuthError{Message: "身份认证未通过：身份无用户标识"}
			}
			if err == nil && cfg.Access != nil {
				id, err = withAccess(r.Context(), cfg.Access, id)
			}
			if err == nil {
				if cfg.Sessions != nil && id.Session != "" && cfg.Sessions.First(id.Session, id.Expires, cfg.Now()) {
					if lerr := login(r, cfg, id); lerr != nil {
						cfg.Sessions.Forget(id.Session)
						cfg.Logger.ErrorContext(r.Context(), "audit of a login failed", "err", lerr, "request_id", httpapi.RequestID(r.Context()))
						httpapi.WriteError(w, http.StatusInternalServerError, httpapi.CodeInternal, httpapi.MessageInternal)
						return
					}
				}
				next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
				return
			}
			refuse(w, r, cfg, asAuthError(err))
		})
	}, nil
}

// login audits the first use of a credential: who (user, unit, roles),
// how (method, the credential's digest) and until when.
func login(r *http.Request, cfg MiddlewareConfig, id Identity) error {
	detail := map[string]any{"method": id.Method, "remote": r.RemoteAddr, "userAgent": audit.Text(r.UserAgent(), 200)}
	if !id.Expires.IsZero() {
		detail["expires"] = id.Expires.UTC().Format(time.RFC3339)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	_, err := cfg.Audit.Append(ctx, audit.Entry{Actor: id.User, Unit: id.Unit, Role: id.RoleList(), Action: ActionLogin,
		Object: id.Session, Result: "ok", CorrelationID: httpapi.RequestID(r.Context()), Detail: detail})
	return err
}

// withAccess merges the local roles into id and refuses a locked account.
func withAccess(ctx context.Context, src AccessSource, id Identity) (Identity, error) {
	a, err := src.Access(ctx, id.User)
	if err != nil {
		return Identity{}, &AuthError{Message: "身份认证暂不可用，请稍后重试", Claimed: id.User, Err: err}
	}
	if a.Locked {
		return Identity{}, &AuthError{Message: "账号已停用", Claimed: id.User,
			Detail: map[string]any{"locked": true, "lockReason": audit.Text(a.LockReason, 200)}}
	}
	roles := slices.Clone(id.Roles)
	for _, role := range a.Roles {
		if !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	id.Roles = roles
	return id, nil
}

func refuse(w http.ResponseWriter, r *http.Request, cfg MiddlewareConfig, ae *AuthError) {
	ctx := r.Context()
	action := ActionFailure
	if ae.Security {
		action = ActionSecurityFailure
	}
	detail := map[string]any{"method": r.Method, "path": audit.Text(r.URL.Path, 256), "remote": r.RemoteAddr}
	maps.Copy(detail, ae.Detail)
	if ae.Claimed != "" {
		detail["claimedUser"] = audit.Text(ae.Claimed, 64)
	}
	if ae.Err != nil {
		cfg.Logger.WarnContext(ctx, "authentication refused", "err", ae.Err, "remote", r.RemoteAddr,
			"request_id", httpapi.RequestID(ctx))
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := cfg.Audit.Append(actx, audit.Entry{Actor: "anonymous", Action: action, Object: audit.Text(r.URL.Path, 256),
		Result: "denied", Reason: ae.Message, CorrelationID: httpapi.RequestID(ctx), Detail: detail}); err != nil {
		cfg.Logger.ErrorContext(ctx, "audit of an authentication failure failed", "err", err,
			"request_id", httpapi.RequestID(ctx))
	}
	httpapi.WriteError(w, http.StatusUnauthorized, CodeUnauthenticated, ae.Message)
}
