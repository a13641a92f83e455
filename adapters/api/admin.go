package api

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emmansun/gmsm/smx509"
	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/store/access"
	"zhianhub/store/audit"
)

// Audit actions of the administrators' changes, each staged in the
// transaction of its change.
const (
	ActionBindingCreate = "certbinding.create"
	ActionBindingRevoke = "certbinding.revoke"
	ActionRoleGrant     = "role.grant"
	ActionRoleRevoke    = "role.revoke"
	ActionAccountLock   = "account.lock"
	ActionAccountUnlock = "account.unlock"
)

// CodeConflict answers an administrator's change that conflicts with the
// stored state (409).
const CodeConflict = "E409"

func conflictErr(msg string) *Error {
	return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: msg}
}

// meView is GET /me.
type meView struct {
	User        string   `json:"user"`
	Unit        string   `json:"unit"`
	UnitName    string   `json:"unitName"`
	Roles       []string `json:"roles"`
	Permissions []string `json:"permissions"`
	Method      string   `json:"method"`
}

// me answers GET /me: the caller's identity, roles and permissions.
func (s *server) me(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(r.Context())
	v := meView{User: id.User, Unit: id.Unit, UnitName: s.cfg.Units.Name(id.Unit), Roles: nonNil(id.Roles),
		Permissions: []string{}, Method: id.Method}
	for _, p := range id.Permissions() {
		v.Permissions = append(v.Permissions, string(p))
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
	return nil
}

// change runs fn in a transaction whose audit entries (completed with the
// request's identity) commit with it, then asks the writer to chain them.
func (s *server) change(ctx context.Context, fn func(tx pgx.Tx) ([]audit.Entry, error)) error {
	err := audit.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx, st *audit.Staging) error {
		entries, err := fn(tx)
		if err != nil {
			return err
		}
		for i := range entries {
			entries[i] = entry(ctx, entries[i])
		}
		return st.Stage(entries...)
	})
	if err == nil {
		s.cfg.Audit.Notify()
	}
	return err
}

// adminReason checks the stated reason of an administrator's change.
func adminReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", badRequest("reason：须说明理由")
	case utf8.RuneCountInString(reason) > MaxReasonLen:
		return "", badRequest("reason：理由不能超过 %d 个字符", MaxReasonLen)
	case strings.IndexFunc(reason, unicode.IsControl) >= 0:
		return "", badRequest("reason：理由不能含控制字符")
	}
	return reason, nil
}

// userParam returns the userId path parameter.
func userParam(r *http.Request) (string, error) {
	u := chi.URLParam(r, "userId")
	if !auth.ValidUser(u) {
		return "", badRequest("userId：须为 1-64 个字母、数字或 . _ @ -")
	}
	return u, nil
}

// bindingView is a certificate binding.
type bindingView struct {
	ID           int64      `json:"id"`
	Serial       string     `json:"serial"`
	Issuer       string     `json:"issuer"`
	User         string     `json:"user"`
	Unit         string     `json:"unit"`
	Note         string     `json:"note"`
	CreatedBy    string     `json:"createdBy"`
	CreatedAt    time.Time  `json:"createdAt"`
	Active       bool       `json:"active"`
	RevokedAt    *time.Time `json:"revokedAt,omitempty"`
	RevokedBy    string     `json:"revokedBy,omitempty"`
	RevokeReason string     `json:"revokeReason,omitempty"`
}

func viewBinding(b access.Binding) bindingView {
	return bindingView{ID: b.ID, Serial: b.Serial, Issuer: b.Issuer, User: b.User, Unit: b.Unit, Note: b.Note,
		CreatedBy: b.CreatedBy, CreatedAt: local(b.CreatedAt), Active: b.Active(), RevokedAt: localPtr(b.RevokedAt),
		RevokedBy: b.RevokedBy, RevokeReason: b.RevokeReason}
}

// listBindings answers GET /admin/cert-bindings?user=&all=&limit=&after=.
func (s *server) listBindings(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "user", "all", "limit", "after")
	if err != nil {
		return err
	}
	f := access.BindingFilter{User: q["user"]}
	if f.User != "" && !auth.ValidUser(f.User) {
		return badRequest("user：须为 1-64 个字母、数字或 . _ @ -")
	}
	if f.IncludeRevoke, err = boolParam(q, "all"); err != nil {
		return err
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	if f.After, err = afterParam(q); err != nil {
		return err
	}
	bs, err := access.ListBindings(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]bindingView, 0, len(bs))
	for _, b := range bs {
		out = append(out, viewBinding(b))
	}
	httpapi.WriteJSON(w, http.StatusOK, page("bindings", out, len(bs), f.Limit, func() string { return strconv.FormatInt(bs[len(bs)-1].ID, 10) }))
	return nil
}

// BindingRequest is the body of POST /admin/cert-bindings: the officer's
// certificate (PEM), or its serial (hex) and issuer DN (RFC 2253, as the
// hub renders it), bound to a user of a unit of the unit tree.
type BindingRequest struct {
	Certificate string `json:"certificate,omitempty"`
	Serial      string `json:"serial,omitempty"`
	Issuer      string `json:"issuer,omitempty"`
	User        string `json:"user"`
	Unit        string `json:"unit"`
	Note        string `json:"note,omitempty"`
}

// createBinding answers POST /admin/cert-bindings: 201 with the binding.
func (s *server) createBinding(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req BindingRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	b := access.Binding{User: req.User, Unit: req.Unit, Note: strings.TrimSpace(req.Note), CreatedAt: s.cfg.Now()}
	switch {
	case req.Certificate != "" && (req.Serial != "" || req.Issuer != ""):
		return badRequest("certificate 与 serial、issuer 只能二选一")
	case req.Certificate != "":
		block, _ := pem.Decode([]byte(req.Certificate))
		if block == nil || block.Type != "CERTIFICATE" {
			return badRequest("certificate：须为 PEM 格式的证书")
		}
		cert, err := smx509.ParseCertificate(block.Bytes)
		if err != nil {
			return badRequest("certificate：证书无法解析")
		}
		b.Serial, b.Issuer = access.SerialHex(cert.SerialNumber), cert.Issuer.String()
	default:
		if b.Serial = access.NormalizeSerial(req.Serial); req.Serial == "" || b.Serial == "" {
			return badRequest("serial：须为十六进制证书序列号（或提供 certificate）")
		}
		if b.Issuer = strings.TrimSpace(req.Issuer); b.Issuer == "" || len(b.Issuer) > 1024 {
			return badRequest("issuer：须为证书颁发者 DN（或提供 certificate）")
		}
	}
	if !auth.ValidUser(b.User) {
		return badRequest("user：须为 1-64 个字母、数字或 . _ @ -")
	}
	if !s.cfg.Units.Contains(b.Unit) {
		return badRequest("unit：须为机构树中的 12 位机构代码")
	}
	if utf8.RuneCountInString(b.Note) > MaxReasonLen {
		return badRequest("note：备注不能超过 %d 个字符", MaxReasonLen)
	}
	id, _ := auth.IdentityFrom(r.Context())
	b.CreatedBy = id.User
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		var err error
		if b, err = access.CreateBinding(r.Context(), tx, b); err != nil {
			return nil, err
		}
		return []audit.Entry{{Action: ActionBindingCreate, Object: "cert-binding/" + strconv.FormatInt(b.ID, 10), Result: "ok",
			Reason: b.Note, Detail: map[string]any{"serial": b.Serial, "issuer": b.Issuer, "user": b.User, "unit": b.Unit}}}, nil
	})
	if errors.Is(err, access.ErrConflict) {
		return conflictErr("该证书已绑定用户：须先撤销现有绑定")
	}
	if err != nil {
		return err
	}
	w.Header().Set("Location", Prefix+"/admin/cert-bindings?user="+b.User)
	httpapi.WriteJSON(w, http.StatusCreated, viewBinding(b))
	return nil
}

// ReasonRequest is a body carrying only a stated reason.
type ReasonRequest struct {
	Reason string `json:"reason"`
}

func (s *server) reasonBody(w http.ResponseWriter, r *http.Request) (string, error) {
	body, err := readBody(w, r)
	if err != nil {
		return "", err
	}
	var req ReasonRequest
	if err := decodeStrict(body, &req); err != nil {
		return "", err
	}
	return adminReason(req.Reason)
}

// revokeBinding answers POST /admin/cert-bindings/{bindingId}/revoke.
func (s *server) revokeBinding(w http.ResponseWriter, r *http.Request) error {
	bid, err := strconv.ParseInt(chi.URLParam(r, "bindingId"), 10, 64)
	if err != nil || bid <= 0 {
		return badRequest("bindingId：须为正整数")
	}
	reason, err := s.reasonBody(w, r)
	if err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(r.Context())
	var b access.Binding
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		var err error
		if b, err = access.RevokeBinding(r.Context(), tx, bid, id.User, reason, s.cfg.Now()); err != nil {
			return nil, err
		}
		return []audit.Entry{{Action: ActionBindingRevoke, Object: "cert-binding/" + strconv.FormatInt(b.ID, 10), Result: "ok",
			Reason: reason, Detail: map[string]any{"serial": b.Serial, "issuer": b.Issuer, "user": b.User}}}, nil
	})
	switch {
	case errors.Is(err, access.ErrNotFound):
		return notFound("证书绑定 %d 不存在", bid)
	case errors.Is(err, access.ErrConflict):
		return conflictErr("证书绑定已撤销")
	case err != nil:
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, viewBinding(b))
	return nil
}

// grantView is a role grant.
type grantView struct {
	User      string    `json:"user"`
	Role      string    `json:"role"`
	GrantedBy string    `json:"grantedBy"`
	GrantedAt time.Time `json:"grantedAt"`
	Reason    string    `json:"reason"`
}

func viewGrant(g access.Grant) grantView {
	return grantView{User: g.User, Role: g.Role, GrantedBy: g.GrantedBy, GrantedAt: local(g.GrantedAt), Reason: g.Reason}
}

// listGrants answers GET /admin/role-grants?user=.
func (s *server) listGrants(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "user")
	if err != nil {
		return err
	}
	if u := q["user"]; u != "" && !auth.ValidUser(u) {
		return badRequest("user：须为 1-64 个字母、数字或 . _ @ -")
	}
	gs, err := access.Grants(r.Context(), s.cfg.Pool, q["user"])
	if err != nil {
		return err
	}
	out := make([]grantView, 0, len(gs))
	for _, g := range gs {
		out = append(out, viewGrant(g))
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"grants": out})
	return nil
}

// roleTarget checks the path of a role grant or revocation: a business
// role of the permission table, for someone else.
func (s *server) roleTarget(r *http.Request) (user, role string, err error) {
	if user, err = userParam(r); err != nil {
		return "", "", err
	}
	role = chi.URLParam(r, "role")
	if !auth.KnownRole(role) {
		return "", "", badRequest("role：未知角色（%s）", strings.Join(businessRoles(), "、"))
	}
	if auth.IsAdminRole(role) {
		return "", "", forbidden("管理员角色（" + strings.Join(auth.AdminRoles, "、") + "）只能在部署时由命令行授予或撤销")
	}
	if id, _ := auth.IdentityFrom(r.Context()); id.User == user {
		return "", "", forbidden("不能为自己授予或撤销角色")
	}
	return user, role, nil
}

func businessRoles() []string {
	var out []string
	for r := range auth.RolePermissions {
		if !auth.IsAdminRole(r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// grantRole answers PUT /admin/users/{userId}/roles/{role}: 201 with the
// grant. An administrator's account takes no business role.
func (s *server) grantRole(w http.ResponseWriter, r *http.Request) error {
	user, role, err := s.roleTarget(r)
	if err != nil {
		return err
	}
	reason, err := s.reasonBody(w, r)
	if err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(r.Context())
	g := access.Grant{User: user, Role: role, GrantedBy: id.User, GrantedAt: s.cfg.Now(), Reason: reason}
	var adminHeld string
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		if err := access.LockUser(r.Context(), tx, user); err != nil {
			return nil, err
		}
		held, err := access.Grants(r.Context(), tx, user)
		if err != nil {
			return nil, err
		}
		for _, h := range held {
			if auth.IsAdminRole(h.Role) {
				adminHeld = h.Role
				return nil, access.ErrConflict
			}
		}
		if err := access.GrantRole(r.Context(), tx, g); err != nil {
			return nil, err
		}
		return []audit.Entry{{Action: ActionRoleGrant, Object: "user/" + user, Result: "ok", Reason: reason,
			Detail: map[string]any{"user": user, "role": role}}}, nil
	})
	switch {
	case adminHeld != "":
		return conflictErr("该用户是管理员账号（" + adminHeld + "），不能兼任业务角色")
	case errors.Is(err, access.ErrConflict):
		return conflictErr("该用户已有角色 " + role)
	case err != nil:
		return err
	}
	httpapi.WriteJSON(w, http.StatusCreated, viewGrant(g))
	return nil
}

// revokeRole answers DELETE /admin/users/{userId}/roles/{role}?reason=:
// the grant it ended.
func (s *server) revokeRole(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "reason")
	if err != nil {
		return err
	}
	user, role, err := s.roleTarget(r)
	if err != nil {
		return err
	}
	reason, err := adminReason(q["reason"])
	if err != nil {
		return err
	}
	var g access.Grant
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		var err error
		if g, err = access.RevokeRole(r.Context(), tx, user, role); err != nil {
			return nil, err
		}
		return []audit.Entry{{Action: ActionRoleRevoke, Object: "user/" + user, Result: "ok", Reason: reason,
			Detail: map[string]any{"user": user, "role": role, "grantedBy": g.GrantedBy}}}, nil
	})
	if errors.Is(err, access.ErrNotFound) {
		return notFound("用户 %s 没有角色 %s", user, role)
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, viewGrant(g))
	return nil
}

// lockView is a locked account.
type lockView struct {
	User     string    `json:"user"`
	Reason   string    `json:"reason"`
	LockedBy string    `json:"lockedBy"`
	LockedAt time.Time `json:"lockedAt"`
}

func viewLock(l access.Lock) lockView {
	return lockView{User: l.User, Reason: l.Reason, LockedBy: l.LockedBy, LockedAt: local(l.LockedAt)}
}

// listLocks answers GET /admin/account-locks.
func (s *server) listLocks(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	ls, err := access.Locks(r.Context(), s.cfg.Pool)
	if err != nil {
		return err
	}
	out := make([]lockView, 0, len(ls))
	for _, l := range ls {
		out = append(out, viewLock(l))
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"locks": out})
	return nil
}

func lockTarget(r *http.Request) (string, error) {
	user, err := userParam(r)
	if err != nil {
		return "", err
	}
	if id, _ := auth.IdentityFrom(r.Context()); id.User == user {
		return "", forbidden("不能停用或启用自己的账号")
	}
	return user, nil
}

// lockAccount answers PUT /admin/users/{userId}/lock: 201 with the lock.
func (s *server) lockAccount(w http.ResponseWriter, r *http.Request) error {
	user, err := lockTarget(r)
	if err != nil {
		return err
	}
	reason, err := s.reasonBody(w, r)
	if err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(r.Context())
	l := access.Lock{User: user, Reason: reason, LockedBy: id.User, LockedAt: s.cfg.Now()}
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		if err := access.LockAccount(r.Context(), tx, l); err != nil {
			return nil, err
		}
		return []audit.Entry{{Action: ActionAccountLock, Object: "user/" + user, Result: "ok", Reason: reason}}, nil
	})
	if errors.Is(err, access.ErrConflict) {
		return conflictErr("账号 " + user + " 已停用")
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusCreated, viewLock(l))
	return nil
}

// unlockAccount answers DELETE /admin/users/{userId}/lock?reason=: the
// lock it ended.
func (s *server) unlockAccount(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "reason")
	if err != nil {
		return err
	}
	user, err := lockTarget(r)
	if err != nil {
		return err
	}
	reason, err := adminReason(q["reason"])
	if err != nil {
		return err
	}
	var l access.Lock
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		var err error
		if l, err = access.UnlockAccount(r.Context(), tx, user); err != nil {
			return nil, err
		}
		return []audit.Entry{{Action: ActionAccountUnlock, Object: "user/" + user, Result: "ok", Reason: reason,
			Detail: map[string]any{"lockReason": l.Reason, "lockedBy": l.LockedBy}}}, nil
	})
	if errors.Is(err, access.ErrNotFound) {
		return notFound("账号 %s 未停用", user)
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, viewLock(l))
	return nil
}
