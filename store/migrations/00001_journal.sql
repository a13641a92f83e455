-- Message journal: every envelope the hub receives or sends, with its
-- current state, and the history of its state changes.

-- +goose Up
CREATE TABLE message (
    id             uuid        NOT NULL,                 -- envelope id
    direction      text        NOT NULL CHECK (direction IN ('in', 'out')),
    kind           text        NOT NULL,
    peer           text        NOT NULL,                 -- the other node's code
    raw            bytea       NOT NULL,                 -- the envelope exactly as received / sent
    state          text        NOT NULL,
    last_code      text        NOT NULL DEFAULT '',
    last_reason    text        NOT NULL DEFAULT '',
    correlation_id text        NULL,                     -- the envelope's corr; NULL when empty
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (id, direction)
);

CREATE INDEX message_state_idx ON message (state, updated_at);
CREATE INDEX message_correlation_idx ON message (correlation_id) WHERE correlation_id IS NOT NULL;

CREATE TABLE message_event (
    id         bigserial   PRIMARY KEY,
    message_id uuid        NOT NULL,
    direction  text        NOT NULL,
    state      text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    code       text        NOT NULL DEFAULT '',
    reason     text        NOT NULL DEFAULT '',
    raw        bytea       NULL,   -- a duplicate's bytes when they differ from message.raw
    FOREIGN KEY (message_id, direction) REFERENCES message (id, direction) ON DELETE CASCADE
);

CREATE INDEX message_event_message_idx ON message_event (message_id, direction, id);

-- +goose Down
DROP TABLE message_event;
DROP TABLE message;
