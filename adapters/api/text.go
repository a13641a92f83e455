package api

import (
	"strings"
	"unicode/utf8"
)

// clip makes s acceptable audit text: valid UTF-8, no NUL, at most max
// bytes.
func clip(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
