package warning_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/adapters/auth"
	"zhianhub/contracts/events"
	"zhianhub/store/inbox"
	"zhianhub/store/storetest"
	"zhianhub/store/warning"
)

// Units of the demo tree (adapters/auth/units_demo.yaml).
const (
	city     = "310000000000"
	xuhui    = "310104000000"
	tianping = "310104010000"
	pudong   = "310115000000"
)

// TestNext: the state machine, every action from every state.
func TestNext(t *testing.T) {
	type want struct {
		to       string
		conflict bool
	}
	actions := []struct{ action, result string }{
		{warning.ActSign, ""}, {warning.ActStart, ""}, {warning.ActFinish, warning.ResultHandled},
		{warning.ActFinish, warning.ResultFalseAlarm}, {warning.ActTransfer, ""},
	}
	c := want{conflict: true}
	table := map[string][]want{ // per state, in the order of actions
		warning.Issued:      {{to: warning.Signed}, c, c, c, {to: warning.Transferred}},
		warning.Signed:      {c, {to: warning.InProgress}, c, c, {to: warning.Transferred}},
		warning.InProgress:  {c, c, {to: warning.Done}, {to: warning.FalseAlarm}, {to: warning.Transferred}},
		warning.Done:        {c, c, c, c, c},
		warning.FalseAlarm:  {c, c, c, c, c},
		warning.Transferred: {{to: warning.Signed}, c, c, c, {to: warning.Transferred}},
	}
	for _, state := range warning.States {
		for i, a := range actions {
			w := table[state][i]
			t.Run(state+"/"+a.action+"/"+a.result, func(t *testing.T) {
				got, err := warning.Next(state, a.action, a.result)
				if w.conflict {
					var se *warning.StateError
					if !errors.As(err, &se) || !errors.Is(err, warning.ErrConflict) || se.Reason == "" {
						t.Fatalf("Next = %q, %v; want a state conflict", got, err)
					}
					return
				}
				if err != nil || got != w.to {
					t.Fatalf("Next = %q, %v; want %q", got, err, w.to)
				}
			})
		}
	}
	if _, err := warning.Next(warning.InProgress, warning.ActFinish, "fixed"); !errors.Is(err, warning.ErrInvalid) {
		t.Errorf("unknown result: %v", err)
	}
	if _, err := warning.Next(warning.Issued, "close", ""); !errors.Is(err, warning.ErrInvalid) {
		t.Errorf("unknown action: %v", err)
	}
	for _, tc := range []struct{ action, result, want string }{
		{warning.ActFinish, warning.ResultVerified, "done"}, {warning.ActFinish, warning.ResultHandled, "done"},
		{warning.ActFinish, warning.ResultNotFound, "unverified"}, {warning.ActFinish, warning.ResultFalseAlarm, "false_alarm"},
		{warning.ActTransfer, "", "transferred"}, {warning.ActSign, "", ""}, {warning.ActStart, "", ""},
	} {
		if got := warning.FeedbackResult(tc.action, tc.result); got != tc.want {
			t.Errorf("FeedbackResult(%s, %s) = %q, want %q", tc.action, tc.result, got, tc.want)
		}
	}
}

// filer is the city feedback as the bus adapter would file it: a row in
// the caller's transaction (a table of the test), or a failure.
type filer struct{ fail bool }

func (f filer) FileFeedback(ctx context.Context, tx pgx.Tx, fb warning.Feedback) error {
	if f.fail {
		return errors.New("city bus outbox unavailable")
	}
	_, err := tx.Exec(ctx, `INSERT INTO test_feedback (ref_type, ref_no, unit, officer, result, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		fb.RefType, fb.RefNo, fb.Unit, fb.Officer, fb.Result, fb.Detail)
	return err
}

type env struct {
	t    *testing.T
	pool *pgxpool.Pool
	svc  *warning.Service
	now  time.Time
	mu   sync.Mutex
}

func (e *env) clock() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now }
func (e *env) set(t time.Time)  { e.mu.Lock(); e.now = t; e.mu.Unlock() }

func newEnv(t *testing.T, f warning.FeedbackFiler) *env {
	t.Helper()
	e := &env{t: t, pool: storetest.NewPool(t), now: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)}
	if _, err := e.pool.Exec(context.Background(), `CREATE TABLE test_feedback (ref_type text, ref_no text, unit text, officer text, result text, detail text)`); err != nil {
		t.Fatal(err)
	}
	var err error
	e.svc, err = warning.New(warning.Config{Pool: e.pool, Units: auth.DemoUnitTree(), Now: e.clock, Feedback: f})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// issue stores a warning for unit, due in `due`, through a transaction as
// the consumer does.
func (e *env) issue(id, unit string, due time.Duration) bool {
	e.t.Helper()
	var created bool
	err := pgx.BeginFunc(context.Background(), e.pool, func(tx pgx.Tx) error {
		var err error
		created, err = e.svc.Issue(context.Background(), tx, uuid.NewString(), "analysis", warning.Issue{
			WarningID: id, Level: 2, Category: "0301", Title: "异常聚集预警（测试）", Content: "请核实（测试数据）",
			Unit: unit, Deadline: e.clock().Add(due), IssuedAt: e.clock()})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return created
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

var officerOf = func(unit string) warning.Actor {
	return warning.Actor{User: "li.officer", Unit: unit, Role: "officer", Officer: "1023456", Scope: auth.DemoUnitTree().Subtree(unit)}
}

// TestLifecycle: issue → inbox; sign, start, finish each record a step,
// stage an audit entry and enqueue their contract-valid event; the final
// outcome is filed to the city bus in the same transaction; refusals
// change nothing.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, filer{})
	const id = "31000020261127000001"
	if !e.issue(id, xuhui, 8*time.Hour) {
		t.Fatal("first issue not created")
	}
	if e.issue(id, xuhui, 8*time.Hour) {
		t.Fatal("second issue of the same warningId created again")
	}
	items, err := inbox.List(ctx, e.pool, inbox.Viewer{User: "x", Unit: xuhui}, inbox.Filter{})
	if err != nil || len(items) != 1 || items[0].Ref != id || items[0].Kind != "warning" || items[0].Level != 2 {
		t.Fatalf("inbox of %s: %+v, %v", xuhui, items, err)
	}

	a := officerOf(xuhui)
	if _, err := e.svc.Start(ctx, id, a); !errors.Is(err, warning.ErrConflict) {
		t.Fatalf("start before sign: %v", err)
	}
	if _, err := e.svc.Sign(ctx, id, officerOf(pudong)); !errors.Is(err, warning.ErrNotFound) {
		t.Fatalf("sign out of scope: %v", err)
	}
	if _, err := e.svc.Sign(ctx, id, warning.Actor{User: "x", Officer: "12"}); !errors.Is(err, warning.ErrInvalid) {
		t.Fatalf("bad officer: %v", err)
	}
	w, err := e.svc.Sign(ctx, id, a)
	if err != nil || w.State != warning.Signed || w.SignedOfficer != "1023456" || w.SignedUnit != xuhui {
		t.Fatalf("sign: %+v, %v", w, err)
	}
	if _, err := e.svc.Start(ctx, id, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Finish(ctx, id, a, warning.ResultNotFound, ""); !errors.Is(err, warning.ErrInvalid) {
		t.Fatalf("finish without detail: %v", err)
	}
	w, err = e.svc.Finish(ctx, id, a, warning.ResultNotFound, "现场核实未发现异常（测试）")
	if err != nil || w.State != warning.Done || w.Result != warning.ResultNotFound || w.FinishedAt == nil {
		t.Fatalf("finish: %+v, %v", w, err)
	}
	if _, err := e.svc.Transfer(ctx, id, a, pudong, "不属本单位"); !errors.Is(err, warning.ErrConflict) {
		t.Fatalf("transfer after finish: %v", err)
	}

	steps, err := warning.Steps(ctx, e.pool, id)
	if err != nil || len(steps) != 4 || steps[0].Action != "issue" || steps[3].Action != "finish" || steps[3].ToState != warning.Done {
		t.Fatalf("steps %+v, %v", steps, err)
	}
	if n := e.count(`SELECT count(*) FROM audit_pending WHERE action LIKE 'warning.%' AND object = $1`, id); n != 4 {
		t.Errorf("%d audit entries staged, want 4 (issue, sign, start, finish)", n)
	}
	// Events: warning.signed and warning.feedback, valid by their contracts.
	reg, err := events.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := e.pool.Query(ctx, `SELECT kind, exchange, routing_key, payload FROM outbox ORDER BY created_at`)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for rows.Next() {
		var kind, ex, rk string
		var payload []byte
		if err := rows.Scan(&kind, &ex, &rk, &payload); err != nil {
			t.Fatal(err)
		}
		if ex != events.EventsExchange || rk != kind {
			t.Errorf("%s to %s/%s", kind, ex, rk)
		}
		if err := reg.Validate(kind, payload); err != nil {
			t.Errorf("%s breaks its contract: %v\n%s", kind, err, payload)
		}
		kinds = append(kinds, kind)
	}
	if fmt.Sprint(kinds) != fmt.Sprint([]string{events.KindWarningSigned, events.KindWarningFeedback}) {
		t.Errorf("events %v", kinds)
	}
	var res, unit, officer string
	if err := e.pool.QueryRow(ctx, `SELECT result, unit, officer FROM test_feedback WHERE ref_type = 'warning' AND ref_no = $1`, id).
		Scan(&res, &unit, &officer); err != nil || res != "unverified" || unit != xuhui || officer != "1023456" {
		t.Errorf("city feedback %q %q %q, %v", res, unit, officer, err)
	}
}

// TestTransfer: the new unit gets the warning in its inbox and scope and
// signs it; the old unit still sees it but may not act; the deadline stays.
func TestTransfer(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, filer{})
	const id = "31000020261127000002"
	e.issue(id, xuhui, time.Hour)
	before, _ := warning.Get(ctx, e.pool, id, nil)
	if _, err := e.svc.Transfer(ctx, id, officerOf(xuhui), xuhui, "同一单位"); !errors.Is(err, warning.ErrInvalid) {
		t.Fatalf("transfer to itself: %v", err)
	}
	if _, err := e.svc.Transfer(ctx, id, officerOf(xuhui), "319999000000", "未知单位"); !errors.Is(err, warning.ErrInvalid) {
		t.Fatalf("transfer to an unknown unit: %v", err)
	}
	w, err := e.svc.Transfer(ctx, id, officerOf(xuhui), pudong, "发生地属浦东")
	if err != nil || w.State != warning.Transferred || w.Unit != pudong || fmt.Sprint(w.Holders) != fmt.Sprint([]string{xuhui, pudong}) {
		t.Fatalf("transfer: %+v, %v", w, err)
	}
	if !w.Deadline.Equal(before.Deadline) {
		t.Errorf("deadline changed by the transfer: %s → %s", before.Deadline, w.Deadline)
	}
	items, _ := inbox.List(ctx, e.pool, inbox.Viewer{User: "p", Unit: pudong}, inbox.Filter{})
	if len(items) != 1 || items[0].Ref != id {
		t.Fatalf("new unit's inbox: %+v", items)
	}
	if _, err := warning.Get(ctx, e.pool, id, auth.DemoUnitTree().Subtree(xuhui)); err != nil {
		t.Errorf("the old unit no longer sees it: %v", err)
	}
	if _, err := e.svc.Sign(ctx, id, officerOf(xuhui)); !errors.Is(err, warning.ErrNotResponsible) {
		t.Errorf("old unit signs: %v", err)
	}
	if w, err := e.svc.Sign(ctx, id, officerOf(pudong)); err != nil || w.State != warning.Signed || w.SignedUnit != pudong {
		t.Fatalf("new unit signs: %+v, %v", w, err)
	}
	if n := e.count(`SELECT count(*) FROM test_feedback WHERE result = 'transferred' AND unit = $1`, xuhui); n != 1 {
		t.Errorf("%d transferred feedbacks", n)
	}
}

// TestFeedbackInTransaction: when the city feedback cannot be filed the
// finish is rolled back whole.
func TestFeedbackInTransaction(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, filer{fail: true})
	const id = "31000020261127000003"
	e.issue(id, xuhui, time.Hour)
	a := officerOf(xuhui)
	if _, err := e.svc.Sign(ctx, id, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Start(ctx, id, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Finish(ctx, id, a, warning.ResultHandled, "已处置"); err == nil {
		t.Fatal("finish succeeded although the feedback failed")
	}
	w, _ := warning.Get(ctx, e.pool, id, nil)
	if w.State != warning.InProgress {
		t.Errorf("state %s after a failed finish", w.State)
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE kind = $1`, events.KindWarningFeedback); n != 0 {
		t.Errorf("%d feedback events left by a failed finish", n)
	}
}

// TestList: scope, state, level and overdue filters, paging.
func TestList(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.issue("31000020261127000011", tianping, time.Hour)
	e.issue("31000020261127000012", xuhui, 3*time.Hour)
	e.issue("31000020261127000013", pudong, time.Hour)
	e.set(e.clock().Add(2 * time.Hour))
	ids := func(f warning.Filter) string {
		t.Helper()
		ws, err := warning.List(ctx, e.pool, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, w := range ws {
			out = append(out, w.WarningID[17:])
		}
		return fmt.Sprint(out)
	}
	yes, no := true, false
	tree := auth.DemoUnitTree()
	for _, tc := range []struct {
		name string
		f    warning.Filter
		want string
	}{
		{"all", warning.Filter{}, "[013 012 011]"},
		{"city", warning.Filter{Scope: tree.Subtree(city)}, "[013 012 011]"},
		{"xuhui subtree", warning.Filter{Scope: tree.Subtree(xuhui)}, "[012 011]"},
		{"station", warning.Filter{Scope: tree.Subtree(tianping)}, "[011]"},
		{"no unit", warning.Filter{Scope: []string{}}, "[]"},
		{"overdue", warning.Filter{Overdue: &yes, Now: e.clock()}, "[013 011]"},
		{"not overdue", warning.Filter{Overdue: &no, Now: e.clock()}, "[012]"},
		{"state", warning.Filter{State: warning.Signed}, "[]"},
		{"level", warning.Filter{Level: 2, Limit: 2}, "[013 012]"},
		{"page", warning.Filter{Before: "31000020261127000012"}, "[011]"},
	} {
		if got := ids(tc.f); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestSweep: with the clock past the deadline, the sweep escalates each
// open overdue warning once (also with concurrent sweeps), delivers to the
// unit and its parent, audits, and leaves the deadline; finished and
// not-yet-due warnings are left alone.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.issue("31000020261127000021", tianping, time.Hour)
	e.issue("31000020261127000022", xuhui, time.Hour)
	e.issue("31000020261127000023", xuhui, 5*time.Hour)
	e.issue("31000020261127000024", xuhui, time.Hour)
	a := officerOf(xuhui)
	for _, step := range []func() (warning.Warning, error){
		func() (warning.Warning, error) { return e.svc.Sign(ctx, "31000020261127000024", a) },
		func() (warning.Warning, error) { return e.svc.Start(ctx, "31000020261127000024", a) },
		func() (warning.Warning, error) {
			return e.svc.Finish(ctx, "31000020261127000024", a, warning.ResultHandled, "已处置")
		},
	} {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := warning.Get(ctx, e.pool, "31000020261127000021", nil)

	if got, err := e.svc.Sweep(ctx, 0); err != nil || len(got) != 0 {
		t.Fatalf("sweep before any deadline: %v, %v", got, err)
	}
	e.set(e.clock().Add(90 * time.Minute))
	var wg sync.WaitGroup
	results := make([][]warning.Escalation, 4)
	for i := range results {
		wg.Go(func() {
			r, err := e.svc.Sweep(ctx, 1)
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	for {
		r, err := e.svc.Sweep(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(r) == 0 {
			break
		}
		results = append(results, r)
	}
	got := map[string]warning.Escalation{}
	for _, r := range results {
		for _, esc := range r {
			if _, dup := got[esc.WarningID]; dup {
				t.Errorf("%s escalated twice", esc.WarningID)
			}
			got[esc.WarningID] = esc
		}
	}
	if len(got) != 2 || got["31000020261127000021"].Parent != xuhui || got["31000020261127000022"].Parent != city {
		t.Fatalf("escalated %+v", got)
	}
	after, _ := warning.Get(ctx, e.pool, "31000020261127000021", nil)
	if !after.Deadline.Equal(before.Deadline) || after.EscalatedAt == nil || after.State != warning.Issued {
		t.Errorf("after the sweep: %+v", after)
	}
	// Unit and parent got the overdue item: tianping's for 021, xuhui's
	// for 021 (as parent) and 022, the city's for 022.
	for unit, want := range map[string]int{tianping: 1, xuhui: 2, city: 1} {
		if n := e.count(`SELECT count(*) FROM inbox_item WHERE recipient = $1 AND dedup_key LIKE 'warning-overdue:%'`, unit); n != want {
			t.Errorf("%s: %d overdue items, want %d", unit, n, want)
		}
	}
	if n := e.count(`SELECT count(*) FROM audit_pending WHERE action = 'warning.escalate'`); n != 2 {
		t.Errorf("%d escalations audited", n)
	}
	if n := e.count(`SELECT count(*) FROM warning_step WHERE action = 'escalate'`); n != 2 {
		t.Errorf("%d escalation steps", n)
	}
	// Later sweeps have nothing to do.
	e.set(e.clock().Add(24 * time.Hour))
	if r, err := e.svc.Sweep(ctx, 0); err != nil || len(r) != 1 || r[0].WarningID != "31000020261127000023" {
		t.Fatalf("day-later sweep: %+v, %v", r, err)
	}
}
