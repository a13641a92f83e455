-- Indexes of the auditor's queries of the audit chain (store/audit List,
-- Count, Each; GET /api/v1/audit and its exports): by user over a time range
-- (actor, at), and by time range alone (at). Object and correlation id have
-- theirs (00011); unit, action and result filter what these or the seq order
-- give. Every index is paid for by every entry written: (at) is a BRIN
-- index (times grow with seq, so block ranges summarize them well, and an
-- append costs next to nothing), (actor, at) a btree.

-- +goose Up
CREATE INDEX audit_entry_actor_at_idx ON audit_entry (actor, at);
CREATE INDEX audit_entry_at_idx ON audit_entry USING brin (at) WITH (pages_per_range = 32, autosummarize = on);

-- +goose Down
DROP INDEX audit_entry_at_idx;
DROP INDEX audit_entry_actor_at_idx;
