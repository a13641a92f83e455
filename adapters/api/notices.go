package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/store/audit"
	"zhianhub/store/inbox"
	"zhianhub/store/notice"
)

// System notices (系统公告). Authors hold notice.manage (role portaladmin)
// and manage the notices of their unit and of the units below it; a
// notice's audience is units (each with its subtree) within the author's
// scope, and optionally roles. Publishing delivers one inbox item (kind
// "notice", ref the notice id) to every unit of the audience's subtrees,
// as of the unit tree at publication, carrying the audience roles;
// withdrawing hides those items. GET /notices computes what a reader sees
// at read time (the reader's unit chain against the audience units, their
// roles against the audience roles), so a unit added to the tree later
// sees a published notice without a reminder.

// Audit actions of notices, each staged in the transaction of its change.
const (
	ActionNoticeCreate   = "notice.create"
	ActionNoticeUpdate   = "notice.update"
	ActionNoticeDelete   = "notice.delete"
	ActionNoticePublish  = "notice.publish"
	ActionNoticeWithdraw = "notice.withdraw"
)

// Bounds of a notice.
const (
	MaxNoticeTitle = 100
	MaxNoticeBody  = 5000
	MaxAudience    = 50
)

// KindNotice is the inbox item kind of a notice's reminder.
const KindNotice = "notice"

// NoticeRequest is the body of POST /notices and PUT /notices/{noticeId}.
type NoticeRequest struct {
	Title string `json:"title"`
	Body  string `json:"body,omitempty"`
	Level int    `json:"level,omitempty"`
	// Units is the audience: units, each with the units below it; default
	// the author's unit.
	Units []string `json:"units,omitempty"`
	// Roles limits the audience to holders of one of them; empty = all.
	Roles []string `json:"roles,omitempty"`
}

// noticeView is a notice.
type noticeView struct {
	ID             int64      `json:"id"`
	State          string     `json:"state"`
	Title          string     `json:"title"`
	Body           string     `json:"body"`
	Level          int        `json:"level"`
	Unit           string     `json:"unit"`
	UnitName       string     `json:"unitName"`
	Units          []string   `json:"units"`
	Roles          []string   `json:"roles"`
	CreatedBy      string     `json:"createdBy"`
	CreatedAt      time.Time  `json:"createdAt"`
	UpdatedAt      time.Time  `json:"updatedAt"`
	PublishedBy    string     `json:"publishedBy,omitempty"`
	PublishedAt    *time.Time `json:"publishedAt,omitempty"`
	WithdrawnBy    string     `json:"withdrawnBy,omitempty"`
	WithdrawnAt    *time.Time `json:"withdrawnAt,omitempty"`
	WithdrawReason string     `json:"withdrawReason,omitempty"`
}

func (s *server) viewNotice(n notice.Notice) noticeView {
	return noticeView{ID: n.ID, State: n.State, Title: n.Title, Body: n.Body, Level: n.Level, Unit: n.Unit,
		UnitName: s.cfg.Units.Name(n.Unit), Units: nonNil(n.AudienceUnits), Roles: nonNil(n.AudienceRoles),
		CreatedBy: n.CreatedBy, CreatedAt: local(n.CreatedAt), UpdatedAt: local(n.UpdatedAt), PublishedBy: n.PublishedBy,
		PublishedAt: localPtr(n.PublishedAt), WithdrawnBy: n.WithdrawnBy, WithdrawnAt: localPtr(n.WithdrawnAt),
		WithdrawReason: n.WithdrawReason}
}

func unknownNotice(id int64) *Error { return notFound("公告 %d 不存在", id) }

func noticeIDParam(r *http.Request) (int64, error) {
	v := chi.URLParam(r, "noticeId")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || !isDigits(v, len(v)) {
		return 0, badRequest("noticeId：须为正整数")
	}
	return n, nil
}

// deny refuses a request lacking permission p found inside a handler (an
// option of the endpoint), audited as the require middleware does.
func (s *server) deny(r *http.Request, p auth.Permission) error {
	msg := "无权执行此操作：需要 " + string(p) + " 权限"
	if err := s.record(r.Context(), audit.Entry{Action: ActionDenied, Object: audit.Text(r.URL.Path, 256), Result: "denied",
		Reason: msg, Detail: map[string]any{"permission": string(p), "method": r.Method}}); err != nil {
		return err
	}
	return forbidden(msg)
}

// text checks a user-given text of at most max characters (multi: line
// breaks and tabs allowed).
func checkText(name, v string, min, max int, multi bool) (string, error) {
	v = strings.TrimSpace(v)
	n := utf8.RuneCountInString(v)
	switch {
	case n < min || n > max:
		if min > 0 {
			return "", badRequest("%s：须为 %d-%d 个字符", name, min, max)
		}
		return "", badRequest("%s：不能超过 %d 个字符", name, max)
	case !utf8.ValidString(v):
		return "", badRequest("%s：须为 UTF-8 文本", name)
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) && !(multi && (r == '\n' || r == '\t' || r == '\r')) }) >= 0:
		return "", badRequest("%s：不能含控制字符", name)
	}
	return v, nil
}

// noticeFrom checks a request body into a notice of the caller.
func (s *server) noticeFrom(w http.ResponseWriter, r *http.Request) (notice.Notice, error) {
	body, err := readBody(w, r)
	if err != nil {
		return notice.Notice{}, err
	}
	var req NoticeRequest
	if err := decodeStrict(body, &req); err != nil {
		return notice.Notice{}, err
	}
	id, _ := auth.IdentityFrom(r.Context())
	n := notice.Notice{Level: req.Level, Unit: id.Unit, CreatedBy: id.User}
	if n.Title, err = checkText("title", req.Title, 1, MaxNoticeTitle, false); err != nil {
		return n, err
	}
	if n.Body, err = checkText("body", req.Body, 0, MaxNoticeBody, true); err != nil {
		return n, err
	}
	if req.Level < 0 || req.Level > 4 {
		return n, badRequest("level：须为 0 至 4")
	}
	if len(req.Units) == 0 {
		req.Units = []string{id.Unit}
	}
	if len(req.Units) > MaxAudience || len(req.Roles) > 8 {
		return n, badRequest("units 最多 %d 个，roles 最多 8 个", MaxAudience)
	}
	for _, u := range req.Units {
		switch {
		case !auth.ValidUnit(u):
			return n, badRequest("units：须为 12 位机构代码")
		case !s.cfg.Units.Contains(u):
			return n, badRequest("units：机构 %s 不在机构树中", u)
		case !s.cfg.Units.InScope(id.Unit, u):
			return n, forbidden("units：机构 " + u + " 超出本人数据范围，不能向其发布公告")
		}
		if !slices.Contains(n.AudienceUnits, u) {
			n.AudienceUnits = append(n.AudienceUnits, u)
		}
	}
	for _, role := range req.Roles {
		if !auth.KnownRole(role) || auth.IsAdminRole(role) {
			return n, badRequest("roles：%s 不是业务角色", shown(role))
		}
		if !slices.Contains(n.AudienceRoles, role) {
			n.AudienceRoles = append(n.AudienceRoles, role)
		}
	}
	return n, nil
}

// managed loads notice id for a change by the caller (locked): 404 when it
// is not of a unit in the caller's scope.
func (s *server) managed(ctx context.Context, tx pgx.Tx, id int64) (notice.Notice, error) {
	n, err := notice.Get(ctx, tx, id, true)
	if errors.Is(err, notice.ErrNotFound) {
		return n, unknownNotice(id)
	}
	if err != nil {
		return n, err
	}
	caller, _ := auth.IdentityFrom(ctx)
	if !s.cfg.Units.InScope(caller.Unit, n.Unit) {
		return n, unknownNotice(id)
	}
	return n, nil
}

func stateConflict(n notice.Notice, want string) *Error {
	names := map[string]string{notice.Draft: "草稿", notice.Published: "已发布", notice.Withdrawn: "已撤回"}
	return conflictErr("公告 " + strconv.FormatInt(n.ID, 10) + " 当前为" + names[n.State] + "状态，仅" + names[want] + "可执行此操作")
}

// listNotices answers GET /notices?all=&state=&limit=&before=: the
// published notices addressed to the caller; with all=true (notice.manage)
// every notice of the units in the caller's scope, of any state.
func (s *server) listNotices(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "all", "state", "limit", "before")
	if err != nil {
		return err
	}
	all, err := boolParam(q, "all")
	if err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(r.Context())
	var f notice.Filter
	switch st := q["state"]; {
	case st != "" && !all:
		return badRequest("state：仅与 all=true 一起使用")
	case st == "" || st == notice.Draft || st == notice.Published || st == notice.Withdrawn:
		f.State = st
	default:
		return badRequest("state：须为 draft、published 或 withdrawn")
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	if v, ok := q["before"]; ok {
		if f.Before, err = strconv.ParseInt(v, 10, 64); err != nil || f.Before < 1 || !isDigits(v, len(v)) {
			return badRequest("before：须为正整数")
		}
	}
	if all {
		if !id.Can(auth.PermNoticeManage) {
			return s.deny(r, auth.PermNoticeManage)
		}
		f.Units = s.cfg.Units.Subtree(id.Unit)
	} else {
		f.Audience = &notice.Audience{Chain: s.cfg.Units.Chain(id.Unit), Roles: id.Roles}
	}
	list, err := notice.List(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]noticeView, 0, len(list))
	for _, n := range list {
		out = append(out, s.viewNotice(n))
	}
	httpapi.WriteJSON(w, http.StatusOK, page("notices", out, len(list), f.Limit, func() string { return strconv.FormatInt(list[len(list)-1].ID, 10) }))
	return nil
}

// getNotice answers GET /notices/{noticeId}: a published notice addressed
// to the caller, or any notice the caller manages; else 404.
func (s *server) getNotice(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	nid, err := noticeIDParam(r)
	if err != nil {
		return err
	}
	n, err := notice.Get(r.Context(), s.cfg.Pool, nid, false)
	if errors.Is(err, notice.ErrNotFound) {
		return unknownNotice(nid)
	}
	if err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(r.Context())
	manages := id.Can(auth.PermNoticeManage) && s.cfg.Units.InScope(id.Unit, n.Unit)
	if !manages && !n.Visible(notice.Audience{Chain: s.cfg.Units.Chain(id.Unit), Roles: id.Roles}) {
		return unknownNotice(nid)
	}
	httpapi.WriteJSON(w, http.StatusOK, s.viewNotice(n))
	return nil
}

func noticeEntry(action string, n notice.Notice, detail map[string]any) audit.Entry {
	if detail == nil {
		detail = map[string]any{}
	}
	detail["state"], detail["units"], detail["roles"] = n.State, nonNil(n.AudienceUnits), nonNil(n.AudienceRoles)
	return audit.Entry{Action: action, Object: "notice/" + strconv.FormatInt(n.ID, 10), Result: "ok", Detail: detail}
}

// createNotice answers POST /notices: 201 with the draft.
func (s *server) createNotice(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	n, err := s.noticeFrom(w, r)
	if err != nil {
		return err
	}
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		if n, err = notice.Create(r.Context(), tx, n); err != nil {
			return nil, err
		}
		return []audit.Entry{noticeEntry(ActionNoticeCreate, n, map[string]any{"title": n.Title})}, nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", Prefix+"/notices/"+strconv.FormatInt(n.ID, 10))
	httpapi.WriteJSON(w, http.StatusCreated, s.viewNotice(n))
	return nil
}

// updateNotice answers PUT /notices/{noticeId}: a draft's new text and
// audience.
func (s *server) updateNotice(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	nid, err := noticeIDParam(r)
	if err != nil {
		return err
	}
	n, err := s.noticeFrom(w, r)
	if err != nil {
		return err
	}
	n.ID = nid
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		old, err := s.managed(r.Context(), tx, nid)
		if err != nil {
			return nil, err
		}
		if old.State != notice.Draft {
			return nil, stateConflict(old, notice.Draft)
		}
		if n, err = notice.Update(r.Context(), tx, n); err != nil {
			return nil, err
		}
		return []audit.Entry{noticeEntry(ActionNoticeUpdate, n, map[string]any{"title": n.Title})}, nil
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, s.viewNotice(n))
	return nil
}

// deleteNotice answers DELETE /notices/{noticeId}: a draft is removed
// (204); a published notice is withdrawn instead, never deleted.
func (s *server) deleteNotice(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	nid, err := noticeIDParam(r)
	if err != nil {
		return err
	}
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		n, err := s.managed(r.Context(), tx, nid)
		if err != nil {
			return nil, err
		}
		if n.State != notice.Draft {
			return nil, stateConflict(n, notice.Draft)
		}
		if err := notice.Delete(r.Context(), tx, nid); err != nil {
			return nil, err
		}
		return []audit.Entry{noticeEntry(ActionNoticeDelete, n, map[string]any{"title": n.Title})}, nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// publishNotice answers POST /notices/{noticeId}/publish: the draft is
// published and its reminders delivered in one transaction; delivered is
// the number of units reminded.
func (s *server) publishNotice(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	nid, err := noticeIDParam(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	id, _ := auth.IdentityFrom(ctx)
	var n notice.Notice
	var delivered int
	err = s.change(ctx, func(tx pgx.Tx) ([]audit.Entry, error) {
		old, err := s.managed(ctx, tx, nid)
		if err != nil {
			return nil, err
		}
		if old.State != notice.Draft {
			return nil, stateConflict(old, notice.Draft)
		}
		if n, err = notice.Publish(ctx, tx, nid, id.User); err != nil {
			return nil, err
		}
		var units []string
		for _, u := range n.AudienceUnits {
			for _, sub := range s.cfg.Units.Subtree(u) {
				if !slices.Contains(units, sub) {
					units = append(units, sub)
				}
			}
		}
		items := make([]inbox.Item, 0, len(units))
		for _, u := range units {
			items = append(items, inbox.Item{RecipientKind: inbox.ToUnit, Recipient: u, Kind: KindNotice,
				Ref: strconv.FormatInt(n.ID, 10), Title: n.Title, Body: n.Body, Level: n.Level, Roles: n.AudienceRoles})
		}
		ids, err := inbox.Deliver(ctx, tx, items...)
		if err != nil {
			return nil, err
		}
		delivered = len(ids)
		return []audit.Entry{noticeEntry(ActionNoticePublish, n, map[string]any{"delivered": delivered})}, nil
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"notice": s.viewNotice(n), "delivered": delivered})
	return nil
}

// withdrawNotice answers POST /notices/{noticeId}/withdraw (a stated
// reason): the published notice is withdrawn and its reminders hidden.
func (s *server) withdrawNotice(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	nid, err := noticeIDParam(r)
	if err != nil {
		return err
	}
	reason, err := s.reasonBody(w, r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	id, _ := auth.IdentityFrom(ctx)
	var n notice.Notice
	err = s.change(ctx, func(tx pgx.Tx) ([]audit.Entry, error) {
		old, err := s.managed(ctx, tx, nid)
		if err != nil {
			return nil, err
		}
		if old.State != notice.Published {
			return nil, stateConflict(old, notice.Published)
		}
		if n, err = notice.Withdraw(ctx, tx, nid, id.User, reason); err != nil {
			return nil, err
		}
		hidden, err := inbox.Withdraw(ctx, tx, KindNotice, strconv.FormatInt(nid, 10))
		if err != nil {
			return nil, err
		}
		e := noticeEntry(ActionNoticeWithdraw, n, map[string]any{"hidden": hidden})
		e.Reason = reason
		return []audit.Entry{e}, nil
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, s.viewNotice(n))
	return nil
}
