package envelope

import (
	"errors"
	"fmt"
	"strings"
)

// Code is a result code shared by all buses (envelope.md, "Error codes").
type Code string

// Result codes.
const (
	CodeOK             Code = "0000"
	CodeMalformed      Code = "E100"
	CodeVersion        Code = "E101"
	CodeUnknownKind    Code = "E102"
	CodeBadSignature   Code = "E110"
	CodeUnknownSigner  Code = "E111"
	CodeDecrypt        Code = "E112"
	CodeTimestamp      Code = "E113"
	CodeWrongRecipient Code = "E114"
	CodeSchema         Code = "E120"
	CodeIDNumber       Code = "E121"
	CodeCodeValue      Code = "E122"
	CodeStateConflict  Code = "E130"
	CodeUnknownRecord  Code = "E131"
	CodeSequenceGap    Code = "E140"
	CodeInternal       Code = "E199"
)

// Error is a rejection with its code. Step is the receiving rule (1-6) that
// rejected the envelope, Field the member or payload path concerned.
type Error struct {
	Code   Code
	Step   int
	Field  string
	Reason string
	Err    error
}

func (e *Error) Error() string {
	msg := string(e.Code)
	if e.Field != "" && !strings.HasPrefix(e.Reason, e.Field) {
		msg += " " + e.Field
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches another *Error by code, so that errors.Is(err, ErrSignature)
// works for any signature failure.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Step == 0 && t.Field == "" && t.Reason == "" && t.Err == nil
}

// Sentinels for errors.Is, one per code.
var (
	ErrMalformed      = &Error{Code: CodeMalformed}
	ErrVersion        = &Error{Code: CodeVersion}
	ErrUnknownKind    = &Error{Code: CodeUnknownKind}
	ErrBadSignature   = &Error{Code: CodeBadSignature}
	ErrUnknownSigner  = &Error{Code: CodeUnknownSigner}
	ErrDecrypt        = &Error{Code: CodeDecrypt}
	ErrTimestamp      = &Error{Code: CodeTimestamp}
	ErrWrongRecipient = &Error{Code: CodeWrongRecipient}
)

// Coded is implemented by errors that carry a result code, such as payload
// validation errors of the contracts package.
type Coded interface {
	error
	ResultCode() string
}

// CodeOf returns the code carried by err: the envelope code, the code of a
// Coded error in its chain, or E199 for anything else (nil gives 0000).
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var c Coded
	if errors.As(err, &c) {
		return Code(c.ResultCode())
	}
	return CodeInternal
}

func reject(code Code, step int, field, reason string) *Error {
	return &Error{Code: code, Step: step, Field: field, Reason: reason}
}

func rejectf(code Code, step int, field, format string, args ...any) *Error {
	return reject(code, step, field, fmt.Sprintf(format, args...))
}
