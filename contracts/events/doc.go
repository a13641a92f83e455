// Package events is the contract registry of the hub's internal events: the
// events the internal modules publish through the ingress exchange
// (zhian.ingress) and the events every subscriber reads from the topic
// exchange zhian.events, routing key = kind.
//
// Each event kind has a summary, a JSON Schema (draft 2020-12, self-contained,
// restricted to keywords that mean the same in draft-07 so that the AsyncAPI
// document can carry it as an AsyncAPI Schema Object) and an example. Validate
// checks an event against its contract and returns a coded error: E100 when
// the bytes are not one JSON object (contracts.ErrNotObject), E102 for an
// unknown kind (contracts.ErrUnknownKind), E120 with the JSON path of the
// first violation (*contracts.FieldError).
//
// Every event has the same frame: messageId (UUID), kind, from (the
// publishing module, or the sending node for keyperson.*), a time
// (occurredAt for module events, receivedAt for keyperson.*) and data. The
// keyperson.* events are published by the hub itself (routes, for applied
// Ministry messages) and carry no ID number, name or address; no event has a
// field for ethnicity, religion or health.
package events
