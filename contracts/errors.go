package contracts

import (
	"errors"
	"fmt"
)

// Bus result codes (shared/specs/envelope.md) that this package produces.
const (
	CodeAccepted    = "0000" // accepted
	CodeMalformed   = "E100" // malformed envelope or payload JSON
	CodeUnknownKind = "E102" // unknown kind
	CodeSchema      = "E120" // payload fails its schema
	CodeIDNumber    = "E121" // invalid identity-document number
	CodeNotInTable  = "E122" // code value not in its table
	CodeInternal    = "E199" // internal error at the receiver
)

var (
	// ErrNotObject is wrapped by the error ValidatePayload returns when the
	// payload is not one well-formed UTF-8 JSON object (bus code E100).
	ErrNotObject = errors.New("payload is not a JSON object")
	// ErrUnknownKind is wrapped by the error ValidatePayload returns for a
	// kind that is not a Ministry-bus kind (bus code E102).
	ErrUnknownKind = errors.New("unknown payload kind")
)

// FieldError is a payload that breaks the bus contract at one field.
type FieldError struct {
	Code   string // CodeSchema, CodeIDNumber or CodeNotInTable
	Path   string // field path, e.g. "basis.docNo", "categories[0]", "changes.residRegion"
	Reason string // user-facing Chinese text, "<path>：<detail>"
}

// ResultCode returns the bus code (E120, E121 or E122).
func (e *FieldError) ResultCode() string { return e.Code }

func (e *FieldError) Error() string {
	return fmt.Sprintf("contracts: %s %s", e.Code, e.Reason)
}

// ErrorCode maps an error returned by ValidatePayload to its bus code:
// E100, E102, or the code of the FieldError. Any other non-nil error maps
// to E199; nil maps to 0000.
func ErrorCode(err error) string {
	var fe *FieldError
	switch {
	case err == nil:
		return CodeAccepted
	case errors.As(err, &fe):
		return fe.Code
	case errors.Is(err, ErrNotObject):
		return CodeMalformed
	case errors.Is(err, ErrUnknownKind):
		return CodeUnknownKind
	}
	return CodeInternal
}

func fieldErr(code, path, detail string) *FieldError {
	return &FieldError{Code: code, Path: path, Reason: path + "：" + detail}
}
