package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/contracts"
	"zhianhub/envelope"
	"zhianhub/routes"
	"zhianhub/store/audit"
	"zhianhub/store/exchange"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
)

// FilingKinds are the kinds the hub files up to the Ministry (every kind
// but the receipt).
var FilingKinds = []string{
	contracts.KindRegister, contracts.KindChange, contracts.KindCancel, contracts.KindControl,
	contracts.KindRelease, contracts.KindTask, contracts.KindTaskSign,
}

// FilingStates are the states a filing can be listed by.
var FilingStates = []string{exchange.OutPending, exchange.OutSent, exchange.OutReceipted, exchange.OutFlagged}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// postFiling answers POST /filings/{kind}: the body is the payload (its seq
// is assigned by the hub); 202 with the FileResult once it is in the
// outbox.
func (s *server) postFiling(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "corr")
	if err != nil {
		return err
	}
	kind := chi.URLParam(r, "kind")
	if !slices.Contains(FilingKinds, kind) {
		return &Error{Status: http.StatusBadRequest, Code: string(envelope.CodeUnknownKind), Message: "kind：不是可备案的类型（" + strings.Join(FilingKinds, "、") + "）"}
	}
	corr := q["corr"]
	if corr != "" {
		if kind != contracts.KindTaskSign {
			return badRequest("corr：只有任务签收（%s）可以带 corr", contracts.KindTaskSign)
		}
		if u, err := uuid.Parse(corr); err != nil || u.String() != corr {
			return badRequest("corr：须为任务下发消息的编号（小写带连字符的 UUID）")
		}
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	return s.file(w, r, kind, body, corr)
}

// file files one payload for the request's identity and answers 202.
func (s *server) file(w http.ResponseWriter, r *http.Request, kind string, payload []byte, corr string) error {
	ctx := r.Context()
	id, _ := auth.IdentityFrom(ctx)
	if err := s.fileInScope(ctx, kind, payload); err != nil {
		return err
	}
	res, err := s.cfg.Filing.File(ctx, routes.FileRequest{Kind: kind, Payload: payload, Corr: corr, Actor: id.User,
		CorrelationID: httpapi.RequestID(ctx)})
	if err != nil && res.ID == "" {
		return refusal(err)
	}
	if err != nil {
		// Committed to the outbox (the relay publishes it) but not
		// audited: answer what happened, so that the client does not file
		// it twice, and tell the operators.
		s.cfg.Logger.ErrorContext(ctx, "filing committed but not audited", "err", err, "id", res.ID,
			"request_id", httpapi.RequestID(ctx))
	}
	w.Header().Set("Location", Prefix+"/filings/"+res.ID)
	httpapi.WriteJSON(w, http.StatusAccepted, res)
	return nil
}

// listFilings answers GET /filings?state=…&personNo=…&limit=…, newest
// first.
func (s *server) listFilings(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "state", "personNo", "limit")
	if err != nil {
		return err
	}
	f := exchange.Filter{States: []string{}}
	if v, ok := q["state"]; ok {
		for _, st := range strings.Split(v, ",") {
			if !slices.Contains(FilingStates, st) {
				return badRequest("state：须为 %s 之一（可用逗号分隔多个）", strings.Join(FilingStates, "、"))
			}
			if !slices.Contains(f.States, st) {
				f.States = append(f.States, st)
			}
		}
	}
	if v, ok := q["personNo"]; ok {
		if !isDigits(v, 20) {
			return badRequest("personNo：须为 20 位数字")
		}
		f.PersonNo = v
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	list, err := exchange.ListFilings(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]filingView, 0, len(list))
	for _, o := range list {
		out = append(out, viewFiling(o))
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"filings": out})
	return nil
}

// getFiling answers GET /filings/{id}: the filing with its journal.
func (s *server) getFiling(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if _, err := query(r); err != nil {
		return err
	}
	id, err := uuidParam(r, "id")
	if err != nil {
		return err
	}
	o, err := exchange.Get(ctx, s.cfg.Pool, id.String())
	if isNoRows(err) || err == nil && !o.NeedsReceipt {
		return notFound("备案消息 %s 不存在", id)
	}
	if err != nil {
		return err
	}
	v := viewFiling(o)
	es, err := s.cfg.Journal.Events(ctx, id, journal.Out)
	if err != nil && !errors.Is(err, journal.ErrNotFound) {
		return err
	}
	v.Events = viewEvents(es)
	httpapi.WriteJSON(w, http.StatusOK, v)
	return nil
}

// fileInScope refuses a filing outside the caller's unit scope, audited as
// filing.submit "denied": a registration for a unit outside it (403 E403),
// or a filing about a person of such a unit (404 E131, as an unknown
// person). A payload it cannot read, or about an unknown person, is left
// to the filing service to refuse.
func (s *server) fileInScope(ctx context.Context, kind string, payload []byte) error {
	var p struct {
		PersonNo string `json:"personNo"`
		Unit     string `json:"unit"`
	}
	if json.Unmarshal(payload, &p) != nil {
		return nil
	}
	id, _ := auth.IdentityFrom(ctx)
	deny := func(unit string, refusal *Error) error {
		if err := s.record(ctx, audit.Entry{Action: "filing.submit", Object: kind + "/" + audit.Text(p.PersonNo, 32), Result: "denied",
			Reason: "超出数据范围", Detail: map[string]any{"kind": kind, "unit": audit.Text(unit, 32)}}); err != nil {
			return err
		}
		return refusal
	}
	if kind == contracts.KindRegister {
		if p.Unit != "" && !s.cfg.Units.InScope(id.Unit, p.Unit) {
			return deny(p.Unit, forbidden("无权为机构 "+audit.Text(p.Unit, 32)+" 登记：超出本人数据范围"))
		}
		return nil
	}
	if !isDigits(p.PersonNo, 20) {
		return nil
	}
	rec, err := s.cfg.Registry.GetPerson(ctx, s.cfg.Pool, p.PersonNo)
	if errors.Is(err, registry.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !s.cfg.Units.InScope(id.Unit, rec.Unit) {
		return deny(rec.Unit, unknownPerson(p.PersonNo))
	}
	return nil
}
