package transforms

import (
	"errors"
	"strings"

	"zhianhub/contracts"
)

// Checker cleans a payload at the boundary and validates the result with
// the contract validators: the one step both the inbound route and the
// filing service run.
type Checker struct {
	Validator *contracts.Validator
}

// Check returns the cleaned payload, its typed form (*contracts.Person, …),
// a description of each cleaning ("path: op,op"; never a value) and the
// validation error, which carries its bus code (contracts.ErrorCode).
func (c Checker) Check(kind string, payload []byte) ([]byte, any, []string, error) {
	cleaned, changes, err := Clean(kind, payload)
	if err != nil {
		return payload, nil, nil, err
	}
	var notes []string
	for _, ch := range changes {
		notes = append(notes, ch.Path+": "+strings.Join(ch.Ops, ","))
	}
	typed, err := c.Validator.ValidatePayload(kind, cleaned)
	if err != nil {
		return cleaned, nil, notes, codedError(err)
	}
	return cleaned, typed, notes, nil
}

// CodedError carries the bus code of a payload refusal that is not a
// FieldError (E100 not an object, E102 unknown kind).
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string      { return e.Code + " " + e.Err.Error() }
func (e *CodedError) Unwrap() error      { return e.Err }
func (e *CodedError) ResultCode() string { return e.Code }

func codedError(err error) error {
	var fe *contracts.FieldError
	if errors.As(err, &fe) {
		return err
	}
	return &CodedError{Code: contracts.ErrorCode(err), Err: err}
}

// CityChecker validates the payloads of the city-bureau feedback bus
// (contracts.ValidateCityPayload). Nothing is cleaned there: the cleanings
// of Clean are those of the Ministry's person fields.
type CityChecker struct {
	Validator *contracts.Validator
}

// Check returns the payload unchanged, its typed form (*contracts.Feedback,
// *contracts.Order or *contracts.Receipt) and the coded validation error.
func (c CityChecker) Check(kind string, payload []byte) ([]byte, any, []string, error) {
	typed, err := c.Validator.ValidateCityPayload(kind, payload)
	if err != nil {
		return payload, nil, nil, codedError(err)
	}
	return payload, typed, nil, nil
}
