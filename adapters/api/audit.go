package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	if c.From, c.To, err = timeRange(q); err != nil {
		return c, err
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
	if f.After, err = afterParam(q); err != nil {
		return err
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
	httpapi.WriteJSON(w, http.StatusOK, page("entries", out, len(recs), f.Limit, func() string { return strconv.FormatInt(recs[len(recs)-1].Seq, 10) }))
	return nil
}

// ActionAuditVerify is the audit action of a verification of the chain.
const ActionAuditVerify = "audit.verify"

// problemView is the first thing wrong in the chain.
type problemView struct {
	Seq    int64  `json:"seq"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// checkpointView is a signed checkpoint.
type checkpointView struct {
	Seq    int64     `json:"seq"`
	Hash   string    `json:"hash"`
	At     time.Time `json:"at"`
	KeyID  string    `json:"keyId"`
	MaxGap int64     `json:"maxGap"`
}

// verifyView is the report of a verification of the chain.
type verifyView struct {
	OK              bool            `json:"ok"`
	Message         string          `json:"message"`
	Entries         int64           `json:"entries"`
	Checkpoints     int64           `json:"checkpoints"`
	LastSeq         int64           `json:"lastSeq"`
	LastHash        string          `json:"lastHash"`
	FirstBad        *problemView    `json:"firstBad,omitempty"`
	LastCheckpoint  *checkpointView `json:"lastCheckpoint,omitempty"`
	ArchivedThrough int64           `json:"archivedThrough"`
	Pending         int64           `json:"pending"`
}

// verifyAudit answers GET /audit/verify: the whole chain checked
// (audit.Verify): whether it is intact, how far it checks out, the first
// bad entry, the last signed checkpoint (keep it outside the database to
// detect a later cut-back). A broken chain is a security event: a
// security.chain_break entry is staged (after the head, forwarded to the
// security-protection platform). Every verification is audited
// (audit.verify, result ok or broken) before the answer.
func (s *server) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	ctx := r.Context()
	rep, err := audit.Verify(ctx, s.cfg.Pool, s.cfg.AuditKeys)
	if err != nil {
		return err
	}
	v := verifyView{OK: rep.OK, Entries: rep.Entries, Checkpoints: rep.Checkpoints, LastSeq: rep.LastSeq,
		LastHash: hex.EncodeToString(rep.LastHash[:]), ArchivedThrough: rep.ArchivedThrough, Pending: rep.Pending}
	if cp := rep.LastCheckpoint; cp != nil {
		v.LastCheckpoint = &checkpointView{Seq: cp.Seq, Hash: hex.EncodeToString(cp.Hash[:]), At: local(cp.At), KeyID: string(cp.KeyID), MaxGap: cp.MaxGap}
	}
	result := "ok"
	if rep.OK {
		v.Message = fmt.Sprintf("审计链完整：%d 条记录、%d 个签名检查点均验证通过", rep.Entries, rep.Checkpoints)
	} else {
		result = audit.ResultBroken
		v.FirstBad = &problemView{Seq: rep.FirstBad.Seq, Kind: string(rep.FirstBad.Kind), Detail: rep.FirstBad.Detail}
		v.Message = fmt.Sprintf("审计链在序号 %d 处被破坏（%s）；此前 %d 条记录验证通过。已记录安全事件 %s",
			rep.FirstBad.Seq, brokenKinds[rep.FirstBad.Kind], rep.Entries, audit.ActionChainBreak)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := audit.StageChainBreak(sctx, s.cfg.Pool, rep, entry(ctx, audit.Entry{})); err != nil {
			return fmt.Errorf("api: stage the chain break: %w", err)
		}
		s.cfg.Audit.Notify()
		s.cfg.Logger.ErrorContext(ctx, "audit chain broken", "report", rep.Summary(), "request_id", httpapi.RequestID(ctx))
	}
	if err := s.record(ctx, audit.Entry{Action: ActionAuditVerify, Object: "audit", Result: result,
		Detail: map[string]any{"entries": rep.Entries, "checkpoints": rep.Checkpoints, "lastSeq": rep.LastSeq}}); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
	return nil
}

// brokenKinds name the kinds of problem for the message.
var brokenKinds = map[audit.Kind]string{
	audit.KindModified:   "记录被篡改",
	audit.KindDeleted:    "记录被删除",
	audit.KindInserted:   "记录被插入",
	audit.KindReordered:  "记录顺序被调换",
	audit.KindCheckpoint: "签名检查点伪造、篡改或缺失",
	audit.KindHead:       "链头与最后一条记录不符",
}
