-- Dead letters: every message the hub rejected without an answer or could not
-- deliver, kept with its exact bytes and the reason, for the operators to see
-- and to replay. Nothing received is ever dropped silently (envelope.md).

-- +goose Up
CREATE TABLE dead_letter (
    id               bigserial   PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    source           text        NOT NULL DEFAULT '',     -- where it came from, e.g. amqp:node.310000000000
    exchange         text        NOT NULL DEFAULT '',     -- replay route: exchange ...
    routing_key      text        NOT NULL DEFAULT '',     -- ... and routing key; both '' = cannot be replayed
    message_id       text        NOT NULL DEFAULT '',     -- envelope id if it could be read
    sender           text        NOT NULL DEFAULT '',     -- envelope from if it could be read
    kind             text        NOT NULL DEFAULT '',     -- envelope kind if it could be read
    raw              bytea       NOT NULL,                -- the message exactly as received / sent
    code             text        NOT NULL CHECK (code ~ '^E[0-9]{3}$'),
    reason           text        NOT NULL CHECK (reason <> ''),
    security         boolean     NOT NULL DEFAULT false,  -- failed envelope steps 1-2 (malformed, unknown signer, bad signature)
    replay_count     integer     NOT NULL DEFAULT 0 CHECK (replay_count >= 0),
    last_replayed_at timestamptz NULL,
    resolved_at      timestamptz NULL,
    resolved_by      text        NOT NULL DEFAULT '',
    note             text        NOT NULL DEFAULT '',
    CHECK ((resolved_at IS NULL) = (resolved_by = ''))
);

CREATE INDEX dead_letter_at_idx ON dead_letter (at);
CREATE INDEX dead_letter_code_idx ON dead_letter (code, id);
CREATE INDEX dead_letter_message_idx ON dead_letter (message_id) WHERE message_id <> '';
CREATE INDEX dead_letter_unresolved_idx ON dead_letter (id) WHERE resolved_at IS NULL;
CREATE INDEX dead_letter_security_idx ON dead_letter (id) WHERE security;

-- +goose Down
DROP TABLE dead_letter;
