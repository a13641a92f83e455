package api

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/store/audit"
	"zhianhub/store/logs"
)

// OperationLog receives one record per API call of an identified user;
// *logs.Writer satisfies it.
type OperationLog interface {
	Operation(ctx context.Context, r logs.OperationRecord)
}

// Audit actions of log reads.
const (
	ActionSystemLogRead    = "log.system.read"
	ActionOperationLogRead = "log.operation.read"
)

// operationLog records every call that passed authentication, after its
// answer: who (user, unit, roles, how authenticated), what (method, route
// pattern, path), the status and the duration, under the request id that
// links it to its audit entries and the messages it caused.
func (s *server) operationLog(next http.Handler) http.Handler {
	if s.cfg.OperationLog == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		id, ok := auth.IdentityFrom(r.Context())
		if !ok {
			return
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		route := r.URL.Path
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		s.cfg.OperationLog.Operation(r.Context(), logs.OperationRecord{
			At: start, RequestID: httpapi.RequestID(r.Context()), User: id.User, Unit: id.Unit, Roles: id.RoleList(),
			AuthMethod: id.Method, Method: r.Method, Route: route, Path: r.URL.Path, Status: status,
			Duration: time.Since(start), Remote: r.RemoteAddr,
		})
	})
}

// levelParam parses level: debug, info, warn or error (the least level
// shown).
func levelParam(q map[string]string) (*slog.Level, error) {
	v, ok := q["level"]
	if !ok {
		return nil, nil
	}
	var l slog.Level
	switch v {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return nil, badRequest("level：须为 debug、info、warn 或 error")
	}
	return &l, nil
}

// levelName is the name of a slog level in answers.
func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

// beforeParam parses the keyset cursor "before" of a list newest first: a
// positive integer, default none.
func beforeParam(q map[string]string) (int64, error) {
	v, ok := q["before"]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, badRequest("before：须为正整数")
	}
	return n, nil
}

// timeRange parses from and to (timeParam; to's day included), from
// before to.
func timeRange(q map[string]string) (from, to time.Time, err error) {
	if v, ok := q["from"]; ok {
		if from, err = timeParam("from", v, false); err != nil {
			return
		}
	}
	if v, ok := q["to"]; ok {
		if to, err = timeParam("to", v, true); err != nil {
			return
		}
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		err = badRequest("from 须早于 to")
	}
	return
}

// textParams copies the named text parameters, each bounded and printable.
func textParams(q map[string]string, dst map[string]*string, max int) error {
	names := make([]string, 0, len(dst))
	for name := range dst {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v := q[name]
		if len(v) > max || !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
			return badRequest("%s：须为不超过 %d 个字符的文本", name, max)
		}
		*dst[name] = v
	}
	return nil
}

// systemLogView is one record of the system log in answers.
type systemLogView struct {
	ID        int64          `json:"id"`
	At        time.Time      `json:"at"`
	Level     string         `json:"level"`
	Msg       string         `json:"msg"`
	Component string         `json:"component"`
	RequestID string         `json:"requestId"`
	MessageID string         `json:"messageId"`
	Instance  string         `json:"instance"`
	Attrs     map[string]any `json:"attrs"`
}

// listSystemLog answers GET /logs/system: the hub's own events, newest
// first, by time range, least level, component, request id, message id and
// text; keyset-paged by id (next = the before of the following page).
func (s *server) listSystemLog(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "from", "to", "level", "component", "requestId", "messageId", "q", "before", "limit")
	if err != nil {
		return err
	}
	var f logs.SystemFilter
	if f.From, f.To, err = timeRange(q); err != nil {
		return err
	}
	if f.MinLevel, err = levelParam(q); err != nil {
		return err
	}
	if err := textParams(q, map[string]*string{"component": &f.Component, "requestId": &f.RequestID, "messageId": &f.MessageID, "q": &f.Text}, 64); err != nil {
		return err
	}
	if f.Before, err = beforeParam(q); err != nil {
		return err
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	recs, err := logs.System(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]systemLogView, 0, len(recs))
	for _, rec := range recs {
		v := systemLogView{ID: rec.ID, At: local(rec.At), Level: levelName(rec.Level), Msg: rec.Msg, Component: rec.Component,
			RequestID: rec.RequestID, MessageID: rec.MessageID, Instance: rec.Instance, Attrs: rec.Attrs}
		if v.Attrs == nil {
			v.Attrs = map[string]any{}
		}
		out = append(out, v)
	}
	if err := s.record(r.Context(), audit.Entry{Action: ActionSystemLogRead, Object: "system_log", Result: "ok", Detail: paramsDetail(q, len(out))}); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, page("records", out, len(recs), f.Limit, func() string { return strconv.FormatInt(recs[len(recs)-1].ID, 10) }))
	return nil
}

// operationLogView is one record of the operation log in answers.
type operationLogView struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	Level      string    `json:"level"`
	RequestID  string    `json:"requestId"`
	User       string    `json:"user"`
	Unit       string    `json:"unit"`
	Roles      string    `json:"roles"`
	AuthMethod string    `json:"authMethod"`
	Method     string    `json:"method"`
	Route      string    `json:"route"`
	Path       string    `json:"path"`
	Status     int       `json:"status"`
	DurationMS float64   `json:"durationMs"`
	Remote     string    `json:"remote"`
}

// listOperationLog answers GET /logs/operations: the API calls of
// identified users, newest first, by time range, user, unit (with its
// subtree when subtree=true), method, route pattern, request id and least
// level (warn: 4xx and 5xx answers; error: 5xx); keyset-paged by id.
func (s *server) listOperationLog(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "from", "to", "level", "user", "unit", "subtree", "method", "route", "requestId", "before", "limit")
	if err != nil {
		return err
	}
	var f logs.OperationFilter
	if f.From, f.To, err = timeRange(q); err != nil {
		return err
	}
	if f.MinLevel, err = levelParam(q); err != nil {
		return err
	}
	if err := textParams(q, map[string]*string{"user": &f.User, "route": &f.Route, "requestId": &f.RequestID}, 128); err != nil {
		return err
	}
	if v, ok := q["method"]; ok {
		if !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE"}, v) {
			return badRequest("method：须为 GET、POST、PUT、PATCH 或 DELETE")
		}
		f.Method = v
	}
	subtree, err := boolParam(q, "subtree")
	if err != nil {
		return err
	}
	if v, ok := q["unit"]; ok {
		if !isDigits(v, 12) {
			return badRequest("unit：须为 12 位机构代码")
		}
		f.Units = []string{v}
		if subtree {
			if !s.cfg.Units.Contains(v) {
				return badRequest("unit：机构 %s 不在机构树中", v)
			}
			f.Units = s.cfg.Units.Subtree(v)
		}
	} else if subtree {
		return badRequest("subtree 须与 unit 一同使用")
	}
	if f.Before, err = beforeParam(q); err != nil {
		return err
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	recs, err := logs.Operation(r.Context(), s.cfg.Pool, f)
	if err != nil {
		return err
	}
	out := make([]operationLogView, 0, len(recs))
	for _, rec := range recs {
		out = append(out, operationLogView{ID: rec.ID, At: local(rec.At), Level: levelName(logs.OperationLevel(rec.Status)), RequestID: rec.RequestID,
			User: rec.User, Unit: rec.Unit, Roles: rec.Roles, AuthMethod: rec.AuthMethod, Method: rec.Method, Route: rec.Route, Path: rec.Path,
			Status: rec.Status, DurationMS: rec.DurationMS, Remote: rec.Remote})
	}
	if err := s.record(r.Context(), audit.Entry{Action: ActionOperationLogRead, Object: "operation_log", Result: "ok", Detail: paramsDetail(q, len(out))}); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, page("records", out, len(recs), f.Limit, func() string { return strconv.FormatInt(recs[len(recs)-1].ID, 10) }))
	return nil
}

// paramsDetail is the audit detail of a log read: its parameters and the
// count answered.
func paramsDetail(q map[string]string, n int) map[string]any {
	d := make(map[string]any, len(q)+1)
	for k, v := range q {
		d[k] = v
	}
	d["count"] = n
	return d
}
