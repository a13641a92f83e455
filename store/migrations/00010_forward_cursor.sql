-- Positions of the hub's forwarders: how far a consumer of the audit chain
-- (or another counter it watches) has got. adapters/secplatform keeps the
-- last audit seq it sent to the security-protection platform here, and the
-- dead-letter count it last reported.

-- +goose Up
CREATE TABLE forward_cursor (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- +goose Down
DROP TABLE forward_cursor;
