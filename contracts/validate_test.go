package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

type ruleCase struct {
	name string
	kind string
	base string                   // manifest case prefix of the payload to edit
	edit func(map[string]any)     // nil: the payload as is
	raw  func(base []byte) []byte // instead of edit, for what a map cannot express
	code string                   // "" for a valid payload
	path string
}

var (
	rep     = strings.Repeat
	id414   = all(set("idType", "414"), set("idNo", "E12345678"), set("sex", "0"), set("birthDate", "1970-01-01"))
	ninePlC = []string{"0101", "0201", "0301", "0401", "0501", "0601", "9901", "0102", "0103"}
)

func regCases() []ruleCase {
	c := func(name string, edit func(map[string]any), code, path string) ruleCase {
		return ruleCase{name: name, kind: KindRegister, base: "valid/01", edit: edit, code: code, path: path}
	}
	return []ruleCase{
		c("valid", nil, "", ""),
		c("personNo 19 digits", set("personNo", "3201062026112600001"), CodeSchema, "personNo"),
		c("personNo letters", set("personNo", "32010620261126A00017"), CodeSchema, "personNo"),
		c("personNo month 13", set("personNo", "32010620261326000017"), CodeSchema, "personNo"),
		c("personNo full-width digits", set("personNo", "３２０１０６２０２６１１２６０００００１７"), CodeSchema, "personNo"),
		c("personNo retired region ok", set("personNo", "31010820141126000017"), "", ""),
		c("personNo number", set("personNo", json.Number("32010620261126000017")), CodeSchema, "personNo"),
		c("seq 0", set("seq", 0), CodeSchema, "seq"),
		c("seq negative", set("seq", -1), CodeSchema, "seq"),
		c("seq string", set("seq", "1"), CodeSchema, "seq"),
		c("seq fraction", set("seq", 1.5), CodeSchema, "seq"),
		c("seq max", set("seq", json.Number("9007199254740991")), "", ""),
		c("seq above 2^53-1", set("seq", json.Number("9007199254740992")), CodeSchema, "seq"),
		c("seq huge", set("seq", json.Number("1"+rep("0", 40))), CodeSchema, "seq"),
		c("seq 1.0", set("seq", json.Number("1.0")), CodeSchema, "seq"),
		c("seq 1e0", set("seq", json.Number("1e0")), CodeSchema, "seq"),
		c("seq null", set("seq", nil), CodeSchema, "seq"),
		c("missing personNo", del("personNo"), CodeSchema, "personNo"),
		c("idType unknown", set("idType", "112"), CodeNotInTable, "idType"),
		c("idType shape before table", set("idType", "11"), CodeSchema, "idType"),
		c("idType 414", id414, "", ""),
		c("idType 990", all(id414, set("idType", "990"), set("idNo", "H1234567(8)")), "", ""),
		c("idType 414 empty idNo", all(id414, set("idNo", "")), CodeSchema, "idNo"),
		c("idType 414 idNo 33 chars", all(id414, set("idNo", rep("A", 33))), CodeSchema, "idNo"),
		c("idNo 17 chars", set("idNo", "31010419860517135"), CodeSchema, "idNo"),
		c("idNo lower-case x", all(set("idNo", "31010819900228006x")), CodeSchema, "idNo"),
		c("idNo X in the middle", set("idNo", "3101041986X5171356"), CodeSchema, "idNo"),
		c("idNo check char X ok", all(set("idNo", "31010819900228006X"), set("sex", "2"), set("birthDate", "1990-02-28")), "", ""),
		c("idNo check char", set("idNo", "310104198605171357"), CodeIDNumber, "idNo"),
		c("idNo unknown province", set("idNo", withCheckChar("99010419860517135")), CodeIDNumber, "idNo"),
		c("idNo retired region ok", all(set("idNo", withCheckChar("31010819860517135"))), "", ""),
		c("idNo impossible birth date", all(set("idNo", withCheckChar("31010419860230135"))), CodeIDNumber, "idNo"),
		c("name 50 chars", set("name", rep("张", 50)), "", ""),
		c("name 50 supplementary chars", set("name", rep("𠀀", 50)), "", ""),
		c("name 51 chars", set("name", rep("张", 51)), CodeSchema, "name"),
		c("name empty", set("name", ""), CodeSchema, "name"),
		c("name blank", set("name", "   "), CodeSchema, "name"),
		c("name leading space", set("name", " 张测试"), CodeSchema, "name"),
		c("name trailing ideographic space", set("name", "张测试\u3000"), CodeSchema, "name"),
		c("name NUL", set("name", "张\x00测试"), CodeSchema, "name"),
		c("name newline", set("name", "张\n测试"), CodeSchema, "name"),
		c("name C1 control", set("name", "张\u0085测试"), CodeSchema, "name"),
		c("name with middle dot ok", set("name", "阿依古丽·测试"), "", ""),
		c("name number", set("name", 5), CodeSchema, "name"),
		c("missing name", del("name"), CodeSchema, "name"),
		c("sex not in table", set("sex", "3"), CodeNotInTable, "sex"),
		c("sex shape before table", set("sex", "10"), CodeSchema, "sex"),
		c("sex 0 with resident ID", set("sex", "0"), CodeIDNumber, "sex"),
		c("sex 9 with resident ID", set("sex", "9"), CodeIDNumber, "sex"),
		c("birthDate shape", set("birthDate", "1986-5-17"), CodeSchema, "birthDate"),
		c("birthDate not a date before agreement", set("birthDate", "1986-02-30"), CodeSchema, "birthDate"),
		c("birthDate timestamp", set("birthDate", "1986-05-17T00:00:00+08:00"), CodeSchema, "birthDate"),
		c("hukouRegion retired", set("hukouRegion", "310108"), CodeNotInTable, "hukouRegion"),
		c("hukouRegion province level", set("hukouRegion", "310000"), CodeNotInTable, "hukouRegion"),
		c("hukouRegion Dongguan", set("hukouRegion", "441900"), "", ""),
		c("hukouRegion 5 digits", set("hukouRegion", "31010"), CodeSchema, "hukouRegion"),
		c("hukouAddr 200", set("hukouAddr", rep("路", 200)), "", ""),
		c("hukouAddr 201", set("hukouAddr", rep("路", 201)), CodeSchema, "hukouAddr"),
		c("hukouAddr empty", set("hukouAddr", ""), "", ""),
		c("hukouAddr tab", set("hukouAddr", "上海\t徐汇"), CodeSchema, "hukouAddr"),
		c("optional fields omitted", all(del("hukouAddr"), del("residRegion"), del("residAddr")), "", ""),
		c("residRegion retired", set("residRegion", "310108"), CodeNotInTable, "residRegion"),
		c("residRegion null", set("residRegion", nil), CodeSchema, "residRegion"),
		c("residAddr 201", set("residAddr", rep("弄", 201)), CodeSchema, "residAddr"),
		c("categories empty", set("categories", []string{}), CodeSchema, "categories"),
		c("categories 8", set("categories", []string{"0101", "0201", "0301", "0401", "0501", "0601", "9901"}), "", ""),
		c("categories 9", set("categories", ninePlC), CodeSchema, "categories"),
		c("categories string", set("categories", "0201"), CodeSchema, "categories"),
		c("categories duplicate", set("categories", []string{"0201", "0301", "0201"}), CodeSchema, "categories[2]"),
		c("categories shape", set("categories", []string{"201"}), CodeSchema, "categories[0]"),
		c("categories element type", set("categories", []any{"0201", 301}), CodeSchema, "categories[1]"),
		c("categories unknown second", set("categories", []string{"0201", "0701"}), CodeNotInTable, "categories[1]"),
		c("categories shape before table", set("categories", []string{"0701", "x"}), CodeSchema, "categories[1]"),
		c("basis null", set("basis", nil), CodeSchema, "basis"),
		c("basis array", set("basis", []string{}), CodeSchema, "basis"),
		c("basis.docNo empty", set("basis.docNo", ""), CodeSchema, "basis.docNo"),
		c("basis.docNo 64", set("basis.docNo", rep("号", 64)), "", ""),
		c("basis.docNo 65", set("basis.docNo", rep("号", 65)), CodeSchema, "basis.docNo"),
		c("basis.approvedBy missing", del("basis.approvedBy"), CodeSchema, "basis.approvedBy"),
		c("basis.approvedAt no T", set("basis.approvedAt", "2026-11-26 11:00:00+08:00"), CodeSchema, "basis.approvedAt"),
		c("basis.legal 500 multi-line", set("basis.legal", rep("法", 498)+"\r\n"), "", ""),
		c("basis.legal 501", set("basis.legal", rep("法", 501)), CodeSchema, "basis.legal"),
		c("basis.legal blank", set("basis.legal", "\n"), CodeSchema, "basis.legal"),
		c("basis unknown field", set("basis.extra", "x"), CodeSchema, "basis.extra"),
		c("reviewBy 2027-02-30", set("reviewBy", "2027-02-30"), CodeSchema, "reviewBy"),
		c("reviewBy exactly 1 year", set("reviewBy", "2027-11-26"), "", ""),
		c("reviewBy 1 year + 1 day", set("reviewBy", "2027-11-27"), CodeSchema, "reviewBy"),
		c("reviewBy registration day", set("reviewBy", "2026-11-26"), "", ""),
		c("reviewBy before registration", set("reviewBy", "2026-11-25"), CodeSchema, "reviewBy"),
		c("reviewBy uses local date of registeredAt", all(set("registeredAt", "2026-11-25T20:00:00Z"), set("reviewBy", "2027-11-26")), "", ""),
		c("reviewBy local date lower bound", all(set("registeredAt", "2026-11-25T20:00:00Z"), set("reviewBy", "2026-11-25")), CodeSchema, "reviewBy"),
		c("reviewBy 29 February + 1 year", all(set("registeredAt", "2028-02-29T10:00:00+08:00"), set("reviewBy", "2029-02-28")), "", ""),
		c("reviewBy 29 February + 1 year + 1 day", all(set("registeredAt", "2028-02-29T10:00:00+08:00"), set("reviewBy", "2029-03-01")), CodeSchema, "reviewBy"),
		c("reviewBy range before later fields", all(set("reviewBy", "2030-01-01"), set("officer", "1")), CodeSchema, "reviewBy"),
		c("registeredAt malformed before reviewBy range", all(set("reviewBy", "2030-01-01"), set("registeredAt", "2026-11-26")), CodeSchema, "registeredAt"),
		c("unit 11 digits", set("unit", "32010600000"), CodeSchema, "unit"),
		c("officer 5 digits", set("officer", "12345"), CodeSchema, "officer"),
		c("officer 6 digits", set("officer", "123456"), "", ""),
		c("officer 8 digits", set("officer", "12345678"), "", ""),
		c("officer 9 digits", set("officer", "123456789"), CodeSchema, "officer"),
		c("registeredAt no offset", set("registeredAt", "2026-11-26T15:20:00"), CodeSchema, "registeredAt"),
		c("registeredAt lower-case t", set("registeredAt", "2026-11-26t15:20:00Z"), CodeSchema, "registeredAt"),
		c("registeredAt hour 25", set("registeredAt", "2026-11-26T25:20:00+08:00"), CodeSchema, "registeredAt"),
		c("registeredAt offset +24:00", set("registeredAt", "2026-11-26T15:20:00+24:00"), CodeSchema, "registeredAt"),
		c("registeredAt 10 fraction digits", set("registeredAt", "2026-11-26T15:20:00.0000000001Z"), CodeSchema, "registeredAt"),
		c("registeredAt fraction and Z", set("registeredAt", "2026-11-26T07:20:00.5Z"), "", ""),
		c("unknown field religion", set("religion", "x"), CodeSchema, "religion"),
		c("unknown field before other errors", all(set("name", ""), set("health", "x")), CodeSchema, "health"),
		c("unknown field case differs", set("Name", "x"), CodeSchema, "Name"),
		c("first error in spec order", all(set("unit", "1"), set("name", "")), CodeSchema, "name"),
		c("shape of later field before table of earlier one is not reported first", all(set("hukouRegion", "310108"), set("officer", "1")), CodeNotInTable, "hukouRegion"),
		{name: "duplicate key", kind: KindRegister, base: "valid/01", code: CodeSchema, path: "name",
			raw: func(b []byte) []byte { return append([]byte(`{"name":"李四",`), b[1:]...) }},
		{name: "duplicate nested key", kind: KindRegister, base: "valid/01", code: CodeSchema, path: "basis.legal",
			raw: func(b []byte) []byte {
				return bytes.Replace(b, []byte(`"legal":`), []byte(`"legal":"x","legal":`), 1)
			}},
	}
}

func otherCases() []ruleCase {
	c := func(kind, base, name string, edit func(map[string]any), code, path string) ruleCase {
		return ruleCase{name: name, kind: kind, base: base, edit: edit, code: code, path: path}
	}
	ch := func(name string, edit func(map[string]any), code, path string) ruleCase {
		return c(KindChange, "valid/02", name, edit, code, path)
	}
	ca := func(name string, edit func(map[string]any), code, path string) ruleCase {
		return c(KindCancel, "valid/06", name, edit, code, path)
	}
	co := func(name string, edit func(map[string]any), code, path string) ruleCase {
		return c(KindControl, "valid/03", name, edit, code, path)
	}
	re := func(name string, edit func(map[string]any), code, path string) ruleCase {
		return c(KindRelease, "valid/04", name, edit, code, path)
	}
	ta := func(name string, edit func(map[string]any), code, path string) ruleCase {
		return c(KindTask, "valid/05", name, edit, code, path)
	}
	ts := func(name string, edit func(map[string]any), code, path string) ruleCase {
		return c(KindTaskSign, "valid/08", name, edit, code, path)
	}
	rc := func(name string, edit func(map[string]any), code, path string) ruleCase {
		return c(KindReceipt, "valid/10", name, edit, code, path)
	}
	validFrom := "2026-11-27T09:00:00.000+08:00"
	return []ruleCase{
		ch("valid", nil, "", ""),
		ch("idNo in changes", set("changes.idNo", "310104198605171356"), CodeSchema, "changes.idNo"),
		ch("idType in changes", set("changes.idType", "414"), CodeSchema, "changes.idType"),
		ch("personNo in changes", set("changes.personNo", "32010620261126000017"), CodeSchema, "changes.personNo"),
		ch("unknown in changes", set("changes.ethnicity", "x"), CodeSchema, "changes.ethnicity"),
		ch("empty changes", set("changes", map[string]any{}), CodeSchema, "changes"),
		ch("changes not object", set("changes", "residRegion"), CodeSchema, "changes"),
		ch("missing changes", del("changes"), CodeSchema, "changes"),
		ch("changes.residRegion retired", set("changes.residRegion", "310108"), CodeNotInTable, "changes.residRegion"),
		ch("changes.residAddr cleared", set("changes.residAddr", ""), "", ""),
		ch("changes.name empty", set("changes", map[string]any{"name": ""}), CodeSchema, "changes.name"),
		ch("changes.sex alone", set("changes", map[string]any{"sex": "2"}), "", ""),
		ch("changes.sex not in table", set("changes", map[string]any{"sex": "5"}), CodeNotInTable, "changes.sex"),
		ch("changes.categories unknown", set("changes.categories", []string{"0201", "0701"}), CodeNotInTable, "changes.categories[1]"),
		ch("changes.basis incomplete", set("changes.basis", map[string]any{"docNo": "x"}), CodeSchema, "changes.basis.approvedBy"),
		ch("changes.reviewBy alone", set("changes", map[string]any{"reviewBy": "2030-01-01"}), "", ""),
		ch("changes.reviewBy beyond changes.registeredAt", set("changes", map[string]any{"reviewBy": "2028-01-01", "registeredAt": "2026-11-26T15:20:00+08:00"}), CodeSchema, "changes.reviewBy"),
		ch("changes.reviewBy bad date", set("changes", map[string]any{"reviewBy": "2027-02-30"}), CodeSchema, "changes.reviewBy"),
		ch("changes.registeredAt", set("changes", map[string]any{"registeredAt": "2026-11-26T15:20:00+08:00"}), "", ""),
		ch("changes.unit", set("changes", map[string]any{"unit": "3201060000"}), CodeSchema, "changes.unit"),
		ch("reason missing", del("reason"), CodeSchema, "reason"),
		ch("reason 501", set("reason", rep("因", 501)), CodeSchema, "reason"),
		ch("changedAt date only", set("changedAt", "2026-11-27"), CodeSchema, "changedAt"),
		ch("changes error before reason", all(set("changes.residRegion", "1"), del("reason")), CodeSchema, "changes.residRegion"),

		ca("valid", nil, "", ""),
		ca("basis missing", del("basis"), CodeSchema, "basis"),
		ca("basis.legal empty", set("basis.legal", ""), CodeSchema, "basis.legal"),
		ca("reason empty", set("reason", ""), CodeSchema, "reason"),
		ca("reason control char", set("reason", "a\x07b"), CodeSchema, "reason"),
		ca("cancelledAt bad", set("cancelledAt", "yesterday"), CodeSchema, "cancelledAt"),
		ca("categories not allowed", set("categories", []string{"0201"}), CodeSchema, "categories"),

		co("valid", nil, "", ""),
		co("controlNo bad date", set("controlNo", "32010620261132000003"), CodeSchema, "controlNo"),
		co("level 0", set("level", 0), CodeSchema, "level"),
		co("level 4", set("level", 4), CodeSchema, "level"),
		co("level 1", set("level", 1), "", ""),
		co("level string", set("level", "2"), CodeSchema, "level"),
		co("level 2.0", set("level", json.Number("2.0")), CodeSchema, "level"),
		co("measures empty", set("measures", []string{}), CodeSchema, "measures"),
		co("measures all", set("measures", []string{"notify", "verify", "report"}), "", ""),
		co("measures duplicate", set("measures", []string{"notify", "notify"}), CodeSchema, "measures[1]"),
		co("measures unknown", set("measures", []string{"arrest"}), CodeSchema, "measures[0]"),
		co("regions nationwide", set("regions", []string{"000000"}), "", ""),
		co("regions nationwide with another", set("regions", []string{"310112", "000000"}), CodeSchema, "regions[1]"),
		co("regions province", set("regions", []string{"310000"}), "", ""),
		co("regions prefecture", set("regions", []string{"320100"}), "", ""),
		co("regions retired", set("regions", []string{"310112", "310108"}), CodeNotInTable, "regions[1]"),
		co("regions unknown province", set("regions", []string{"990000"}), CodeNotInTable, "regions[0]"),
		co("regions empty", set("regions", []string{}), CodeSchema, "regions"),
		co("regions 32", set("regions", regions(32)), "", ""),
		co("regions 33", set("regions", regions(33)), CodeSchema, "regions"),
		co("regions duplicate", set("regions", []string{"310112", "310112"}), CodeSchema, "regions[1]"),
		co("regions shape", set("regions", []string{"31011"}), CodeSchema, "regions[0]"),
		co("validTo 180 days", set("validTo", "2027-05-26T09:00:00.000+08:00"), "", ""),
		co("validTo 180 days + 1 s", set("validTo", "2027-05-26T09:00:01.000+08:00"), CodeSchema, "validTo"),
		co("validTo 181 days", set("validTo", "2027-05-27T09:00:00.000+08:00"), CodeSchema, "validTo"),
		co("validTo equals validFrom", set("validTo", validFrom), CodeSchema, "validTo"),
		co("validTo before validFrom", set("validTo", "2026-11-27T00:59:59Z"), CodeSchema, "validTo"),
		co("validTo other offset", set("validTo", "2026-11-27T01:00:01Z"), "", ""),
		co("validFrom missing", del("validFrom"), CodeSchema, "validFrom"),
		co("basis missing", del("basis"), CodeSchema, "basis"),

		re("valid", nil, "", ""),
		re("controlNo 19 digits", set("controlNo", "3201062026112700000"), CodeSchema, "controlNo"),
		re("reason empty", set("reason", ""), CodeSchema, "reason"),
		re("releasedAt missing", del("releasedAt"), CodeSchema, "releasedAt"),

		ta("valid", nil, "", ""),
		ta("taskNo any 20 digits", set("taskNo", "31010699999999000008"), "", ""),
		ta("taskNo 21 digits", set("taskNo", "310106202611260000081"), CodeSchema, "taskNo"),
		ta("items all", set("items", []string{"identity", "address", "contact", "status"}), "", ""),
		ta("items 5", set("items", []string{"identity", "address", "contact", "status", "identity"}), CodeSchema, "items"),
		ta("items duplicate", set("items", []string{"address", "address"}), CodeSchema, "items[1]"),
		ta("items unknown", set("items", []string{"phone"}), CodeSchema, "items[0]"),
		ta("items empty", set("items", []string{}), CodeSchema, "items"),
		ta("assignedUnit short", set("assignedUnit", "310112"), CodeSchema, "assignedUnit"),
		ta("deadline bad", set("deadline", "2026-11-30T18:00:00.000+0800"), CodeSchema, "deadline"),
		ta("note absent", del("note"), "", ""),
		ta("note empty", set("note", ""), "", ""),
		ta("note 500", set("note", rep("注", 500)), "", ""),
		ta("note 501", set("note", rep("注", 501)), CodeSchema, "note"),
		ta("note number", set("note", 1), CodeSchema, "note"),

		ts("valid", nil, "", ""),
		ts("officer 5 digits", set("officer", "20451"), CodeSchema, "officer"),
		ts("unit letters", set("unit", "33010600000A"), CodeSchema, "unit"),
		ts("signedAt missing", del("signedAt"), CodeSchema, "signedAt"),
		ts("corr not a payload field", set("corr", ""), CodeSchema, "corr"),

		rc("valid rejected", nil, "", ""),
		rc("accepted with E code", set("status", "ACCEPTED"), CodeSchema, "code"),
		rc("rejected with 0000", set("code", "0000"), CodeSchema, "code"),
		rc("duplicate of rejection", set("status", "DUPLICATE"), "", ""),
		rc("duplicate of acceptance with empty reason", all(set("status", "DUPLICATE"), set("code", "0000"), set("reason", "")), "", ""),
		rc("accepted empty reason", all(set("status", "ACCEPTED"), set("code", "0000"), set("reason", "")), "", ""),
		rc("rejected empty reason", set("reason", ""), CodeSchema, "reason"),
		rc("rejected blank reason", set("reason", " "), CodeSchema, "reason"),
		rc("reason 501", set("reason", rep("错", 501)), CodeSchema, "reason"),
		rc("reason missing", del("reason"), CodeSchema, "reason"),
		rc("status lower-case", set("status", "rejected"), CodeSchema, "status"),
		rc("code E12", set("code", "E12"), CodeSchema, "code"),
		rc("code lower-case e", set("code", "e121"), CodeSchema, "code"),
		rc("code 0001", set("code", "0001"), CodeSchema, "code"),
		rc("code not in envelope table", set("code", "E999"), "", ""),
		rc("ref upper-case", set("ref", "01A21AB7-7380-71EA-B6B5-686D0C4A0B52"), CodeSchema, "ref"),
		rc("ref without hyphens", set("ref", "01a21ab7738071eab6b5686d0c4a0b52"), CodeSchema, "ref"),
		rc("at bad", set("at", "2026-11-27T09:57:59"), CodeSchema, "at"),
		rc("personNo not a receipt field", set("personNo", "32010620261126000017"), CodeSchema, "personNo"),
		rc("seq not a receipt field", set("seq", 1), CodeSchema, "seq"),
	}
}

// regions returns n distinct current county-level codes.
func regions(n int) []string {
	var out []string
	for i := 310101; len(out) < n; i++ {
		if c := fmt.Sprint(i); isCounty(c) {
			out = append(out, c)
		}
	}
	for i := 320102; len(out) < n; i++ {
		if c := fmt.Sprint(i); isCounty(c) {
			out = append(out, c)
		}
	}
	return out
}

func TestRules(t *testing.T) {
	v := newTestValidator(t)
	for _, tc := range append(regCases(), otherCases()...) {
		t.Run(tc.kind+"/"+tc.name, func(t *testing.T) {
			payload := validPayload(t, tc.base)
			if tc.raw != nil {
				payload = tc.raw(payload)
			} else {
				payload = mutate(t, payload, tc.edit)
			}
			got, err := v.ValidatePayload(tc.kind, payload)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				assertRoundTrip(t, v, tc.kind, got)
				return
			}
			if got != nil {
				t.Errorf("payload %#v returned with an error", got)
			}
			assertField(t, err, tc.code, tc.path)
		})
	}
}

// assertRoundTrip checks that a validated payload encodes to a payload that
// validates to the same value.
func assertRoundTrip(t testing.TB, v *Validator, kind string, got any) {
	t.Helper()
	enc, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := v.ValidatePayload(kind, enc)
	if err != nil {
		t.Fatalf("re-encoded payload %s rejected: %v", enc, err)
	}
	enc2, err := json.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("round trip differs:\n%s\n%s", enc, enc2)
	}
}

func TestTypedResults(t *testing.T) {
	v := newTestValidator(t)
	wantTypes := map[string]any{
		KindRegister: &Person{}, KindChange: &Change{}, KindCancel: &Cancel{}, KindControl: &Control{},
		KindRelease: &Release{}, KindTask: &Task{}, KindTaskSign: &TaskSign{}, KindReceipt: &Receipt{},
	}
	for _, c := range loadManifest(t) {
		if c.Expect != CodeAccepted {
			continue
		}
		got, err := v.ValidatePayload(c.Kind, c.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", wantTypes[c.Kind]) {
			t.Errorf("%s: got %T", c.File, got)
		}
		if _, ordered := got.(Ordered); ordered == (c.Kind == KindReceipt) {
			t.Errorf("%s: %T Ordered = %v", c.File, got, ordered)
		}
		assertRoundTrip(t, v, c.Kind, got)
		// The typed value encodes to the same document as the manifest's.
		var a, b any
		enc, _ := json.Marshal(got)
		if err := json.Unmarshal(enc, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(c.Payload, &b); err != nil {
			t.Fatal(err)
		}
		if !sameDocument(a, b) {
			t.Errorf("%s: re-encoded as %s", c.File, enc)
		}
	}

	p, err := v.ValidatePayload(KindRegister, validPayload(t, "valid/01"))
	if err != nil {
		t.Fatal(err)
	}
	person := p.(*Person)
	want := time.Date(2026, 11, 26, 7, 20, 0, 0, time.UTC)
	if person.PersonNo != "32010620261126000017" || person.Seq != 1 || person.Basis.DocNo == "" ||
		!person.RegisteredAt.Equal(want) || person.Categories[0] != "0201" || person.Ordering().Seq != 1 {
		t.Errorf("decoded %+v", person)
	}
	ch, err := v.ValidatePayload(KindChange, validPayload(t, "valid/02"))
	if err != nil {
		t.Fatal(err)
	}
	if c := ch.(*Change).Changes; c.ResidRegion == nil || *c.ResidRegion != "310112" || c.Name != nil {
		t.Errorf("changes %+v", c)
	}
}

// sameDocument compares decoded JSON documents, timestamps by instant.
func sameDocument(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, av := range a {
			if !sameDocument(av, bm[k]) {
				return false
			}
		}
		return true
	case []any:
		ba, ok := b.([]any)
		if !ok || len(a) != len(ba) {
			return false
		}
		for i := range a {
			if !sameDocument(a[i], ba[i]) {
				return false
			}
		}
		return true
	case string:
		bs, ok := b.(string)
		if !ok {
			return false
		}
		ta, errA := time.Parse(time.RFC3339Nano, a)
		tb, errB := time.Parse(time.RFC3339Nano, bs)
		if errA == nil && errB == nil {
			return ta.Equal(tb)
		}
		return a == bs
	}
	return a == b
}

func TestNotAnObject(t *testing.T) {
	v := newTestValidator(t)
	for name, payload := range map[string]string{
		"empty":            "",
		"array":            `[{"ref":"x"}]`,
		"null":             "null",
		"string":           `"{}"`,
		"number":           "1",
		"truncated":        `{"ref":`,
		"two objects":      `{} {}`,
		"trailing garbage": `{}x`,
		"BOM":              "\uFEFF{}",
		"invalid UTF-8":    "{\"ref\":\"\xff\"}",
		"single quotes":    `{'ref':1}`,
		"too deep":         rep("[", 20000) + rep("]", 20000),
	} {
		_, err := v.ValidatePayload(KindReceipt, []byte(payload))
		if !errors.Is(err, ErrNotObject) || ErrorCode(err) != CodeMalformed {
			t.Errorf("%s: got %v, want ErrNotObject", name, err)
		}
	}
	// An object nested deeply where an unknown field stands is a schema error.
	deep := `{"x":` + rep("[", 5000) + rep("]", 5000) + `}`
	_, err := v.ValidatePayload(KindReceipt, []byte(deep))
	assertField(t, err, CodeSchema, "x")
}

func TestUnknownKind(t *testing.T) {
	v := newTestValidator(t)
	for _, kind := range []string{"", "keyperson.merge", "Receipt", "keyperson.register ", rep("k", 10000)} {
		_, err := v.ValidatePayload(kind, []byte(`{}`))
		if !errors.Is(err, ErrUnknownKind) || ErrorCode(err) != CodeUnknownKind {
			t.Errorf("%.20q: got %v", kind, err)
		}
		if len(err.Error()) > 200 {
			t.Errorf("error message of %d bytes", len(err.Error()))
		}
	}
	// The kind is checked before the payload.
	if _, err := v.ValidatePayload("keyperson.merge", []byte(`not json`)); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("got %v", err)
	}
}

func TestUnplainKeysInPaths(t *testing.T) {
	v := newTestValidator(t)
	_, err := v.ValidatePayload(KindReceipt, []byte(`{"`+rep("键", 100)+`":1}`))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Code != CodeSchema || len([]rune(fe.Path)) > 40 {
		t.Fatalf("got %v", err)
	}
	_, err = v.ValidatePayload(KindReceipt, []byte(`{"a.b":1}`))
	assertField(t, err, CodeSchema, `"a.b"`)
}

func TestErrorCode(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                 CodeAccepted,
		fmt.Errorf("x: %w", ErrNotObject):   CodeMalformed,
		fmt.Errorf("x: %w", ErrUnknownKind): CodeUnknownKind,
		fmt.Errorf("x: %w", &FieldError{Code: CodeNotInTable}): CodeNotInTable,
		errors.New("disk full"):                                "E199",
	} {
		if got := ErrorCode(err); got != want {
			t.Errorf("ErrorCode(%v) = %s, want %s", err, got, want)
		}
	}
	fe := &FieldError{Code: CodeSchema, Path: "basis", Reason: "basis：缺少必填字段"}
	if fe.Error() != "contracts: E120 basis：缺少必填字段" {
		t.Errorf("Error() = %q", fe.Error())
	}
}

func TestKinds(t *testing.T) {
	ks := Kinds()
	if len(ks) != 8 || ks[0] != KindRegister || ks[7] != KindReceipt {
		t.Fatalf("Kinds() = %v", ks)
	}
	ks[0] = "mutated"
	if Kinds()[0] != KindRegister {
		t.Error("Kinds() exposes its backing array")
	}
	for _, k := range Kinds() {
		if !Known(k) {
			t.Errorf("Known(%q) = false", k)
		}
	}
	for _, c := range loadManifest(t) {
		if Known(c.Kind) != (c.Expect != CodeUnknownKind) {
			t.Errorf("Known(%q) = %v", c.Kind, Known(c.Kind))
		}
	}
}

func TestIDCheckChar(t *testing.T) {
	for _, id := range []string{"310104198605171356", "31010819900228006X", "11010519491231002X", "440524188001010014"} {
		if got := idCheckChar(id); got != id[17] {
			t.Errorf("%s: check char %c", id, got)
		}
		if withCheckChar(id[:17]) != id {
			t.Errorf("%s: test helper disagrees", id)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	v := newTestValidator(t)
	cases := loadManifest(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			for _, c := range cases {
				if c.Expect == CodeAccepted {
					if _, err := v.ValidatePayload(c.Kind, c.Payload); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
}
