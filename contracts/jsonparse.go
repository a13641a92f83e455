package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// object is a decoded JSON object that keeps its member order.
// Values are *object, []any, string, json.Number, bool or nil.
type object struct {
	keys []string
	vals map[string]any
}

// parsePayload decodes data, which must be one UTF-8 JSON object. Syntax
// errors wrap ErrNotObject; a member name that occurs twice in one object is
// a *FieldError (E120) naming it.
func parsePayload(data []byte) (*object, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrNotObject)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%w: not well-formed JSON", ErrNotObject)
	}
	sc := scanner{data: data}
	sc.skipSpace()
	if sc.i >= len(data) || data[sc.i] != '{' {
		return nil, fmt.Errorf("%w: the top-level value is not an object", ErrNotObject)
	}
	sc.i++
	obj, err := sc.object("")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotObject, err)
	}
	if sc.dup != nil {
		return nil, sc.dup
	}
	return obj, nil
}

// scanner builds the tree of a document that json.Valid accepted and that
// is valid UTF-8, and records the first duplicated member name. It reads
// the bytes directly: json.Decoder.Token allocated per token and cost more
// than the rest of the payload checks together.
type scanner struct {
	data []byte
	i    int
	dup  *FieldError
}

var errUnexpected = errors.New("unexpected token")

func (s *scanner) skipSpace() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object reads the members of an object whose '{' was consumed.
func (s *scanner) object(path string) (*object, error) {
	o := &object{vals: make(map[string]any)}
	s.skipSpace()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return o, nil
	}
	for {
		s.skipSpace()
		if s.i >= len(s.data) || s.data[s.i] != '"' {
			return nil, errUnexpected
		}
		key, err := s.str()
		if err != nil {
			return nil, err
		}
		s.skipSpace()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return nil, errUnexpected
		}
		s.i++
		at := joinPath(path, key)
		val, err := s.value(at)
		if err != nil {
			return nil, err
		}
		if _, seen := o.vals[key]; seen {
			if s.dup == nil {
				s.dup = fieldErr(CodeSchema, at, "字段重复出现")
			}
		} else {
			o.keys = append(o.keys, key)
			o.vals[key] = val
		}
		s.skipSpace()
		if s.i >= len(s.data) {
			return nil, errUnexpected
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return o, nil
		default:
			return nil, errUnexpected
		}
	}
}

func (s *scanner) value(path string) (any, error) {
	s.skipSpace()
	if s.i >= len(s.data) {
		return nil, errUnexpected
	}
	switch c := s.data[s.i]; {
	case c == '{':
		s.i++
		return s.object(path)
	case c == '[':
		s.i++
		arr := []any{}
		s.skipSpace()
		if s.i < len(s.data) && s.data[s.i] == ']' {
			s.i++
			return arr, nil
		}
		for n := 0; ; n++ {
			v, err := s.value(path + "[" + strconv.Itoa(n) + "]")
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
			s.skipSpace()
			if s.i >= len(s.data) {
				return nil, errUnexpected
			}
			switch s.data[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return arr, nil
			default:
				return nil, errUnexpected
			}
		}
	case c == '"':
		return s.str()
	case c == 't' && bytes.HasPrefix(s.data[s.i:], []byte("true")):
		s.i += 4
		return true, nil
	case c == 'f' && bytes.HasPrefix(s.data[s.i:], []byte("false")):
		s.i += 5
		return false, nil
	case c == 'n' && bytes.HasPrefix(s.data[s.i:], []byte("null")):
		s.i += 4
		return nil, nil
	case c == '-' || c >= '0' && c <= '9':
		start := s.i
		for s.i < len(s.data) && strings.IndexByte("+-.0123456789eE", s.data[s.i]) >= 0 {
			s.i++
		}
		return json.Number(s.data[start:s.i]), nil
	}
	return nil, errUnexpected
}

// str reads a string whose opening quote is at s.i. Without escapes the
// bytes are the value (the document is valid UTF-8); with escapes
// encoding/json decodes them.
func (s *scanner) str() (string, error) {
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case '\\':
			escaped = true
			s.i += 2
			continue
		case '"':
			s.i++
			if !escaped {
				return string(s.data[start+1 : s.i-1]), nil
			}
			var v string
			if err := json.Unmarshal(s.data[start:s.i], &v); err != nil {
				return "", err
			}
			return v, nil
		}
		s.i++
	}
	return "", errUnexpected
}

// joinPath appends member key to path. Keys that are not plain names are
// quoted and cut to 32 characters so that a path stays readable.
func joinPath(path, key string) string {
	if !plainName(key) {
		if utf8.RuneCountInString(key) > 32 {
			key = string([]rune(key)[:32]) + "…"
		}
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func plainName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// typeName names the JSON type of a decoded value, in Chinese.
func typeName(v any) string {
	switch v.(type) {
	case *object:
		return "对象"
	case []any:
		return "数组"
	case string:
		return "字符串"
	case json.Number:
		return "数字"
	case bool:
		return "布尔值"
	case nil:
		return "null"
	}
	return "未知类型"
}
