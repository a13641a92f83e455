package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const (
	validFeedback = `{"feedbackNo":"31000020261127000001","refType":"dispatch","refNo":"31000020261127000042","seq":1,
"unit":"310101000000","officer":"012345","result":"done","detail":"已到场处置完毕。\n无人员伤亡。",
"attachments":[{"name":"现场照片.jpg","size":1024,"sm3":"` + "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0" + `"}],"at":"2026-11-27T09:00:00+08:00"}`
	validOrder = `{"orderNo":"31000020261127000042","refNo":"31000020261127000042","seq":1,"title":"外滩区域加强巡逻",
"content":"请于今晚 20:00 前到岗。","level":2,"targetUnits":["310101000000","310104000000"],
"deadline":"2026-11-28T20:00:00+08:00","issuedBy":"0012345"}`
)

type cityCase struct {
	name string
	kind string
	edit func(map[string]any)
	code string // "" valid
	path string
}

func cityCases() []cityCase {
	fb := func(name string, edit func(map[string]any), code, path string) cityCase {
		return cityCase{name, KindFeedbackDispatch, edit, code, path}
	}
	or := func(name string, edit func(map[string]any), code, path string) cityCase {
		return cityCase{name, KindDispatchOrder, edit, code, path}
	}
	att := func(edit func(map[string]any)) func(map[string]any) {
		return func(m map[string]any) { edit(m["attachments"].([]any)[0].(map[string]any)) }
	}
	many := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = map[string]any{"name": "a.txt", "size": 1, "sm3": strings.Repeat("a", 64)}
		}
		return out
	}
	units := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = "3101010" + strings.Repeat("0", 3) + string(rune('0'+i/10)) + string(rune('0'+i%10))
		}
		return out
	}
	return []cityCase{
		fb("valid", nil, "", ""),
		fb("no attachments", set("attachments", []any{}), "", ""),
		fb("16 attachments", set("attachments", many(16)), "", ""),
		fb("17 attachments", set("attachments", many(17)), CodeSchema, "attachments"),
		fb("unknown field", set("ethnicity", "x"), CodeSchema, "ethnicity"),
		fb("feedbackNo 19 digits", set("feedbackNo", "3100002026112700000"), CodeSchema, "feedbackNo"),
		fb("refType unknown", set("refType", "keyperson"), CodeSchema, "refType"),
		fb("refType not the kind's", set("refType", "warning"), CodeSchema, "refType"),
		fb("refNo empty", set("refNo", ""), CodeSchema, "refNo"),
		fb("refNo 32", set("refNo", strings.Repeat("W", 32)), "", ""),
		fb("refNo 33", set("refNo", strings.Repeat("W", 33)), CodeSchema, "refNo"),
		fb("refNo space", set("refNo", "W 1"), CodeSchema, "refNo"),
		fb("seq 0", set("seq", 0), CodeSchema, "seq"),
		fb("seq string", set("seq", "1"), CodeSchema, "seq"),
		fb("unit 11 digits", set("unit", "31010100000"), CodeSchema, "unit"),
		fb("officer 5 digits", set("officer", "12345"), CodeSchema, "officer"),
		fb("officer 8 digits", set("officer", "12345678"), "", ""),
		fb("result unknown", set("result", "closed"), CodeSchema, "result"),
		fb("result in_progress", set("result", ResultInProgress), "", ""),
		fb("detail empty", set("detail", ""), CodeSchema, "detail"),
		fb("detail blank", set("detail", "  "), CodeSchema, "detail"),
		fb("detail 2000", set("detail", strings.Repeat("处", 2000)), "", ""),
		fb("detail 2001", set("detail", strings.Repeat("处", 2001)), CodeSchema, "detail"),
		fb("detail control char", set("detail", "a\u0007b"), CodeSchema, "detail"),
		fb("attachment missing sm3", att(func(a map[string]any) { delete(a, "sm3") }), CodeSchema, "attachments[0].sm3"),
		fb("attachment upper-case sm3", att(func(a map[string]any) { a["sm3"] = strings.Repeat("A", 64) }), CodeSchema, "attachments[0].sm3"),
		fb("attachment size negative", att(func(a map[string]any) { a["size"] = -1 }), CodeSchema, "attachments[0].size"),
		fb("attachment unknown member", att(func(a map[string]any) { a["path"] = "/tmp/x" }), CodeSchema, "attachments[0].path"),
		fb("attachment not object", set("attachments", []any{"x"}), CodeSchema, "attachments[0]"),
		fb("at malformed", set("at", "2026-11-27 09:00"), CodeSchema, "at"),
		fb("missing at", del("at"), CodeSchema, "at"),
		or("valid", nil, "", ""),
		or("refNo not orderNo", set("refNo", "31000020261127000043"), CodeSchema, "refNo"),
		or("orderNo letters", all(set("orderNo", "3100002026112700004A"), set("refNo", "3100002026112700004A")), CodeSchema, "orderNo"),
		or("title 100", set("title", strings.Repeat("题", 100)), "", ""),
		or("title 101", set("title", strings.Repeat("题", 101)), CodeSchema, "title"),
		or("title newline", set("title", "a\nb"), CodeSchema, "title"),
		or("content empty", set("content", ""), CodeSchema, "content"),
		or("level 0", set("level", 0), CodeSchema, "level"),
		or("level 4", set("level", 4), CodeSchema, "level"),
		or("targetUnits empty", set("targetUnits", []any{}), CodeSchema, "targetUnits"),
		or("targetUnits 64", set("targetUnits", units(64)), "", ""),
		or("targetUnits 65", set("targetUnits", units(65)), CodeSchema, "targetUnits"),
		or("targetUnits duplicate", set("targetUnits", []any{"310101000000", "310101000000"}), CodeSchema, "targetUnits[1]"),
		or("targetUnits bad code", set("targetUnits", []any{"31010100000X"}), CodeSchema, "targetUnits[0]"),
		or("deadline missing", del("deadline"), CodeSchema, "deadline"),
		or("issuedBy letters", set("issuedBy", "A12345"), CodeSchema, "issuedBy"),
	}
}

func cityPayload(t *testing.T, c cityCase) []byte {
	base := validFeedback
	if c.kind == KindDispatchOrder {
		base = validOrder
	}
	return mutate(t, []byte(base), c.edit)
}

func TestCityRules(t *testing.T) {
	v := newTestValidator(t)
	for _, c := range cityCases() {
		t.Run(c.kind+"/"+c.name, func(t *testing.T) {
			typed, err := v.ValidateCityPayload(c.kind, cityPayload(t, c))
			if c.code == "" {
				if err != nil || typed == nil {
					t.Fatalf("valid payload refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("want %s at %s, got %v", c.code, c.path, err)
			}
			if fe.Code != c.code || fe.Path != c.path || !strings.HasPrefix(fe.Reason, c.path+"：") {
				t.Errorf("want %s at %s, got %s at %s (%s)", c.code, c.path, fe.Code, fe.Path, fe.Reason)
			}
		})
	}
}

func TestCityTypedResults(t *testing.T) {
	v := newTestValidator(t)
	typed, err := v.ValidateCityPayload(KindFeedbackDispatch, []byte(validFeedback))
	if err != nil {
		t.Fatal(err)
	}
	fb := typed.(*Feedback)
	if k, s := fb.SeqKey(); k != "31000020261127000042" || s != 1 || fb.Attachments[0].Size != 1024 || fb.Result != ResultDone {
		t.Errorf("feedback %+v", fb)
	}
	typed, err = v.ValidateCityPayload(KindDispatchOrder, []byte(validOrder))
	if err != nil {
		t.Fatal(err)
	}
	o := typed.(*Order)
	var s Sequenced = o
	if k, seq := s.SeqKey(); k != o.OrderNo || seq != 1 || len(o.TargetUnits) != 2 || o.Level != 2 || o.Deadline.IsZero() {
		t.Errorf("order %+v", o)
	}
	if _, err := v.ValidateCityPayload(KindRegister, []byte(validOrder)); !errors.Is(err, ErrUnknownKind) || ErrorCode(err) != CodeUnknownKind {
		t.Errorf("a Ministry kind on the city bus: %v", err)
	}
	if _, err := v.ValidateCityPayload(KindDispatchOrder, []byte(`[1]`)); ErrorCode(err) != CodeMalformed {
		t.Errorf("array: %v", err)
	}
	// A payload type marshals back to what it validated from.
	b, _ := json.Marshal(o)
	if _, err := v.ValidateCityPayload(KindDispatchOrder, b); err != nil {
		t.Errorf("marshalled Order: %v (%s)", err, b)
	}
}

// compileCitySchemas compiles the city schemas with the Ministry ones they
// reference.
func compileCitySchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	for base, fsys := range map[string]fs.FS{SchemaBaseURI: Schemas(), CitySchemaBaseURI: CitySchemas()} {
		names, _ := fs.Glob(fsys, "*.json")
		for _, name := range names {
			data, _ := fs.ReadFile(fsys, name)
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if id, _ := doc.(map[string]any)["$id"].(string); id != base+name {
				t.Errorf("%s: $id %q", name, id)
			}
			if err := c.AddResource(base+name, doc); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := map[string]*jsonschema.Schema{}
	for _, kind := range CityKinds() {
		sch, err := c.Compile(CitySchemaBaseURI + kind + ".json")
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		out[kind] = sch
		if _, err := CitySchema(kind); err != nil {
			t.Errorf("CitySchema(%s): %v", kind, err)
		}
	}
	return out
}

// TestCitySchemasAgreeWithValidator: every payload the validator accepts,
// the schema accepts; every E120 the schema can express, it rejects.
func TestCitySchemasAgreeWithValidator(t *testing.T) {
	schemas := compileCitySchemas(t)
	validatorOnly := map[string]bool{"refNo not orderNo": true}
	for _, c := range cityCases() {
		err := schemaValid(t, schemas[c.kind], cityPayload(t, c))
		switch {
		case c.code == "" && err != nil:
			t.Errorf("%s/%s: valid, schema rejects: %v", c.kind, c.name, err)
		case c.code != "" && err == nil && !validatorOnly[c.name]:
			t.Errorf("%s/%s: %s at %s, schema accepts", c.kind, c.name, c.code, c.path)
		}
	}
	for _, r := range RefTypes() {
		p := mutate(t, []byte(validFeedback), set("refType", r))
		if err := schemaValid(t, schemas[FeedbackKind(r)], p); err != nil {
			t.Errorf("%s: %v", r, err)
		}
		if r != RefDispatch && schemaValid(t, schemas[KindFeedbackDispatch], p) == nil {
			t.Errorf("feedback.dispatch schema accepts refType %s", r)
		}
	}
	if _, err := CitySchema(KindRegister); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("CitySchema(%s): %v", KindRegister, err)
	}
}
