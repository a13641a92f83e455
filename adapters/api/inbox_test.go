package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"zhianhub/adapters/auth"
	"zhianhub/adapters/sheet/sheettest"
	"zhianhub/store/inbox"
)

var (
	colleague = user{id: "zhou.officer", unit: "310104000000", roles: "officer"}
	elsewhere = user{id: "qian.officer", unit: "310105000000", roles: "officer"}
)

// deliver puts items in the inbox as a producer would, and returns their ids.
func (h *harness) deliver(items ...inbox.Item) []int64 {
	h.t.Helper()
	ids, err := inbox.Deliver(context.Background(), h.pool, items...)
	must(h.t, err)
	if len(ids) != len(items) {
		h.t.Fatalf("delivered %d of %d", len(ids), len(items))
	}
	return ids
}

func unitItem(unit, kind, ref, title string) inbox.Item {
	return inbox.Item{RecipientKind: inbox.ToUnit, Recipient: unit, Kind: kind, Ref: ref, Title: title, Level: 2}
}

func userItem(u, kind, ref, title string) inbox.Item {
	return inbox.Item{RecipientKind: inbox.ToUser, Recipient: u, Kind: kind, Ref: ref, Title: title}
}

func itemIDs(t *testing.T, r response) []int64 {
	t.Helper()
	var body struct {
		Items []struct {
			ID   int64 `json:"id"`
			Read bool  `json:"read"`
		} `json:"items"`
	}
	must(t, json.Unmarshal(r.body, &body))
	var out []int64
	for _, it := range body.Items {
		out = append(out, it.ID)
	}
	return out
}

// TestInboxAPI: list (own and unit items, unread and kind filters, keyset
// paging), unread counts, read marks by ids and all (each user's own), and
// the refusals: no portal.use 403, bad parameters and bodies 400.
func TestInboxAPI(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ids := h.deliver(
		unitItem(officer.unit, "dispatch", "31000020261127000001", "指令：核查线索"),
		userItem(officer.id, "push", "p1", "推送：预警下发"),
		unitItem(elsewhere.unit, "dispatch", "31000020261127000002", "指令：长宁"),
		userItem(colleague.id, "push", "p2", "推送：给周"),
		unitItem(officer.unit, "warning", "31000020261127000003", "预警：徐汇"),
	)
	r := h.call(officer, http.MethodGet, "/api/v1/inbox", nil)
	if r.status != 200 || fmt.Sprint(itemIDs(t, r)) != fmt.Sprint([]int64{ids[4], ids[1], ids[0]}) {
		t.Fatalf("inbox %d %s", r.status, r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/inbox?kind=dispatch", nil)
	if fmt.Sprint(itemIDs(t, r)) != fmt.Sprint([]int64{ids[0]}) {
		t.Fatalf("kind filter: %s", r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/inbox?limit=2", nil)
	page := r.json(t)
	if page["next"] != strconv.FormatInt(ids[1], 10) || len(itemIDs(t, r)) != 2 {
		t.Fatalf("first page: %s", r.body)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/inbox?limit=2&before="+page["next"].(string), nil)
	if fmt.Sprint(itemIDs(t, r)) != fmt.Sprint([]int64{ids[0]}) || r.json(t)["next"] != nil {
		t.Fatalf("second page: %s", r.body)
	}

	unread := func(u user) map[string]any {
		t.Helper()
		r := h.call(u, http.MethodGet, "/api/v1/inbox/unread", nil)
		if r.status != 200 {
			t.Fatalf("unread %d %s", r.status, r.body)
		}
		return r.json(t)
	}
	if c := unread(officer); c["total"] != 3.0 || fmt.Sprint(c["byKind"]) != "map[dispatch:1 push:1 warning:1]" {
		t.Fatalf("officer's counts %v", c)
	}
	// Reading the unit's item and someone else's: only the own inbox counts.
	r = h.call(officer, http.MethodPost, "/api/v1/inbox/read", map[string]any{"ids": []int64{ids[0], ids[2], ids[3]}})
	if r.status != 200 || r.json(t)["marked"] != 1.0 {
		t.Fatalf("read: %d %s", r.status, r.body)
	}
	if c := unread(officer); c["total"] != 2.0 {
		t.Fatalf("officer's counts after reading %v", c)
	}
	if c := unread(colleague); c["total"] != 3.0 { // the unit's two, his own one
		t.Fatalf("the colleague's counts %v (another's read mark counted)", c)
	}
	r = h.call(officer, http.MethodGet, "/api/v1/inbox?unread=true", nil)
	if fmt.Sprint(itemIDs(t, r)) != fmt.Sprint([]int64{ids[4], ids[1]}) {
		t.Fatalf("unread list: %s", r.body)
	}
	r = h.call(officer, http.MethodPost, "/api/v1/inbox/read", map[string]any{"all": true})
	if r.status != 200 || r.json(t)["marked"] != 2.0 {
		t.Fatalf("read all: %d %s", r.status, r.body)
	}
	if c := unread(officer); c["total"] != 0.0 || fmt.Sprint(c["byKind"]) != "map[]" {
		t.Fatalf("counts after reading all %v", c)
	}

	for _, tc := range []struct {
		method, path string
		body         any
		msg          string
	}{
		{"GET", "/api/v1/inbox?limit=0", nil, "limit"},
		{"GET", "/api/v1/inbox?limit=501", nil, "limit"},
		{"GET", "/api/v1/inbox?before=x", nil, "before"},
		{"GET", "/api/v1/inbox?kind=DROP%20TABLE", nil, "kind"},
		{"GET", "/api/v1/inbox?unread=yes", nil, "unread"},
		{"GET", "/api/v1/inbox?user=zhou.officer", nil, "未知的查询参数"},
		{"GET", "/api/v1/inbox/unread?x=1", nil, "未知的查询参数"},
		{"POST", "/api/v1/inbox/read", map[string]any{}, "ids"},
		{"POST", "/api/v1/inbox/read", map[string]any{"ids": []int64{1}, "all": true}, "二选一"},
		{"POST", "/api/v1/inbox/read", map[string]any{"ids": []int64{0}}, "正整数"},
		{"POST", "/api/v1/inbox/read", `{"ids":[1],"user":"x"}`, "未知字段"},
		{"GET", "/api/v1/inbox/export?format=pdf", nil, "format"},
		{"GET", "/api/v1/inbox/stream?x=1", nil, "未知的查询参数"},
	} {
		expectError(t, h.call(officer, tc.method, tc.path, tc.body), 400, "E100", tc.msg)
	}
	big := make([]int64, 1001)
	for i := range big {
		big[i] = int64(i + 1)
	}
	expectError(t, h.call(officer, "POST", "/api/v1/inbox/read", map[string]any{"ids": big}), 400, "E100", "1000")

	// The administrators have no inbox; nobody is 401.
	for _, path := range []string{"/api/v1/inbox", "/api/v1/inbox/unread", "/api/v1/inbox/stream", "/api/v1/inbox/export"} {
		expectError(t, h.call(auditor, "GET", path, nil), 403, "E403", "portal.use")
		expectError(t, h.call(nobody, "GET", path, nil), 401, "E401")
	}
	expectError(t, h.call(sysAdmin, "POST", "/api/v1/inbox/read", map[string]any{"all": true}), 403, "E403", "portal.use")
	if d := h.audits("authz.denied"); len(d) < 5 {
		t.Errorf("%d refusals audited", len(d))
	}
}

// TestInboxExport: the caller's inbox as .xlsx (opened by LibreOffice) and
// .csv with Chinese headers; audited; the filters apply.
func TestInboxExport(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ids := h.deliver(
		unitItem(officer.unit, "dispatch", "31000020261127000001", "指令：核查线索"),
		userItem(officer.id, "notice", "7", "系统公告：演练"),
		unitItem(elsewhere.unit, "dispatch", "31000020261127000002", "指令：长宁"),
	)
	if r := h.call(officer, "POST", "/api/v1/inbox/read", map[string]any{"ids": []int64{ids[0]}}); r.status != 200 {
		t.Fatalf("read: %d %s", r.status, r.body)
	}
	header := []string{"编号", "时间", "类型", "级别", "标题", "内容", "关联编号", "接收方", "状态"}
	r := h.call(officer, "GET", "/api/v1/inbox/export", nil)
	name := attachment(t, r, "xlsx", xlsxType)
	if !strings.HasPrefix(name, "消息提醒-") {
		t.Errorf("file name %q", name)
	}
	got := sheettest.Convert(t, "inbox.xlsx", r.body)
	if len(got) != 3 || fmt.Sprintf("%q", got[0]) != fmt.Sprintf("%q", header) {
		t.Fatalf("LibreOffice reads %q", got)
	}
	if row := got[1]; row[0] != strconv.FormatInt(ids[1], 10) || row[2] != "系统公告" || row[4] != "系统公告：演练" || row[7] != officer.id || row[8] != "未读" {
		t.Errorf("row 1 %q", row)
	}
	if row := got[2]; row[0] != strconv.FormatInt(ids[0], 10) || row[2] != "指挥调度" || row[3] != "2" || row[7] != "徐汇分局" || row[8] != "已读" {
		t.Errorf("row 2 %q", row)
	}
	r = h.call(officer, "GET", "/api/v1/inbox/export?format=csv&unread=true", nil)
	attachment(t, r, "csv", csvType)
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(r.body, []byte("\uFEFF")))).ReadAll()
	must(t, err)
	if len(recs) != 2 || recs[1][4] != "系统公告：演练" {
		t.Fatalf("csv of the unread: %q", recs)
	}
	a := h.audits("inbox.export")
	if len(a) != 2 || a[0].Actor != officer.id || a[1].Detail["format"] != "csv" || a[1].Detail["rows"] != 1.0 || a[1].Detail["unread"] != true {
		t.Fatalf("export audits %+v", a)
	}
}

// sseEvent is one Server-Sent Event (or a comment, name ":").
type sseEvent struct {
	name, id, data string
}

// sseStream is a live GET /inbox/stream read by a real HTTP client.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
}

func (h *harness) stream(u user, lastEventID string) *sseStream {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", h.url+"/api/v1/inbox/stream", nil)
	must(h.t, err)
	req.Header.Set(auth.HeaderDevUser, u.id)
	req.Header.Set(auth.HeaderDevUnit, u.unit)
	req.Header.Set(auth.HeaderDevRoles, u.roles)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := h.client.Do(req)
	must(h.t, err)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		h.t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{t: h.t, resp: resp, cancel: cancel, events: make(chan sseEvent, 64)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				s.events <- sseEvent{name: ":", data: line}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	h.t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() { s.cancel(); s.resp.Body.Close() }

// next returns the next event named want, skipping heartbeats and the
// unread counts of wake-ups with nothing new (a notification may arrive
// after the stream read what it announced).
func (s *sseStream) next(want string) sseEvent {
	s.t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("the stream ended waiting for %q", want)
			}
			if (ev.name == ":" || ev.name == "unread") && want != ev.name {
				continue
			}
			if ev.name != want {
				s.t.Fatalf("event %q (%s), want %q", ev.name, ev.data, want)
			}
			return ev
		case <-timeout:
			s.t.Fatalf("no %q event in time", want)
		}
	}
}

func total(t *testing.T, ev sseEvent) float64 {
	t.Helper()
	var c map[string]any
	must(t, json.Unmarshal([]byte(ev.data), &c))
	return c["total"].(float64)
}

// TestInboxStream: a real HTTP client reads the stream of a server whose
// write and read timeouts are shorter than the test: the unread counts on
// connecting, each new item of the caller (not another unit's), heartbeats,
// a replay after Last-Event-ID, one listening connection for every stream,
// the end at the client's disconnect, and "bye" at the server's shutdown.
func TestInboxStream(t *testing.T) {
	h := newHarness(t, harnessOpts{heartbeat: 100 * time.Millisecond, timeouts: 500 * time.Millisecond})
	<-h.live.Ready()
	first := h.deliver(unitItem(officer.unit, "dispatch", "31000020261127000001", "指令：核查线索"))[0]

	s := h.stream(officer, "")
	if c := total(t, s.next("unread")); c != 1 {
		t.Fatalf("unread on connecting %v", c)
	}
	other := h.stream(elsewhere, "")
	if c := total(t, other.next("unread")); c != 0 {
		t.Fatalf("elsewhere's unread %v", c)
	}
	waitFor(t, "two subscribers", func() bool { return h.live.Subscribers() == 2 })

	h.deliver(unitItem(elsewhere.unit, "dispatch", "31000020261127000002", "指令：长宁"))
	mine := h.deliver(userItem(officer.id, "push", "p1", "推送：预警下发"))[0]
	ev := s.next("item")
	var it map[string]any
	must(t, json.Unmarshal([]byte(ev.data), &it))
	if ev.id != strconv.FormatInt(mine, 10) || it["title"] != "推送：预警下发" || it["read"] != false {
		t.Fatalf("item event %+v (another unit's item sent?)", ev)
	}
	if c := total(t, s.next("unread")); c != 2 {
		t.Fatalf("unread after the item %v", c)
	}
	if ev := other.next("item"); !strings.Contains(ev.data, "指令：长宁") {
		t.Fatalf("elsewhere got %+v", ev)
	}
	// Past the server's write and read timeouts, the stream lives on.
	time.Sleep(700 * time.Millisecond)
	s.next(":")
	third := h.deliver(unitItem(officer.unit, "warning", "31000020261127000003", "预警：徐汇"))[0]
	if ev := s.next("item"); ev.id != strconv.FormatInt(third, 10) {
		t.Fatalf("item after the timeouts %+v", ev)
	}

	// The client goes away: its subscription ends.
	other.close()
	waitFor(t, "the closed stream unsubscribed", func() bool { return h.live.Subscribers() == 1 })

	// Reconnecting after the first item replays the two after it.
	again := h.stream(officer, strconv.FormatInt(first, 10))
	if a, b := again.next("item"), again.next("item"); a.id != strconv.FormatInt(mine, 10) || b.id != strconv.FormatInt(third, 10) {
		t.Fatalf("replay %v %v", a, b)
	}
	if c := total(t, again.next("unread")); c != 3 {
		t.Fatalf("unread on reconnecting %v", c)
	}
	h.header = http.Header{"Last-Event-Id": {"-1"}}
	expectError(t, h.call(officer, "GET", "/api/v1/inbox/stream", nil), 400, "E100", "Last-Event-ID")
	h.header = nil
	// The hub stops: every stream gets bye and ends.
	h.stopLive()
	for _, st := range []*sseStream{s, again} {
		var names []string
		for ev := range st.events { // until the server ends the stream
			if ev.name != ":" {
				names = append(names, ev.name)
			}
		}
		if len(names) == 0 || names[len(names)-1] != "bye" {
			t.Fatalf("the stream ended with %v, want bye last", names)
		}
	}
	expectError(t, h.call(officer, "GET", "/api/v1/inbox/stream", nil), 503, "E503")
}
