package contracts

import "fmt"

// residentID is what a GB 11643-1999 citizen identity number states.
type residentID struct {
	birthDate string // YYYY-MM-DD
	sex       string // GB/T 2261.1: "1" odd sequence digit, "2" even
}

var idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const idCheckChars = "10X98765432"

// idCheckChar returns the ISO 7064 MOD 11-2 check character of the first
// 17 digits of s.
func idCheckChar(s string) byte {
	sum := 0
	for i, w := range idWeights {
		sum += int(s[i]-'0') * w
	}
	return idCheckChars[sum%11]
}

// parseResidentID checks an identity number of idType 111. A wrong shape is
// E120; a wrong check character, an impossible birth date or an unknown
// province is E121. The six-digit region part may be a retired code, so only
// its province is checked.
func parseResidentID(s string) (id residentID, code, detail string) {
	if len(s) != 18 || !isDigits(s[:17], 17, 17) || !(s[17] == 'X' || s[17] >= '0' && s[17] <= '9') {
		return id, CodeSchema, "应为 18 位公民身份号码（17 位数字加数字或大写 X 校验码）"
	}
	if idCheckChar(s) != s[17] {
		return id, CodeIDNumber, "公民身份号码校验码错误"
	}
	birth := s[6:10] + "-" + s[10:12] + "-" + s[12:14]
	if _, bad := parseDate(birth); bad != "" {
		return id, CodeIDNumber, fmt.Sprintf("公民身份号码中的出生日期 %s 不是有效日期", s[6:14])
	}
	if !isProvince(s[:2]) {
		return id, CodeIDNumber, fmt.Sprintf("公民身份号码中的省级行政区划代码 %s 不存在", s[:2])
	}
	id = residentID{birthDate: birth, sex: "2"}
	if (s[16]-'0')%2 == 1 {
		id.sex = "1"
	}
	return id, "", ""
}
