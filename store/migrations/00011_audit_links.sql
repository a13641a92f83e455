-- Indexes that let `zhianhub trace` follow an id through the audit chain
-- (by the correlation id a request or message gave its entries, and by the
-- object acted on) without scanning the whole chain.

-- +goose Up
CREATE INDEX audit_entry_correlation_idx ON audit_entry (correlation_id) WHERE correlation_id <> '';
CREATE INDEX audit_entry_object_idx ON audit_entry (object) WHERE object <> '';

-- +goose Down
DROP INDEX audit_entry_object_idx;
DROP INDEX audit_entry_correlation_idx;
