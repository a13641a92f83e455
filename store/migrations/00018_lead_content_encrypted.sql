-- Leads' texts at rest: a hotline or walk-in lead's text names people,
-- their ID and telephone numbers and addresses, so it is stored only
-- encrypted (content_enc: fieldenc SM4-GCM ciphertext bound to
-- "lead.content/<leadId>"), and duplicates are found by a keyed blind index
-- of the normalized text (content_index: HMAC-SM3 under the fieldenc
-- blind-index key) instead of its plain SM3 digest, which anyone reading
-- the table could recompute for a guessed text.
--
-- Existing rows are deleted: 00017 has reached no production database,
-- only demo databases (make run), and their texts cannot be encrypted here
-- (the keys are not available to SQL) nor left in clear beside the new
-- columns. The lead numbers already taken stay taken (lead_serial is
-- kept), and so do the events already seen (portal_event_seen): the demo
-- leads are dropped, not re-taken in.

-- +goose Up
DELETE FROM lead;
DROP INDEX lead_merge_idx;
ALTER TABLE lead
    DROP COLUMN content,
    DROP COLUMN content_hash,
    ADD COLUMN content_enc   bytea NOT NULL,
    ADD COLUMN content_index bytea NOT NULL CHECK (length(content_index) = 32);
CREATE INDEX lead_merge_idx ON lead (category, region, content_index, registered_at) WHERE merged_into IS NULL;

-- +goose Down
-- The ciphertexts cannot be decrypted in SQL: the leads are deleted.
DELETE FROM lead;
DROP INDEX lead_merge_idx;
ALTER TABLE lead
    DROP COLUMN content_enc,
    DROP COLUMN content_index,
    ADD COLUMN content      text  NOT NULL CHECK (content <> ''),
    ADD COLUMN content_hash bytea NOT NULL;
CREATE INDEX lead_merge_idx ON lead (category, region, content_hash, registered_at) WHERE merged_into IS NULL;
