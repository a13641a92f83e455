package registry_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"zhianhub/contracts"
	"zhianhub/crypto/fieldenc"
	"zhianhub/store/registry"
	"zhianhub/transforms"
)

// TestVectorSequence replays the payloads of the envelope vectors: person A
// register, change, control, release, task, cancel; person B register, then
// task.sign of a task the registry does not know (E131) and of a known one.
func TestVectorSequence(t *testing.T) {
	e := newEnv(t)
	a, b := "32010620261126000017", "33010620261125000042"
	e.mustApply(t,
		e.msg(t, contracts.KindRegister, registerA(a)),
		e.msg(t, contracts.KindChange, changeA(a)),
		e.msg(t, contracts.KindControl, controlA(a, "32010620261127000003")),
		e.msg(t, contracts.KindRelease, releaseA(a, "32010620261127000003")),
		e.msg(t, contracts.KindTask, taskA(a, "32010620261127000005")),
	)
	p, err := e.reg.GetPerson(e.ctx, e.pool, a)
	if err != nil {
		t.Fatal(err)
	}
	if p.State != registry.PersonActive || p.ResidRegion != "310112" || p.ResidAddr != resA2 ||
		p.IDNo != idA || p.Name != nameA || p.HukouAddr != hukA || p.BirthDate != "1986-05-17" || p.ReviewBy != "2027-05-26" {
		t.Fatalf("after change: %+v", p)
	}
	e.mustApply(t, e.msg(t, contracts.KindCancel, cancelA(a)))
	p, _ = e.reg.GetPerson(e.ctx, e.pool, a)
	if p.State != registry.PersonCancelled || p.CancelledAt == nil || p.CancelBasis == nil || p.CancelReason == "" {
		t.Fatalf("after cancel: %+v", p)
	}
	cs, err := e.reg.Controls(e.ctx, e.pool, a)
	if err != nil || len(cs) != 1 || cs[0].State != registry.ControlReleased || cs[0].ClosedAt == nil {
		t.Fatalf("controls: %+v %v", cs, err)
	}
	task, err := e.reg.GetTask(e.ctx, e.pool, "32010620261127000005")
	if err != nil || task.State != registry.TaskIssued || task.PersonNo != a || !slices.Equal(task.Items, []string{"identity", "address"}) {
		t.Fatalf("task: %+v %v", task, err)
	}

	e.mustApply(t, e.msg(t, contracts.KindRegister, registerB(b)))
	sign := e.msg(t, contracts.KindTaskSign, signB(b, "31010620261126000008"))
	before := e.snapshot(t)
	if code, _ := codeOf(e.apply(t, sign)); code != registry.CodeUnknown {
		t.Fatalf("sign of unknown task: %s", code)
	}
	if e.snapshot(t) != before {
		t.Fatal("refused sign changed the registry")
	}
	// Shanghai files a task for B; the same sign (resent) then takes effect.
	issue := out(e.msg(t, contracts.KindTask, strings.Replace(taskA(b, "31010620261126000008"), `"seq": 5`, `"seq": 1`, 1)))
	e.mustApply(t, issue)
	sign.Corr = issue.ID
	e.mustApply(t, sign)
	task, err = e.reg.GetTask(e.ctx, e.pool, "31010620261126000008")
	if err != nil || task.State != registry.TaskSigned || task.SignedUnit != "330106000000" || task.SignedOfficer != "204518" ||
		task.SignMsgID != sign.ID || task.IssuedMsgID != issue.ID || task.SignedAt == nil {
		t.Fatalf("signed task: %+v %v", task, err)
	}

	h, err := e.reg.History(e.ctx, e.pool, a)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, x := range h {
		kinds = append(kinds, x.Kind)
	}
	want := []string{contracts.KindRegister, contracts.KindChange, contracts.KindControl, contracts.KindRelease, contracts.KindTask, contracts.KindCancel}
	if !slices.Equal(kinds, want) {
		t.Fatalf("history kinds %v", kinds)
	}
	if !slices.Equal(h[1].Fields, []string{"residRegion", "residAddr"}) {
		t.Fatalf("change fields %v", h[1].Fields)
	}
	hb, _ := e.reg.History(e.ctx, e.pool, b)
	if len(hb) != 3 || hb[1].Direction != registry.Out || hb[2].Direction != registry.In || !bytes.Contains(hb[2].Detail, []byte(issue.ID)) {
		t.Fatalf("history of B: %+v", hb)
	}
	for _, x := range append(h, hb...) {
		var d map[string]any
		if err := json.Unmarshal(x.Detail, &d); err != nil || d["seq"] == nil {
			t.Fatalf("detail %s: %v", x.Detail, err)
		}
		assertNoPII(t, "history detail", x.Detail)
	}
}

func TestStateMachine(t *testing.T) {
	e := newEnv(t)
	type step func(n int) registry.Message
	reg := func(n int) registry.Message { return e.msg(t, contracts.KindRegister, registerA(personNo(n))) }
	regOther := func(n int) registry.Message { return e.msg(t, contracts.KindRegister, registerA(personNo(n+500))) }
	cancel := func(n int) registry.Message { return e.msg(t, contracts.KindCancel, cancelA(personNo(n))) }
	ctl := func(n int) registry.Message {
		return e.msg(t, contracts.KindControl, controlA(personNo(n), controlNo(n)))
	}
	ctlOther := func(n int) registry.Message {
		return e.msg(t, contracts.KindControl, controlA(personNo(n+500), controlNo(n)))
	}
	rel := func(n int) registry.Message {
		return e.msg(t, contracts.KindRelease, releaseA(personNo(n), controlNo(n)))
	}
	tsk := func(n int) registry.Message { return e.msg(t, contracts.KindTask, taskA(personNo(n), taskNo(n))) }
	tskOther := func(n int) registry.Message { return e.msg(t, contracts.KindTask, taskA(personNo(n+500), taskNo(n))) }
	sign := func(n int) registry.Message { return e.msg(t, contracts.KindTaskSign, signB(personNo(n), taskNo(n))) }
	chg := func(changes string) step {
		return func(n int) registry.Message { return e.msg(t, contracts.KindChange, changeDoc(personNo(n), changes)) }
	}
	// A control that is already past its validity at the registry clock.
	ctlPast := func(n int) registry.Message {
		return e.msg(t, contracts.KindControl, controlDoc(personNo(n), controlNo(n), "2026-06-01T00:00:00+08:00", "2026-11-01T00:00:00+08:00"))
	}
	expire := func(int) registry.Message { return registry.Message{} } // marker: run ExpireControls
	// A change the validator of the change alone lets through would not
	// reach the registry with a bad region; built directly to show the
	// merged record is validated again.
	badRegion := func(n int) registry.Message {
		r := "999999"
		return registry.Message{ID: uuid.NewString(), Direction: registry.In, Node: ministry, Kind: contracts.KindChange, At: now,
			Payload: &contracts.Change{Header: contracts.Header{PersonNo: personNo(n), Seq: 2},
				Changes: contracts.PersonChanges{ResidRegion: &r}, Reason: "测试", ChangedAt: now}}
	}

	tests := []struct {
		name  string
		setup []step
		msg   step
		code  string
		path  string // of a FieldError
		check func(t *testing.T, n int)
	}{
		{name: "register", msg: reg, code: "0000"},
		{name: "register existing", setup: []step{reg}, msg: reg, code: "E130"},
		{name: "register cancelled", setup: []step{reg, cancel}, msg: reg, code: "E130"},
		{name: "change", setup: []step{reg}, msg: chg(`{"name": "张测试二", "hukouAddr": "", "categories": ["0101", "0201"]}`), code: "0000",
			check: func(t *testing.T, n int) {
				p, err := e.reg.GetPerson(e.ctx, e.pool, personNo(n))
				if err != nil || p.Name != "张测试二" || p.HukouAddr != "" || !slices.Equal(p.Categories, []string{"0101", "0201"}) || p.ResidAddr != resA {
					t.Fatalf("%+v %v", p, err)
				}
			}},
		{name: "change unknown", msg: chg(`{"residRegion": "310112"}`), code: "E131"},
		{name: "change cancelled", setup: []step{reg, cancel}, msg: chg(`{"residRegion": "310112"}`), code: "E130"},
		{name: "change merged: region not in table", setup: []step{reg}, msg: badRegion, code: "E122", path: "changes.residRegion"},
		{name: "change merged: sex disagrees with ID", setup: []step{reg}, msg: chg(`{"sex": "2"}`), code: "E121", path: "changes.sex"},
		{name: "change merged: birth date disagrees with ID", setup: []step{reg}, msg: chg(`{"birthDate": "1986-05-18"}`), code: "E121", path: "changes.birthDate"},
		{name: "change merged: reviewBy over a year after stored registeredAt", setup: []step{reg}, msg: chg(`{"reviewBy": "2027-11-27"}`), code: "E120", path: "changes.reviewBy"},
		{name: "change merged: registeredAt moved, stored reviewBy now too late", setup: []step{reg}, msg: chg(`{"registeredAt": "2026-01-01T10:00:00+08:00"}`), code: "E120", path: "changes.reviewBy"},
		{name: "change: reviewBy on the last allowed day", setup: []step{reg}, msg: chg(`{"reviewBy": "2027-11-26"}`), code: "0000"},
		{name: "change: registeredAt and reviewBy together", setup: []step{reg}, msg: chg(`{"registeredAt": "2027-01-10T10:00:00+08:00", "reviewBy": "2028-01-10"}`), code: "0000"},
		{name: "cancel", setup: []step{reg, ctl}, msg: cancel, code: "0000",
			check: func(t *testing.T, n int) {
				cs, _ := e.reg.Controls(e.ctx, e.pool, personNo(n))
				if len(cs) != 1 || cs[0].State != registry.ControlCancelled || cs[0].ClosedByMsg == "" || !strings.Contains(cs[0].CloseReason, "注销") {
					t.Fatalf("controls after cancel: %+v", cs)
				}
			}},
		{name: "cancel unknown", msg: cancel, code: "E131"},
		{name: "cancel cancelled", setup: []step{reg, cancel}, msg: cancel, code: "E130"},
		{name: "control", setup: []step{reg}, msg: ctl, code: "0000"},
		{name: "control unknown", msg: ctl, code: "E131"},
		{name: "control cancelled", setup: []step{reg, cancel}, msg: ctl, code: "E130"},
		{name: "control duplicate controlNo", setup: []step{reg, ctl}, msg: ctl, code: "E130"},
		{name: "control controlNo of another person", setup: []step{reg, regOther, ctlOther}, msg: ctl, code: "E130"},
		{name: "release", setup: []step{reg, ctl}, msg: rel, code: "0000"},
		{name: "release unknown person", msg: rel, code: "E131"},
		{name: "release unknown control", setup: []step{reg}, msg: rel, code: "E131"},
		{name: "release control of another person", setup: []step{reg, regOther, ctlOther}, msg: rel, code: "E131"},
		{name: "release released", setup: []step{reg, ctl, rel}, msg: rel, code: "E130"},
		{name: "release after cancel", setup: []step{reg, ctl, cancel}, msg: rel, code: "E130"},
		{name: "release expired", setup: []step{reg, ctlPast, expire}, msg: rel, code: "E130"},
		{name: "task", setup: []step{reg}, msg: tsk, code: "0000"},
		{name: "task unknown", msg: tsk, code: "E131"},
		{name: "task cancelled", setup: []step{reg, cancel}, msg: tsk, code: "E130"},
		{name: "task duplicate taskNo", setup: []step{reg, tsk}, msg: tsk, code: "E130"},
		{name: "task taskNo of another person", setup: []step{reg, regOther, tskOther}, msg: tsk, code: "E130"},
		{name: "sign", setup: []step{reg, tsk}, msg: sign, code: "0000"},
		{name: "sign unknown person", msg: sign, code: "E131"},
		{name: "sign unknown task", setup: []step{reg}, msg: sign, code: "E131"},
		{name: "sign task of another person", setup: []step{reg, regOther, tskOther}, msg: sign, code: "E131"},
		{name: "sign signed", setup: []step{reg, tsk, sign}, msg: sign, code: "E130"},
		{name: "sign after cancel (the task stays issued)", setup: []step{reg, tsk, cancel}, msg: sign, code: "0000"},
	}
	for i, tc := range tests {
		n := i + 1
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range tc.setup {
				m := s(n)
				if m.ID == "" {
					if _, err := e.reg.ExpireControls(e.ctx, e.pool, now); err != nil {
						t.Fatal(err)
					}
					continue
				}
				e.mustApply(t, m)
			}
			before := e.snapshot(t)
			m := tc.msg(n)
			err := e.apply(t, m)
			code, path := codeOf(err)
			if code != tc.code || path != tc.path {
				t.Fatalf("got %s %s (%v), want %s %s", code, path, err, tc.code, tc.path)
			}
			if err != nil {
				var se *registry.StateError
				var fe *contracts.FieldError
				switch {
				case errors.As(err, &se):
					if se.Reason == "" || se.Error() == "" {
						t.Fatal("state error without reason")
					}
				case errors.As(err, &fe):
					if !strings.HasPrefix(fe.Reason, fe.Path+"：") {
						t.Fatalf("reason %q does not name %s", fe.Reason, fe.Path)
					}
				}
				if e.snapshot(t) != before {
					t.Fatal("a refused message changed the registry")
				}
				return
			}
			h, err := e.reg.History(e.ctx, e.pool, m.Payload.(contracts.Ordered).Ordering().PersonNo)
			if err != nil || h[len(h)-1].MsgID != m.ID || h[len(h)-1].Kind != m.Kind {
				t.Fatalf("history: %+v %v", h, err)
			}
			if tc.check != nil {
				tc.check(t, n)
			}
		})
	}
}

func TestAlreadyApplied(t *testing.T) {
	e := newEnv(t)
	no := personNo(1)
	register := e.msg(t, contracts.KindRegister, registerA(no))
	change := e.msg(t, contracts.KindChange, changeA(no))
	e.mustApply(t, register, change)
	before := e.snapshot(t)
	for _, m := range []registry.Message{register, change} {
		if err := e.apply(t, m); !errors.Is(err, registry.ErrAlreadyApplied) {
			t.Fatalf("%s again: %v", m.Kind, err)
		}
	}
	// The same id with different content, e.g. a control: still one effect.
	ctl := e.msg(t, contracts.KindControl, controlA(no, controlNo(1)))
	ctl.ID = change.ID
	if err := e.apply(t, ctl); !errors.Is(err, registry.ErrAlreadyApplied) {
		t.Fatalf("same id, other payload: %v", err)
	}
	if e.snapshot(t) != before {
		t.Fatal("a repeated message changed the registry")
	}
	// The same id in the other direction is another message (a relay).
	ctl.Direction = registry.Out
	if err := e.apply(t, ctl); err != nil {
		t.Fatalf("other direction: %v", err)
	}
}

func TestInvalidMessage(t *testing.T) {
	e := newEnv(t)
	good := e.msg(t, contracts.KindRegister, registerA(personNo(1)))
	receipt, _ := e.v.ValidatePayload(contracts.KindReceipt, []byte(`{"ref":"01a21ab8-5de0-7f06-9d45-0d164f1e3d2f","status":"ACCEPTED","code":"0000","reason":"","at":"2026-11-27T09:58:59.000+08:00"}`))
	tests := []struct {
		name string
		edit func(m *registry.Message)
	}{
		{"bad id", func(m *registry.Message) { m.ID = "not-a-uuid" }},
		{"bad direction", func(m *registry.Message) { m.Direction = "sideways" }},
		{"bad node", func(m *registry.Message) { m.Node = "31" }},
		{"no time", func(m *registry.Message) { m.At = time.Time{} }},
		{"kind does not fit payload", func(m *registry.Message) { m.Kind = contracts.KindChange }},
		{"nil payload", func(m *registry.Message) { m.Payload = (*contracts.Person)(nil) }},
		{"receipt", func(m *registry.Message) { m.Kind, m.Payload = contracts.KindReceipt, receipt }},
		{"bad personNo", func(m *registry.Message) {
			p := *m.Payload.(*contracts.Person)
			p.PersonNo = "1"
			m.Payload = &p
		}},
		{"bad date", func(m *registry.Message) {
			p := *m.Payload.(*contracts.Person)
			p.BirthDate = "1986-13-45"
			m.Payload = &p
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := good
			tc.edit(&m)
			if err := e.apply(t, m); !errors.Is(err, registry.ErrInvalid) {
				t.Fatalf("got %v", err)
			}
		})
	}
	// A payload by value is accepted too.
	m := good
	m.Payload = *good.Payload.(*contracts.Person)
	if err := e.apply(t, m); err != nil {
		t.Fatal(err)
	}
}

// assertNoPII fails when b holds the plaintext ID number, name or address
// of a test person.
func assertNoPII(t *testing.T, what string, b []byte) {
	t.Helper()
	for _, s := range []string{idA, nameA, hukA, resA, resA2, idB, nameB, hukB, "张测试二"} {
		if bytes.Contains(b, []byte(s)) {
			t.Fatalf("%s holds plaintext %q", what, s)
		}
	}
}

func TestEncryptionAtRest(t *testing.T) {
	e := newEnv(t)
	a, b := personNo(1), personNo(2)
	e.mustApply(t,
		e.msg(t, contracts.KindRegister, registerA(a)),
		e.msg(t, contracts.KindChange, changeDoc(a, `{"name": "张测试二", "residAddr": "`+resA2+`"}`)),
		e.msg(t, contracts.KindControl, controlA(a, controlNo(1))),
		e.msg(t, contracts.KindTask, strings.Replace(taskA(a, taskNo(1)), "请核实现居住地址", "请核实张测试二（310104198605171356）的住址", 1)),
		e.msg(t, contracts.KindRegister, registerB(b)),
		e.msg(t, contracts.KindCancel, cancelDoc(b, "李示例（31010819900228006X）列管事由消除")),
	)
	// Every table, every column, as text (bytea in hex) and raw bytes.
	for _, table := range []string{"person", "control", "task", "person_history"} {
		rows, err := e.pool.Query(e.ctx, `SELECT t::text FROM `+table+` t`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			assertNoPII(t, table, []byte(s))
		}
		rows.Close()
	}
	rows, err := e.pool.Query(e.ctx, `SELECT id_no_enc, name_enc, coalesce(hukou_addr_enc, ''), coalesce(resid_addr_enc, ''), id_no_bidx FROM person`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var cols [5][]byte
		if err := rows.Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4]); err != nil {
			t.Fatal(err)
		}
		for _, c := range cols {
			assertNoPII(t, "person bytea", c)
		}
	}
	rows.Close()
	// Free texts keep the masked forms.
	tk, _ := e.reg.GetTask(e.ctx, e.pool, taskNo(1))
	pb, _ := e.reg.GetPerson(e.ctx, e.pool, b)
	if !strings.Contains(tk.Note, "张***（310104********1356）") || !strings.Contains(pb.CancelReason, "李**（310108********006X）") {
		t.Fatalf("redaction: %q / %q", tk.Note, pb.CancelReason)
	}
	// A ciphertext moved to another person does not decrypt there.
	if _, err := e.pool.Exec(e.ctx, `UPDATE person SET name_enc = (SELECT name_enc FROM person WHERE person_no = $1) WHERE person_no = $2`, a, b); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.GetPerson(e.ctx, e.pool, b); !errors.Is(err, fieldenc.ErrDecrypt) {
		t.Fatalf("moved ciphertext: %v", err)
	}
	pa, err := e.reg.GetPerson(e.ctx, e.pool, a)
	if err != nil || pa.Name != "张测试二" || pa.ResidAddr != resA2 || pa.IDNo != idA {
		t.Fatalf("%+v %v", pa, err)
	}
}

func TestFindByIDNo(t *testing.T) {
	e := newEnv(t)
	e.mustApply(t,
		e.msg(t, contracts.KindRegister, registerB(personNo(2))),
		e.msg(t, contracts.KindRegister, registerA(personNo(3))),
		e.msg(t, contracts.KindRegister, registerB(personNo(1))),
	)
	tests := []struct {
		idNo string
		want []string
	}{
		{idB, []string{personNo(1), personNo(2)}},
		{"31010819900228006x", []string{personNo(1), personNo(2)}},
		{" ３１０１０８１９９００２２８００６Ｘ ", []string{personNo(1), personNo(2)}},
		{idA, []string{personNo(3)}},
		{"310104198605171357", nil},
	}
	for _, tc := range tests {
		got, err := e.reg.FindByIDNo(e.ctx, e.pool, tc.idNo)
		if err != nil {
			t.Fatal(err)
		}
		var nos []string
		for _, p := range got {
			nos = append(nos, p.PersonNo)
			if p.IDNo != transforms.NormalizeIDNo(tc.idNo) {
				t.Fatalf("found %s for %s", p.IDNo, tc.idNo)
			}
		}
		if !slices.Equal(nos, tc.want) {
			t.Fatalf("FindByIDNo(%q) = %v, want %v", tc.idNo, nos, tc.want)
		}
	}
	if _, err := e.reg.FindByIDNo(e.ctx, e.pool, "  "); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("blank: %v", err)
	}
	if _, err := e.reg.GetPerson(e.ctx, e.pool, personNo(9)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown person: %v", err)
	}
	for name, f := range map[string]func() error{
		"History":  func() error { _, err := e.reg.History(e.ctx, e.pool, personNo(9)); return err },
		"Controls": func() error { _, err := e.reg.Controls(e.ctx, e.pool, personNo(9)); return err },
		"GetTask":  func() error { _, err := e.reg.GetTask(e.ctx, e.pool, taskNo(9)); return err },
	} {
		if err := f(); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("%s of unknown: %v", name, err)
		}
	}
}

func TestExpiryAndOverdueReports(t *testing.T) {
	e := newEnv(t)
	a, b := personNo(1), personNo(2)
	e.mustApply(t,
		e.msg(t, contracts.KindRegister, registerA(a)),
		e.msg(t, contracts.KindRegister, registerB(b)),
		// Past at the clock; ends within 3 days; ends in 90 days.
		e.msg(t, contracts.KindControl, controlDoc(a, controlNo(1), "2026-06-01T00:00:00+08:00", "2026-11-27T09:59:59+08:00")),
		e.msg(t, contracts.KindControl, controlDoc(a, controlNo(2), "2026-11-01T00:00:00+08:00", "2026-11-29T00:00:00+08:00")),
		e.msg(t, contracts.KindControl, controlA(b, controlNo(3))),
	)
	nos := func(cs []registry.ControlRecord) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ControlNo)
		}
		return out
	}
	exp, err := e.reg.ExpiringControls(e.ctx, e.pool, 72*time.Hour)
	if err != nil || !slices.Equal(nos(exp), []string{controlNo(1), controlNo(2)}) {
		t.Fatalf("expiring: %v %v", nos(exp), err)
	}
	if _, err := e.reg.ExpiringControls(e.ctx, e.pool, -time.Hour); !errors.Is(err, registry.ErrInvalid) {
		t.Fatal(err)
	}
	closed, err := e.reg.ExpireControls(e.ctx, e.pool, now)
	if err != nil || !slices.Equal(nos(closed), []string{controlNo(1)}) {
		t.Fatalf("expire: %v %v", nos(closed), err)
	}
	c := closed[0]
	if c.State != registry.ControlExpired || c.ClosedAt == nil || !c.ClosedAt.Equal(now) || c.CloseReason != registry.ExpireClosedReason || c.ClosedByMsg != "" {
		t.Fatalf("expired control: %+v", c)
	}
	if !c.ValidTo.Equal(time.Date(2026, 11, 27, 9, 59, 59, 0, now.Location())) {
		t.Fatalf("validTo moved: %v", c.ValidTo)
	}
	if again, err := e.reg.ExpireControls(e.ctx, e.pool, now); err != nil || len(again) != 0 {
		t.Fatalf("second run: %v %v", nos(again), err)
	}
	h, _ := e.reg.History(e.ctx, e.pool, a)
	last := h[len(h)-1]
	if last.Kind != registry.HistoryKindExpired || last.Direction != registry.DirectionLocal || last.MsgID != "" || !bytes.Contains(last.Detail, []byte(controlNo(1))) {
		t.Fatalf("expiry history: %+v", last)
	}

	// Reviews: A by 2027-05-26, B by 2027-11-20 (Asia/Shanghai dates).
	summaries := func(asOf time.Time) []string {
		t.Helper()
		got, err := e.reg.OverdueReviews(e.ctx, e.pool, asOf)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range got {
			out = append(out, s.PersonNo+" "+s.NameMasked+" "+s.IDNoMasked+" "+s.ReviewBy)
		}
		return out
	}
	cst := now.Location()
	for _, tc := range []struct {
		asOf time.Time
		want []string
	}{
		{time.Date(2027, 5, 26, 23, 59, 0, 0, cst), nil},
		{time.Date(2027, 5, 26, 16, 0, 0, 0, time.UTC), []string{a + " 张** 310104********1356 2027-05-26"}}, // 05-27 in Shanghai
		{time.Date(2027, 12, 1, 0, 0, 0, 0, cst), []string{a + " 张** 310104********1356 2027-05-26", b + " 李** 310108********006X 2027-11-20"}},
	} {
		if got := summaries(tc.asOf); !slices.Equal(got, tc.want) {
			t.Fatalf("overdue as of %v: %v, want %v", tc.asOf, got, tc.want)
		}
	}
	e.mustApply(t, e.msg(t, contracts.KindCancel, cancelA(a)))
	if got := summaries(time.Date(2027, 12, 1, 0, 0, 0, 0, cst)); len(got) != 1 || !strings.HasPrefix(got[0], b) {
		t.Fatalf("cancelled person still overdue: %v", got)
	}
}

func TestTasks(t *testing.T) {
	e := newEnv(t)
	a := personNo(1)
	e.mustApply(t, e.msg(t, contracts.KindRegister, registerA(a)))
	for i := 1; i <= 5; i++ {
		doc := taskA(a, taskNo(i))
		if i%2 == 0 {
			doc = strings.Replace(doc, "310112000000", "310115000000", 1)
		}
		e.mustApply(t, e.msg(t, contracts.KindTask, doc))
	}
	e.mustApply(t, e.msg(t, contracts.KindTaskSign, signB(a, taskNo(3))))
	list := func(f registry.TaskFilter) []string {
		t.Helper()
		got, err := e.reg.ListTasks(e.ctx, e.pool, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range got {
			out = append(out, x.TaskNo[len(x.TaskNo)-1:])
		}
		return out
	}
	for _, tc := range []struct {
		f    registry.TaskFilter
		want []string
	}{
		{registry.TaskFilter{}, []string{"1", "2", "3", "4", "5"}},
		{registry.TaskFilter{State: registry.TaskIssued}, []string{"1", "2", "4", "5"}},
		{registry.TaskFilter{State: registry.TaskSigned}, []string{"3"}},
		{registry.TaskFilter{Unit: "310115000000"}, []string{"2", "4"}},
		{registry.TaskFilter{Limit: 2}, []string{"1", "2"}},
		{registry.TaskFilter{Limit: 2, After: taskNo(2)}, []string{"3", "4"}},
		{registry.TaskFilter{State: registry.TaskIssued, Unit: "310112000000", After: taskNo(1)}, []string{"5"}},
	} {
		if got := list(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.f, got, tc.want)
		}
	}
	for _, f := range []registry.TaskFilter{{State: "DONE"}, {Unit: "31"}, {Limit: -1}, {Limit: registry.MaxTaskLimit + 1}} {
		if _, err := e.reg.ListTasks(e.ctx, e.pool, f); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%+v: %v", f, err)
		}
	}
}

func TestMask(t *testing.T) {
	for _, tc := range []struct {
		f        func(string) string
		in, want string
	}{
		{registry.MaskIDNo, "310101199001011234", "310101********1234"},
		{registry.MaskIDNo, "31010819900228006X", "310108********006X"},
		{registry.MaskIDNo, "E12345678", "E*******8"},
		{registry.MaskIDNo, "AB", "**"},
		{registry.MaskIDNo, "", ""},
		{registry.MaskName, "张测试", "张**"},
		{registry.MaskName, "欧阳娜娜", "欧***"},
		{registry.MaskName, "王", "*"},
		{registry.MaskName, "", ""},
	} {
		if got := tc.f(tc.in); got != tc.want {
			t.Errorf("mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	if _, err := registry.New(registry.Config{}); err == nil || !strings.Contains(err.Error(), "Keyring") || !strings.Contains(err.Error(), "Validator") {
		t.Fatalf("empty config: %v", err)
	}
	if err := (registry.Config{}).Validate(); err == nil {
		t.Fatal("zero config valid")
	}
}
