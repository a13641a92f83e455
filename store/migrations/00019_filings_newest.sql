-- Index of the filings list (store/exchange ListFilings, GET /api/v1/filings):
-- the newest filings first. The outbox is never emptied, so without it every
-- list read and sorted every filing (53 ms at 100 000 filings, a seq scan of
-- the payloads; 0.1 ms with it). Partial: internal events never need a
-- receipt and are never listed. The list by person has outbox_person_idx.
-- (Numbered after the branches' migrations of the time, 00013-00018.)

-- +goose Up
CREATE INDEX outbox_filing_created_idx ON outbox (created_at) WHERE needs_receipt;

-- +goose Down
DROP INDEX outbox_filing_created_idx;
