// Package transforms cleans Ministry-bus payload JSON at the boundary of the
// hub, before the contracts validator sees it (incoming) and before a filing
// is sealed (outgoing).
//
// Cleaning is deliberately narrow and lossless in meaning:
//
//   - surrounding white space of the string values of known fields is
//     trimmed (Unicode White_Space, plus U+200B and U+FEFF);
//   - in code and number fields (personNo, idNo, controlNo, taskNo, unit,
//     officer, assignedUnit, region and category codes, sex, idType, receipt
//     code) and in dates and instants, full-width digits ０-９ and full-width
//     Ｘ/ｘ become ASCII; in dates and instants also the full-width
//     separators －：．＋ＴＺ;
//   - the check character of a resident identity number (idType 111,
//     17 digits and "x") is upper-cased.
//
// Nothing else is touched: unknown members, numbers, member order, escapes
// of unchanged strings and white space between tokens stay byte for byte, so
// that the validator still rejects what it must (an unknown field is E120,
// a name with an inner control character is E120 and so on). Input that is
// not one well-formed JSON object is returned unchanged for the validator to
// reject (E100).
package transforms

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Cleaning operations named in Change.Ops.
const (
	OpTrim            = "trim"             // surrounding white space removed
	OpFullwidthDigits = "fullwidth-digits" // ０-９, Ｘ, ｘ to ASCII
	OpFullwidthPunct  = "fullwidth-punct"  // －：．＋ＴＺ to ASCII in dates and instants
	OpUpperX          = "upper-x"          // resident ID check character x to X
)

// ErrInternal is wrapped by the error Clean returns when its own output is
// not well-formed JSON (a bug; the caller should answer E199).
var ErrInternal = errors.New("transforms: internal error")

// Change is one cleaned field. For personal fields (idNo, name, birthDate,
// hukouAddr, residAddr) Before and After are always empty and Personal is
// true, so that a Change can be journaled without plaintext personal data.
type Change struct {
	// Path names the field as the validator does: "idNo", "basis.docNo",
	// "categories[0]", "changes.residRegion".
	Path string
	// Ops lists the cleaning operations applied, in order (OpTrim ...).
	Ops []string
	// Before and After are the value before and after cleaning, "" when
	// Personal.
	Before, After string
	// Personal marks a field whose values are withheld.
	Personal bool
}

// Clean returns payload, the JSON document of a message of kind, with its
// known string fields cleaned, and one Change per cleaned field in document
// order. An unknown kind, or a payload that is not one well-formed UTF-8 JSON
// object, is returned unchanged with no changes and a nil error: the
// validator answers it (E102, E100). err is non-nil only for an internal
// failure (wrapping ErrInternal). Clean never panics and is idempotent.
func Clean(kind string, payload []byte) (cleaned []byte, changes []Change, err error) {
	spec, ok := specs[kind]
	if !ok || !utf8.Valid(payload) || !json.Valid(payload) {
		return payload, nil, nil
	}
	s := &walker{data: payload}
	s.ws()
	if s.pos >= len(payload) || payload[s.pos] != '{' {
		return payload, nil, nil
	}
	s.object(spec, "")

	// The ID check character needs idType, which may come after idNo.
	idType := ""
	for _, o := range s.found {
		if o.path == "idType" {
			idType, _ = cleanValue(o.class, o.value, "")
			break
		}
	}
	var out []byte
	last := 0
	for _, o := range s.found {
		after, ops := cleanValue(o.class, o.value, idType)
		if len(ops) == 0 {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(payload))
		}
		out = append(out, payload[last:o.start]...)
		out = appendJSONString(out, after)
		last = o.end
		c := Change{Path: o.path, Ops: ops, Personal: o.personal}
		if !o.personal {
			c.Before, c.After = o.value, after
		}
		changes = append(changes, c)
	}
	if out == nil {
		return payload, nil, nil
	}
	out = append(out, payload[last:]...)
	if !json.Valid(out) {
		return payload, nil, fmt.Errorf("%w: cleaned payload of kind %s is not JSON", ErrInternal, kind)
	}
	return out, changes, nil
}

// NormalizeIDNo returns an identity-document number as it is compared and
// blind-indexed: trimmed, full-width digits and Ｘ/ｘ in ASCII, and a trailing
// "x" after 17 digits (a resident identity number) upper-cased.
func NormalizeIDNo(s string) string {
	out, _ := cleanValue(classIDNo, s, "111")
	return out
}

// class says how a field is cleaned.
type class uint8

const (
	classText    class = iota // trim
	classCode                 // trim, full-width digits and X
	classDate                 // trim, full-width digits and separators
	classInstant              // trim, full-width digits and separators
	classIDNo                 // trim, full-width digits and X, upper-case check X
)

// field describes one known member.
type field struct {
	class    class
	personal bool
	list     bool             // an array of strings of class
	obj      map[string]field // a nested object
}

var (
	text     = field{class: classText}
	code     = field{class: classCode}
	date     = field{class: classDate}
	instant  = field{class: classInstant}
	codeList = field{class: classCode, list: true}
	textList = field{class: classText, list: true}
	personal = func(f field) field { f.personal = true; return f }
)

func merge(ms ...map[string]field) map[string]field {
	out := map[string]field{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

var (
	header = map[string]field{"personNo": code} // seq is a number: untouched
	basis  = field{obj: map[string]field{
		"docNo": text, "approvedBy": text, "approvedAt": instant, "legal": text,
	}}
	personData = map[string]field{
		"name": personal(text), "sex": code, "birthDate": personal(date),
		"hukouRegion": code, "hukouAddr": personal(text),
		"residRegion": code, "residAddr": personal(text),
		"categories": codeList, "basis": basis, "reviewBy": date,
		"unit": code, "officer": code, "registeredAt": instant,
	}
	specs = map[string]map[string]field{
		"keyperson.register": merge(header, personData, map[string]field{
			"idType": code, "idNo": personal(field{class: classIDNo}),
		}),
		"keyperson.change": merge(header, map[string]field{
			"changes": {obj: personData}, "reason": text, "changedAt": instant,
		}),
		"keyperson.cancel": merge(header, map[string]field{
			"reason": text, "basis": basis, "cancelledAt": instant,
		}),
		"keyperson.control": merge(header, map[string]field{
			"controlNo": code, "measures": textList, "regions": codeList,
			"validFrom": instant, "validTo": instant, "basis": basis,
		}),
		"keyperson.release": merge(header, map[string]field{
			"controlNo": code, "reason": text, "releasedAt": instant,
		}),
		"keyperson.task": merge(header, map[string]field{
			"taskNo": code, "items": textList, "assignedUnit": code,
			"deadline": instant, "note": text,
		}),
		"keyperson.task.sign": merge(header, map[string]field{
			"taskNo": code, "unit": code, "officer": code, "signedAt": instant,
		}),
		"receipt": {
			"ref": text, "status": text, "code": code, "reason": text, "at": instant,
		},
	}
)

// cleanValue cleans s as a field of class c and returns the result and the
// operations that changed it. idType is the (cleaned) idType of the payload,
// for the check character of an idNo.
func cleanValue(c class, s, idType string) (string, []string) {
	var ops []string
	if t := strings.TrimFunc(s, isTrimmed); t != s {
		s, ops = t, append(ops, OpTrim)
	}
	if c != classText {
		var digits, punct bool
		s, digits, punct = fold(s, c == classDate || c == classInstant)
		if digits {
			ops = append(ops, OpFullwidthDigits)
		}
		if punct {
			ops = append(ops, OpFullwidthPunct)
		}
	}
	if c == classIDNo && idType == "111" && len(s) == 18 && s[17] == 'x' && allDigits(s[:17]) {
		s, ops = s[:17]+"X", append(ops, OpUpperX)
	}
	return s, ops
}

func isTrimmed(r rune) bool {
	return unicode.IsSpace(r) || r == '\u200b' || r == '\ufeff'
}

// fold maps full-width digits and Ｘ/ｘ, and with separators also －：．＋ＴＺ,
// to ASCII.
func fold(s string, separators bool) (out string, digits, punct bool) {
	out = strings.Map(func(r rune) rune {
		switch {
		case r >= '０' && r <= '９', r == 'Ｘ', r == 'ｘ':
			digits = true
			return r - fullwidthOffset
		case separators && strings.ContainsRune("－：．＋ＴＺ", r):
			punct = true
			return r - fullwidthOffset
		}
		return r
	}, s)
	return out, digits, punct
}

// fullwidthOffset is the distance from a full-width form (U+FF01-U+FF5E) to
// its ASCII character.
const fullwidthOffset = 0xFF01 - '!'

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// appendJSONString appends s as a JSON string literal. s is valid UTF-8.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == '"' || b == '\\':
			dst = append(dst, '\\', b)
		case b == '\n':
			dst = append(dst, '\\', 'n')
		case b == '\r':
			dst = append(dst, '\\', 'r')
		case b == '\t':
			dst = append(dst, '\\', 't')
		case b < 0x20:
			dst = append(dst, `\u00`...)
			dst = append(dst, "0123456789abcdef"[b>>4], "0123456789abcdef"[b&0xf])
		default:
			dst = append(dst, b)
		}
	}
	return append(dst, '"')
}

// occurrence is one string value of a known field.
type occurrence struct {
	start, end int // of the JSON string literal, quotes included
	value      string
	path       string
	class      class
	personal   bool
}

// walker reads a document already known to be well-formed JSON and records
// the string values of known fields.
type walker struct {
	data  []byte
	pos   int
	found []occurrence
}

func (w *walker) ws() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// str reads the string literal at pos and returns its bounds and value.
func (w *walker) str() (start, end int, value string) {
	start = w.pos
	i := start + 1
	for i < len(w.data) && w.data[i] != '"' {
		if w.data[i] == '\\' {
			i++
		}
		i++
	}
	end = min(i+1, len(w.data))
	w.pos = end
	if err := json.Unmarshal(w.data[start:end], &value); err != nil {
		return start, end, "" // cannot happen on well-formed JSON
	}
	return start, end, value
}

// skip skips the value at pos; nested values without recursion.
func (w *walker) skip() {
	if w.pos >= len(w.data) {
		return
	}
	switch w.data[w.pos] {
	case '"':
		w.str()
		return
	case '{', '[':
	default: // number, true, false, null
		for w.pos < len(w.data) && !strings.ContainsRune(",}] \t\n\r", rune(w.data[w.pos])) {
			w.pos++
		}
		return
	}
	depth := 0
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case '"':
			w.str()
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				w.pos++
				return
			}
		}
		w.pos++
	}
}

// object walks the object at pos ('{') whose known members are spec.
func (w *walker) object(spec map[string]field, path string) {
	w.pos++ // '{'
	for {
		w.ws()
		if w.pos >= len(w.data) || w.data[w.pos] == '}' {
			w.pos++
			return
		}
		if w.data[w.pos] == ',' {
			w.pos++
			continue
		}
		_, _, key := w.str()
		w.ws()
		w.pos++ // ':'
		w.ws()
		f, known := spec[key]
		if !known {
			w.skip()
			continue
		}
		w.value(f, joinPath(path, key))
	}
}

func (w *walker) value(f field, path string) {
	if w.pos >= len(w.data) {
		return
	}
	switch c := w.data[w.pos]; {
	case f.obj != nil && c == '{':
		w.object(f.obj, path)
	case f.list && c == '[':
		w.pos++
		for i := 0; ; {
			w.ws()
			if w.pos >= len(w.data) || w.data[w.pos] == ']' {
				w.pos++
				return
			}
			if w.data[w.pos] == ',' {
				w.pos++
				i++
				continue
			}
			if w.data[w.pos] == '"' {
				w.leaf(f, path+"["+strconv.Itoa(i)+"]")
			} else {
				w.skip()
			}
		}
	case f.obj == nil && !f.list && c == '"':
		w.leaf(f, path)
	default:
		w.skip()
	}
}

func (w *walker) leaf(f field, path string) {
	start, end, v := w.str()
	w.found = append(w.found, occurrence{start: start, end: end, value: v, path: path, class: f.class, personal: f.personal})
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
