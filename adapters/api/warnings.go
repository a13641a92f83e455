package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/adapters/sheet"
	"zhianhub/envelope"
	"zhianhub/store/audit"
	"zhianhub/store/warning"
)

// Warnings (信息预警): GET /warnings, GET /warnings/{warningId}, the steps
// POST /warnings/{warningId}/sign|start|finish|transfer and
// GET /warnings/export. A caller sees the warnings one of whose
// responsible units (now or before a transfer) is in their unit's subtree;
// another is 404 like an unknown one. A step needs the responsible unit
// now in the caller's subtree (else 403), and the state machine's consent
// (else 409 E130 naming the state).

func warningIDParam(r *http.Request) (string, error) { return numberParam(r, "warningId", 20) }

func unknownWarning(id string) *Error { return notFound("预警编号 %s 不存在", id) }

// scopeOf returns the units the caller sees: their unit's subtree.
func (s *server) scopeOf(ctx context.Context) []string {
	id, _ := auth.IdentityFrom(ctx)
	scope := s.cfg.Units.Subtree(id.Unit)
	if scope == nil {
		scope = []string{}
	}
	return scope
}

// warningError maps the lifecycle's refusals to answers.
func (s *server) warningError(id string, err error) error {
	var se *warning.StateError
	var ie *warning.InvalidError
	switch {
	case errors.Is(err, warning.ErrNotFound):
		return unknownWarning(id)
	case errors.Is(err, warning.ErrNotResponsible):
		return forbidden("该预警的责任单位已不在您的管辖范围内，不能办理")
	case errors.As(err, &se):
		return &Error{Status: http.StatusConflict, Code: string(envelope.CodeStateConflict), Message: se.Reason}
	case errors.As(err, &ie):
		return &Error{Status: http.StatusUnprocessableEntity, Code: string(envelope.CodeSchema), Message: ie.Reason}
	}
	return err
}

type warningStepView struct {
	Action    string    `json:"action"`
	FromState string    `json:"fromState,omitempty"`
	ToState   string    `json:"toState"`
	Unit      string    `json:"unit,omitempty"`
	Actor     string    `json:"actor"`
	Officer   string    `json:"officer,omitempty"`
	ToUnit    string    `json:"toUnit,omitempty"`
	Note      string    `json:"note,omitempty"`
	At        time.Time `json:"at"`
}

type warningView struct {
	WarningID     string            `json:"warningId"`
	Level         int               `json:"level"`
	Category      string            `json:"category"`
	Title         string            `json:"title"`
	Content       string            `json:"content"`
	PersonNo      string            `json:"personNo,omitempty"`
	Unit          string            `json:"unit"`
	UnitName      string            `json:"unitName,omitempty"`
	Holders       []string          `json:"holders"`
	Deadline      time.Time         `json:"deadline"`
	IssuedAt      time.Time         `json:"issuedAt"`
	Source        string            `json:"source"`
	State         string            `json:"state"`
	StateName     string            `json:"stateName"`
	Overdue       bool              `json:"overdue"`
	EscalatedAt   *time.Time        `json:"escalatedAt,omitempty"`
	SignedUnit    string            `json:"signedUnit,omitempty"`
	SignedOfficer string            `json:"signedOfficer,omitempty"`
	SignedAt      *time.Time        `json:"signedAt,omitempty"`
	Result        string            `json:"result,omitempty"`
	Detail        string            `json:"detail,omitempty"`
	FinishedAt    *time.Time        `json:"finishedAt,omitempty"`
	CreatedAt     time.Time         `json:"createdAt"`
	UpdatedAt     time.Time         `json:"updatedAt"`
	Steps         []warningStepView `json:"steps,omitempty"`
}

func (s *server) viewWarning(w warning.Warning) warningView {
	return warningView{WarningID: w.WarningID, Level: w.Level, Category: w.Category, Title: w.Title, Content: w.Content,
		PersonNo: w.PersonNo, Unit: w.Unit, UnitName: s.cfg.Units.Name(w.Unit), Holders: nonNil(w.Holders),
		Deadline: local(w.Deadline), IssuedAt: local(w.IssuedAt), Source: w.Source, State: w.State,
		StateName: warning.StateNames[w.State], Overdue: w.Overdue(s.cfg.Now()), EscalatedAt: localPtr(w.EscalatedAt),
		SignedUnit: w.SignedUnit, SignedOfficer: w.SignedOfficer, SignedAt: localPtr(w.SignedAt), Result: w.Result,
		Detail: w.Detail, FinishedAt: localPtr(w.FinishedAt), CreatedAt: local(w.CreatedAt), UpdatedAt: local(w.UpdatedAt)}
}

// warningFilter parses state, level and overdue.
func (s *server) warningFilter(ctx context.Context, q map[string]string) (warning.Filter, error) {
	f := warning.Filter{Scope: s.scopeOf(ctx), Now: s.cfg.Now()}
	if st, ok := q["state"]; ok {
		if _, known := warning.StateNames[st]; !known {
			return f, badRequest("state：须为 issued、signed、in_progress、done、false_alarm 或 transferred")
		}
		f.State = st
	}
	if v, ok := q["level"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 4 || len(v) != 1 {
			return f, badRequest("level：须为 1 至 4")
		}
		f.Level = n
	}
	if _, ok := q["overdue"]; ok {
		b, err := boolParam(q, "overdue")
		if err != nil {
			return f, err
		}
		f.Overdue = &b
	}
	return f, nil
}

// listWarnings answers GET /warnings?state=&level=&overdue=&limit=&before=:
// the caller's warnings, newest warningId first; next is the cursor.
func (s *server) listWarnings(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "state", "level", "overdue", "limit", "before")
	if err != nil {
		return err
	}
	f, err := s.warningFilter(r.Context(), q)
	if err != nil {
		return err
	}
	if v, ok := q["before"]; ok {
		if !isDigits(v, 20) {
			return badRequest("before：须为 20 位预警编号")
		}
		f.Before = v
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	list, err := warning.List(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]warningView, 0, len(list))
	for _, x := range list {
		out = append(out, s.viewWarning(x))
	}
	httpapi.WriteJSON(w, http.StatusOK, page("warnings", out, len(list), f.Limit, func() string { return list[len(list)-1].WarningID }))
	return nil
}

// getWarning answers GET /warnings/{warningId}: the warning with its steps.
func (s *server) getWarning(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	id, err := warningIDParam(r)
	if err != nil {
		return err
	}
	x, err := warning.Get(r.Context(), s.cfg.Pool, id, s.scopeOf(r.Context()))
	if err != nil {
		return s.warningError(id, err)
	}
	steps, err := warning.Steps(r.Context(), s.cfg.Pool, id)
	if err != nil {
		return err
	}
	v := s.viewWarning(x)
	for _, st := range steps {
		v.Steps = append(v.Steps, warningStepView{Action: st.Action, FromState: st.FromState, ToState: st.ToState, Unit: st.Unit,
			Actor: st.Actor, Officer: st.Officer, ToUnit: st.ToUnit, Note: st.Note, At: local(st.At)})
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
	return nil
}

// WarningStepRequest is the body of POST /warnings/{warningId}/sign,
// /start, /finish and /transfer (each uses its own members).
type WarningStepRequest struct {
	// Officer is the acting officer's number (6-8 digits); default the
	// caller's user id when it is one.
	Officer string `json:"officer,omitempty"`
	// Result of a finish: verified, handled, not-found or false-alarm.
	Result string `json:"result,omitempty"`
	// Detail is a finish's account (1-1000 characters).
	Detail string `json:"detail,omitempty"`
	// Unit is a transfer's new responsible unit; Reason says why.
	Unit   string `json:"unit,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// stepWarning answers the step endpoints: the warning after the step.
func (s *server) stepWarning(action string) func(http.ResponseWriter, *http.Request) error {
	allowed := map[string][]string{
		warning.ActSign: {"officer"}, warning.ActStart: {"officer"},
		warning.ActFinish: {"officer", "result", "detail"}, warning.ActTransfer: {"officer", "unit", "reason"},
	}[action]
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		if _, err := query(r); err != nil {
			return err
		}
		id, err := warningIDParam(r)
		if err != nil {
			return err
		}
		body, err := readBody(w, r)
		if err != nil {
			return err
		}
		var req WarningStepRequest
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decodeStrict(body, &req); err != nil {
				return err
			}
		}
		set := map[string]bool{"officer": req.Officer != "", "result": req.Result != "", "detail": req.Detail != "",
			"unit": req.Unit != "", "reason": req.Reason != ""}
		for name, given := range set {
			if given && !contains(allowed, name) {
				return badRequest("请求体：该操作不接受 %s", name)
			}
		}
		ident, _ := auth.IdentityFrom(ctx)
		a := warning.Actor{User: ident.User, Unit: ident.Unit, Role: ident.RoleList(), Officer: req.Officer,
			Scope: s.scopeOf(ctx), CorrelationID: httpapi.RequestID(ctx)}
		if a.Officer == "" && isDigitsBetween(ident.User, 6, 8) {
			a.Officer = ident.User
		}
		var x warning.Warning
		switch action {
		case warning.ActSign:
			x, err = s.cfg.Warnings.Sign(ctx, id, a)
		case warning.ActStart:
			x, err = s.cfg.Warnings.Start(ctx, id, a)
		case warning.ActFinish:
			x, err = s.cfg.Warnings.Finish(ctx, id, a, req.Result, req.Detail)
		case warning.ActTransfer:
			x, err = s.cfg.Warnings.Transfer(ctx, id, a, req.Unit, req.Reason)
		}
		if err != nil {
			return s.warningError(id, err)
		}
		httpapi.WriteJSON(w, http.StatusOK, s.viewWarning(x))
		return nil
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func isDigitsBetween(s string, lo, hi int) bool {
	return len(s) >= lo && len(s) <= hi && isDigits(s, len(s))
}

// ActionWarningExport is the audit action of a warning export.
const ActionWarningExport = "warning.export"

// warningColumns are the columns of a warning export.
var warningColumns = []sheet.Column{
	{Header: "预警编号", Width: 24}, {Header: "级别", Width: 6}, {Header: "类别", Width: 8}, {Header: "标题", Width: 30},
	{Header: "责任单位", Width: 15}, {Header: "责任单位名称", Width: 18}, {Header: "状态", Width: 8}, {Header: "下发时间", Width: 20},
	{Header: "时限", Width: 20}, {Header: "是否超期", Width: 8}, {Header: "督办时间", Width: 20}, {Header: "签收民警", Width: 10},
	{Header: "签收时间", Width: 20}, {Header: "处置结果", Width: 10}, {Header: "办结时间", Width: 20}, {Header: "来源模块", Width: 12},
}

var levelNames = map[int]string{1: "红", 2: "橙", 3: "黄", 4: "蓝"}

// warningTable builds the table of the warnings f selects, newest first,
// at most max rows (more: tooManyRows).
func (s *server) warningTable(ctx context.Context, f warning.Filter, format sheet.Format, max int) (sheet.Table, error) {
	tab, err := sheet.New(sheet.Config{Format: format, Sheet: "信息预警", Columns: warningColumns, Location: shanghai})
	if err != nil {
		return nil, err
	}
	err = func() error {
		f.Before, f.Limit = "", warning.MaxLimit
		for {
			page, err := warning.List(ctx, s.cfg.Pool, f)
			if err != nil {
				return err
			}
			for _, x := range page {
				if tab.Rows() == max {
					return tooManyRows(max)
				}
				overdue := "否"
				if x.Overdue(f.Now) {
					overdue = "是"
				}
				if err := tab.Row(x.WarningID, levelNames[x.Level], x.Category, x.Title, x.Unit, s.cfg.Units.Name(x.Unit),
					warning.StateNames[x.State], x.IssuedAt, x.Deadline, overdue, x.EscalatedAt, x.SignedOfficer, x.SignedAt,
					label(warning.ResultNames, x.Result), x.FinishedAt, x.Source); err != nil {
					return err
				}
			}
			if len(page) < f.Limit {
				return nil
			}
			f.Before = page[len(page)-1].WarningID
		}
	}()
	if err != nil {
		tab.Close()
		return nil, err
	}
	return tab, nil
}

// exportWarnings answers GET /warnings/export?format=&state=&level=&overdue=:
// the caller's warnings selected as by GET /warnings, as a spreadsheet.
// The export is audited (warning.export) before the file is sent.
func (s *server) exportWarnings(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "format", "state", "level", "overdue")
	if err != nil {
		return err
	}
	f, err := s.warningFilter(r.Context(), q)
	if err != nil {
		return err
	}
	format, err := exportFormat(q)
	if err != nil {
		return err
	}
	tab, err := s.warningTable(r.Context(), f, format, s.cfg.MaxExportRows)
	if err != nil {
		return err
	}
	defer tab.Close()
	detail := map[string]any{"format": string(format), "rows": tab.Rows()}
	for _, k := range []string{"state", "level", "overdue"} {
		if v, ok := q[k]; ok {
			detail[k] = v
		}
	}
	if err := s.record(r.Context(), audit.Entry{Action: ActionWarningExport, Object: "warnings", Result: "ok", Detail: detail}); err != nil {
		return err
	}
	s.sendTable(w, r, "信息预警", format, tab)
	return nil
}
