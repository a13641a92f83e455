package api

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/routes"
	"zhianhub/store/audit"
	"zhianhub/store/push"
)

// Smart-push rules (智能推送订阅规则). A user with portal.use manages their
// own rules (reminders to themselves); a unit's rules (reminders to the
// unit) need push.manage (role portaladmin) for a unit in the caller's
// scope. A rule's unit scope (default: the owner's unit) must be within
// the owner's scope: nobody subscribes to events of units they could not
// see. A scope that is a root of the unit tree is stored as the whole tree
// (""), which also matches events naming no unit (keyperson.control,
// .change, .cancel, .release). The route that applies them is routes.Push.

// Audit actions of push rules, each staged in the transaction of its change.
const (
	ActionPushRuleCreate = "push.rule.create"
	ActionPushRuleDelete = "push.rule.delete"
)

var categoryRe = regexp.MustCompile(`^[0-9]{4}$`)

// PushRuleRequest is the body of POST /push-rules.
type PushRuleRequest struct {
	// Owner is "user" (the caller, default) or "unit".
	Owner string `json:"owner,omitempty"`
	// Unit is the owning unit of a unit's rule; default the caller's.
	Unit      string `json:"unit,omitempty"`
	EventKind string `json:"eventKind"`
	Category  string `json:"category,omitempty"`
	UnitScope string `json:"unitScope,omitempty"`
	MaxLevel  int    `json:"maxLevel,omitempty"`
}

// pushRuleView is a rule.
type pushRuleView struct {
	ID        int64     `json:"id"`
	Owner     string    `json:"owner"`
	OwnerID   string    `json:"ownerId"`
	OwnerUnit string    `json:"ownerUnit"`
	EventKind string    `json:"eventKind"`
	Category  string    `json:"category"`
	UnitScope string    `json:"unitScope"`
	MaxLevel  int       `json:"maxLevel"`
	Enabled   bool      `json:"enabled"`
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
}

func viewRule(r push.Rule) pushRuleView {
	return pushRuleView{ID: r.ID, Owner: r.OwnerKind, OwnerID: r.Owner, OwnerUnit: r.OwnerUnit, EventKind: r.EventKind,
		Category: r.Category, UnitScope: r.UnitScope, MaxLevel: r.MaxLevel, Enabled: r.Enabled, CreatedBy: r.CreatedBy,
		CreatedAt: local(r.CreatedAt)}
}

func ruleEntry(action string, r push.Rule) audit.Entry {
	return audit.Entry{Action: action, Object: "push-rule/" + strconv.FormatInt(r.ID, 10), Result: "ok",
		Detail: map[string]any{"owner": r.OwnerKind + ":" + r.Owner, "eventKind": r.EventKind, "category": r.Category,
			"unitScope": r.UnitScope, "maxLevel": r.MaxLevel}}
}

// listPushRules answers GET /push-rules?unit=&limit=&after=: the caller's
// own rules, or with unit (push.manage, in scope) that unit's.
func (s *server) listPushRules(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "unit", "limit", "after")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	after, err := afterParam(q)
	if err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(r.Context())
	kind, owner := push.ToUser, id.User
	if u, ok := q["unit"]; ok {
		if !auth.ValidUnit(u) {
			return badRequest("unit：须为 12 位机构代码")
		}
		if !id.Can(auth.PermPushManage) {
			return s.deny(r, auth.PermPushManage)
		}
		if !s.cfg.Units.InScope(id.Unit, u) {
			return forbidden("unit：机构 " + u + " 超出本人数据范围")
		}
		kind, owner = push.ToUnit, u
	}
	rules, err := push.List(r.Context(), s.cfg.Pool, []string{kind}, []string{owner}, after, limit)
	if err != nil {
		return err
	}
	out := make([]pushRuleView, 0, len(rules))
	for _, x := range rules {
		out = append(out, viewRule(x))
	}
	httpapi.WriteJSON(w, http.StatusOK, page("rules", out, len(rules), limit, func() string { return strconv.FormatInt(rules[len(rules)-1].ID, 10) }))
	return nil
}

// createPushRule answers POST /push-rules: 201 with the rule.
func (s *server) createPushRule(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req PushRuleRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(r.Context())
	x := push.Rule{EventKind: req.EventKind, Category: req.Category, MaxLevel: req.MaxLevel, CreatedBy: id.User}
	switch {
	case !slices.Contains(routes.PushKinds(), req.EventKind):
		return badRequest("eventKind：须为以下事件类型之一：%s", strings.Join(routes.PushKinds(), "、"))
	case req.Category != "" && !categoryRe.MatchString(req.Category):
		return badRequest("category：须为 4 位类别代码")
	case req.MaxLevel < 0 || req.MaxLevel > 4:
		return badRequest("maxLevel：须为 0（不限）至 4")
	case req.Unit != "" && !auth.ValidUnit(req.Unit), req.UnitScope != "" && !auth.ValidUnit(req.UnitScope):
		return badRequest("unit、unitScope：须为 12 位机构代码")
	}
	switch req.Owner {
	case "", push.ToUser:
		if req.Unit != "" {
			return badRequest("unit：仅用于单位规则（owner 为 unit）")
		}
		if id.Unit == "" {
			return forbidden("本人无所属机构，不能订阅推送")
		}
		x.OwnerKind, x.Owner, x.OwnerUnit = push.ToUser, id.User, id.Unit
	case push.ToUnit:
		if !id.Can(auth.PermPushManage) {
			return s.deny(r, auth.PermPushManage)
		}
		if req.Unit == "" {
			req.Unit = id.Unit
		}
		if !s.cfg.Units.Contains(req.Unit) {
			return badRequest("unit：机构 %s 不在机构树中", req.Unit)
		}
		if !s.cfg.Units.InScope(id.Unit, req.Unit) {
			return forbidden("unit：机构 " + req.Unit + " 超出本人数据范围")
		}
		x.OwnerKind, x.Owner, x.OwnerUnit = push.ToUnit, req.Unit, req.Unit
	default:
		return badRequest("owner：须为 user 或 unit")
	}
	scope := req.UnitScope
	if scope == "" {
		scope = x.OwnerUnit
	}
	if !s.cfg.Units.InScope(x.OwnerUnit, scope) {
		return forbidden("unitScope：机构 " + scope + " 超出订阅者的数据范围")
	}
	if !s.cfg.Units.IsRoot(scope) {
		x.UnitScope = scope
	}
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		if x, err = push.Create(r.Context(), tx, x); err != nil {
			return nil, err
		}
		return []audit.Entry{ruleEntry(ActionPushRuleCreate, x)}, nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", Prefix+"/push-rules/"+strconv.FormatInt(x.ID, 10))
	httpapi.WriteJSON(w, http.StatusCreated, viewRule(x))
	return nil
}

// deletePushRule answers DELETE /push-rules/{ruleId} (204): the caller's
// own rule, or a unit's rule in scope with push.manage; otherwise 404.
func (s *server) deletePushRule(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	v := chi.URLParam(r, "ruleId")
	rid, err := strconv.ParseInt(v, 10, 64)
	if err != nil || rid < 1 || !isDigits(v, len(v)) {
		return badRequest("ruleId：须为正整数")
	}
	unknown := notFound("推送规则 %d 不存在", rid)
	err = s.change(r.Context(), func(tx pgx.Tx) ([]audit.Entry, error) {
		x, err := push.Get(r.Context(), tx, rid)
		if errors.Is(err, push.ErrNotFound) {
			return nil, unknown
		}
		if err != nil {
			return nil, err
		}
		if !s.mayManageRule(r.Context(), x) {
			return nil, unknown
		}
		if err := push.Delete(r.Context(), tx, rid); err != nil {
			return nil, err
		}
		return []audit.Entry{ruleEntry(ActionPushRuleDelete, x)}, nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) mayManageRule(ctx context.Context, x push.Rule) bool {
	id, _ := auth.IdentityFrom(ctx)
	if x.OwnerKind == push.ToUser {
		return x.Owner == id.User
	}
	return id.Can(auth.PermPushManage) && s.cfg.Units.InScope(id.Unit, x.Owner)
}
