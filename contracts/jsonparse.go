package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotObject, err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: the top-level value is not an object", ErrNotObject)
	}
	p := parser{dec: dec}
	obj, err := p.object("")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotObject, err)
	}
	if p.dup != nil {
		return nil, p.dup
	}
	return obj, nil
}

// parser builds the tree of an already validated document and records the
// first duplicated member name.
type parser struct {
	dec *json.Decoder
	dup *FieldError
}

var errUnexpected = errors.New("unexpected token")

// object reads the members of an object whose '{' was consumed.
func (p *parser) object(path string) (*object, error) {
	o := &object{vals: make(map[string]any)}
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errUnexpected
		}
		at := joinPath(path, key)
		val, err := p.value(at)
		if err != nil {
			return nil, err
		}
		if _, seen := o.vals[key]; seen {
			if p.dup == nil {
				p.dup = fieldErr(CodeSchema, at, "字段重复出现")
			}
			continue
		}
		o.keys = append(o.keys, key)
		o.vals[key] = val
	}
	_, err := p.dec.Token() // '}'
	return o, err
}

func (p *parser) value(path string) (any, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		return p.object(path)
	case json.Delim('['):
		var arr []any
		for i := 0; p.dec.More(); i++ {
			v, err := p.value(path + "[" + strconv.Itoa(i) + "]")
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := p.dec.Token(); err != nil { // ']'
			return nil, err
		}
		if arr == nil {
			arr = []any{}
		}
		return arr, nil
	case json.Delim('}'), json.Delim(']'):
		return nil, errUnexpected
	}
	return tok, nil
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
