// Package secplatform sends the hub's security events to the unified
// security-protection platform (统一安全防护平台): syslog (RFC 5424) over
// TCP, optionally TLS, with octet-counting framing (RFC 6587 §3.4.1), each
// message carrying one CEF (ArcSight Common Event Format, revision 25)
// record.
//
// Events come from the audit chain: a Forwarder reads the entries that are
// security events (Classify) in sequence order from a cursor kept in
// PostgreSQL, sends them, and moves the cursor after the platform took them.
// Delivery is at least once; each record carries the audit seq as its
// externalId, so the platform can drop a repeat. Nothing is sent that is not
// in the chain first.
package secplatform

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// CEF header fields of every record.
const (
	cefVendor  = "Shanghai PSB"
	cefProduct = "zhianhub"
)

// Event is one security event.
type Event struct {
	// SignatureID names the class of event (e.g. "AUTH_FAILURE").
	SignatureID string
	// Name is the human-readable name, in Chinese for the platform's
	// operators.
	Name string
	// Severity is 0 (lowest) to 10.
	Severity int
	// At is when it happened.
	At time.Time
	// Ext are the CEF extensions (key=value), written in key order.
	Ext map[string]string
}

// CEF formats e as a CEF record of product version version.
func (e Event) CEF(version string) string {
	var b strings.Builder
	b.WriteString("CEF:0|")
	for _, f := range []string{cefVendor, cefProduct, version, e.SignatureID, e.Name} {
		b.WriteString(escapeHeader(f))
		b.WriteByte('|')
	}
	b.WriteString(strconv.Itoa(min(max(e.Severity, 0), 10)))
	b.WriteByte('|')
	keys := make([]string, 0, len(e.Ext)+1)
	for k := range e.Ext {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ext := []string{"rt=" + strconv.FormatInt(e.At.UnixMilli(), 10)}
	for _, k := range keys {
		if k == "rt" || !validExtKey(k) {
			continue
		}
		ext = append(ext, k+"="+escapeExt(e.Ext[k]))
	}
	b.WriteString(strings.Join(ext, " "))
	return b.String()
}

// escapeHeader escapes a CEF header field: backslash and pipe; line breaks
// become spaces (a header is one line).
func escapeHeader(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\r\n", " ", "\n", " ", "\r", " ")
	return r.Replace(s)
}

// escapeExt escapes a CEF extension value: backslash, equals sign and line
// breaks.
func escapeExt(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r\n", `\n`, "\n", `\n`, "\r", `\r`)
	return r.Replace(s)
}

// validExtKey accepts CEF extension keys: letters and digits.
func validExtKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Syslog facilities and severities used here (RFC 5424 §6.2.1).
const (
	FacilityAuthPriv = 10 // security/authorization messages
	FacilityLogAudit = 13
)

// syslogSeverity maps a CEF severity (0-10) to a syslog severity.
func syslogSeverity(cef int) int {
	switch {
	case cef >= 9:
		return 2 // critical
	case cef >= 7:
		return 3 // error
	case cef >= 5:
		return 4 // warning
	case cef >= 3:
		return 5 // notice
	}
	return 6 // informational
}

// RFC5424 formats one syslog message (RFC 5424 §6) carrying msg, without
// framing. Header fields that would be empty or hold spaces become "-" or
// lose the spaces, as the grammar requires.
func RFC5424(facility int, severity int, at time.Time, hostname, appName, procID, msgID, msg string) string {
	return fmt.Sprintf("<%d>1 %s %s %s %s %s - %s", facility*8+severity, at.UTC().Format("2006-01-02T15:04:05.000000Z"),
		headerField(hostname, 255), headerField(appName, 48), headerField(procID, 128), headerField(msgID, 32), msg)
}

// headerField keeps printable US-ASCII without spaces, at most n bytes.
func headerField(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// frame applies octet-counting framing (RFC 6587 §3.4.1).
func frame(msg string) []byte {
	return []byte(strconv.Itoa(len(msg)) + " " + msg)
}
