package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"unicode/utf8"
)

// decoderSplit is the earlier splitObject, built on json.Decoder: the
// oracle of the byte splitter.
func decoderSplit(raw []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("top level is not an object")
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, member{name: tok.(string), value: v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return out, nil
}

func checkSameSplit(t *testing.T, raw []byte) {
	t.Helper()
	if !utf8.Valid(raw) {
		return // parse refuses it before splitting (E100)
	}
	want, werr := decoderSplit(raw)
	got, gerr := splitObject(raw)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("%q: splitter %v, decoder %v", raw, gerr, werr)
	}
	if werr != nil {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%q: %d members, decoder %d", raw, len(got), len(want))
	}
	for i := range got {
		var gv, wv any
		// Values are compared as JSON (the decoder compacts nothing but
		// may differ in surrounding space, which the splitter trims too).
		if got[i].name != want[i].name || !bytes.Equal(bytes.TrimSpace(got[i].value), bytes.TrimSpace(want[i].value)) {
			_ = json.Unmarshal(got[i].value, &gv)
			_ = json.Unmarshal(want[i].value, &wv)
			if got[i].name != want[i].name || !reflect.DeepEqual(gv, wv) {
				t.Fatalf("%q: member %d %q=%s, decoder %q=%s", raw, i, got[i].name, got[i].value, want[i].name, want[i].value)
			}
		}
	}
}

var splitSeeds = []string{
	`{}`, ` {"v":1} `, `{"v":1,"id":"a\"b","ct":"x\\y","n":{"a":[1,{"b":"}"}]},"s":"\u00e9"}`,
	`{"a":[],"b":{},"c":null,"d":true,"e":-1.5e3}`, `{"a" : "b" , "c" :"d"}`, `[]`, `{"a":1}x`, `{"a"}`, `{"\u0061":1,"a":2}`,
}

func TestSplitMatchesDecoder(t *testing.T) {
	for _, s := range splitSeeds {
		checkSameSplit(t, []byte(s))
	}
}

func FuzzSplitMatchesDecoder(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkSameSplit(t, raw) })
}
