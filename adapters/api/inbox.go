package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/httpapi"
	"zhianhub/adapters/sheet"
	"zhianhub/store/audit"
	"zhianhub/store/inbox"
)

// Message reminders (消息提醒): the caller's inbox (their own items and
// their unit's), unread counts, read marks, a Server-Sent Events stream and
// an export. Every identity with portal.use has an inbox; the three
// administrators have none (their roles give only their own permissions).

// Bounds of inbox lists.
const (
	DefaultInboxLimit = 50
	MaxInboxLimit     = 500
	// MaxReadIDs bounds the ids of one POST /inbox/read.
	MaxReadIDs = 1000
	// DefaultHeartbeat is the default of Config.Heartbeat.
	DefaultHeartbeat = 20 * time.Second
)

// ActionInboxExport is the audit action of an inbox export.
const ActionInboxExport = "inbox.export"

// CodeUnavailable answers a feature this hub does not run (503).
const CodeUnavailable = "E503"

var kindRe = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)

// viewer is the caller as an inbox viewer.
func viewer(ctx context.Context) inbox.Viewer {
	id, _ := auth.IdentityFrom(ctx)
	return inbox.Viewer{User: id.User, Unit: id.Unit, Roles: id.Roles}
}

// itemView is one inbox item.
type itemView struct {
	ID            int64     `json:"id"`
	Kind          string    `json:"kind"`
	Ref           string    `json:"ref"`
	Title         string    `json:"title"`
	Body          string    `json:"body"`
	Level         int       `json:"level"`
	RecipientKind string    `json:"recipientKind"`
	Recipient     string    `json:"recipient"`
	CreatedAt     time.Time `json:"createdAt"`
	Read          bool      `json:"read"`
}

func viewItem(it inbox.Item) itemView {
	return itemView{ID: it.ID, Kind: it.Kind, Ref: it.Ref, Title: it.Title, Body: it.Body, Level: it.Level,
		RecipientKind: it.RecipientKind, Recipient: it.Recipient, CreatedAt: local(it.CreatedAt), Read: it.Read}
}

// inboxFilter parses unread and kind.
func inboxFilter(q map[string]string) (inbox.Filter, error) {
	var f inbox.Filter
	var err error
	if f.UnreadOnly, err = boolParam(q, "unread"); err != nil {
		return f, err
	}
	if k, ok := q["kind"]; ok {
		if !kindRe.MatchString(k) {
			return f, badRequest("kind：须为小写字母开头的 1-32 个字母、数字或 . _ -")
		}
		f.Kind = k
	}
	return f, nil
}

// listInbox answers GET /inbox?unread=&kind=&limit=&before=: the caller's
// items, newest first; next is the before of the following page.
func (s *server) listInbox(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "unread", "kind", "limit", "before")
	if err != nil {
		return err
	}
	f, err := inboxFilter(q)
	if err != nil {
		return err
	}
	f.Limit = DefaultInboxLimit
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxInboxLimit || !isDigits(v, len(v)) {
			return badRequest("limit：须为 1 至 %d 的整数", MaxInboxLimit)
		}
		f.Limit = n
	}
	if v, ok := q["before"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || !isDigits(v, len(v)) {
			return badRequest("before：须为正整数")
		}
		f.Before = n
	}
	items, err := inbox.List(r.Context(), s.cfg.Pool, viewer(r.Context()), f)
	if err != nil {
		return err
	}
	out := make([]itemView, 0, len(items))
	for _, it := range items {
		out = append(out, viewItem(it))
	}
	httpapi.WriteJSON(w, http.StatusOK, page("items", out, len(items), f.Limit, func() string { return strconv.FormatInt(items[len(items)-1].ID, 10) }))
	return nil
}

// unreadView is the unread counts.
type unreadView struct {
	Total  int            `json:"total"`
	ByKind map[string]int `json:"byKind"`
}

func (s *server) unreadCounts(ctx context.Context) (unreadView, error) {
	by, err := inbox.Unread(ctx, s.cfg.Pool, viewer(ctx))
	if err != nil {
		return unreadView{}, err
	}
	v := unreadView{ByKind: by}
	for _, n := range by {
		v.Total += n
	}
	return v, nil
}

// unreadInbox answers GET /inbox/unread: the unread counts by kind.
func (s *server) unreadInbox(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	v, err := s.unreadCounts(r.Context())
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
	return nil
}

// ReadRequest is the body of POST /inbox/read: the ids to mark read, or
// all (every item of the caller's inbox).
type ReadRequest struct {
	IDs []int64 `json:"ids,omitempty"`
	All bool    `json:"all,omitempty"`
}

// readInbox answers POST /inbox/read: marked is how many items were newly
// marked read (ids not in the caller's inbox are ignored).
func (s *server) readInbox(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req ReadRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	switch {
	case req.All && len(req.IDs) > 0:
		return badRequest("ids 与 all 只能二选一")
	case !req.All && len(req.IDs) == 0:
		return badRequest("须给出 ids（消息编号）或 all: true")
	case len(req.IDs) > MaxReadIDs:
		return badRequest("ids：一次最多 %d 个", MaxReadIDs)
	}
	for _, id := range req.IDs {
		if id < 1 {
			return badRequest("ids：须为正整数")
		}
	}
	n, err := inbox.MarkRead(r.Context(), s.cfg.Pool, viewer(r.Context()), req.IDs...)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]int{"marked": n})
	return nil
}

// inboxColumns are the columns of an inbox export.
var inboxColumns = []sheet.Column{
	{Header: "编号", Width: 10}, {Header: "时间", Width: 20}, {Header: "类型", Width: 12}, {Header: "级别", Width: 8},
	{Header: "标题", Width: 40}, {Header: "内容", Width: 60}, {Header: "关联编号", Width: 24}, {Header: "接收方", Width: 16},
	{Header: "状态", Width: 8},
}

// inboxKinds are the item kinds as an export shows them.
var inboxKinds = map[string]string{"notice": "系统公告", "push": "智能推送", "dispatch": "指挥调度", "warning": "信息预警",
	"lead": "信息线索", "task": "核实任务"}

// exportInbox answers GET /inbox/export?format=&unread=&kind=: the caller's
// items (as GET /inbox), newest first, as a spreadsheet; audited
// (inbox.export) before the file is sent.
func (s *server) exportInbox(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "format", "unread", "kind")
	if err != nil {
		return err
	}
	f, err := inboxFilter(q)
	if err != nil {
		return err
	}
	format, err := exportFormat(q)
	if err != nil {
		return err
	}
	ctx := r.Context()
	tab, err := sheet.New(sheet.Config{Format: format, Sheet: "消息提醒", Columns: inboxColumns, Location: shanghai})
	if err != nil {
		return err
	}
	defer tab.Close()
	v, max := viewer(ctx), s.cfg.MaxExportRows
	f.Limit = MaxInboxLimit
	for {
		page, err := inbox.List(ctx, s.cfg.Pool, v, f)
		if err != nil {
			return err
		}
		for _, it := range page {
			if tab.Rows() == max {
				return tooManyRows(max)
			}
			recipient := it.Recipient
			if it.RecipientKind == inbox.ToUnit {
				recipient = s.cfg.Units.Name(it.Recipient)
				if recipient == "" {
					recipient = it.Recipient
				}
			}
			state := "未读"
			if it.Read {
				state = "已读"
			}
			if err := tab.Row(it.ID, it.CreatedAt, label(inboxKinds, it.Kind), it.Level, it.Title, it.Body, it.Ref, recipient, state); err != nil {
				return err
			}
		}
		if len(page) < f.Limit {
			break
		}
		f.Before = page[len(page)-1].ID
	}
	detail := map[string]any{"format": string(format), "rows": tab.Rows(), "unread": f.UnreadOnly}
	if f.Kind != "" {
		detail["kind"] = f.Kind
	}
	if err := s.record(ctx, audit.Entry{Action: ActionInboxExport, Object: "inbox", Result: "ok", Detail: detail}); err != nil {
		return err
	}
	s.sendTable(w, r, "消息提醒", format, tab)
	return nil
}

// streamInbox answers GET /inbox/stream with Server-Sent Events:
//
//   - event "unread" (data: the unread counts, as GET /inbox/unread) on
//     connecting and after each batch of new items;
//   - event "item" (id: the item's id, data: the item as GET /inbox lists
//     it) for each item that arrives, oldest first;
//   - a comment line ": ping" every Config.Heartbeat;
//   - event "bye" when the server shuts down (then the stream ends).
//
// With a Last-Event-ID header (an item id, as an EventSource sends on
// reconnecting) the items after it are sent first, at most MaxInboxLimit
// of them; without one the stream starts at the newest item.
//
// Wake-ups come from Config.Live, the process's one listening connection;
// the items themselves are read from the inbox after each one. The write
// and read deadlines of the server are lifted for this response only.
func (s *server) streamInbox(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	ctx := r.Context()
	var last int64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || !isDigits(v, len(v)) {
			return badRequest("Last-Event-ID：须为消息编号（非负整数）")
		}
		last = n
	}
	if s.cfg.Live == nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "实时消息提醒未启用"}
	}
	v := viewer(ctx)
	sub, err := s.cfg.Live.Subscribe(v)
	if errors.Is(err, inbox.ErrClosed) {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "服务正在停止，请稍后重连"}
	}
	if err != nil {
		return err
	}
	defer sub.Close()
	// Subscribed first, then read: an item committed in between is both
	// read and signalled (and sent once, by id).
	if r.Header.Get("Last-Event-ID") == "" {
		newest, err := inbox.List(ctx, s.cfg.Pool, v, inbox.Filter{Limit: 1})
		if err != nil {
			return err
		}
		if len(newest) > 0 {
			last = newest[0].ID
		}
	}
	rc := http.NewResponseController(w)
	for _, lift := range []func(time.Time) error{rc.SetWriteDeadline, rc.SetReadDeadline} {
		if err := lift(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	st := &sseWriter{w: w, rc: rc}
	st.raw("retry: 3000\n\n")
	if err := s.sendNew(ctx, st, v, &last, r.Header.Get("Last-Event-ID") != ""); err != nil {
		return s.endStream(ctx, err)
	}
	beat := time.NewTicker(s.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Done():
			st.event("bye", "", map[string]string{"message": "服务正在停止，请稍后重连"})
			_ = st.flush()
			return nil
		case <-beat.C:
			st.raw(": ping\n\n")
			if err := st.flush(); err != nil {
				return s.endStream(ctx, err)
			}
		case <-sub.Wake():
			if err := s.sendNew(ctx, st, v, &last, true); err != nil {
				return s.endStream(ctx, err)
			}
		}
	}
}

// sendNew sends the items after *last (when items) and the unread counts,
// and flushes.
func (s *server) sendNew(ctx context.Context, st *sseWriter, v inbox.Viewer, last *int64, items bool) error {
	if items {
		list, err := inbox.List(ctx, s.cfg.Pool, v, inbox.Filter{After: *last, Limit: MaxInboxLimit})
		if err != nil {
			return err
		}
		for _, it := range list {
			st.event("item", strconv.FormatInt(it.ID, 10), viewItem(it))
			*last = it.ID
		}
	}
	counts, err := s.unreadCounts(ctx)
	if err != nil {
		return err
	}
	st.event("unread", "", counts)
	return st.flush()
}

// endStream ends a stream whose headers are sent: a failure is logged
// (unless the client went away), never answered.
func (s *server) endStream(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		s.cfg.Logger.WarnContext(ctx, "api: inbox stream ended", "err", err, "request_id", httpapi.RequestID(ctx))
	}
	return nil
}

// sseWriter writes Server-Sent Events; the first write error sticks.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func (s *sseWriter) raw(text string) {
	if s.err == nil {
		_, s.err = s.w.Write([]byte(text))
	}
}

// event writes one event; data is JSON (one line).
func (s *sseWriter) event(name, id string, data any) {
	b, err := json.Marshal(data)
	if err != nil {
		s.err = err
		return
	}
	var sb strings.Builder
	if id != "" {
		fmt.Fprintf(&sb, "id: %s\n", id)
	}
	fmt.Fprintf(&sb, "event: %s\ndata: %s\n\n", name, b)
	s.raw(sb.String())
}

func (s *sseWriter) flush() error {
	if s.err != nil {
		return s.err
	}
	if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	return s.err
}
