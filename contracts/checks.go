package contracts

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Pure shape checks. Each returns "" when s is well-formed, else the Chinese
// detail of the defect.

var (
	dateRE    = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	instantRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`)
	uuidRE    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// isDigits reports whether s is min to max ASCII digits.
func isDigits(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func checkDigits(s string, min, max int) string {
	if isDigits(s, min, max) {
		return ""
	}
	if min == max {
		return fmt.Sprintf("应为 %d 位数字", min)
	}
	return fmt.Sprintf("应为 %d-%d 位数字", min, max)
}

// textKind says which control characters a free-text field admits.
type textKind int

const (
	singleLine textKind = iota // no control character
	multiLine                  // TAB, LF and CR only
)

// checkText checks the length in code points and the control characters of
// a free-text field; a required text (min >= 1) must not be blank.
func checkText(s string, min, max int, kind textKind) string {
	n := utf8.RuneCountInString(s)
	if n < min || n > max {
		return fmt.Sprintf("长度应为 %d-%d 个字符，实为 %d 个", min, max, n)
	}
	if min > 0 && strings.TrimSpace(s) == "" {
		return "不能为空白"
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(kind == multiLine && (r == '\t' || r == '\n' || r == '\r')) {
			return fmt.Sprintf("含控制字符 %U", r)
		}
	}
	return ""
}

// checkName checks a person's name: 1-50 characters, trimmed, no control
// characters.
func checkName(s string) string {
	if d := checkText(s, 1, 50, singleLine); d != "" {
		return d
	}
	if strings.TrimSpace(s) != s {
		return "首尾不能有空白字符"
	}
	return ""
}

// parseDate parses a calendar date YYYY-MM-DD; the result is its midnight UTC.
func parseDate(s string) (time.Time, string) {
	if !dateRE.MatchString(s) {
		return time.Time{}, "应为日期 YYYY-MM-DD"
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Sprintf("%s 不是有效的日历日期", s)
	}
	return t, ""
}

// parseInstant parses an RFC 3339 date-time with an explicit offset.
func parseInstant(s string) (time.Time, string) {
	const detail = "应为 RFC 3339 时间，如 2026-11-27T08:00:00+08:00"
	if !instantRE.MatchString(s) {
		return time.Time{}, detail
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, detail + "（日期或时间值无效）"
	}
	return t, ""
}

// checkSerialNo checks a personNo or controlNo: 20 digits, a six-digit region,
// a yyyymmdd calendar date and a six-digit serial. The region part is checked
// for shape only.
func checkSerialNo(s string) string {
	if !isDigits(s, 20, 20) {
		return "应为 20 位数字（6 位行政区划代码 + 8 位日期 + 6 位顺序号）"
	}
	d := s[6:10] + "-" + s[10:12] + "-" + s[12:14]
	if _, bad := parseDate(d); bad != "" {
		return fmt.Sprintf("第 7-14 位 %s 不是有效日期", s[6:14])
	}
	return ""
}

func checkUUID(s string) string {
	if uuidRE.MatchString(s) {
		return ""
	}
	return "应为小写、带连字符的 UUID"
}

// checkEnum checks that s is one of values.
func checkEnum(s string, values ...string) string {
	for _, v := range values {
		if s == v {
			return ""
		}
	}
	return fmt.Sprintf("应为 %s 之一", strings.Join(values, "、"))
}

// isRegion reports whether c is a current GB/T 2260 code of a province
// (pp0000), a prefecture (ppcc00) or a county-level division.
func isRegion(c string) bool {
	if len(c) != 6 {
		return false
	}
	switch {
	case c[2:] == "0000":
		return isProvince(c[:2])
	case c[4:] == "00" && isCity(c[:4]):
		return true
	}
	return isCounty(c)
}
