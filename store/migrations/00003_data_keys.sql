-- +goose Up
-- Data keys of the field encryption (crypto/fieldenc): random SM4 and
-- HMAC-SM3 keys, stored only wrapped (SM2) to a key-encryption key of the
-- node's key store. Rows are never updated; rotation adds a row.
CREATE TABLE data_key (
    purpose    text        NOT NULL CHECK (purpose IN ('field', 'blind')),
    no         bigint      NOT NULL CHECK (no > 0 AND no <= 4294967295),
    wrapped    bytea       NOT NULL,
    kek_id     text        NOT NULL CHECK (kek_id ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (purpose, no)
);

-- +goose Down
DROP TABLE data_key;
