-- Keep envelopes inline. A 1 KiB payload seals to a ~2 KiB envelope: just
-- over the default TOAST threshold (~2 KiB), so every journal row tried to
-- compress its base64 bytes (which do not compress) and then moved them to
-- the TOAST table, one more heap row and index entry per chunk. Rows up to
-- a page stay in the heap now; larger ones are still toasted.
-- (00008 is reserved for the authentication tables.)

-- +goose Up
ALTER TABLE message SET (toast_tuple_target = 8160);
ALTER TABLE message ALTER COLUMN raw SET STORAGE EXTERNAL;

-- +goose Down
ALTER TABLE message ALTER COLUMN raw SET STORAGE EXTENDED;
ALTER TABLE message RESET (toast_tuple_target);
