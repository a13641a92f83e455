package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"zhianhub/crypto"
)

// Wire-format constants (envelope.md).
const (
	Version      = 1
	MaxSize      = 4 << 20 // bytes, encoded
	NonceSize    = 12
	TagSize      = 16
	TSLayout     = "2006-01-02T15:04:05.000Z07:00"
	fieldCount   = 13
	canonicalSep = "\n"
)

// wireEnvelope is the JSON form, members in the order of the spec's table.
type wireEnvelope struct {
	V     int    `json:"v"`
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	From  string `json:"from"`
	To    string `json:"to"`
	TS    string `json:"ts"`
	Corr  string `json:"corr"`
	EKID  string `json:"ekid"`
	EK    string `json:"ek"`
	Nonce string `json:"nonce"`
	CT    string `json:"ct"`
	SKID  string `json:"skid"`
	Sig   string `json:"sig"`
}

// canonicalHeader returns the header bytes: v, id, kind, from, to, ts, corr,
// ekid, ek, nonce, skid joined by "\n", binary fields as their base64 text.
func (w *wireEnvelope) canonicalHeader() []byte {
	var b bytes.Buffer
	b.Grow(512)
	for i, s := range []string{strconv.Itoa(w.V), w.ID, w.Kind, w.From, w.To, w.TS, w.Corr, w.EKID, w.EK, w.Nonce, w.SKID} {
		if i > 0 {
			b.WriteString(canonicalSep)
		}
		b.WriteString(s)
	}
	return b.Bytes()
}

// signatureInput returns canonical header + "\n" + ct text.
func (w *wireEnvelope) signatureInput(header []byte) []byte {
	out := make([]byte, 0, len(header)+1+len(w.CT))
	out = append(out, header...)
	out = append(out, canonicalSep...)
	return append(out, w.CT...)
}

// parsed holds the wire envelope and its decoded binary fields.
type parsed struct {
	wire  wireEnvelope
	ts    time.Time
	ek    []byte
	nonce []byte
	ct    []byte
	sig   []byte
}

var (
	uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	nodeRe = regexp.MustCompile(`^[0-9]{12}$`)
	tsRe   = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}(Z|[+-][0-9]{2}:[0-9]{2})$`)
)

// ValidID reports whether s is a lower-case hyphenated UUID.
func ValidID(s string) bool { return uuidRe.MatchString(s) }

// ValidNode reports whether s is a 12-digit node code.
func ValidNode(s string) bool { return nodeRe.MatchString(s) }

// ParseTS parses an envelope timestamp of exactly the form
// YYYY-MM-DDThh:mm:ss.sss followed by Z or ±hh:mm.
func ParseTS(s string) (time.Time, error) {
	if !tsRe.MatchString(s) {
		return time.Time{}, errors.New("not YYYY-MM-DDThh:mm:ss.sss with Z or ±hh:mm")
	}
	t, err := time.Parse(TSLayout, s)
	if err != nil {
		return time.Time{}, err
	}
	return t, nil
}

// FormatTS formats t as an envelope timestamp.
func FormatTS(t time.Time) string { return t.Format(TSLayout) }

var strictB64 = base64.StdEncoding.Strict()

// parse applies receiving rule 1: JSON and field checks (E100), then the
// version (E101). It never panics on any input.
func parse(raw []byte) (*parsed, error) {
	if len(raw) > MaxSize {
		return nil, rejectf(CodeMalformed, 1, "", "envelope is %d bytes, more than %d", len(raw), MaxSize)
	}
	if !utf8.Valid(raw) {
		return nil, reject(CodeMalformed, 1, "", "not UTF-8")
	}
	members, err := splitObject(raw)
	if err != nil {
		return nil, &Error{Code: CodeMalformed, Step: 1, Reason: "not a JSON object", Err: err}
	}
	p := &parsed{}
	w := &p.wire
	strField := map[string]*string{
		"id": &w.ID, "kind": &w.Kind, "from": &w.From, "to": &w.To, "ts": &w.TS, "corr": &w.Corr,
		"ekid": &w.EKID, "ek": &w.EK, "nonce": &w.Nonce, "ct": &w.CT, "skid": &w.SKID, "sig": &w.Sig,
	}
	seen := make(map[string]bool, fieldCount)
	for _, m := range members {
		if seen[m.name] {
			return nil, rejectf(CodeMalformed, 1, m.name, "member %q appears twice", m.name)
		}
		seen[m.name] = true
		if m.name == "v" {
			v, err := decodeInt(m.value)
			if err != nil {
				return nil, &Error{Code: CodeMalformed, Step: 1, Field: "v", Reason: "not an integer", Err: err}
			}
			w.V = v
			continue
		}
		dst, ok := strField[m.name]
		if !ok {
			return nil, rejectf(CodeMalformed, 1, m.name, "unknown member %q", m.name)
		}
		if err := decodeString(m.value, dst); err != nil {
			return nil, &Error{Code: CodeMalformed, Step: 1, Field: m.name, Reason: "not a string", Err: err}
		}
	}
	for _, name := range []string{"v", "id", "kind", "from", "to", "ts", "corr", "ekid", "ek", "nonce", "ct", "skid", "sig"} {
		if !seen[name] {
			return nil, rejectf(CodeMalformed, 1, name, "member %q is missing", name)
		}
	}
	if err := p.checkFields(); err != nil {
		return nil, err
	}
	if w.V != Version {
		return nil, rejectf(CodeVersion, 1, "v", "version %d is not supported", w.V)
	}
	return p, nil
}

func (p *parsed) checkFields() error {
	w := &p.wire
	bad := func(field, format string, args ...any) error {
		return rejectf(CodeMalformed, 1, field, format, args...)
	}
	if !ValidID(w.ID) {
		return bad("id", "not a lower-case hyphenated UUID")
	}
	if w.Kind == "" || len(w.Kind) > 64 {
		return bad("kind", "empty or longer than 64 bytes")
	}
	if !ValidNode(w.From) {
		return bad("from", "not 12 digits")
	}
	if !ValidNode(w.To) {
		return bad("to", "not 12 digits")
	}
	ts, err := ParseTS(w.TS)
	if err != nil {
		return &Error{Code: CodeMalformed, Step: 1, Field: "ts", Err: err}
	}
	p.ts = ts
	if w.Corr != "" && !ValidID(w.Corr) {
		return bad("corr", "neither empty nor a lower-case hyphenated UUID")
	}
	if !crypto.ValidKeyID(w.EKID) {
		return bad("ekid", "not 64 lower-case hex characters")
	}
	if !crypto.ValidKeyID(w.SKID) {
		return bad("skid", "not 64 lower-case hex characters")
	}
	for _, f := range []struct {
		name string
		text string
		dst  *[]byte
	}{{"ek", w.EK, &p.ek}, {"nonce", w.Nonce, &p.nonce}, {"ct", w.CT, &p.ct}, {"sig", w.Sig, &p.sig}} {
		b, err := strictB64.DecodeString(f.text)
		if err != nil {
			return &Error{Code: CodeMalformed, Step: 1, Field: f.name, Reason: "not padded standard base64", Err: err}
		}
		if len(b) == 0 {
			return bad(f.name, "empty")
		}
		*f.dst = b
	}
	if len(p.nonce) != NonceSize {
		return bad("nonce", "%d bytes, not %d", len(p.nonce), NonceSize)
	}
	if len(p.ct) < TagSize {
		return bad("ct", "%d bytes, shorter than the %d-byte tag", len(p.ct), TagSize)
	}
	return nil
}

type member struct {
	name  string
	value json.RawMessage
}

// splitObject returns the members of a single JSON object in document order,
// duplicates included, and fails on anything after the object.
func splitObject(raw []byte) ([]member, error) {
	if !json.Valid(raw) {
		return nil, errors.New("not well-formed JSON")
	}
	// Valid JSON from here on: members are split by reading the bytes
	// (json.Decoder.Token cost more than the rest of parsing together).
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, errors.New("top level is not an object")
	}
	i = skipSpace(raw, i+1)
	var out []member
	if raw[i] == '}' {
		return out, nil
	}
	for {
		end := skipValue(raw, i) // the name, a string
		var name string
		if err := decodeString(raw[i:end], &name); err != nil {
			return nil, errors.New("member name is not a string")
		}
		i = skipSpace(raw, end)
		i = skipSpace(raw, i+1) // ':'
		end = skipValue(raw, i)
		out = append(out, member{name: name, value: json.RawMessage(raw[i:end])})
		i = skipSpace(raw, end)
		if raw[i] == '}' {
			return out, nil
		}
		i = skipSpace(raw, i+1) // ','
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at i in valid JSON.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		for i++; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return i
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipValue(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

func decodeString(v json.RawMessage, dst *string) error {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return errors.New("not a JSON string")
	}
	if bytes.IndexByte(v, '\\') < 0 {
		*dst = string(v[1 : len(v)-1]) // no escapes; the envelope is valid UTF-8
		return nil
	}
	return json.Unmarshal(v, dst)
}

func decodeInt(v json.RawMessage) (int, error) {
	s := string(v)
	if s == "" || strings.ContainsAny(s, ".eE") || s[0] == '"' {
		return 0, errors.New("not a JSON integer")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, err
	}
	return n, nil
}
