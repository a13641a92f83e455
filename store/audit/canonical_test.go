package audit

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"zhianhub/store/storetest"
)

func TestCanonicalNumber(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{in: "0", want: "0"},
		{in: "-0", want: "0"},
		{in: "-0.000e5", want: "0"},
		{in: "1", want: "1"},
		{in: "-17", want: "-17"},
		{in: "100", want: "100"},
		{in: "1e2", want: "100"},
		{in: "1E+2", want: "100"},
		{in: "1.50", want: "1.5"},
		{in: "15e-1", want: "1.5"},
		{in: "0.00012", want: "0.00012"},
		{in: "1.2e-4", want: "0.00012"},
		{in: "1e-6", want: "0.000001"},
		{in: "1e-7", want: "1e-7"},
		{in: "123456789012345678901", want: "123456789012345678901"},
		{in: "1234567890123456789012", want: "1234567890123456789012e0"}, // 22 digits
		{in: "1e20", want: "100000000000000000000"},
		{in: "1e21", want: "1e21"},
		{in: "12.5e30", want: "125e29"},
		{in: "1e1000", err: true},
		{in: "1e999", want: "1e999"},
		{in: "1e-1000", want: "1e-1000"},
		{in: "1e-1001", err: true},
		{in: "1e9999999", err: true},
		{in: "1e-00000000000000000001", want: "0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := canonicalNumber(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("got %q, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCanonicalJSONSurvivesJSONB stores canonical JSON in jsonb and checks
// that what PostgreSQL gives back canonicalizes to the same bytes.
func TestCanonicalJSONSurvivesJSONB(t *testing.T) {
	pool := storetest.NewPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tests := []struct {
		name, in, want string
	}{
		{"empty", `{}`, `{}`},
		{"null", `null`, `{}`},
		{"sorted", `{"b":1,"a":2,"aa":3,"B":4}`, `{"B":4,"a":2,"aa":3,"b":1}`},
		{"duplicate keys", `{"a":1,"a":2}`, `{"a":2}`},
		{"numbers", `{"a":1.50,"b":1e2,"c":-0,"d":1E-7,"e":123456789012345678901234567890,"f":0.1}`,
			`{"a":1.5,"b":100,"c":0,"d":1e-7,"e":12345678901234567890123456789e1,"f":0.1}`},
		{"strings", `{"s":"tab\there \"q\" \\ \u0001 \u001f \u007f é 中文 \ud83d\ude00 \u2028 </script>"}`,
			"{\"s\":\"tab\\there \\\"q\\\" \\\\ \\u0001 \\u001f \u007f é 中文 😀 \u2028 </script>\"}"},
		{"nested", ` { "z" : [ 1 , { "y" : null , "x" : true } , [ ] , "" ] , "a" : { } } `,
			`{"a":{},"z":[1,{"x":true,"y":null},[],""]}`},
		{"unicode keys", `{"é":1,"e":2,"中":3}`, `{"e":2,"é":1,"中":3}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalJSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			var back string
			if err := pool.QueryRow(ctx, `SELECT $1::jsonb::text`, string(got)).Scan(&back); err != nil {
				t.Fatal(err)
			}
			again, err := CanonicalJSON([]byte(back))
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(got) {
				t.Fatalf("jsonb gave %s, canonical %s, want %s", back, again, got)
			}
		})
	}
}

func TestCanonicalJSONRefuses(t *testing.T) {
	tests := []struct{ name, in string }{
		{"array", `[1]`},
		{"string", `"x"`},
		{"number", `1`},
		{"invalid", `{"a":}`},
		{"trailing", `{} {}`},
		{"nul", `{"a":"\u0000"}`},
		{"nul key", `{"\u0000":1}`},
		{"huge number", `{"a":1e100000}`},
		{"deep", strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := CanonicalJSON([]byte(tt.in)); err == nil {
				t.Fatalf("got %s, want error", got)
			}
		})
	}
}

func TestPrepareRefuses(t *testing.T) {
	ok := Entry{Actor: "a", Action: "x", Result: "ok"}
	tests := []struct {
		name string
		mod  func(*Entry)
	}{
		{"no actor", func(e *Entry) { e.Actor = "" }},
		{"no action", func(e *Entry) { e.Action = "" }},
		{"no result", func(e *Entry) { e.Result = "" }},
		{"invalid utf-8", func(e *Entry) { e.Object = "\xff" }},
		{"nul", func(e *Entry) { e.Reason = "a\x00b" }},
		{"too long", func(e *Entry) { e.Reason = strings.Repeat("x", MaxFieldSize+1) }},
		{"detail not object", func(e *Entry) { e.Detail = []int{1} }},
		{"detail unmarshalable", func(e *Entry) { e.Detail = map[string]any{"f": func() {}} }},
		{"detail too big", func(e *Entry) { e.Detail = map[string]string{"x": strings.Repeat("y", MaxDetailSize)} }},
		{"year 10000", func(e *Entry) { e.At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	if _, err := prepare(ok, time.Now); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ok
			tt.mod(&e)
			if _, err := prepare(e, time.Now); !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("err = %v, want ErrInvalidEntry", err)
			}
		})
	}
	// Raw JSON is accepted as is.
	e := ok
	e.Detail = json.RawMessage(`{"b":1,"a":[true]}`)
	p, err := prepare(e, time.Now)
	if err != nil || p.detail != `{"a":[true],"b":1}` {
		t.Fatalf("raw detail: %q %v", p.detail, err)
	}
}
