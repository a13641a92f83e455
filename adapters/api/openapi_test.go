package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"zhianhub/adapters/api"
	"zhianhub/adapters/auth"
	"zhianhub/crypto"
	"zhianhub/crypto/fieldenc"
	"zhianhub/routes"
	"zhianhub/store/audit"
	"zhianhub/store/journal"
	"zhianhub/store/registry"
)

// docURL is the base URI the API document is compiled under.
const docURL = "https://zhianhub.invalid/api/v1/openapi.json"

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openAPIDoc is the API document, able to check answers against it.
type openAPIDoc struct {
	raw   map[string]any
	paths map[string]*regexp.Regexp // template -> matcher

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema
}

func loadOpenAPI(t testing.TB) *openAPIDoc {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal(api.OpenAPI(), &raw); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(api.OpenAPI()))
	must(t, err)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4) // OpenAPI 3.0 schema objects are draft-04/05 style
	must(t, c.AddResource(docURL, inst))
	d := &openAPIDoc{raw: raw, paths: map[string]*regexp.Regexp{}, compiler: c, schemas: map[string]*jsonschema.Schema{}}
	for tpl := range raw["paths"].(map[string]any) {
		re := "^" + regexp.MustCompile(`\\\{[^}]*\\\}`).ReplaceAllString(regexp.QuoteMeta(tpl), `[^/]+`) + "$"
		d.paths[tpl] = regexp.MustCompile(re)
	}
	return d
}

// pointer escapes a JSON pointer token.
func pointer(tokens ...string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteString("/" + strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// resolve follows a local $ref of the document.
func (d *openAPIDoc) resolve(v any) (any, string) {
	m, ok := v.(map[string]any)
	if !ok {
		return v, ""
	}
	ref, ok := m["$ref"].(string)
	if !ok {
		return v, ""
	}
	var cur any = d.raw
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		cur = cur.(map[string]any)[tok]
	}
	return cur, strings.TrimPrefix(ref, "#")
}

func (d *openAPIDoc) template(path string) string {
	if _, ok := d.paths[path]; ok { // a literal path before the templates it also matches
		return path
	}
	for tpl, re := range d.paths {
		if re.MatchString(path) {
			return tpl
		}
	}
	return ""
}

// check verifies that status is documented for the operation and that the
// body matches the documented schema.
func (d *openAPIDoc) check(t *testing.T, method, path string, r response) {
	t.Helper()
	tpl := d.template(path)
	if tpl == "" {
		if r.status != http.StatusNotFound {
			t.Errorf("%s %s: undocumented path answered %d", method, path, r.status)
		}
		return
	}
	m := strings.ToLower(method)
	op, ok := d.raw["paths"].(map[string]any)[tpl].(map[string]any)[m].(map[string]any)
	if !ok {
		if r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: undocumented method answered %d", method, tpl, r.status)
		}
		return
	}
	code := strconv.Itoa(r.status)
	resp, ok := op["responses"].(map[string]any)[code]
	if !ok {
		t.Errorf("%s %s: status %d is not documented: %s", method, tpl, r.status, r.body)
		return
	}
	loc := pointer("paths", tpl, m, "responses", code)
	if v, ref := d.resolve(resp); ref != "" {
		resp, loc = v, ref
	}
	content, _ := resp.(map[string]any)["content"].(map[string]any)
	if content == nil {
		return
	}
	if _, ok := content["application/json"]; !ok {
		// A file (a spreadsheet): the media type must be documented.
		mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
		if _, ok := content[mt]; err != nil || !ok {
			t.Errorf("%s %s: Content-Type %q is not documented", method, tpl, r.header.Get("Content-Type"))
		}
		return
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q", method, tpl, ct)
	}
	sch := d.compile(t, loc+pointer("content", "application/json", "schema"))
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
	if err != nil {
		t.Errorf("%s %s: body is not JSON: %v", method, tpl, err)
		return
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("%s %s %d: body does not match the documented schema: %v\n%s", method, tpl, r.status, err, r.body)
	}
}

func (d *openAPIDoc) compile(t *testing.T, ptr string) *jsonschema.Schema {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.schemas[ptr]; ok {
		return s
	}
	s, err := d.compiler.Compile(docURL + "#" + ptr)
	if err != nil {
		t.Fatalf("compile %s: %v", ptr, err)
	}
	d.schemas[ptr] = s
	return s
}

// normalize replaces path parameter names by {} (OpenAPI matches templates
// by structure, and one template may serve two operations).
func normalize(p string) string { return regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(p, "{}") }

// mountedRoutes mounts the API on a fresh router (nothing is called, so
// the dependencies need not work) and returns it.
func mountedRouter(t *testing.T) chi.Router {
	t.Helper()
	r := chi.NewRouter()
	must(t, api.Mount(r, api.Config{Pool: new(pgxpool.Pool), Registry: new(registry.Registry), Filing: new(routes.Filing),
		Audit: new(audit.Writer), Journal: journal.New(nil), DevIdentity: true, Access: noLocalAccess{},
		AuditKeys: func(crypto.KeyID) (crypto.Verifier, bool) { return nil, false },
		Keyring:   new(fieldenc.Keyring), SkipLoginAudit: true}))
	return r
}

// noLocalAccess grants no local roles and locks nobody (the mounted router
// of these tests has no database).
type noLocalAccess struct{}

func (noLocalAccess) Access(context.Context, string) (auth.Access, error) { return auth.Access{}, nil }

// TestOpenAPIDocument checks the document: it parses, it is valid against
// the official OpenAPI 3.0 JSON Schema, every route the router serves is in
// it and every operation in it is served, every $ref resolves, and every
// operation documents the identity refusal (401) and internal errors.
func TestOpenAPIDocument(t *testing.T) {
	d := loadOpenAPI(t)

	// (a, c) Valid OpenAPI 3.0.
	if v, _ := d.raw["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
		t.Fatalf("openapi %q", v)
	}
	schemaBytes, err := os.ReadFile(filepath.Join("testdata", "openapi-3.0-schema.json"))
	must(t, err)
	meta, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaBytes))
	must(t, err)
	c := jsonschema.NewCompiler()
	const metaURL = "https://spec.openapis.org/oas/3.0/schema/2019-04-02"
	must(t, c.AddResource(metaURL, meta))
	sch, err := c.Compile(metaURL)
	must(t, err)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(api.OpenAPI()))
	must(t, err)
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3.0 document:\n%v", err)
	}

	// (b) Routes and operations are the same set.
	var served []string
	must(t, chi.Walk(mountedRouter(t), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served = append(served, method+" "+normalize(strings.TrimSuffix(route, "/")))
		return nil
	}))
	var documented []string
	opIDs := map[string]bool{}
	for tpl, item := range d.raw["paths"].(map[string]any) {
		for _, m := range methods {
			op, ok := item.(map[string]any)[m].(map[string]any)
			if !ok {
				continue
			}
			documented = append(documented, strings.ToUpper(m)+" "+normalize(tpl))
			id, _ := op["operationId"].(string)
			if id == "" || opIDs[id] {
				t.Errorf("%s %s: operationId %q missing or repeated", m, tpl, id)
			}
			opIDs[id] = true
			resps := op["responses"].(map[string]any)
			for _, code := range []string{"400", "401", "500"} {
				if _, ok := resps[code]; !ok {
					t.Errorf("%s %s does not document %s", m, tpl, code)
				}
			}
			for _, p := range regexp.MustCompile(`\{([^}]*)\}`).FindAllStringSubmatch(tpl, -1) {
				if !d.declares(item, op, p[1]) {
					t.Errorf("%s %s: path parameter %s is not declared", m, tpl, p[1])
				}
			}
		}
	}
	sort.Strings(served)
	sort.Strings(documented)
	for _, s := range served {
		if !slices.Contains(documented, s) {
			t.Errorf("route %s is not in openapi.json", s)
		}
	}
	for _, s := range documented {
		if !slices.Contains(served, s) {
			t.Errorf("openapi.json documents %s, which is not served", s)
		}
	}
	// At least the routes of this writing (more are added as features land;
	// the two lists above must still agree).
	if len(served) < 47 {
		t.Errorf("%d routes served, want at least 47: %v", len(served), served)
	}

	// Every $ref resolves.
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				if target, _ := d.resolve(x); target == nil {
					t.Errorf("%s: $ref %s does not resolve", at, ref)
				}
			}
			for k, e := range x {
				walk(e, at+pointer(k))
			}
		case []any:
			for i, e := range x {
				walk(e, at+"/"+strconv.Itoa(i))
			}
		}
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("a $ref does not resolve: %v", r)
			}
		}()
		walk(d.raw, "")
	}()

	// Every schema of the components compiles.
	for name := range d.raw["components"].(map[string]any)["schemas"].(map[string]any) {
		d.compile(t, pointer("components", "schemas", name))
	}
}

// declares reports whether the path item or the operation declares path
// parameter name.
func (d *openAPIDoc) declares(item, op any, name string) bool {
	for _, holder := range []any{item, op} {
		ps, _ := holder.(map[string]any)["parameters"].([]any)
		for _, p := range ps {
			pm, _ := d.resolve(p)
			m := pm.(map[string]any)
			if m["in"] == "path" && m["name"] == name && m["required"] == true {
				return true
			}
		}
	}
	return false
}

// TestOpenAPIServed: GET /api/v1/openapi.json serves the embedded document
// to an identified caller, and nothing without an identity.
func TestOpenAPIServed(t *testing.T) {
	r := mountedRouter(t)
	for _, tc := range []struct {
		name   string
		user   string
		query  string
		status int
	}{
		{"identified", "li.officer", "", http.StatusOK},
		{"unknown query parameter", "li.officer", "?x=1", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json"+tc.query, nil)
			req.Header.Set(auth.HeaderDevUser, tc.user)
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if tc.status == http.StatusOK && !bytes.Equal(w.Body.Bytes(), api.OpenAPI()) {
				t.Error("served document differs from the embedded one")
			}
		})
	}
}

// TestMaskAddress pins the address masking.
func TestMaskAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"上海市", "＊＊＊＊"},
		{"上海市徐汇区", "＊＊＊＊"},
		{"上海市徐汇区测试路1号（虚构地址）", "上海市徐汇区＊＊＊＊"},
		{"Room 5, 88 Example Road", "Room 5＊＊＊＊"},
	} {
		if got := api.MaskAddress(tc.in); got != tc.want {
			t.Errorf("MaskAddress(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := api.MaskBirthDate("1986-05-17"); got != "1986-**-**" {
		t.Errorf("MaskBirthDate = %q", got)
	}
}
