package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"zhianhub/contracts"
)

// SchemaBaseURI is the base of the $id of every event schema: a kind's
// schema is SchemaBaseURI + kind + ".json".
const SchemaBaseURI = "https://schemas.zhianhub.invalid/events/v1/"

// Event is the contract of one event kind.
type Event struct {
	// Kind is the routing key on zhian.ingress and zhian.events.
	Kind string
	// Summary is a one-line Chinese description.
	Summary string
	// Module is true for the kinds internal modules publish through the
	// ingress; false for the hub's own (keyperson.*).
	Module bool
	// Data is the schema of the data member; Schema wraps it in the frame.
	Data map[string]any
	// Example is a valid event of the kind.
	Example string
}

// Schema returns the JSON Schema (draft 2020-12) of the whole event.
func (e Event) Schema() []byte {
	b, _ := json.MarshalIndent(e.schemaValue(), "", "  ") // plain maps: cannot fail
	return b
}

func (e Event) schemaValue() map[string]any {
	return frame(e.Kind, e.Kind+"："+e.Summary, e.Module, e.Data)
}

// Registry holds the compiled contracts of every event kind.
type Registry struct {
	events  []Event
	schemas map[string]*jsonschema.Schema
}

// NewRegistry compiles the contracts of every event kind.
func NewRegistry() (*Registry, error) {
	evs := append(defs(), keyPersonDefs()...)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	r := &Registry{events: evs, schemas: make(map[string]*jsonschema.Schema, len(evs))}
	for _, e := range evs {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(e.Schema()))
		if err != nil {
			return nil, fmt.Errorf("events: schema of %s: %w", e.Kind, err)
		}
		url := SchemaBaseURI + e.Kind + ".json"
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("events: schema of %s: %w", e.Kind, err)
		}
		sch, err := c.Compile(url)
		if err != nil {
			return nil, fmt.Errorf("events: compile %s: %w", e.Kind, err)
		}
		r.schemas[e.Kind] = sch
	}
	return r, nil
}

// Events returns the contracts, module kinds first, in a fixed order.
func (r *Registry) Events() []Event { return slices.Clone(r.events) }

// Kinds returns every kind in the order of Events.
func (r *Registry) Kinds() []string {
	out := make([]string, len(r.events))
	for i, e := range r.events {
		out[i] = e.Kind
	}
	return out
}

// Get returns the contract of kind.
func (r *Registry) Get(kind string) (Event, bool) {
	i := slices.IndexFunc(r.events, func(e Event) bool { return e.Kind == kind })
	if i < 0 {
		return Event{}, false
	}
	return r.events[i], true
}

// Validate checks payload, a whole event, against the contract of kind. It
// returns nil, an error wrapping contracts.ErrUnknownKind (E102) or
// contracts.ErrNotObject (E100), or a *contracts.FieldError (E120) naming the
// JSON path of the first violation; contracts.ErrorCode maps each to its
// code. The payload's kind member must equal kind.
func (r *Registry) Validate(kind string, payload []byte) error {
	sch, ok := r.schemas[kind]
	if !ok {
		return fmt.Errorf("%w: %.64q", contracts.ErrUnknownKind, kind)
	}
	inst, fe, err := decode(payload)
	if err != nil {
		return err
	}
	if fe != nil {
		return fe
	}
	verr := sch.Validate(inst)
	if verr == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(verr, &ve) {
		return fmt.Errorf("events: validate %s: %w", kind, verr)
	}
	return fieldError(ve)
}

// decode parses payload as one JSON object, refusing a repeated member
// name (E120 at that member) and anything that is not a single object
// (E100).
func decode(payload []byte) (any, *contracts.FieldError, error) {
	notObject := func(detail string) error { return fmt.Errorf("%w: %s", contracts.ErrNotObject, detail) }
	if !json.Valid(payload) {
		return nil, nil, notObject("invalid JSON")
	}
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, nil, notObject("not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if fe := duplicates(dec, ""); fe != nil {
		return nil, fe, nil
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return nil, nil, notObject(err.Error())
	}
	return inst, nil, nil
}

// duplicates walks one JSON value from dec and reports the first member
// name repeated in one object.
func duplicates(dec *json.Decoder, path string) *contracts.FieldError {
	tok, err := dec.Token()
	if err != nil {
		return nil // json.Valid said it is well-formed
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil
			}
			name, _ := t.(string)
			p := join(path, name)
			if seen[name] {
				return newFieldError(p, "字段重复")
			}
			seen[name] = true
			if fe := duplicates(dec, p); fe != nil {
				return fe
			}
		}
		_, _ = dec.Token()
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if fe := duplicates(dec, path+"["+strconv.Itoa(i)+"]"); fe != nil {
				return fe
			}
		}
		_, _ = dec.Token()
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func newFieldError(path, detail string) *contracts.FieldError {
	p := path
	if p == "" {
		p = "（根）"
	}
	return &contracts.FieldError{Code: contracts.CodeSchema, Path: path, Reason: p + "：" + detail}
}

// fieldError turns the first leaf of a validation error into a FieldError.
func fieldError(ve *jsonschema.ValidationError) *contracts.FieldError {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	var path strings.Builder
	for _, tok := range ve.InstanceLocation {
		if _, err := strconv.Atoi(tok); err == nil {
			path.WriteString("[" + tok + "]")
			continue
		}
		if path.Len() > 0 {
			path.WriteString(".")
		}
		path.WriteString(tok)
	}
	p := path.String()
	switch k := ve.ErrorKind.(type) {
	case *kind.Required:
		return newFieldError(join(p, k.Missing[0]), "缺少必填字段")
	case *kind.AdditionalProperties:
		return newFieldError(join(p, k.Properties[0]), "不允许的字段")
	case *kind.Type:
		return newFieldError(p, "类型错误，应为 "+strings.Join(k.Want, "/"))
	case *kind.Pattern, *kind.Format:
		return newFieldError(p, "格式不正确")
	case *kind.Enum, *kind.Const:
		return newFieldError(p, "取值不在允许范围内")
	case *kind.Minimum, *kind.Maximum, *kind.ExclusiveMinimum, *kind.ExclusiveMaximum:
		return newFieldError(p, "数值超出允许范围")
	case *kind.MinLength, *kind.MaxLength:
		return newFieldError(p, "长度不符合要求")
	case *kind.MinItems, *kind.MaxItems, *kind.UniqueItems:
		return newFieldError(p, "数组元素个数不符合要求或有重复")
	case *kind.MinProperties:
		return newFieldError(p, "不能为空对象")
	}
	return newFieldError(p, "不符合约定")
}
