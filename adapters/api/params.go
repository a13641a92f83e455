package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
)

// Bounds of list parameters.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// MaxReasonLen bounds a stated reason, in characters.
	MaxReasonLen = 200
)

// query parses the request's query string: every parameter must be one of
// allowed and appear at most once.
func query(r *http.Request, allowed ...string) (map[string]string, error) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("查询字符串格式错误")
	}
	out := make(map[string]string, len(vals))
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(allowed, name) {
			if len(allowed) == 0 {
				return nil, badRequest("未知的查询参数 %s：该接口不接受查询参数", shown(name))
			}
			return nil, badRequest("未知的查询参数 %s（可用：%s）", shown(name), strings.Join(allowed, "、"))
		}
		if len(vals[name]) > 1 {
			return nil, badRequest("查询参数 %s 重复", name)
		}
		out[name] = vals[name][0]
	}
	return out, nil
}

// shown quotes a user-given name for a message, bounded and printable.
func shown(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		s = string([]rune(s)[:40]) + "…"
	}
	return strconv.Quote(s)
}

// limitParam parses limit: 1 to MaxLimit, default DefaultLimit.
func limitParam(q map[string]string) (int, error) {
	v, ok := q["limit"]
	if !ok {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxLimit || !isDigits(v, len(v)) {
		return 0, badRequest("limit：须为 1 至 %d 的整数", MaxLimit)
	}
	return n, nil
}

// page is the answer of a keyset-paged list: {name: items}, and "next",
// the cursor of its last row (last), when the page is full (n == limit):
// the client passes it back for the following page.
func page(name string, items any, n, limit int, last func() string) map[string]any {
	res := map[string]any{name: items}
	if n == limit {
		res["next"] = last()
	}
	return res
}

// afterParam parses the keyset cursor "after" of a list paged by a
// sequence number: a non-negative integer, default 0.
func afterParam(q map[string]string) (int64, error) {
	v, ok := q["after"]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("after：须为非负整数")
	}
	return n, nil
}

// boolParam parses name: "true" or "false", default false.
func boolParam(q map[string]string, name string) (bool, error) {
	switch q[name] {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, badRequest("%s：须为 true 或 false", name)
}

// reasonParam returns the stated reason of an access ("" when none).
func reasonParam(q map[string]string) (string, error) {
	reason := strings.TrimSpace(q["reason"])
	if reason == "" {
		return "", nil
	}
	if utf8.RuneCountInString(reason) > MaxReasonLen {
		return "", badRequest("reason：查看理由不能超过 %d 个字符", MaxReasonLen)
	}
	if strings.IndexFunc(reason, unicode.IsControl) >= 0 || !utf8.ValidString(reason) {
		return "", badRequest("reason：查看理由不能含控制字符")
	}
	return reason, nil
}

// errNoReason answers an access to personal data without a stated reason.
var errNoReason = badRequest("需说明查看理由")

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// numberParam returns path parameter name, which must be n digits.
func numberParam(r *http.Request, name string, n int) (string, error) {
	v := chi.URLParam(r, name)
	if !isDigits(v, n) {
		return "", badRequest("%s：须为 %d 位数字", name, n)
	}
	return v, nil
}

// uuidParam returns path parameter name, which must be a lower-case
// hyphenated UUID (an envelope id).
func uuidParam(r *http.Request, name string) (uuid.UUID, error) {
	v := chi.URLParam(r, name)
	u, err := uuid.Parse(v)
	if err != nil || u.String() != v {
		return uuid.Nil, badRequest("%s：须为小写带连字符的 UUID", name)
	}
	return u, nil
}

// readBody reads a JSON request body of at most MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, &Error{Status: http.StatusUnsupportedMediaType, Code: "E100", Message: "请求体须为 application/json"}
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Code: "E100", Message: "请求体超过 1 MiB"}
	}
	if err != nil {
		return nil, badRequest("请求体读取失败")
	}
	return b, nil
}

// decodeStrict decodes one JSON object into v; unknown members are refused.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ) && typ.Field != "":
			return badRequest("请求体：%s 的类型不对", typ.Field)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badRequest("请求体：未知字段 %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return badRequest("请求体不是合法的 JSON 对象")
	}
	if dec.More() {
		return badRequest("请求体在 JSON 对象之后还有内容")
	}
	return nil
}
