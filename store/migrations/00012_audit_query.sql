-- Indexes of the auditor's queries of the audit chain (store/audit List,
-- Count, Each; GET /api/v1/audit and its exports): by user over a time range
-- (actor, at), and by time range alone (at). Object and correlation id have
-- theirs (00011); unit, action and result filter what these or the seq order
-- give. Two btree indexes only: the chain is written in batches, and each
-- index is paid for by every entry.

-- +goose Up
CREATE INDEX audit_entry_actor_at_idx ON audit_entry (actor, at);
CREATE INDEX audit_entry_at_idx ON audit_entry (at);

-- +goose Down
DROP INDEX audit_entry_at_idx;
DROP INDEX audit_entry_actor_at_idx;
