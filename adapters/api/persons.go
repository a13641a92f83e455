package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/store/audit"
	"zhianhub/store/exchange"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
	"zhianhub/transforms"
)

// Audit actions of person reads.
const (
	ActionPersonRead   = "person.read"   // a masked read of a record, its history or controls
	ActionPersonUnmask = "person.unmask" // a read in clear (role unmask and a reason)
	ActionPersonSearch = "person.search" // a lookup by ID number
)

// personNoParam returns the personNo path parameter (20 digits).
func personNoParam(r *http.Request) (string, error) { return numberParam(r, "personNo", 20) }

func unknownPerson(personNo string) *Error {
	return notFound("重点人员编号 %s 不存在", personNo)
}

// getPerson answers GET /persons/{personNo}: the record, masked unless
// unmask=true with the role and a reason.
func (s *server) getPerson(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := query(r, "unmask", "reason")
	if err != nil {
		return err
	}
	personNo, err := personNoParam(r)
	if err != nil {
		return err
	}
	unmask, err := boolParam(q, "unmask")
	if err != nil {
		return err
	}
	reason, err := reasonParam(q)
	if err != nil {
		return err
	}
	if unmask {
		if err := s.allowUnmask(ctx, personNo, reason); err != nil {
			return err
		}
	}
	action := ActionPersonRead
	if unmask {
		action = ActionPersonUnmask
	}
	p, err := s.personInScope(ctx, personNo, action, reason, "record")
	if err != nil {
		return err
	}
	entry := audit.Entry{Action: ActionPersonRead, Object: personNo, Result: "ok", Reason: reason,
		Detail: map[string]any{"view": "record", "masked": !unmask}}
	if unmask {
		entry.Action, entry.Role = ActionPersonUnmask, RoleUnmask
	}
	if err := s.record(ctx, entry); err != nil {
		return err // no audit, no data
	}
	httpapi.WriteJSON(w, http.StatusOK, viewPerson(p, !unmask))
	return nil
}

// allowUnmask checks the role and the reason of a request for a person's
// clear data; a refusal is audited.
func (s *server) allowUnmask(ctx context.Context, personNo, reason string) error {
	return s.allowUnmaskAs(ctx, ActionPersonUnmask, personNo, reason)
}

// allowUnmaskAs checks the role and the reason of a request for clear data
// about object; a refusal is audited as action, result "denied".
func (s *server) allowUnmaskAs(ctx context.Context, action, object, reason string) error {
	id, _ := auth.IdentityFrom(ctx)
	var refused *Error
	switch {
	case !id.Can(auth.PermPersonUnmask):
		refused = forbidden("无权查看明文个人信息：需要 " + RoleUnmask + " 角色")
	case reason == "":
		refused = errNoReason
	default:
		return nil
	}
	if err := s.record(ctx, audit.Entry{Action: action, Object: object, Result: "denied",
		Reason: refused.Message, Detail: map[string]any{"statedReason": reason}}); err != nil {
		return err
	}
	return refused
}

// findPersons answers GET /persons?idNo=…&reason=…: the records with that
// ID number (blind index), masked.
func (s *server) findPersons(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := query(r, "idNo", "reason")
	if err != nil {
		return err
	}
	idNo := transforms.NormalizeIDNo(q["idNo"])
	if idNo == "" {
		return badRequest("idNo：须提供证件号码（按证件号码查询）")
	}
	if len([]rune(idNo)) > 32 {
		return badRequest("idNo：证件号码不能超过 32 个字符")
	}
	reason, err := reasonParam(q)
	if err != nil {
		return err
	}
	if reason == "" {
		return errNoReason
	}
	found, err := s.cfg.Registry.FindByIDNo(ctx, s.cfg.Pool, idNo)
	if err != nil {
		return err
	}
	id, _ := auth.IdentityFrom(ctx)
	out := make([]summaryView, 0, len(found))
	nos := make([]string, 0, len(found))
	withheld := 0
	for i := range found {
		if !s.cfg.Units.InScope(id.Unit, found[i].Unit) {
			withheld++
			continue
		}
		out = append(out, viewSummary(found[i].Summary()))
		nos = append(nos, found[i].PersonNo)
	}
	if err := s.record(ctx, audit.Entry{Action: ActionPersonSearch, Object: registry.MaskIDNo(idNo), Result: "ok",
		Reason: reason, Detail: map[string]any{"by": "idNo", "personNos": nos, "outOfScope": withheld}}); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"persons": out})
	return nil
}

// personHistory answers GET /persons/{personNo}/history: every effect on
// the person with the exchange history of its message.
func (s *server) personHistory(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := query(r, "reason")
	if err != nil {
		return err
	}
	personNo, err := personNoParam(r)
	if err != nil {
		return err
	}
	reason, err := reasonParam(q)
	if err != nil {
		return err
	}
	if _, err := s.personInScope(ctx, personNo, ActionPersonRead, reason, "history"); err != nil {
		return err
	}
	hist, err := s.cfg.Registry.History(ctx, s.cfg.Pool, personNo)
	if errors.Is(err, registry.ErrNotFound) {
		return unknownPerson(personNo)
	}
	if err != nil {
		return err
	}
	out := make([]historyView, 0, len(hist))
	for _, h := range hist {
		v := historyView{ID: h.ID, MsgID: h.MsgID, Direction: h.Direction, Node: h.Node, Kind: h.Kind, At: local(h.At),
			Fields: nonNil(h.Fields), Detail: h.Detail, RecordedAt: local(h.RecordedAt)}
		if len(v.Detail) == 0 {
			v.Detail = []byte("{}")
		}
		if h.MsgID != "" && (h.Direction == registry.In || h.Direction == registry.Out) {
			if v.Exchange, err = s.exchangeOf(ctx, h.MsgID, journal.Direction(h.Direction)); err != nil {
				return err
			}
		}
		out = append(out, v)
	}
	if err := s.record(ctx, audit.Entry{Action: ActionPersonRead, Object: personNo, Result: "ok", Reason: reason,
		Detail: map[string]any{"view": "history", "masked": true}}); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"personNo": personNo, "history": out})
	return nil
}

// exchangeOf returns the journal of message (id, dir) and, for a filing,
// its outbox row.
func (s *server) exchangeOf(ctx context.Context, id string, dir journal.Direction) (*exchangeView, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("api: history message id %q: %w", id, err)
	}
	v := &exchangeView{Events: []eventView{}}
	m, err := s.cfg.Journal.Get(ctx, u, dir)
	switch {
	case errors.Is(err, journal.ErrNotFound):
		// A filing not yet published is in the outbox only.
	case err != nil:
		return nil, err
	default:
		v.Journaled, v.State, v.Code, v.Reason, v.Peer, v.Corr = true, string(m.State), m.Code, m.Reason, m.Peer, m.CorrelationID
		es, err := s.cfg.Journal.Events(ctx, u, dir)
		if err != nil {
			return nil, err
		}
		v.Events = viewEvents(es)
	}
	if dir == journal.Out {
		o, err := exchange.Get(ctx, s.cfg.Pool, id)
		if err != nil && !isNoRows(err) {
			return nil, err
		}
		if err == nil {
			f := viewFiling(o)
			v.Filing = &f
		}
	}
	return v, nil
}

// personControls answers GET /persons/{personNo}/controls.
func (s *server) personControls(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := query(r, "reason")
	if err != nil {
		return err
	}
	personNo, err := personNoParam(r)
	if err != nil {
		return err
	}
	reason, err := reasonParam(q)
	if err != nil {
		return err
	}
	if _, err := s.personInScope(ctx, personNo, ActionPersonRead, reason, "controls"); err != nil {
		return err
	}
	cs, err := s.cfg.Registry.Controls(ctx, s.cfg.Pool, personNo)
	if errors.Is(err, registry.ErrNotFound) {
		return unknownPerson(personNo)
	}
	if err != nil {
		return err
	}
	out := make([]controlView, 0, len(cs))
	for _, c := range cs {
		out = append(out, viewControl(c))
	}
	if err := s.record(ctx, audit.Entry{Action: ActionPersonRead, Object: personNo, Result: "ok", Reason: reason,
		Detail: map[string]any{"view": "controls"}}); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"personNo": personNo, "controls": out})
	return nil
}

// personInScope returns the person's record if the caller's unit scope
// covers the person's unit. A person outside the scope is answered as an
// unknown one (404 E131: the API does not tell that the record exists)
// and the refused read is audited (action, result "denied").
func (s *server) personInScope(ctx context.Context, personNo, action, reason, view string) (*registry.PersonRecord, error) {
	p, err := s.cfg.Registry.GetPerson(ctx, s.cfg.Pool, personNo)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, unknownPerson(personNo)
	}
	if err != nil {
		return nil, err
	}
	id, _ := auth.IdentityFrom(ctx)
	if s.cfg.Units.InScope(id.Unit, p.Unit) {
		return p, nil
	}
	if err := s.record(ctx, audit.Entry{Action: action, Object: personNo, Result: "denied", Reason: "超出数据范围",
		Detail: map[string]any{"view": view, "personUnit": p.Unit, "statedReason": reason}}); err != nil {
		return nil, err
	}
	return nil, unknownPerson(personNo)
}
