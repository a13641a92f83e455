package contracts

import (
	"fmt"
	"time"
)

// Member names of Person after the header and the identity document, in the
// order of the spec table; a Change may set any of them.
var personDataFields = []string{
	"name", "sex", "birthDate", "hukouRegion", "hukouAddr", "residRegion", "residAddr",
	"categories", "basis", "reviewBy", "unit", "officer", "registeredAt",
}

var (
	registerFields = append([]string{"personNo", "seq", "idType", "idNo"}, personDataFields...)
	basisFields    = []string{"docNo", "approvedBy", "approvedAt", "legal"}
)

func (v *Validator) register(obj *object) (*Person, *FieldError) {
	f := v.newFields(obj, "", registerFields)
	p := &Person{Header: f.header()}
	p.IDType = f.code("idType", true, func(s string) string { return checkDigits(s, 3, 3) }, isIDType, "证件类型代码表")
	var id *residentID
	if p.IDType == IDTypeResidentCard {
		if s, ok := f.str("idNo", true); ok {
			p.IDNo = s
			parsed, code, detail := parseResidentID(s)
			if code != "" {
				f.fail(code, f.at("idNo"), detail)
			}
			id = &parsed
		}
	} else {
		p.IDNo = f.text("idNo", 1, 32, singleLine, true)
	}
	d := f.personData(true, id)
	if f.err != nil {
		return nil, f.err
	}
	p.Name, p.Sex, p.BirthDate, p.HukouRegion = *d.Name, *d.Sex, *d.BirthDate, *d.HukouRegion
	p.HukouAddr, p.ResidRegion, p.ResidAddr = deref(d.HukouAddr), deref(d.ResidRegion), deref(d.ResidAddr)
	p.Categories, p.Basis, p.ReviewBy = d.Categories, *d.Basis, *d.ReviewBy
	p.Unit, p.Officer, p.RegisteredAt = *d.Unit, *d.Officer, *d.RegisteredAt
	return p, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// personData reads the Person data fields in spec order. In a register
// (required) the required ones must be present and id, when not nil, is the
// resident ID that sex and birthDate must agree with; in a change every field
// is optional. Only the fields present are set.
func (f *fields) personData(required bool, id *residentID) PersonChanges {
	var c PersonChanges
	if required || f.has("name") {
		c.Name = ptr(f.check("name", true, checkName))
	}
	if required || f.has("sex") {
		c.Sex = ptr(f.code("sex", true, func(s string) string { return checkDigits(s, 1, 1) }, isSex, " GB/T 2261.1 性别代码表"))
		if id != nil && f.err == nil && *c.Sex != id.sex {
			f.fail(CodeIDNumber, f.at("sex"), "与公民身份号码第 17 位不符（奇数为男性 1，偶数为女性 2）")
		}
	}
	if required || f.has("birthDate") {
		s, _ := f.date("birthDate", true)
		c.BirthDate = &s
		if id != nil && f.err == nil && s != id.birthDate {
			f.fail(CodeIDNumber, f.at("birthDate"), fmt.Sprintf("与公民身份号码中的出生日期 %s 不符", id.birthDate))
		}
	}
	if required || f.has("hukouRegion") {
		c.HukouRegion = ptr(f.county("hukouRegion", true))
	}
	if f.has("hukouAddr") {
		c.HukouAddr = ptr(f.text("hukouAddr", 0, 200, singleLine, false))
	}
	if f.has("residRegion") {
		c.ResidRegion = ptr(f.county("residRegion", false))
	}
	if f.has("residAddr") {
		c.ResidAddr = ptr(f.text("residAddr", 0, 200, singleLine, false))
	}
	if required || f.has("categories") {
		c.Categories = f.list("categories", true, 1, 8, func(s string) string { return checkDigits(s, 4, 4) })
		f.listCodes("categories", c.Categories, f.v.categories.Has, "重点人员类别代码表")
	}
	if required || f.has("basis") {
		c.Basis = f.basis("basis")
	}
	if required || f.has("reviewBy") {
		s, review := f.date("reviewBy", true)
		c.ReviewBy = &s
		if at, ok := f.peekInstant("registeredAt"); ok && f.err == nil {
			f.reviewWithinYear(review, at)
		}
	}
	if required || f.has("unit") {
		c.Unit = ptr(f.digits("unit", 12, 12))
	}
	if required || f.has("officer") {
		c.Officer = ptr(f.digits("officer", 6, 8))
	}
	if required || f.has("registeredAt") {
		c.RegisteredAt = ptr(f.instant("registeredAt"))
	}
	return c
}

// reviewWithinYear checks that reviewBy lies from the local date of
// registeredAt to one year after it, bounds inclusive; one year after
// 29 February is 28 February.
func (f *fields) reviewWithinYear(reviewBy, registeredAt time.Time) {
	y, m, d := registeredAt.In(f.v.loc).Date()
	from := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if m == time.February && d == 29 {
		d = 28
	}
	to := time.Date(y+1, m, d, 0, 0, 0, 0, time.UTC)
	if reviewBy.Before(from) || reviewBy.After(to) {
		f.fail(CodeSchema, f.at("reviewBy"), fmt.Sprintf("应在登记日期 %s 至 %s 之间（至多 1 年）", from.Format(time.DateOnly), to.Format(time.DateOnly)))
	}
}

func ptr[T any](v T) *T { return &v }

// basis reads the Basis at member name (required).
func (f *fields) basis(name string) *Basis {
	var b Basis
	ok := f.nested(name, true, basisFields, func(g *fields) {
		b.DocNo = g.text("docNo", 1, 64, singleLine, true)
		b.ApprovedBy = g.text("approvedBy", 1, 64, singleLine, true)
		b.ApprovedAt = g.instant("approvedAt")
		b.Legal = g.text("legal", 1, 500, multiLine, true)
	})
	if !ok {
		return nil
	}
	return &b
}

// header reads personNo and seq.
func (f *fields) header() Header {
	return Header{
		PersonNo: f.check("personNo", true, checkSerialNo),
		Seq:      f.integer("seq", 1, maxSeq),
	}
}

// maxSeq is the largest integer every JSON implementation holds exactly.
const maxSeq = 1<<53 - 1
