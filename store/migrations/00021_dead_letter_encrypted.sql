-- Personal data at rest in the dead letters: the raw bytes of a letter may
-- be a module's plain JSON event (a lead's free text, names, ID numbers), so
-- from now on they are stored encrypted with the field encryption (SM4-GCM,
-- crypto/fieldenc, additional data "dead_letter.raw/<id>"). raw_encrypted
-- says which rows are; raw_size keeps the size of the message itself (the
-- ciphertext is longer). Rows written before stay readable as they are
-- (raw_encrypted false, raw_size NULL: the size is octet_length(raw)).

-- +goose Up
ALTER TABLE dead_letter ADD COLUMN raw_encrypted boolean NOT NULL DEFAULT false;
ALTER TABLE dead_letter ADD COLUMN raw_size integer NULL CHECK (raw_size >= 0);

-- +goose Down
ALTER TABLE dead_letter DROP COLUMN raw_size;
ALTER TABLE dead_letter DROP COLUMN raw_encrypted;
