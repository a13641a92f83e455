package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"zhianhub/adapters/auth"
	"zhianhub/contracts/events"
)

// asyncAPISchema compiles the official AsyncAPI 3.0.0 JSON Schema (draft-07,
// with every definition bundled under its own $id), checked in from the npm
// package @asyncapi/specs (testdata/README.md).
func asyncAPISchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "asyncapi-3.0.0-schema.json"))
	must(t, err)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	must(t, err)
	const id = "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	must(t, c.AddResource(id, doc))
	sch, err := c.Compile(id)
	must(t, err)
	return sch
}

// TestAsyncAPIDocument: the document generated from the event registry is a
// valid AsyncAPI 3.0.0 document, has a channel on zhian.events for every
// kind and one on zhian.ingress for every module kind (address = routing key
// = kind), every local $ref resolves, and the official schema refuses a
// broken document (the check can fail).
func TestAsyncAPIDocument(t *testing.T) {
	sch := asyncAPISchema(t)
	reg, err := events.NewRegistry()
	must(t, err)
	raw := reg.AsyncAPI()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	must(t, err)
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("not a valid AsyncAPI 3.0.0 document:\n%v", err)
	}

	var doc map[string]any
	must(t, json.Unmarshal(raw, &doc))
	channels := doc["channels"].(map[string]any)
	for _, e := range reg.Events() {
		for _, ex := range []string{"events", "ingress"} {
			ch, ok := channels[ex+"."+e.Kind].(map[string]any)
			if ex == "ingress" && !e.Module {
				if ok {
					t.Errorf("ingress channel for the hub's kind %s", e.Kind)
				}
				continue
			}
			if !ok {
				t.Errorf("no %s channel for %s", ex, e.Kind)
				continue
			}
			if ch["address"] != e.Kind {
				t.Errorf("%s.%s: address %v", ex, e.Kind, ch["address"])
			}
			exch := ch["bindings"].(map[string]any)["amqp"].(map[string]any)["exchange"].(map[string]any)
			if exch["name"] != "zhian."+ex || exch["type"] != "topic" {
				t.Errorf("%s.%s: exchange %v", ex, e.Kind, exch)
			}
		}
		msg := doc["components"].(map[string]any)["messages"].(map[string]any)[e.Kind].(map[string]any)
		var want map[string]any
		must(t, json.Unmarshal(e.Schema(), &want))
		delete(want, "$schema")
		delete(want, "$id")
		got, _ := json.Marshal(msg["payload"])
		wantB, _ := json.Marshal(want)
		if !bytes.Equal(got, wantB) {
			t.Errorf("%s: payload schema differs from the contract", e.Kind)
		}
	}

	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				if resolvePointer(doc, strings.TrimPrefix(ref, "#")) == nil {
					t.Errorf("$ref %s does not resolve", ref)
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)

	// The schema is not vacuous: it refuses a document with a wrong
	// operation action and one without info.
	for name, broken := range map[string]func(map[string]any){
		"bad action": func(d map[string]any) {
			for _, op := range d["operations"].(map[string]any) {
				op.(map[string]any)["action"] = "publish"
				break
			}
		},
		"no info": func(d map[string]any) { delete(d, "info") },
	} {
		var d map[string]any
		must(t, json.Unmarshal(raw, &d))
		broken(d)
		b, _ := json.Marshal(d)
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		must(t, err)
		if sch.Validate(inst) == nil {
			t.Errorf("%s: the official schema accepts a broken document", name)
		}
	}
}

// resolvePointer follows a JSON pointer in doc; nil when it does not resolve.
func resolvePointer(doc any, ptr string) any {
	cur := doc
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[tok]; !ok {
			return nil
		}
	}
	return cur
}

// TestAsyncAPIServed: GET /api/v1/asyncapi.json serves the generated
// document to an identified caller (officer or administrator); without an
// identity it is 401 (TestIdentity, which has an audit chain to record it).
func TestAsyncAPIServed(t *testing.T) {
	reg, err := events.NewRegistry()
	must(t, err)
	r := mountedRouter(t)
	for _, tc := range []struct {
		name   string
		user   string
		roles  string
		query  string
		status int
	}{
		{"officer", "li.officer", "officer", "", http.StatusOK},
		{"auditor", "wang.audit", "auditor", "", http.StatusOK},
		{"unknown query parameter", "li.officer", "officer", "?x=1", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/asyncapi.json"+tc.query, nil)
			if tc.user != "" {
				req.Header.Set(auth.HeaderDevUser, tc.user)
				req.Header.Set(auth.HeaderDevRoles, tc.roles)
			}
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if tc.status == http.StatusOK && !bytes.Equal(w.Body.Bytes(), reg.AsyncAPI()) {
				t.Error("served document differs from the generated one")
			}
			if tc.status == http.StatusOK && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
				t.Errorf("content type %q", w.Header().Get("Content-Type"))
			}
		})
	}
}
