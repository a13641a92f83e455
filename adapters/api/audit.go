package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"zhianhub/adapters/httpapi"
	"zhianhub/store/audit"
)

// ActionAuditRead is the audit action of a read of the audit log.
const ActionAuditRead = "audit.read"

// auditCriteriaParams are the query parameters of auditCriteria.
var auditCriteriaParams = []string{"from", "to", "actor", "unit", "object", "action", "result"}

// auditCriteria parses the selection of audit entries: from and to (RFC
// 3339, or a date YYYY-MM-DD in China Standard Time: from the start of
// from's day, to the end of to's day; from inclusive, to exclusive), actor,
// unit (12 digits), object, action (a trailing * matches a prefix) and
// result, each matched exactly.
func auditCriteria(q map[string]string) (audit.Criteria, error) {
	var c audit.Criteria
	var err error
	if v, ok := q["from"]; ok {
		if c.From, err = timeParam("from", v, false); err != nil {
			return c, err
		}
	}
	if v, ok := q["to"]; ok {
		if c.To, err = timeParam("to", v, true); err != nil {
			return c, err
		}
	}
	if !c.From.IsZero() && !c.To.IsZero() && !c.From.Before(c.To) {
		return c, badRequest("from 须早于 to")
	}
	for _, p := range []struct {
		name string
		dst  *string
		max  int
		what string
	}{
		{"actor", &c.Actor, 64, "用户标识"},
		{"object", &c.Object, 256, "操作对象"},
		{"action", &c.Action, 64, "动作名（可用 * 结尾匹配前缀）"},
		{"result", &c.Result, 32, "结果"},
	} {
		v := q[p.name]
		if len(v) > p.max || !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
			return c, badRequest("%s：须为不超过 %d 个字符的%s", p.name, p.max, p.what)
		}
		*p.dst = v
	}
	if v, ok := q["unit"]; ok {
		if !isDigits(v, 12) {
			return c, badRequest("unit：须为 12 位机构代码")
		}
		c.Unit = v
	}
	return c, nil
}

// timeParam parses a time parameter: RFC 3339, or a date YYYY-MM-DD in
// China Standard Time (its start, or with endOfDay the start of the next
// day).
func timeParam(name, v string, endOfDay bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.Year() >= 1 && t.Year() <= 9999 {
		return t, nil
	}
	d, err := time.ParseInLocation(time.DateOnly, v, shanghai)
	if err != nil {
		return time.Time{}, badRequest("%s：须为 RFC 3339 时间（如 2026-11-27T08:00:00+08:00）或日期（如 2026-11-27）", name)
	}
	if endOfDay {
		d = d.AddDate(0, 0, 1)
	}
	return d, nil
}

// criteriaDetail is the selection of audit entries as an audit detail:
// the criteria given, by parameter name.
func criteriaDetail(c audit.Criteria) map[string]any {
	d := map[string]any{}
	if !c.From.IsZero() {
		d["from"] = local(c.From).Format(time.RFC3339Nano)
	}
	if !c.To.IsZero() {
		d["to"] = local(c.To).Format(time.RFC3339Nano)
	}
	for k, v := range map[string]string{"actor": c.Actor, "unit": c.Unit, "object": c.Object, "action": c.Action, "result": c.Result} {
		if v != "" {
			d[k] = v
		}
	}
	return d
}

// auditView is a chained audit entry.
type auditView struct {
	Seq           int64          `json:"seq"`
	At            time.Time      `json:"at"`
	Actor         string         `json:"actor"`
	Unit          string         `json:"unit"`
	Role          string         `json:"role"`
	Action        string         `json:"action"`
	Object        string         `json:"object"`
	Result        string         `json:"result"`
	Reason        string         `json:"reason"`
	CorrelationID string         `json:"correlationId"`
	Detail        map[string]any `json:"detail"`
}

// listAudit answers GET /audit?from=&to=&actor=&unit=&object=&action=&result=&after=&limit=:
// a page of the chained entries selected, by seq (keyset paging: next is
// the after of the following page). The read is audited itself
// (audit.read) before the answer.
func (s *server) listAudit(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, slices.Concat(auditCriteriaParams, []string{"after", "limit"})...)
	if err != nil {
		return err
	}
	f := audit.ListFilter{}
	if f.Criteria, err = auditCriteria(q); err != nil {
		return err
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	if v, ok := q["after"]; ok {
		if f.After, err = strconv.ParseInt(v, 10, 64); err != nil || f.After < 0 {
			return badRequest("after：须为非负整数")
		}
	}
	recs, err := audit.List(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]auditView, 0, len(recs))
	for _, rec := range recs {
		v := auditView{Seq: rec.Seq, At: local(rec.At), Actor: rec.Actor, Unit: rec.Unit, Role: rec.Role, Action: rec.Action,
			Object: rec.Object, Result: rec.Result, Reason: rec.Reason, CorrelationID: rec.CorrelationID}
		if err := json.Unmarshal(rec.Detail, &v.Detail); err != nil {
			return err
		}
		if v.Detail == nil {
			v.Detail = map[string]any{}
		}
		out = append(out, v)
	}
	detail := criteriaDetail(f.Criteria)
	detail["after"], detail["count"] = f.After, len(out)
	if err := s.record(r.Context(), audit.Entry{Action: ActionAuditRead, Object: "audit", Result: "ok", Detail: detail}); err != nil {
		return err
	}
	res := map[string]any{"entries": out}
	if len(recs) == f.Limit {
		res["next"] = strconv.FormatInt(recs[len(recs)-1].Seq, 10)
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
	return nil
}
