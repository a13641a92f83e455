package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/citybus"
	"zhianhub/adapters/httpapi"
	"zhianhub/adapters/sheet"
	"zhianhub/contracts"
	"zhianhub/store/audit"
	"zhianhub/store/dispatch"
)

// Dispatch orders (指挥调度) arrive from the city bureau on the city
// feedback bus (store/dispatch); each target unit reports its feedback,
// which is filed to the city bureau as feedback.dispatch (citybus.Feedbacks).
//
// Decisions:
//   - The unit tree bounds the orders: a caller sees the orders with a
//     target unit in their scope (their unit and the units below it), each
//     with the rows of those units only. An order without such a unit is
//     answered 404 E131 like an unknown one.
//   - POST /dispatch/orders/{orderNo}/feedback reports for one unit: the
//     body's unit, default the caller's. A unit outside the caller's scope
//     is 403; a unit of the scope that the order does not target is 404
//     E131 (the store's refusal). The answer is 202 with the filing (it is
//     in the outbox; the relay publishes it until the city bureau's
//     receipt), as for the Ministry filings; the filing service audits it
//     (filing.submit).
//   - Orders carry no personal data (no ID number, name or address
//     fields): reads are not audited; exports are (dispatch.export).
//   - Without the city bus (Config.Feedbacks nil) the orders can be read;
//     a feedback is answered 503 E503 市局反馈总线未启用 (as other features
//     that are not running).

// ActionDispatchExport is the audit action of an order export.
const ActionDispatchExport = "dispatch.export"

func orderNoParam(r *http.Request) (string, error) { return numberParam(r, "orderNo", 20) }

func unknownOrder(orderNo string) *Error { return notFound("调度指令 %s 不存在", orderNo) }

// viewOrder writes an order's times in Shanghai time, as every view.
func viewOrder(o dispatch.Order) dispatch.Order {
	o.Deadline, o.ReceivedAt = local(o.Deadline), local(o.ReceivedAt)
	units := make([]dispatch.Unit, len(o.Units))
	for i, u := range o.Units {
		u.DeliveredAt, u.SubmittedAt = local(u.DeliveredAt), localPtr(u.SubmittedAt)
		units[i] = u
	}
	o.Units = units
	return o
}

// scope returns the units the caller may see.
func (s *server) scope(ctx context.Context) []string {
	id, _ := auth.IdentityFrom(ctx)
	return s.cfg.Units.Scope(id.Unit)
}

// dispatchFilter parses state (a unit state: delivered or submitted).
func dispatchFilter(ctx context.Context, s *server, q map[string]string) (dispatch.Filter, error) {
	f := dispatch.Filter{Units: s.scope(ctx), State: q["state"]}
	if !dispatch.ValidState(f.State) {
		return f, badRequest("state：须为 %s 或 %s", dispatch.StateDelivered, dispatch.StateSubmitted)
	}
	return f, nil
}

// listOrders answers GET /dispatch/orders?state=&limit=&after=: the orders
// targeting the caller's units, newest orderNo first; next is the cursor
// of the following page.
func (s *server) listOrders(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "state", "limit", "after")
	if err != nil {
		return err
	}
	f, err := dispatchFilter(r.Context(), s, q)
	if err != nil {
		return err
	}
	if v, ok := q["after"]; ok {
		if !isDigits(v, 20) {
			return badRequest("after：须为 20 位调度指令编号")
		}
		f.After = v
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	list, err := dispatch.ListOrders(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]dispatch.Order, len(list))
	for i, o := range list {
		out[i] = viewOrder(o)
	}
	httpapi.WriteJSON(w, http.StatusOK, page("orders", out, len(list), f.Limit, func() string { return list[len(list)-1].OrderNo }))
	return nil
}

// getOrder answers GET /dispatch/orders/{orderNo}.
func (s *server) getOrder(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	orderNo, err := orderNoParam(r)
	if err != nil {
		return err
	}
	o, err := dispatch.GetOrder(r.Context(), s.cfg.Pool, orderNo, s.scope(r.Context()))
	if errors.Is(err, dispatch.ErrNotFound) {
		return unknownOrder(orderNo)
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, viewOrder(*o))
	return nil
}

// FeedbackRequest is the body of POST /dispatch/orders/{orderNo}/feedback.
type FeedbackRequest struct {
	// Unit is the reporting unit; default the caller's.
	Unit string `json:"unit,omitempty"`
	// Officer is the reporting officer's number (6-8 digits).
	Officer string `json:"officer"`
	// Result is done, unverified, false_alarm, transferred or in_progress.
	Result string `json:"result"`
	// Detail is the account of the disposal, 1-2000 characters.
	Detail string `json:"detail"`
	// Attachments are files of the hub's file store: name, size, SM3.
	Attachments []contracts.Attachment `json:"attachments,omitempty"`
	// At is RFC 3339; default now.
	At string `json:"at,omitempty"`
}

// postFeedback answers POST /dispatch/orders/{orderNo}/feedback: the unit's
// feedback, filed to the city bureau as feedback.dispatch (corr = the
// order's message id); 202 with the filing.
func (s *server) postFeedback(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if _, err := query(r); err != nil {
		return err
	}
	orderNo, err := orderNoParam(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req FeedbackRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if s.cfg.Feedbacks == nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "市局反馈总线未启用，无法报送反馈"}
	}
	id, _ := auth.IdentityFrom(ctx)
	if req.Unit == "" {
		req.Unit = id.Unit
	}
	if !s.cfg.Units.InScope(id.Unit, req.Unit) {
		return forbidden("unit：单位 " + req.Unit + " 超出数据范围，不能代其反馈")
	}
	o, err := dispatch.GetOrder(ctx, s.cfg.Pool, orderNo, s.scope(ctx))
	if errors.Is(err, dispatch.ErrNotFound) {
		return unknownOrder(orderNo)
	}
	if err != nil {
		return err
	}
	var at time.Time
	if req.At != "" {
		if at, err = time.Parse(time.RFC3339Nano, req.At); err != nil {
			return &Error{Status: http.StatusUnprocessableEntity, Code: contracts.CodeSchema, Message: "at：应为 RFC 3339 时间，如 2026-11-27T08:00:00+08:00"}
		}
	}
	res, err := s.cfg.Feedbacks.FileFeedback(ctx, citybus.FeedbackRequest{
		RefType: contracts.RefDispatch, RefNo: orderNo, Unit: req.Unit, Officer: req.Officer, Result: req.Result,
		Detail: req.Detail, Attachments: req.Attachments, At: at, Corr: o.MessageID, Actor: id.User, CorrelationID: httpapi.RequestID(ctx),
	})
	if err != nil && res.ID == "" {
		return refusal(err)
	}
	if err != nil {
		s.cfg.Logger.ErrorContext(ctx, "feedback committed but not audited", "err", err, "id", res.ID, "request_id", httpapi.RequestID(ctx))
	}
	w.Header().Set("Location", Prefix+"/filings/"+res.ID)
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"id": res.ID, "kind": res.Kind, "refNo": res.PersonNo, "seq": res.Seq, "unit": req.Unit})
	return nil
}

// unitStates and results as an export shows them.
var (
	unitStates      = map[string]string{dispatch.StateDelivered: "待反馈", dispatch.StateSubmitted: "已反馈"}
	feedbackResults = map[string]string{contracts.ResultDone: "已处置", contracts.ResultUnverified: "无法核实", contracts.ResultFalseAlarm: "误报",
		contracts.ResultTransferred: "移交", contracts.ResultInProgress: "处置中"}
	orderLevels = map[int]string{1: "一级（高）", 2: "二级", 3: "三级（低）"}
)

// dispatchColumns are the columns of an order export: one row per order
// and target unit of the caller's scope.
var dispatchColumns = []sheet.Column{
	{Header: "调度指令编号", Width: 24}, {Header: "标题", Width: 30}, {Header: "内容", Width: 40}, {Header: "等级", Width: 10},
	{Header: "截止时间", Width: 20}, {Header: "下达人警号", Width: 12}, {Header: "接收时间", Width: 20},
	{Header: "目标单位", Width: 15}, {Header: "目标单位名称", Width: 18}, {Header: "状态", Width: 8},
	{Header: "反馈结果", Width: 10}, {Header: "反馈编号", Width: 24}, {Header: "反馈时间", Width: 20}, {Header: "反馈消息编号", Width: 38},
}

// exportOrders answers GET /dispatch/orders/export?format=&state=: the
// orders selected (as GET /dispatch/orders), one row per target unit of the
// caller's scope, as a spreadsheet; audited (dispatch.export) before the
// file is sent.
func (s *server) exportOrders(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "format", "state")
	if err != nil {
		return err
	}
	f, err := dispatchFilter(r.Context(), s, q)
	if err != nil {
		return err
	}
	format, err := exportFormat(q)
	if err != nil {
		return err
	}
	tab, err := sheet.New(sheet.Config{Format: format, Sheet: "调度指令", Columns: dispatchColumns, Location: shanghai})
	if err != nil {
		return err
	}
	defer tab.Close()
	max := s.cfg.MaxExportRows
	for f.Limit = MaxLimit; ; {
		page, err := dispatch.ListOrders(r.Context(), s.cfg.Pool, f)
		if err != nil {
			return err
		}
		for _, o := range page {
			for _, u := range o.Units {
				if f.State != "" && u.State != f.State {
					continue
				}
				if tab.Rows() == max {
					return tooManyRows(max)
				}
				if err := tab.Row(o.OrderNo, o.Title, o.Content, orderLevels[o.Level], o.Deadline, o.IssuedBy, o.ReceivedAt,
					u.Unit, s.cfg.Units.Name(u.Unit), label(unitStates, u.State), label(feedbackResults, u.Result), u.FeedbackNo,
					u.SubmittedAt, u.FeedbackID); err != nil {
					return err
				}
			}
		}
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].OrderNo
	}
	detail := map[string]any{"format": string(format), "rows": tab.Rows()}
	if f.State != "" {
		detail["state"] = f.State
	}
	if err := s.record(r.Context(), audit.Entry{Action: ActionDispatchExport, Object: "dispatch.orders", Result: "ok", Detail: detail}); err != nil {
		return err
	}
	s.sendTable(w, r, "调度指令", format, tab)
	return nil
}
