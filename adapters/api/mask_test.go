package api_test

import (
	"testing"

	"zhianhub/adapters/api"
)

// TestMaskText: the ID and mobile numbers of a free text are masked, other
// numbers and the rest of the text are not. The numbers are made up.
func TestMaskText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"某小区夜间有可疑人员聚集", "某小区夜间有可疑人员聚集"},
		{"身份证310104198605171356", "身份证310104********1356"},
		{"身份证 31010419860517135x。", "身份证 310104********135x。"},
		{"ID 310104198605171356, 310115200001011234", "ID 310104********1356, 310115********1234"},
		{"电话13912345678", "电话139****5678"},
		{"电话 139-1234-5678 或 139 1234 5678", "电话 139-****-5678 或 139 **** 5678"},
		{"电话１３９１２３４５６７８", "电话１３９****５６７８"},
		{"身份证３１０１０４１９８６０５１７１３５６", "身份证３１０１０４********１３５６"},
		// Not ID numbers: a bad month, a bad day, a region starting with 0,
		// a 19-digit number, a 17-digit one.
		{"310104198613171356", "310104198613171356"},
		{"310104198605321356", "310104198605321356"},
		{"010104198605171356", "010104198605171356"},
		{"3101041986051713561", "3101041986051713561"},
		{"31010419860517135", "31010419860517135"},
		// Not mobile numbers: a landline, 12 digits, inside a lead number,
		// a second digit 2.
		{"021-64881234", "021-64881234"},
		{"139123456789", "139123456789"},
		{"31010420261127000042139123456781", "31010420261127000042139123456781"},
		{"12912345678", "12912345678"},
		{"x13912345678y", "x139****5678y"},
	} {
		if got := api.MaskText(tc.in); got != tc.want {
			t.Errorf("MaskText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
