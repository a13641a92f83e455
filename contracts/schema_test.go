package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSchemas compiles the schema of every kind from the embedded files.
func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	names, err := fs.Glob(Schemas(), "*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		data, err := fs.ReadFile(Schemas(), name)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if id, _ := doc.(map[string]any)["$id"].(string); id != SchemaBaseURI+name {
			t.Errorf("%s: $id %q", name, id)
		}
		if err := c.AddResource(SchemaBaseURI+name, doc); err != nil {
			t.Fatal(err)
		}
	}
	if len(names) != len(Kinds())+1 {
		t.Errorf("schema files %v", names)
	}
	out := make(map[string]*jsonschema.Schema)
	for _, kind := range Kinds() {
		sch, err := c.Compile(SchemaBaseURI + kind + ".json")
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		out[kind] = sch
	}
	return out
}

func schemaValid(t *testing.T, sch *jsonschema.Schema, payload []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(inst)
}

func TestSchemasAcceptManifestPayloads(t *testing.T) {
	schemas := compileSchemas(t)
	for _, c := range loadManifest(t) {
		if c.Expect != CodeAccepted {
			continue
		}
		if err := schemaValid(t, schemas[c.Kind], c.Payload); err != nil {
			t.Errorf("%s: %v", c.File, err)
		}
	}
}

func TestSchemasRejectShapeCases(t *testing.T) {
	schemas := compileSchemas(t)
	register := validPayload(t, "valid/01")
	for _, file := range []string{
		"invalid/e120-missing-basis.json",
		"invalid/e120-unknown-field.json",
		"invalid/e120-bad-date.json",
	} {
		if err := schemaValid(t, schemas[KindRegister], mutate(t, register, manifestMutations[file])); err == nil {
			t.Errorf("%s: schema accepts it", file)
		}
	}
}

// TestSchemasAgreeWithValidator runs the rule cases through the schemas:
// every payload the validator accepts, the schema accepts; every E120 case
// the schema can express, it rejects. E121 and E122 need tables or
// arithmetic the schemas leave to the validator.
func TestSchemasAgreeWithValidator(t *testing.T) {
	schemas := compileSchemas(t)
	// E120 rules beyond what a schema states.
	validatorOnly := []string{
		"reviewBy 1 year + 1 day", "reviewBy before registration", "reviewBy local date lower bound",
		"reviewBy 29 February + 1 year + 1 day", "reviewBy range before later fields",
		"registeredAt malformed before reviewBy range", "changes.reviewBy beyond changes.registeredAt",
		"validTo 180 days + 1 s", "validTo 181 days", "validTo equals validFrom", "validTo before validFrom",
		"seq 1.0", "seq 1e0", "level 2.0", "duplicate key", "duplicate nested key", "idNo impossible birth date",
	}
	for _, tc := range append(regCases(), otherCases()...) {
		payload := validPayload(t, tc.base)
		if tc.raw != nil {
			payload = tc.raw(payload)
		} else {
			payload = mutate(t, payload, tc.edit)
		}
		err := schemaValid(t, schemas[tc.kind], payload)
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("%s/%s: valid, schema rejects: %v", tc.kind, tc.name, err)
		case tc.code == CodeSchema && err == nil && !slices.Contains(validatorOnly, tc.name):
			t.Errorf("%s/%s: E120 at %s, schema accepts", tc.kind, tc.name, tc.path)
		}
	}
}

// TestSchemaEnumsMatchTables checks the enumerations the schemas copy from
// the code tables.
func TestSchemaEnumsMatchTables(t *testing.T) {
	var defs struct {
		Defs struct {
			PersonData struct {
				Properties struct {
					Sex struct{ Enum []string } `json:"sex"`
				} `json:"properties"`
			} `json:"personData"`
		} `json:"$defs"`
	}
	var reg struct {
		Properties struct {
			IDType struct{ Enum []string } `json:"idType"`
		} `json:"properties"`
	}
	for name, into := range map[string]any{"defs.json": &defs, "keyperson.register.json": &reg} {
		data, err := fs.ReadFile(Schemas(), name)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, into); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, enum []string, known func(string) bool) {
		n := 0
		for c := 0; c < 1000; c++ {
			for _, s := range []string{string(rune('0' + c%10)), fmtCode(c)} {
				if known(s) && !slices.Contains(enum, s) {
					t.Errorf("%s %s missing from the schema", what, s)
				}
			}
		}
		for _, s := range enum {
			if !known(s) {
				t.Errorf("%s %s not in the table", what, s)
			}
			n++
		}
		if n == 0 {
			t.Errorf("no %s enum", what)
		}
	}
	check("sex", defs.Defs.PersonData.Properties.Sex.Enum, isSex)
	check("idType", reg.Properties.IDType.Enum, isIDType)
}

func fmtCode(c int) string {
	return string([]byte{byte('0' + c/100), byte('0' + c/10%10), byte('0' + c%10)})
}

func TestSchemaLookup(t *testing.T) {
	for _, kind := range Kinds() {
		data, err := Schema(kind)
		if err != nil || !json.Valid(data) {
			t.Errorf("%s: %v", kind, err)
		}
	}
	if _, err := Schema("keyperson.merge"); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("got %v", err)
	}
}
