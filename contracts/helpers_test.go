package contracts

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shared locates the read-only shared/ tree beside the repository.
func shared(elem ...string) string {
	return filepath.Join(append([]string{"..", "..", "shared"}, elem...)...)
}

type manifestCase struct {
	File    string          `json:"file"`
	Kind    string          `json:"kind"`
	Expect  string          `json:"expect"`
	Step    int             `json:"step"`
	Path    string          `json:"path"`
	Payload json.RawMessage `json:"payload"`
	Note    string          `json:"note"`
}

func loadManifest(t testing.TB) []manifestCase {
	t.Helper()
	data, err := os.ReadFile(shared("testdata", "envelope", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Cases []manifestCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Cases) == 0 {
		t.Fatal("manifest has no case")
	}
	return m.Cases
}

// validPayload returns the payload of the manifest case whose file starts
// with prefix, e.g. "valid/01".
func validPayload(t testing.TB, prefix string) []byte {
	t.Helper()
	for _, c := range loadManifest(t) {
		if strings.HasPrefix(c.File, prefix) {
			return c.Payload
		}
	}
	t.Fatalf("no manifest case %s", prefix)
	return nil
}

func newTestValidator(t testing.TB) *Validator {
	t.Helper()
	v, err := NewValidator(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// mutate decodes payload into a generic object, applies edit and encodes it.
func mutate(t testing.TB, payload []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// set returns an edit that sets dotted path p (objects only) to v.
func set(p string, v any) func(map[string]any) {
	return func(m map[string]any) {
		keys := strings.Split(p, ".")
		for _, k := range keys[:len(keys)-1] {
			m = m[k].(map[string]any)
		}
		m[keys[len(keys)-1]] = v
	}
}

// del returns an edit that deletes dotted path p.
func del(p string) func(map[string]any) {
	return func(m map[string]any) {
		keys := strings.Split(p, ".")
		for _, k := range keys[:len(keys)-1] {
			m = m[k].(map[string]any)
		}
		delete(m, keys[len(keys)-1])
	}
}

// all combines edits.
func all(edits ...func(map[string]any)) func(map[string]any) {
	return func(m map[string]any) {
		for _, e := range edits {
			e(m)
		}
	}
}

// withCheckChar completes 17 digits to a GB 11643-1999 number, computing
// the ISO 7064 MOD 11-2 check character independently of idCheckChar:
// weights 2^(17-i) mod 11, check = (12 - sum mod 11) mod 11, 10 written X.
func withCheckChar(first17 string) string {
	sum, w := 0, 1
	for i := 16; i >= 0; i-- {
		w = w * 2 % 11
		sum += int(first17[i]-'0') * w
	}
	c := (12 - sum%11) % 11
	if c == 10 {
		return first17 + "X"
	}
	return first17 + string(rune('0'+c))
}

// assertField checks that err is a *FieldError with code and path and that
// its Reason names the path.
func assertField(t *testing.T, err error, code, path string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v, want %s at %s", err, code, path)
	}
	if fe.Code != code || fe.Path != path {
		t.Fatalf("got %s at %q (%s), want %s at %q", fe.Code, fe.Path, fe.Reason, code, path)
	}
	if !strings.HasPrefix(fe.Reason, path+"：") {
		t.Errorf("reason %q does not name path %q", fe.Reason, path)
	}
}
