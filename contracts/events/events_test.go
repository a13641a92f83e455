package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"zhianhub/contracts"
	"zhianhub/contracts/events"
)

func newRegistry(t *testing.T) *events.Registry {
	t.Helper()
	r, err := events.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestKinds(t *testing.T) {
	r := newRegistry(t)
	want := []string{
		"warning.issued", "warning.signed", "warning.feedback", "lead.registered",
		"dispatch.order", "dispatch.feedback", "push.delivered",
		"keyperson.register", "keyperson.change", "keyperson.cancel", "keyperson.control",
		"keyperson.release", "keyperson.task", "keyperson.task.sign",
	}
	if got := strings.Join(r.Kinds(), ","); got != strings.Join(want, ",") {
		t.Fatalf("kinds %s", got)
	}
	for _, e := range r.Events() {
		if e.Module != !strings.HasPrefix(e.Kind, "keyperson.") {
			t.Errorf("%s: Module %v", e.Kind, e.Module)
		}
		if e.Summary == "" {
			t.Errorf("%s: no summary", e.Kind)
		}
	}
	if _, ok := r.Get("keyperson.receipt"); ok {
		t.Error("Get of an unknown kind")
	}
}

func TestExamplesValidate(t *testing.T) {
	r := newRegistry(t)
	for _, e := range r.Events() {
		t.Run(e.Kind, func(t *testing.T) {
			if err := r.Validate(e.Kind, []byte(e.Example)); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(e.Example), &m); err != nil {
				t.Fatal(err)
			}
			if m["kind"] != e.Kind {
				t.Errorf("example kind %v", m["kind"])
			}
		})
	}
}

// mutate returns the example of kind with the member at the dotted path
// set to v (or deleted when v is del).
func mutate(t *testing.T, r *events.Registry, kind, path string, v any) []byte {
	t.Helper()
	e, ok := r.Get(kind)
	if !ok {
		t.Fatalf("no kind %s", kind)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(e.Example), &m); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(path, ".")
	cur := m
	for _, p := range parts[:len(parts)-1] {
		cur = cur[p].(map[string]any)
	}
	if v == del {
		delete(cur, parts[len(parts)-1])
	} else {
		cur[parts[len(parts)-1]] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type deletion struct{}

var del any = deletion{}

func TestValidateRejects(t *testing.T) {
	r := newRegistry(t)
	cases := []struct {
		name    string
		kind    string
		payload []byte
		code    string
		path    string
	}{
		{"missing warningId", "warning.issued", mutate(t, r, "warning.issued", "data.warningId", del), "E120", "data.warningId"},
		{"level 5", "warning.issued", mutate(t, r, "warning.issued", "data.level", 5), "E120", "data.level"},
		{"level 0", "warning.issued", mutate(t, r, "warning.issued", "data.level", 0), "E120", "data.level"},
		{"level as string", "warning.issued", mutate(t, r, "warning.issued", "data.level", "2"), "E120", "data.level"},
		{"unit 11 digits", "warning.issued", mutate(t, r, "warning.issued", "data.unit", "31010400000"), "E120", "data.unit"},
		{"blank title", "warning.issued", mutate(t, r, "warning.issued", "data.title", "　 "), "E120", "data.title"},
		{"category letters", "warning.issued", mutate(t, r, "warning.issued", "data.category", "AB01"), "E120", "data.category"},
		{"deadline not RFC 3339", "warning.issued", mutate(t, r, "warning.issued", "data.deadline", "2026-11-27 17:30"), "E120", "data.deadline"},
		{"forbidden ethnicity", "warning.issued", mutate(t, r, "warning.issued", "data.ethnicity", "01"), "E120", "data.ethnicity"},
		{"forbidden religion", "lead.registered", mutate(t, r, "lead.registered", "data.religion", "x"), "E120", "data.religion"},
		{"id number not allowed", "lead.registered", mutate(t, r, "lead.registered", "data.idNo", "310104198605171356"), "E120", "data.idNo"},
		{"unknown lead source", "lead.registered", mutate(t, r, "lead.registered", "data.source", "rumour"), "E120", "data.source"},
		{"wrong kind member", "warning.signed", mutate(t, r, "warning.signed", "kind", "warning.issued"), "E120", "kind"},
		{"module name upper case", "warning.signed", mutate(t, r, "warning.signed", "from", "Portal"), "E120", "from"},
		{"messageId not UUID", "dispatch.order", mutate(t, r, "dispatch.order", "messageId", "42"), "E120", "messageId"},
		{"priority 4", "dispatch.order", mutate(t, r, "dispatch.order", "data.priority", 4), "E120", "data.priority"},
		{"feedback status", "dispatch.feedback", mutate(t, r, "dispatch.feedback", "data.status", "done"), "E120", "data.status"},
		{"push channel", "push.delivered", mutate(t, r, "push.delivered", "data.channel", "fax"), "E120", "data.channel"},
		{"unknown frame member", "push.delivered", mutate(t, r, "push.delivered", "extra", 1), "E120", "extra"},
		{"register with name", "keyperson.register", mutate(t, r, "keyperson.register", "data.name", "张测试"), "E120", "data.name"},
		{"register with idNo", "keyperson.register", mutate(t, r, "keyperson.register", "data.idNo", "310104198605171356"), "E120", "data.idNo"},
		{"change with clear address", "keyperson.change", mutate(t, r, "keyperson.change", "data.changes.residAddr", "上海市"), "E120", "data.changes.residAddr"},
		{"change empty", "keyperson.change", mutate(t, r, "keyperson.change", "data.changes", map[string]any{}), "E120", "data.changes"},
		{"task item", "keyperson.task", mutate(t, r, "keyperson.task", "data.items", []any{"address", "health"}), "E120", "data.items[1]"},
		{"from not a node", "keyperson.task", mutate(t, r, "keyperson.task", "from", "analysis"), "E120", "from"},
		{"duplicate member", "warning.signed", []byte(`{"messageId":"0193a0b5-0000-7000-8000-000000000001","kind":"warning.signed","kind":"warning.signed"}`), "E120", "kind"},
		{"duplicate nested member", "warning.signed", []byte(`{"data":{"unit":"310104000000","unit":"310104000000"}}`), "E120", "data.unit"},
		{"not JSON", "warning.signed", []byte(`{"messageId":`), "E100", ""},
		{"array", "warning.signed", []byte(`[]`), "E100", ""},
		{"empty", "warning.signed", nil, "E100", ""},
		{"unknown kind", "warning.cancelled", []byte(`{}`), "E102", ""},
		{"receipt is not an event", "receipt", []byte(`{}`), "E102", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := r.Validate(c.kind, c.payload)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := contracts.ErrorCode(err); got != c.code {
				t.Fatalf("code %s, want %s (%v)", got, c.code, err)
			}
			var fe *contracts.FieldError
			if c.code != "E120" {
				if errors.As(err, &fe) {
					t.Fatalf("field error for %s: %v", c.code, err)
				}
				return
			}
			if !errors.As(err, &fe) {
				t.Fatalf("not a FieldError: %v", err)
			}
			if fe.Path != c.path {
				t.Errorf("path %q, want %q (%s)", fe.Path, c.path, fe.Reason)
			}
			if !strings.HasPrefix(fe.Reason, c.path+"：") {
				t.Errorf("reason %q does not start with the path", fe.Reason)
			}
		})
	}
}

// TestNoSensitiveFields keeps fields for ethnicity, religion, health, ID
// numbers, names and addresses out of every event schema.
func TestNoSensitiveFields(t *testing.T) {
	r := newRegistry(t)
	forbidden := []string{"ethnic", "nation", "minzu", "religio", "zongjiao", "health", "medical", "disease",
		"idno", "\"name\"", "addr"}
	for _, e := range r.Events() {
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				if props, ok := v["properties"].(map[string]any); ok {
					for name, sub := range props {
						lower := strings.ToLower(name)
						for _, f := range forbidden {
							f = strings.Trim(f, `"`)
							if strings.Contains(lower, f) && !masked(sub) {
								t.Errorf("%s: field %q", e.Kind, name)
							}
						}
					}
				}
				for _, sub := range v {
					walk(sub)
				}
			case []any:
				for _, sub := range v {
					walk(sub)
				}
			}
		}
		var doc any
		if err := json.Unmarshal(e.Schema(), &doc); err != nil {
			t.Fatal(err)
		}
		walk(doc)
	}
}

// masked reports a field that may only hold "***" (a changed name or
// address of keyperson.change).
func masked(schema any) bool {
	m, _ := schema.(map[string]any)
	return m["const"] == "***"
}

// TestSchemasAreDraft07Compatible compiles every schema as draft-07 too (the
// AsyncAPI document carries them as AsyncAPI Schema Objects, a draft-07
// superset) and checks that both drafts judge the examples and a bad case
// alike, and that no keyword outside the common subset is used.
func TestSchemasAreDraft07Compatible(t *testing.T) {
	r := newRegistry(t)
	allowed := map[string]bool{"$schema": true, "$id": true, "title": true, "description": true, "type": true,
		"properties": true, "required": true, "additionalProperties": true, "pattern": true, "format": true,
		"enum": true, "const": true, "minimum": true, "maximum": true, "minLength": true, "maxLength": true,
		"items": true, "minItems": true, "maxItems": true, "allOf": true, "minProperties": true}
	for _, e := range r.Events() {
		var doc map[string]any
		if err := json.Unmarshal(e.Schema(), &doc); err != nil {
			t.Fatal(err)
		}
		var walk func(v map[string]any)
		walk = func(s map[string]any) {
			for k, v := range s {
				if !allowed[k] {
					t.Errorf("%s: keyword %s", e.Kind, k)
				}
				switch k {
				case "properties":
					for _, sub := range v.(map[string]any) {
						walk(sub.(map[string]any))
					}
				case "items":
					walk(v.(map[string]any))
				case "allOf":
					for _, sub := range v.([]any) {
						walk(sub.(map[string]any))
					}
				}
			}
		}
		walk(doc)
		delete(doc, "$schema")
		b, _ := json.Marshal(doc)
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft7)
		c.AssertFormat()
		if err := c.AddResource("https://draft7.invalid/"+e.Kind+".json", inst); err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile("https://draft7.invalid/" + e.Kind + ".json")
		if err != nil {
			t.Fatalf("%s as draft-07: %v", e.Kind, err)
		}
		ex, _ := jsonschema.UnmarshalJSON(strings.NewReader(e.Example))
		if err := sch.Validate(ex); err != nil {
			t.Errorf("%s: draft-07 refuses the example: %v", e.Kind, err)
		}
		bad := mutate(t, r, e.Kind, "data.extra", true)
		badInst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(bad))
		if sch.Validate(badInst) == nil || r.Validate(e.Kind, bad) == nil {
			t.Errorf("%s: an unknown data member is accepted", e.Kind)
		}
	}
}
