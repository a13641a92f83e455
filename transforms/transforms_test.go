package transforms_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"zhianhub/contracts"
	"zhianhub/transforms"
)

// register is the valid register payload of the vectors (valid/01).
const register = `{"personNo": "32010620261126000017", "seq": 1, "idType": "111", "idNo": "310104198605171356", "name": "张测试", "sex": "1", "birthDate": "1986-05-17", "hukouRegion": "310104", "hukouAddr": "上海市徐汇区测试路1号（虚构地址）", "residRegion": "310115", "residAddr": "上海市浦东新区样例路2弄3号（虚构地址）", "categories": ["0201"], "basis": {"docNo": "苏公鼓（测）字〔2026〕第0017号", "approvedBy": "南京市公安局鼓楼分局（测试）", "approvedAt": "2026-11-26T11:00:00.000+08:00", "legal": "《中华人民共和国禁毒法》有关规定（测试数据）"}, "reviewBy": "2027-05-26", "unit": "320106000000", "officer": "1023456", "registeredAt": "2026-11-26T15:20:00.000+08:00"}`

// registerB is valid/07, whose ID number ends in X.
const registerB = `{"personNo": "33010620261125000042", "seq": 1, "idType": "111", "idNo": "31010819900228006X", "name": "李示例", "sex": "2", "birthDate": "1990-02-28", "hukouRegion": "310106", "categories": ["0301", "9901"], "basis": {"docNo": "浙公西（测）字〔2026〕第0042号", "approvedBy": "杭州市公安局西湖分局（测试）", "approvedAt": "2026-11-25T10:00:00.000+08:00", "legal": "《中华人民共和国刑法》有关规定（测试数据）"}, "reviewBy": "2027-11-20", "unit": "330106000000", "officer": "204518", "registeredAt": "2026-11-25T14:00:00.000+08:00"}`

func TestClean(t *testing.T) {
	tests := []struct {
		name    string
		kind    string
		in      string
		want    string // "" = unchanged
		changes []transforms.Change
	}{
		{
			name: "clean payload unchanged",
			kind: contracts.KindRegister, in: register,
		},
		{
			name:    "full-width ID number, lower-case x, surrounding spaces; values withheld",
			kind:    contracts.KindRegister,
			in:      strings.Replace(registerB, `"31010819900228006X"`, `" ３１０１０８１９９００２２８００６ｘ　"`, 1),
			want:    registerB,
			changes: []transforms.Change{{Path: "idNo", Ops: []string{transforms.OpTrim, transforms.OpFullwidthDigits, transforms.OpUpperX}, Personal: true}},
		},
		{
			name:    "ASCII lower-case x upper-cased",
			kind:    contracts.KindRegister,
			in:      strings.Replace(registerB, `006X"`, `006x"`, 1),
			want:    registerB,
			changes: []transforms.Change{{Path: "idNo", Ops: []string{transforms.OpUpperX}, Personal: true}},
		},
		{
			name: "lower-case x kept for a passport (idType 414)",
			kind: contracts.KindRegister,
			in:   strings.NewReplacer(`"idType": "111"`, `"idType": "414"`, `006X"`, `006x"`).Replace(registerB),
		},
		{
			name: "idType cleaned before the check character is judged",
			kind: contracts.KindRegister,
			in:   strings.NewReplacer(`"idType": "111"`, `"idType": " １１１"`, `006X"`, `006x"`).Replace(registerB),
			want: registerB,
			changes: []transforms.Change{
				{Path: "idType", Ops: []string{transforms.OpTrim, transforms.OpFullwidthDigits}, Before: " １１１", After: "111"},
				{Path: "idNo", Ops: []string{transforms.OpUpperX}, Personal: true},
			},
		},
		{
			name:    "name trimmed, value withheld",
			kind:    contracts.KindRegister,
			in:      strings.Replace(register, `"张测试"`, `"\t张测试 \u3000"`, 1),
			want:    register,
			changes: []transforms.Change{{Path: "name", Ops: []string{transforms.OpTrim}, Personal: true}},
		},
		{
			name: "codes, list items, nested instant",
			kind: contracts.KindRegister,
			in: strings.NewReplacer(`"0201"`, `"０２０１ "`, `"unit": "320106000000"`, `"unit": "３２０１０６０００００0"`,
				`"approvedAt": "2026-11-26T11:00:00.000+08:00"`, `"approvedAt": "２０２６－11-26Ｔ11：00:00．000＋08:00"`).Replace(register),
			want: register,
			changes: []transforms.Change{
				{Path: "categories[0]", Ops: []string{transforms.OpTrim, transforms.OpFullwidthDigits}, Before: "０２０１ ", After: "0201"},
				{Path: "basis.approvedAt", Ops: []string{transforms.OpFullwidthDigits, transforms.OpFullwidthPunct}, Before: "２０２６－11-26Ｔ11：00:00．000＋08:00", After: "2026-11-26T11:00:00.000+08:00"},
				{Path: "unit", Ops: []string{transforms.OpFullwidthDigits}, Before: "３２０１０６０００００0", After: "320106000000"},
			},
		},
		{
			name: "full-width letters are not folded in free text, only trimmed",
			kind: contracts.KindRegister,
			in:   strings.Replace(register, `"张测试"`, `"张测试１Ｘ"`, 1),
		},
		{
			name: "unknown fields untouched, also when they look like known ones",
			kind: contracts.KindRegister,
			in:   strings.Replace(register, `"seq": 1,`, `"seq": 1, "ethnicity": " 汉 ", "extra": {"idNo": " ３１ "}, "list": [" １ ", {"unit": " ２ "}],`, 1),
		},
		{
			name: "numbers and wrong types left for the validator",
			kind: contracts.KindControl,
			in:   `{"personNo": 32010620261126000017, "seq": " 1", "level": "２", "regions": [" ３１０１１２", 310115, null], "basis": " x "}`,
			want: `{"personNo": 32010620261126000017, "seq": " 1", "level": "２", "regions": ["310112", 310115, null], "basis": " x "}`,
			changes: []transforms.Change{
				{Path: "regions[0]", Ops: []string{transforms.OpTrim, transforms.OpFullwidthDigits}, Before: " ３１０１１２", After: "310112"},
			},
		},
		{
			name: "change: nested person fields, withheld address",
			kind: contracts.KindChange,
			in:   `{"personNo":"32010620261126000017","seq":2,"changes":{"residRegion":"３１０１１２","residAddr":" 上海市闵行区示例路88号 ","idNo":" x "},"reason":" 居住地变更\n","changedAt":"2026-11-27T09:15:00.000+08:00"}`,
			want: `{"personNo":"32010620261126000017","seq":2,"changes":{"residRegion":"310112","residAddr":"上海市闵行区示例路88号","idNo":" x "},"reason":"居住地变更","changedAt":"2026-11-27T09:15:00.000+08:00"}`,
			changes: []transforms.Change{
				{Path: "changes.residRegion", Ops: []string{transforms.OpFullwidthDigits}, Before: "３１０１１２", After: "310112"},
				{Path: "changes.residAddr", Ops: []string{transforms.OpTrim}, Personal: true},
				{Path: "reason", Ops: []string{transforms.OpTrim}, Before: " 居住地变更\n", After: "居住地变更"},
			},
		},
		{
			name: "escapes of unchanged strings kept, changed string re-encoded",
			kind: contracts.KindRelease,
			in:   `{"personNo":"\u0033２010620261127000003","reason":"a\u0022b","releasedAt":"x"}`,
			want: `{"personNo":"32010620261127000003","reason":"a\u0022b","releasedAt":"x"}`,
			changes: []transforms.Change{
				{Path: "personNo", Ops: []string{transforms.OpFullwidthDigits}, Before: "3２010620261127000003", After: "32010620261127000003"},
			},
		},
		{
			name: "inner control characters kept (validator rejects them)",
			kind: contracts.KindTask,
			in:   `{"note":" a\u0000b "}`,
			want: `{"note":"a\u0000b"}`,
			changes: []transforms.Change{
				{Path: "note", Ops: []string{transforms.OpTrim}, Before: " a\x00b ", After: "a\x00b"},
			},
		},
		{
			name: "duplicated member: both cleaned (validator rejects the duplicate)",
			kind: contracts.KindTaskSign,
			in:   `{"taskNo":" 1","taskNo":" 2"}`,
			want: `{"taskNo":"1","taskNo":"2"}`,
			changes: []transforms.Change{
				{Path: "taskNo", Ops: []string{transforms.OpTrim}, Before: " 1", After: "1"},
				{Path: "taskNo", Ops: []string{transforms.OpTrim}, Before: " 2", After: "2"},
			},
		},
		{
			name: "receipt",
			kind: contracts.KindReceipt,
			in:   `{"ref":" 01a21ab8-5de0-7f06-9d45-0d164f1e3d2f ","status":"ACCEPTED","code":"０ ","reason":"","at":"x"}`,
			want: `{"ref":"01a21ab8-5de0-7f06-9d45-0d164f1e3d2f","status":"ACCEPTED","code":"0","reason":"","at":"x"}`,
			changes: []transforms.Change{
				{Path: "ref", Ops: []string{transforms.OpTrim}, Before: " 01a21ab8-5de0-7f06-9d45-0d164f1e3d2f ", After: "01a21ab8-5de0-7f06-9d45-0d164f1e3d2f"},
				{Path: "code", Ops: []string{transforms.OpTrim, transforms.OpFullwidthDigits}, Before: "０ ", After: "0"},
			},
		},
		{name: "unknown kind", kind: "keyperson.other", in: `{"personNo":" 1"}`},
		{name: "not JSON", kind: contracts.KindRegister, in: `{"personNo":" 1"`},
		{name: "array", kind: contracts.KindRegister, in: `[{"personNo":" 1"}]`},
		{name: "invalid UTF-8", kind: contracts.KindRegister, in: "{\"name\":\" \xff\"}"},
		{name: "empty", kind: contracts.KindRegister, in: ``},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == "" {
				want = tc.in
			}
			got, changes, err := transforms.Clean(tc.kind, []byte(tc.in))
			if err != nil {
				t.Fatalf("Clean: %v", err)
			}
			if string(got) != want {
				t.Errorf("cleaned\n got %s\nwant %s", got, want)
			}
			if !reflect.DeepEqual(changes, tc.changes) {
				t.Errorf("changes\n got %+v\nwant %+v", changes, tc.changes)
			}
		})
	}
}

// TestCleanThenValidate shows the cleaned payload passing the validator and
// what cannot be cleaned still being rejected with its code.
func TestCleanThenValidate(t *testing.T) {
	v, err := contracts.NewValidator(contracts.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, code, path string
	}{
		{"full-width ID and lower x", strings.Replace(registerB, `"31010819900228006X"`, `"３１０１０８１９９００２２８００６ｘ"`, 1), contracts.CodeAccepted, ""},
		{"untrimmed name", strings.Replace(register, `"张测试"`, `" 张测试 "`, 1), contracts.CodeAccepted, ""},
		{"wrong check character stays E121", strings.Replace(register, `1356"`, `１３５７"`, 1), contracts.CodeIDNumber, "idNo"},
		{"unknown field stays E120", strings.Replace(register, `"seq": 1,`, `"seq": 1, "ethnicity": " 汉 ",`, 1), contracts.CodeSchema, "ethnicity"},
		{"letters in a code stay E120", strings.Replace(register, `"320106000000"`, `"３２０１０６ＡＢ００００"`, 1), contracts.CodeSchema, "unit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cleaned, _, err := transforms.Clean(contracts.KindRegister, []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.ValidatePayload(contracts.KindRegister, cleaned)
			if got := contracts.ErrorCode(err); got != tc.code {
				t.Fatalf("code %s, want %s (%v)", got, tc.code, err)
			}
			var fe *contracts.FieldError
			if tc.path != "" && (!errors.As(err, &fe) || fe.Path != tc.path) {
				t.Fatalf("error %v, want path %s", err, tc.path)
			}
		})
	}
}

func TestNormalizeIDNo(t *testing.T) {
	for in, want := range map[string]string{
		"31010819900228006X": "31010819900228006X",
		"31010819900228006x": "31010819900228006X",
		" ３１０１０８１９９００２２８００６ｘ ": "31010819900228006X",
		"E1234567x": "E1234567x",
		"":          "",
	} {
		if got := transforms.NormalizeIDNo(in); got != want {
			t.Errorf("NormalizeIDNo(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzClean(f *testing.F) {
	for _, kind := range contracts.Kinds() {
		f.Add(kind, []byte(register))
		f.Add(kind, []byte(registerB))
	}
	f.Add(contracts.KindRegister, []byte(`{"idNo":" ３１０１０８１９９００２２８００６ｘ ","idType":"１１１"}`))
	f.Add(contracts.KindChange, []byte(`{"changes":{"basis":{"docNo":" a "},"categories":[" １",1,[],{}]},"x":[[[{"name":" a"}]]]}`))
	f.Add(contracts.KindControl, []byte(`{"regions":["\ud800 ", "\u00e9\u3000"],"validTo":"２０２６－０１"}`))
	f.Add(contracts.KindRegister, []byte(`{"name":"\u200b张\ufeff"} `))
	f.Add(contracts.KindRegister, []byte(`{"a":-1.5e3,"b":true,"c":null,"name":" x "}`))
	f.Fuzz(func(t *testing.T, kind string, in []byte) {
		orig := bytes.Clone(in)
		out, changes, err := transforms.Clean(kind, in)
		if err != nil {
			t.Fatalf("Clean: %v", err)
		}
		if !bytes.Equal(in, orig) {
			t.Fatal("input modified")
		}
		if !json.Valid(in) {
			if !bytes.Equal(out, in) || changes != nil {
				t.Fatal("invalid JSON was altered")
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("output not JSON: %q", out)
		}
		if (len(changes) == 0) != bytes.Equal(in, out) {
			t.Fatalf("changes %v but output equal %v", changes, bytes.Equal(in, out))
		}
		for _, c := range changes {
			if c.Personal && (c.Before != "" || c.After != "") {
				t.Fatalf("personal value recorded at %s", c.Path)
			}
			if len(c.Ops) == 0 {
				t.Fatalf("change without op at %s", c.Path)
			}
		}
		again, more, err := transforms.Clean(kind, out)
		if err != nil || len(more) != 0 || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q (%v, %v)", out, again, more, err)
		}
		// Same shape: the same members in the same order at every level.
		var a, b any
		if json.Unmarshal(in, &a) == nil && json.Unmarshal(out, &b) == nil && !sameShape(a, b) {
			t.Fatalf("shape changed: %s -> %s", in, out)
		}
	})
}

// sameShape compares two decoded documents ignoring string values.
func sameShape(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameShape(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameShape(x[i], y[i]) {
				return false
			}
		}
		return true
	case string:
		_, ok := b.(string)
		return ok
	default:
		return reflect.DeepEqual(a, b)
	}
}
