package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The canonical entry (version 1) is the byte string
//
//	"zhianhub-audit-entry/v1"
//	|| F(seq) || F(at) || F(actor) || F(unit) || F(role) || F(action)
//	|| F(object) || F(result) || F(reason) || F(correlation_id) || F(detail)
//
// where F(x) is the 4-byte big-endian length of x followed by x, and
//
//   - seq is written in decimal ASCII, without sign or leading zeros;
//   - at is the time in UTC with exactly six fraction digits, the precision
//     PostgreSQL stores: 2006-01-02T15:04:05.000000Z (the writer truncates
//     times to microseconds before hashing, so the stored value re-hashes to
//     the same bytes);
//   - the text columns are their UTF-8 bytes;
//   - detail is the canonical JSON of the detail object (CanonicalJSON).
//
// The entry hash is SM3(prev_hash || canonical entry): every column except
// hash is covered, prev_hash as the 32-byte hash prefix. The first entry's
// prev_hash is 32 zero bytes.
const entryDomain = "zhianhub-audit-entry/v1"

// TimeLayout is how times appear in the canonical entry and checkpoint text.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Limits on what an entry may hold.
const (
	// MaxFieldSize bounds each text column, in bytes.
	MaxFieldSize = 16 << 10
	// MaxDetailSize bounds the canonical JSON of Detail, in bytes.
	MaxDetailSize = 64 << 10
	// maxJSONDepth bounds the nesting of Detail.
	maxJSONDepth = 64
	// maxNumberDigits bounds the digits before and after the decimal point
	// of a number in Detail, well inside what jsonb (numeric) accepts.
	maxNumberDigits = 1000
)

// canonicalTime returns t as stored: UTC, truncated to microseconds.
func canonicalTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// entryTail encodes the canonical entry after the seq field; at must already
// be canonical and detail canonical JSON.
func entryTail(at time.Time, actor, unit, role, action, object, result, reason, corr, detail string) []byte {
	n := 11*4 + len(TimeLayout) + len(actor) + len(unit) + len(role) + len(action) +
		len(object) + len(result) + len(reason) + len(corr) + len(detail)
	b := make([]byte, 0, n)
	b = appendField(b, at.Format(TimeLayout))
	for _, s := range []string{actor, unit, role, action, object, result, reason, corr, detail} {
		b = appendField(b, s)
	}
	return b
}

// entryHead encodes the canonical entry up to and including the seq field.
func entryHead(seq int64) []byte {
	b := make([]byte, 0, len(entryDomain)+4+20)
	b = append(b, entryDomain...)
	return appendField(b, strconv.FormatInt(seq, 10))
}

// checkText validates a text column: valid UTF-8, no NUL (PostgreSQL text
// cannot hold it), at most MaxFieldSize bytes.
func checkText(name, s string, required bool) error {
	switch {
	case required && s == "":
		return fmt.Errorf("%s is required", name)
	case len(s) > MaxFieldSize:
		return fmt.Errorf("%s is longer than %d bytes", name, MaxFieldSize)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", name)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s contains NUL", name)
	}
	return nil
}

// CanonicalJSON returns the canonical form of a JSON object, used both to
// store Detail and to hash it. It is valid JSON, and it is a function of the
// JSON value only, so the text PostgreSQL gives back for the stored jsonb
// canonicalizes to the same bytes:
//
//   - no insignificant white space;
//   - object members sorted by key (byte-wise on UTF-8); of duplicate keys the
//     last wins, as in jsonb;
//   - strings: '"' and '\' escaped with a backslash, U+0008, U+0009, U+000A,
//     U+000C, U+000D as \b \t \n \f \r, other characters below U+0020 as
//     \u00xx (lower-case hex), everything else as raw UTF-8; U+0000 is
//     refused (jsonb cannot hold it);
//   - numbers by exact decimal value: no sign on zero, integers with up to 21
//     digits written out ("100"), a fraction as "1.5" or "0.00012" when it
//     has at most 5 zeros after the point, anything else as
//     <digits>e<exponent> with no trailing zeros in the digits ("15e30",
//     "1e-9"); at most 1000 digits before and after the point.
//
// null is taken as the empty object; any other non-object is refused.
func CanonicalJSON(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("detail: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("detail: trailing data after the JSON value")
	}
	switch v.(type) {
	case nil:
		return []byte("{}"), nil
	case map[string]any:
	default:
		return nil, errors.New("detail: not a JSON object")
	}
	var buf bytes.Buffer
	if err := writeCanonical(&buf, v, 0); err != nil {
		return nil, fmt.Errorf("detail: %w", err)
	}
	return buf.Bytes(), nil
}

func writeCanonical(buf *bytes.Buffer, v any, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("nested deeper than %d", maxJSONDepth)
	}
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case json.Number:
		s, err := canonicalNumber(string(x))
		if err != nil {
			return err
		}
		buf.WriteString(s)
	case string:
		return writeString(buf, x)
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, e, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeString(buf, k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeCanonical(buf, x[k], depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("unexpected JSON value %T", v)
	}
	return nil
}

const hexDigits = "0123456789abcdef"

func writeString(buf *bytes.Buffer, s string) error {
	// The decoder hands out valid UTF-8 (it replaces invalid bytes by U+FFFD).
	buf.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0:
			return errors.New(`string contains U+0000, which jsonb cannot store`)
		case c == '"' || c == '\\':
			buf.WriteByte('\\')
			buf.WriteByte(c)
		case c == '\b':
			buf.WriteString(`\b`)
		case c == '\t':
			buf.WriteString(`\t`)
		case c == '\n':
			buf.WriteString(`\n`)
		case c == '\f':
			buf.WriteString(`\f`)
		case c == '\r':
			buf.WriteString(`\r`)
		case c < 0x20:
			buf.WriteString(`\u00`)
			buf.WriteByte(hexDigits[c>>4])
			buf.WriteByte(hexDigits[c&0xf])
		default:
			buf.WriteByte(c)
		}
	}
	buf.WriteByte('"')
	return nil
}

// canonicalNumber rewrites a JSON number literal in the canonical form
// described at CanonicalJSON.
func canonicalNumber(s string) (string, error) {
	orig := s
	bad := func() (string, error) { return "", fmt.Errorf("invalid number %q", orig) }
	neg := false
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	intPart, fracPart, _ := strings.Cut(mant, ".")
	if intPart == "" || !allDigits(intPart) || !allDigits(fracPart) {
		return bad()
	}
	exp := 0
	if hasExp {
		e := strings.TrimPrefix(strings.TrimPrefix(expPart, "+"), "-")
		if e == "" || !allDigits(e) {
			return bad()
		}
		e = strings.TrimLeft(e, "0")
		if len(e) > 6 {
			return "", fmt.Errorf("number %q out of range", orig)
		}
		if e != "" {
			exp, _ = strconv.Atoi(e)
		}
		if strings.HasPrefix(expPart, "-") {
			exp = -exp
		}
	}
	digits := strings.TrimLeft(intPart+fracPart, "0")
	exp -= len(fracPart)
	if digits == "" {
		return "0", nil
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	digits = trimmed
	// value = digits * 10^exp
	if len(digits)+exp > maxNumberDigits || -exp > maxNumberDigits {
		return "", fmt.Errorf("number %q out of range", orig)
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case exp >= 0 && len(digits)+exp <= 21:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", exp))
	case exp < 0 && -exp < len(digits):
		p := len(digits) + exp
		b.WriteString(digits[:p])
		b.WriteByte('.')
		b.WriteString(digits[p:])
	case exp < 0 && -exp-len(digits) <= 5:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -exp-len(digits)))
		b.WriteString(digits)
	default:
		b.WriteString(digits)
		b.WriteByte('e')
		b.WriteString(strconv.Itoa(exp))
	}
	return b.String(), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
