-- Personal data at rest in the exchange tables: the payloads of filings
-- (ID numbers, names, addresses) kept in the outbox for the resend
-- schedule, and the payloads of messages held for a gap, are stored
-- encrypted with the field encryption (SM4-GCM, crypto/fieldenc) from now
-- on; the flag says which rows are (rows written before stay readable).

-- +goose Up
ALTER TABLE outbox ADD COLUMN payload_encrypted boolean NOT NULL DEFAULT false;
ALTER TABLE reseq_held ADD COLUMN payload_encrypted boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE reseq_held DROP COLUMN payload_encrypted;
ALTER TABLE outbox DROP COLUMN payload_encrypted;
