package main

import (
	"errors"

	"zhianhub/contracts"
	"zhianhub/envelope"
)

// payloadValidator adapts the contract validators to the envelope's step 6:
// it knows the kinds and maps contract errors to envelope codes.
type payloadValidator struct {
	v *contracts.Validator
}

func newPayloadValidator(getenv func(string) string) (*payloadValidator, error) {
	v, err := contracts.NewValidator(contracts.ConfigFromEnv(getenv))
	if err != nil {
		return nil, err
	}
	return &payloadValidator{v: v}, nil
}

// Known implements envelope.Kinds.
func (p *payloadValidator) Known(kind string) bool { return contracts.Known(kind) }

// ValidatePayload implements envelope.PayloadValidator.
func (p *payloadValidator) ValidatePayload(kind string, payload []byte) error {
	_, err := p.v.ValidatePayload(kind, payload)
	if err == nil {
		return nil
	}
	e := &envelope.Error{Code: envelope.Code(contracts.ErrorCode(err)), Step: 6, Err: err}
	var fe *contracts.FieldError
	if errors.As(err, &fe) {
		e.Field, e.Reason, e.Err = fe.Path, fe.Reason, nil
	}
	return e
}
