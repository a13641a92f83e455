// Package contracts defines the payloads of the Ministry business bus
// (shared/specs/mps-bus.md) and of the city-bureau feedback bus
// (shared/specs/feedback-bus.md: Feedback, Order; city.go,
// Validator.ValidateCityPayload, schemas/city/, city-bus.md) and validates
// them.
//
// A Validator decodes a payload strictly and checks every rule of the bus
// contract, returning the first violation in the field order of the spec as a
// *FieldError that carries the bus error code (E120, E121 or E122) and the
// field path. The JSON Schemas under schemas/ are the published form of the
// same contract; the Go validator is the authority for error codes.
//
// The code tables are generated from shared/codes; see DECISIONS.md for the
// choices taken where the spec leaves room.
package contracts

//go:generate go run ./internal/gencodes -codes ../../shared/codes -out codes_gen.go -demo categories_demo.tsv
