package contracts

import (
	"fmt"
	"slices"
	"time"
)

// ValidatePayload decodes payload, the JSON document of a message of kind,
// strictly and checks every rule of shared/specs/mps-bus.md. It returns
// *Person, *Change, *Cancel, *Control, *Release, *Task, *TaskSign or
// *Receipt, or an error: one wrapping ErrUnknownKind (E102), one wrapping
// ErrNotObject (E100), or a *FieldError for the first violation in the
// field order of the spec. ErrorCode maps any of them to its bus code.
func (v *Validator) ValidatePayload(kind string, payload []byte) (any, error) {
	if !Known(kind) {
		return nil, fmt.Errorf("%w: %.64q", ErrUnknownKind, kind)
	}
	obj, err := parsePayload(payload)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindRegister:
		return result(v.register(obj))
	case KindChange:
		return result(v.change(obj))
	case KindCancel:
		return result(v.cancel(obj))
	case KindControl:
		return result(v.control(obj))
	case KindRelease:
		return result(v.release(obj))
	case KindTask:
		return result(v.task(obj))
	case KindTaskSign:
		return result(v.taskSign(obj))
	default: // KindReceipt
		return result(v.receipt(obj))
	}
}

// result keeps a nil *T out of the returned interface.
func result[T any](p *T, fe *FieldError) (any, error) {
	if fe != nil {
		return nil, fe
	}
	return p, nil
}

// changeImmutable are Person members a change cannot set.
var changeImmutable = []string{"personNo", "seq", "idType", "idNo"}

func (v *Validator) change(obj *object) (*Change, *FieldError) {
	f := v.newFields(obj, "", []string{"personNo", "seq", "changes", "reason", "changedAt"})
	c := &Change{Header: f.header()}
	if changes, ok := f.object("changes", true); ok && f.err == nil {
		g := &fields{v: v, obj: changes, path: "changes"}
		for _, k := range changes.keys {
			switch {
			case slices.Contains(changeImmutable, k):
				g.fail(CodeSchema, g.at(k), "不能通过变更修改")
			case !slices.Contains(personDataFields, k):
				g.fail(CodeSchema, g.at(k), "未知字段（接口规范未定义该字段）")
			}
		}
		if len(changes.keys) == 0 {
			g.fail(CodeSchema, "changes", "至少应包含一个变更字段")
		}
		c.Changes = g.personData(false, nil)
		f.err = g.err
	}
	c.Reason = f.text("reason", 1, 500, multiLine, true)
	c.ChangedAt = f.instant("changedAt")
	if f.err != nil {
		return nil, f.err
	}
	return c, nil
}

func (v *Validator) cancel(obj *object) (*Cancel, *FieldError) {
	f := v.newFields(obj, "", []string{"personNo", "seq", "reason", "basis", "cancelledAt"})
	c := &Cancel{Header: f.header()}
	c.Reason = f.text("reason", 1, 500, multiLine, true)
	if b := f.basis("basis"); b != nil {
		c.Basis = *b
	}
	c.CancelledAt = f.instant("cancelledAt")
	if f.err != nil {
		return nil, f.err
	}
	return c, nil
}

// maxControl is the longest validity of a control.
const maxControl = 180 * 24 * time.Hour

func (v *Validator) control(obj *object) (*Control, *FieldError) {
	f := v.newFields(obj, "", []string{"personNo", "seq", "controlNo", "level", "measures", "regions", "validFrom", "validTo", "basis"})
	c := &Control{Header: f.header()}
	c.ControlNo = f.check("controlNo", true, checkSerialNo)
	c.Level = int(f.integer("level", 1, 3))
	c.Measures = f.list("measures", true, 1, 3, func(s string) string {
		return checkEnum(s, MeasureNotify, MeasureVerify, MeasureReport)
	})
	c.Regions = f.list("regions", true, 1, 32, func(s string) string { return checkDigits(s, 6, 6) })
	if i := slices.Index(c.Regions, Nationwide); i >= 0 && len(c.Regions) > 1 {
		f.fail(CodeSchema, fmt.Sprintf("regions[%d]", i), "全国（000000）只能单独出现")
	}
	if len(c.Regions) != 1 || c.Regions[0] != Nationwide {
		f.listCodes("regions", c.Regions, isRegion, "现行 GB/T 2260 行政区划代码表")
	}
	c.ValidFrom = f.instant("validFrom")
	c.ValidTo = f.instant("validTo")
	if f.err == nil {
		switch d := c.ValidTo.Sub(c.ValidFrom); {
		case d <= 0:
			f.fail(CodeSchema, "validTo", "应晚于 validFrom")
		case d > maxControl:
			f.fail(CodeSchema, "validTo", "不能晚于 validFrom 之后 180 天")
		}
	}
	if b := f.basis("basis"); b != nil {
		c.Basis = *b
	}
	if f.err != nil {
		return nil, f.err
	}
	return c, nil
}

func (v *Validator) release(obj *object) (*Release, *FieldError) {
	f := v.newFields(obj, "", []string{"personNo", "seq", "controlNo", "reason", "releasedAt"})
	r := &Release{Header: f.header()}
	r.ControlNo = f.check("controlNo", true, checkSerialNo)
	r.Reason = f.text("reason", 1, 500, multiLine, true)
	r.ReleasedAt = f.instant("releasedAt")
	if f.err != nil {
		return nil, f.err
	}
	return r, nil
}

func (v *Validator) task(obj *object) (*Task, *FieldError) {
	f := v.newFields(obj, "", []string{"personNo", "seq", "taskNo", "items", "assignedUnit", "deadline", "note"})
	t := &Task{Header: f.header()}
	t.TaskNo = f.digits("taskNo", 20, 20)
	t.Items = f.list("items", true, 1, 4, func(s string) string {
		return checkEnum(s, ItemIdentity, ItemAddress, ItemContact, ItemStatus)
	})
	t.AssignedUnit = f.digits("assignedUnit", 12, 12)
	t.Deadline = f.instant("deadline")
	t.Note = f.text("note", 0, 500, multiLine, false)
	if f.err != nil {
		return nil, f.err
	}
	return t, nil
}

func (v *Validator) taskSign(obj *object) (*TaskSign, *FieldError) {
	f := v.newFields(obj, "", []string{"personNo", "seq", "taskNo", "unit", "officer", "signedAt"})
	s := &TaskSign{Header: f.header()}
	s.TaskNo = f.digits("taskNo", 20, 20)
	s.Unit = f.digits("unit", 12, 12)
	s.Officer = f.digits("officer", 6, 8)
	s.SignedAt = f.instant("signedAt")
	if f.err != nil {
		return nil, f.err
	}
	return s, nil
}

func (v *Validator) receipt(obj *object) (*Receipt, *FieldError) {
	f := v.newFields(obj, "", []string{"ref", "status", "code", "reason", "at"})
	r := &Receipt{}
	r.Ref = f.check("ref", true, checkUUID)
	r.Status = f.check("status", true, func(s string) string {
		return checkEnum(s, StatusAccepted, StatusRejected, StatusDuplicate)
	})
	r.Code = f.check("code", true, checkResultCode)
	if f.err == nil {
		switch {
		case r.Status == StatusAccepted && r.Code != CodeAccepted:
			f.fail(CodeSchema, "code", "状态 ACCEPTED 的代码应为 0000")
		case r.Status == StatusRejected && r.Code == CodeAccepted:
			f.fail(CodeSchema, "code", "状态 REJECTED 的代码不能为 0000")
		}
	}
	minReason := 1
	if r.Code == CodeAccepted {
		minReason = 0
	}
	r.Reason = f.text("reason", minReason, 500, multiLine, true)
	r.At = f.instant("at")
	if f.err != nil {
		return nil, f.err
	}
	return r, nil
}

// checkResultCode checks a receipt code: "0000" or "E" and three digits.
func checkResultCode(s string) string {
	if s == CodeAccepted || len(s) == 4 && s[0] == 'E' && isDigits(s[1:], 3, 3) {
		return ""
	}
	return "应为 0000 或 E 加 3 位数字"
}
