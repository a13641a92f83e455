package api

import (
	"errors"
	"fmt"
	"net/http"

	"zhianhub/adapters/auth"
	"zhianhub/contracts"
	"zhianhub/envelope"
	"zhianhub/store/registry"
)

// Codes of API answers besides the bus codes (E100, E102, E120-E122, E130,
// E131) and httpapi.CodeInternal (E199).
const (
	CodeUnauthenticated = auth.CodeUnauthenticated // no acceptable identity (E401)
	CodeForbidden       = "E403"                   // the identity lacks a role
	CodeNotFound        = "E404"                   // no such endpoint
	CodeMethod          = "E405"                   // method not allowed on the endpoint
)

// RoleUnmask is the role needed to see personal data in clear.
const RoleUnmask = auth.RoleUnmask

// Error is an answer with an HTTP status, a code and a Chinese message.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("api: %d %s %s", e.Status, e.Code, e.Message) }

// badRequest is a 400 E100 naming what is wrong.
func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: string(envelope.CodeMalformed), Message: fmt.Sprintf(format, args...)}
}

// notFound is a 404 E131 (unknown record).
func notFound(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Code: string(envelope.CodeUnknownRecord), Message: fmt.Sprintf(format, args...)}
}

func forbidden(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: msg}
}

// statusOf maps a bus refusal code to its HTTP status.
func statusOf(code envelope.Code) (int, bool) {
	switch code {
	case envelope.CodeMalformed, envelope.CodeUnknownKind:
		return http.StatusBadRequest, true
	case envelope.CodeSchema, envelope.CodeIDNumber, envelope.CodeCodeValue:
		return http.StatusUnprocessableEntity, true
	case envelope.CodeStateConflict:
		return http.StatusConflict, true
	case envelope.CodeUnknownRecord:
		return http.StatusNotFound, true
	}
	return 0, false
}

// genericReasons are the messages of codes whose error carries no Chinese
// reason.
var genericReasons = map[envelope.Code]string{
	envelope.CodeMalformed:     "载荷不是合法的 JSON 对象",
	envelope.CodeUnknownKind:   "未知的消息类型",
	envelope.CodeSchema:        "载荷格式不符合规范",
	envelope.CodeIDNumber:      "身份证号码校验不通过",
	envelope.CodeCodeValue:     "代码不在代码表中",
	envelope.CodeStateConflict: "与记录状态冲突",
	envelope.CodeUnknownRecord: "记录不存在",
}

// Refusal returns the answer to a coded refusal of the filing service (its
// HTTP status, code, and the Chinese reason naming the field path), or
// false for an internal error.
func Refusal(err error) (*Error, bool) {
	code := envelope.CodeOf(err)
	status, ok := statusOf(code)
	if !ok {
		return nil, false
	}
	return &Error{Status: status, Code: string(code), Message: reasonOf(err, code)}, true
}

// refusal is Refusal as a handler error: internal errors stay as they are.
func refusal(err error) error {
	if e, ok := Refusal(err); ok {
		return e
	}
	return err
}

// reasonOf returns the user-facing (Chinese) reason of a refusal, as the
// receipts carry it.
func reasonOf(err error, code envelope.Code) string {
	var fe *contracts.FieldError
	var se *registry.StateError
	var e *envelope.Error
	var ur interface{ UserReason() string }
	switch {
	case errors.As(err, &fe) && fe.Reason != "":
		return fe.Reason
	case errors.As(err, &se) && se.Reason != "":
		return se.Reason
	case errors.As(err, &e) && e.Reason != "":
		return e.Reason
	case errors.As(err, &ur) && ur.UserReason() != "":
		return ur.UserReason()
	}
	return genericReasons[code]
}
