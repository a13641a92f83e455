package contracts

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// fields reads the members of one JSON object in the order its caller asks
// for them and keeps the first contract violation: once err is set, every
// further read is a no-op returning zero values.
type fields struct {
	v    *Validator
	obj  *object
	path string // of the object; "" at the top level
	err  *FieldError
}

// newFields reads obj at path. A member not in known is E120, in document
// order and before any other check of the object.
func (v *Validator) newFields(obj *object, path string, known []string) *fields {
	f := &fields{v: v, obj: obj, path: path}
	for _, k := range obj.keys {
		if !slices.Contains(known, k) {
			f.fail(CodeSchema, f.at(k), "未知字段（接口规范未定义该字段）")
			break
		}
	}
	return f
}

func (f *fields) at(name string) string { return joinPath(f.path, name) }

func (f *fields) fail(code, path, detail string) {
	if f.err == nil {
		f.err = fieldErr(code, path, detail)
	}
}

// has reports whether member name is present and nothing has failed yet.
func (f *fields) has(name string) bool {
	_, ok := f.obj.vals[name]
	return ok && f.err == nil
}

// value returns member name; a missing required member is E120.
func (f *fields) value(name string, required bool) (any, bool) {
	if f.err != nil {
		return nil, false
	}
	v, ok := f.obj.vals[name]
	if !ok && required {
		f.fail(CodeSchema, f.at(name), "缺少必填字段")
	}
	return v, ok
}

// str returns string member name; ok is false when absent or failed.
func (f *fields) str(name string, required bool) (s string, ok bool) {
	v, ok := f.value(name, required)
	if !ok {
		return "", false
	}
	if s, ok = v.(string); !ok {
		f.fail(CodeSchema, f.at(name), "应为字符串，实为"+typeName(v))
	}
	return s, ok
}

// check reads string member name and applies the shape check shape (E120).
func (f *fields) check(name string, required bool, shape func(string) string) string {
	s, ok := f.str(name, required)
	if ok {
		if d := shape(s); d != "" {
			f.fail(CodeSchema, f.at(name), d)
		}
	}
	return s
}

func (f *fields) text(name string, min, max int, kind textKind, required bool) string {
	return f.check(name, required, func(s string) string { return checkText(s, min, max, kind) })
}

func (f *fields) digits(name string, min, max int) string {
	return f.check(name, true, func(s string) string { return checkDigits(s, min, max) })
}

func (f *fields) date(name string, required bool) (string, time.Time) {
	var t time.Time
	s := f.check(name, required, func(s string) (d string) { t, d = parseDate(s); return d })
	return s, t
}

func (f *fields) instant(name string) time.Time {
	var t time.Time
	f.check(name, true, func(s string) (d string) { t, d = parseInstant(s); return d })
	return t
}

// peekInstant parses member name if it is a well-formed instant, without
// reporting anything: for relations with a field read later.
func (f *fields) peekInstant(name string) (time.Time, bool) {
	s, ok := f.obj.vals[name].(string)
	if !ok {
		return time.Time{}, false
	}
	t, bad := parseInstant(s)
	return t, bad == ""
}

// code reads a code of a code table: shape first (E120), then membership
// (E122).
func (f *fields) code(name string, required bool, shape func(string) string, known func(string) bool, table string) string {
	s := f.check(name, required, shape)
	if f.err == nil && s != "" && !known(s) {
		f.fail(CodeNotInTable, f.at(name), fmt.Sprintf("代码 %s 不在%s中", s, table))
	}
	return s
}

func (f *fields) county(name string, required bool) string {
	return f.code(name, required, func(s string) string { return checkDigits(s, 6, 6) }, isCounty, "现行 GB/T 2260 县级行政区划代码表")
}

// integer reads a JSON integer written without fraction or exponent.
func (f *fields) integer(name string, min, max int64) int64 {
	v, ok := f.value(name, true)
	if !ok {
		return 0
	}
	num, isNum := v.(json.Number)
	if !isNum {
		f.fail(CodeSchema, f.at(name), "应为整数，实为"+typeName(v))
		return 0
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	switch {
	case err != nil && !isInteger(string(num)):
		f.fail(CodeSchema, f.at(name), "应为整数（不带小数点或指数）")
	case err != nil || n < min || n > max:
		f.fail(CodeSchema, f.at(name), fmt.Sprintf("应在 %d-%d 之间", min, max))
	}
	return n
}

// isInteger reports whether a JSON number literal has no fraction or exponent.
func isInteger(num string) bool {
	if len(num) > 0 && num[0] == '-' {
		num = num[1:]
	}
	return isDigits(num, 1, len(num))
}

// object reads object member name.
func (f *fields) object(name string, required bool) (*object, bool) {
	v, ok := f.value(name, required)
	if !ok {
		return nil, false
	}
	o, ok := v.(*object)
	if !ok {
		f.fail(CodeSchema, f.at(name), "应为对象，实为"+typeName(v))
	}
	return o, ok
}

// list reads an array of min to max distinct strings, each passing shape
// (E120 at name[i]).
func (f *fields) list(name string, required bool, min, max int, shape func(string) string) []string {
	v, ok := f.value(name, required)
	if !ok {
		return nil
	}
	arr, ok := v.([]any)
	if !ok {
		f.fail(CodeSchema, f.at(name), "应为数组，实为"+typeName(v))
		return nil
	}
	if len(arr) < min || len(arr) > max {
		f.fail(CodeSchema, f.at(name), fmt.Sprintf("应有 %d-%d 项，实有 %d 项", min, max, len(arr)))
		return nil
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		at := fmt.Sprintf("%s[%d]", f.at(name), i)
		s, ok := e.(string)
		if !ok {
			f.fail(CodeSchema, at, "应为字符串，实为"+typeName(e))
			return nil
		}
		if d := shape(s); d != "" {
			f.fail(CodeSchema, at, d)
			return nil
		}
		if j := slices.Index(out[:i], s); j >= 0 {
			f.fail(CodeSchema, at, fmt.Sprintf("与第 %d 项重复", j))
			return nil
		}
		out[i] = s
	}
	return out
}

// listCodes checks every member of a list read by list against a code table
// (E122 at name[i]).
func (f *fields) listCodes(name string, codes []string, known func(string) bool, table string) {
	for i, c := range codes {
		if f.err == nil && !known(c) {
			f.fail(CodeNotInTable, fmt.Sprintf("%s[%d]", f.at(name), i), fmt.Sprintf("代码 %s 不在%s中", c, table))
		}
	}
}

// nested reads the object at member name with read and adopts its error.
func (f *fields) nested(name string, required bool, known []string, read func(*fields)) bool {
	obj, ok := f.object(name, required)
	if !ok || f.err != nil {
		return false
	}
	sub := f.v.newFields(obj, f.at(name), known)
	read(sub)
	f.err = sub.err
	return f.err == nil
}
