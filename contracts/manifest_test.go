package contracts

import (
	"errors"
	"strings"
	"testing"
)

func TestManifestValidPayloads(t *testing.T) {
	v := newTestValidator(t)
	n := 0
	for _, c := range loadManifest(t) {
		if c.Expect != CodeAccepted {
			continue
		}
		n++
		t.Run(c.File, func(t *testing.T) {
			got, err := v.ValidatePayload(c.Kind, c.Payload)
			if err != nil {
				t.Fatalf("%s: %v", c.Note, err)
			}
			if got == nil {
				t.Fatal("nil payload")
			}
		})
	}
	if n != 12 {
		t.Errorf("%d valid cases, want 12", n)
	}
}

// ID numbers for the payload-level negative cases, built as the manifest
// notes describe from the register payload of valid/01 (ID 310104198605171356,
// male, born 1986-05-17).
var (
	idWrongCheck = wrongCheckChar(withCheckChar("31010419860517135"))
	idBorn791001 = withCheckChar("31010419791001135")
)

// wrongCheckChar replaces the check character of id by another one.
func wrongCheckChar(id string) string {
	if id[17] == '0' {
		return id[:17] + "1"
	}
	return id[:17] + "0"
}

// manifestMutations rebuilds the payload of each step-6 negative case.
var manifestMutations = map[string]func(map[string]any){
	"invalid/e120-missing-basis.json":       del("basis"),
	"invalid/e120-unknown-field.json":       set("ethnicity", "汉族"),
	"invalid/e120-bad-date.json":            set("reviewBy", "2027-02-30"),
	"invalid/e121-id-check-char.json":       set("idNo", idWrongCheck),
	"invalid/e121-sex-disagrees.json":       set("sex", "2"),
	"invalid/e121-birthdate-disagrees.json": all(set("idNo", idBorn791001), set("birthDate", "1979-10-02")),
	"invalid/e122-region-retired.json":      set("hukouRegion", "310108"),
	"invalid/e122-category-unknown.json":    set("categories", []string{"0701"}),
}

func TestManifestPayloadRejections(t *testing.T) {
	v := newTestValidator(t)
	register := validPayload(t, "valid/01")
	for _, c := range loadManifest(t) {
		if c.Step != 6 {
			continue
		}
		t.Run(c.File, func(t *testing.T) {
			switch c.Expect {
			case CodeUnknownKind:
				_, err := v.ValidatePayload(c.Kind, register)
				if !errors.Is(err, ErrUnknownKind) || ErrorCode(err) != c.Expect {
					t.Fatalf("got %v, want %s", err, c.Expect)
				}
			case CodeMalformed: // the decrypted payload is truncated JSON
				_, err := v.ValidatePayload(c.Kind, register[:len(register)/2])
				if !errors.Is(err, ErrNotObject) || ErrorCode(err) != c.Expect {
					t.Fatalf("got %v, want %s", err, c.Expect)
				}
			default:
				edit, ok := manifestMutations[c.File]
				if !ok {
					t.Fatalf("no mutation for %s (%s)", c.File, c.Note)
				}
				_, err := v.ValidatePayload(c.Kind, mutate(t, register, edit))
				assertField(t, err, c.Expect, c.Path)
			}
		})
	}
}

func TestManifestReasons(t *testing.T) {
	v := newTestValidator(t)
	register := validPayload(t, "valid/01")
	for file, want := range map[string]string{
		"invalid/e120-missing-basis.json":       "basis：缺少必填字段",
		"invalid/e120-unknown-field.json":       "ethnicity：未知字段",
		"invalid/e120-bad-date.json":            "reviewBy：2027-02-30 不是有效的日历日期",
		"invalid/e121-id-check-char.json":       "idNo：公民身份号码校验码错误",
		"invalid/e121-sex-disagrees.json":       "sex：与公民身份号码第 17 位不符",
		"invalid/e121-birthdate-disagrees.json": "birthDate：与公民身份号码中的出生日期 1979-10-01 不符",
		"invalid/e122-region-retired.json":      "hukouRegion：代码 310108 不在现行 GB/T 2260 县级行政区划代码表中",
		"invalid/e122-category-unknown.json":    "categories[0]：代码 0701 不在重点人员类别代码表中",
	} {
		_, err := v.ValidatePayload(KindRegister, mutate(t, register, manifestMutations[file]))
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.HasPrefix(fe.Reason, want) {
			t.Errorf("%s: reason %v, want prefix %q", file, err, want)
		}
	}
}
