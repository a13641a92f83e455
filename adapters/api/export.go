package api

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strings"

	"zhianhub/adapters/httpapi"
	"zhianhub/adapters/sheet"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/registry"
)

// Exports: GET /audit/export and GET /tasks/export answer a spreadsheet
// (format=xlsx, the default, or csv) of what the list endpoint with the same
// criteria would page through. The table is built first (streamed from the
// database into sheet.Table, whose memory use is bounded) and sent only
// when complete, so a refusal or a failure is a clean error answer. More
// rows than Config.MaxExportRows are refused (400): narrow the selection.

// DefaultMaxExportRows is the default of Config.MaxExportRows: the most
// rows of one export. An export of that size stays within the 10 s allowed
// to fixed reports (see BenchmarkAuditExport).
const DefaultMaxExportRows = 100_000

// Audit actions of exports, each recorded (awaited) before the file is sent.
const (
	ActionAuditExport = "audit.export"
	ActionTaskExport  = "task.export"
)

// tooManyRows answers an export over max rows.
func tooManyRows(max int) *Error {
	return badRequest("导出条数超过上限 %d 条：请缩小查询范围（如时间段、用户）后分批导出", max)
}

// exportFormat parses format: xlsx (default) or csv.
func exportFormat(q map[string]string) (sheet.Format, error) {
	switch f := sheet.Format(q["format"]); f {
	case "", sheet.XLSX:
		return sheet.XLSX, nil
	case sheet.CSV:
		return sheet.CSV, nil
	}
	return "", badRequest("format：须为 xlsx 或 csv")
}

// auditColumns are the columns of an audit export.
var auditColumns = []sheet.Column{
	{Header: "序号", Width: 10}, {Header: "时间", Width: 20}, {Header: "用户", Width: 16}, {Header: "单位", Width: 15},
	{Header: "角色", Width: 12}, {Header: "操作", Width: 22}, {Header: "对象", Width: 40}, {Header: "结果", Width: 10},
	{Header: "原因", Width: 40}, {Header: "关联编号", Width: 38},
}

// auditTable builds the table of the audit entries c selects, at most max
// of them (more: tooManyRows). The caller closes the table.
func auditTable(ctx context.Context, q store.Querier, c audit.Criteria, format sheet.Format, max int) (sheet.Table, error) {
	tab, err := sheet.New(sheet.Config{Format: format, Sheet: "审计日志", Columns: auditColumns, Location: shanghai})
	if err != nil {
		return nil, err
	}
	_, err = audit.Each(ctx, q, c, max+1, func(r *audit.Record) error {
		if tab.Rows() == max {
			return tooManyRows(max)
		}
		return tab.Row(r.Seq, r.At, r.Actor, r.Unit, r.Role, r.Action, r.Object, r.Result, r.Reason, r.CorrelationID)
	})
	if err != nil {
		tab.Close()
		return nil, err
	}
	return tab, nil
}

// exportAudit answers GET /audit/export?format=&from=&to=&actor=&unit=&object=&action=&result=:
// the audit entries selected (as GET /audit), by seq, as a spreadsheet.
// The export is audited (audit.export, with the criteria, the format and
// the number of rows) before the file is sent.
func (s *server) exportAudit(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, slices.Concat(auditCriteriaParams, []string{"format"})...)
	if err != nil {
		return err
	}
	c, err := auditCriteria(q)
	if err != nil {
		return err
	}
	format, err := exportFormat(q)
	if err != nil {
		return err
	}
	tab, err := auditTable(r.Context(), s.cfg.Pool, c, format, s.cfg.MaxExportRows)
	if err != nil {
		return err
	}
	defer tab.Close()
	detail := criteriaDetail(c)
	detail["format"], detail["rows"] = string(format), tab.Rows()
	if err := s.record(r.Context(), audit.Entry{Action: ActionAuditExport, Object: "audit", Result: "ok", Detail: detail}); err != nil {
		return err
	}
	s.sendTable(w, r, "审计日志", format, tab)
	return nil
}

// taskStates are the task states as an export shows them.
var taskStates = map[string]string{registry.TaskIssued: "待签收", registry.TaskSigned: "已签收"}

// taskItems are the verification items as an export shows them.
var taskItems = map[string]string{"identity": "身份信息", "address": "居住地址", "contact": "联系方式", "status": "现实状况"}

// taskColumns are the columns of a task export.
var taskColumns = []sheet.Column{
	{Header: "任务编号", Width: 24}, {Header: "重点人员编号", Width: 24}, {Header: "核查事项", Width: 30},
	{Header: "指派单位", Width: 15}, {Header: "指派单位名称", Width: 18}, {Header: "截止时间", Width: 20},
	{Header: "状态", Width: 8}, {Header: "备注", Width: 30}, {Header: "签收单位", Width: 15}, {Header: "签收民警", Width: 10},
	{Header: "签收时间", Width: 20}, {Header: "下发消息编号", Width: 38}, {Header: "签收消息编号", Width: 38},
	{Header: "创建时间", Width: 20}, {Header: "更新时间", Width: 20},
}

// label returns the label of code in labels, else code.
func label(labels map[string]string, code string) string {
	if l, ok := labels[code]; ok {
		return l
	}
	return code
}

// taskTable builds the table of the tasks f selects (f.After and f.Limit
// are ignored), in taskNo order, at most max of them (more: tooManyRows).
func (s *server) taskTable(ctx context.Context, f registry.TaskFilter, format sheet.Format, max int) (sheet.Table, error) {
	tab, err := sheet.New(sheet.Config{Format: format, Sheet: "核实任务", Columns: taskColumns, Location: shanghai})
	if err != nil {
		return nil, err
	}
	err = func() error {
		f.After, f.Limit = "", registry.MaxTaskLimit
		for {
			page, err := s.cfg.Registry.ListTasks(ctx, s.cfg.Pool, f)
			if err != nil {
				return err
			}
			for _, t := range page {
				if tab.Rows() == max {
					return tooManyRows(max)
				}
				items := make([]string, len(t.Items))
				for i, it := range t.Items {
					items[i] = label(taskItems, it)
				}
				if err := tab.Row(t.TaskNo, t.PersonNo, strings.Join(items, "、"), t.AssignedUnit, s.cfg.Units.Name(t.AssignedUnit),
					t.Deadline, label(taskStates, t.State), t.Note, t.SignedUnit, t.SignedOfficer, t.SignedAt,
					t.IssuedMsgID, t.SignMsgID, t.CreatedAt, t.UpdatedAt); err != nil {
					return err
				}
			}
			if len(page) < f.Limit {
				return nil
			}
			f.After = page[len(page)-1].TaskNo
		}
	}()
	if err != nil {
		tab.Close()
		return nil, err
	}
	return tab, nil
}

// exportTasks answers GET /tasks/export?format=&state=&unit=: the tasks
// selected (as GET /tasks), in taskNo order, as a spreadsheet. The export
// is audited (task.export) before the file is sent.
func (s *server) exportTasks(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "format", "state", "unit")
	if err != nil {
		return err
	}
	f, err := taskFilter(q)
	if err != nil {
		return err
	}
	format, err := exportFormat(q)
	if err != nil {
		return err
	}
	tab, err := s.taskTable(r.Context(), f, format, s.cfg.MaxExportRows)
	if err != nil {
		return err
	}
	defer tab.Close()
	detail := map[string]any{"format": string(format), "rows": tab.Rows()}
	if f.State != "" {
		detail["state"] = f.State
	}
	if f.Unit != "" {
		detail["unit"] = f.Unit
	}
	if err := s.record(r.Context(), audit.Entry{Action: ActionTaskExport, Object: "tasks", Result: "ok", Detail: detail}); err != nil {
		return err
	}
	s.sendTable(w, r, "核实任务", format, tab)
	return nil
}

// sendTable sends a complete table as an attachment named
// <name>-<time>.<format>. A failure while sending (the client went away)
// aborts the response, so that a partial file is not taken for a whole one.
func (s *server) sendTable(w http.ResponseWriter, r *http.Request, name string, format sheet.Format, tab sheet.Table) {
	file := name + "-" + local(s.cfg.Now()).Format("20060102-150405") + "." + string(format)
	h := w.Header()
	h.Set("Content-Type", format.ContentType())
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": file}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if _, err := tab.WriteTo(w); err != nil {
		level := s.cfg.Logger.WarnContext
		if !errors.Is(r.Context().Err(), context.Canceled) {
			level = s.cfg.Logger.ErrorContext
		}
		level(r.Context(), "api: export not sent whole", "err", err, "file", file, "rows", tab.Rows(),
			"request_id", httpapi.RequestID(r.Context()))
		panic(http.ErrAbortHandler)
	}
}
