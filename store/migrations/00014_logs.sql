-- Log management (日志管理): the system log (the hub's own events, from its
-- slog records at or above the configured level) and the operation log
-- (one row per API call by an identified user). Both are queryable through
-- the API and kept for their retention (default 180 days), then archived to
-- a file with a signed SM3 manifest and only then deleted.

-- +goose Up
CREATE TABLE system_log (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL,
    level      smallint    NOT NULL,              -- slog level: -4 debug, 0 info, 4 warn, 8 error
    msg        text        NOT NULL,
    component  text        NOT NULL DEFAULT '',
    request_id text        NOT NULL DEFAULT '',   -- the API request (correlation id) it belongs to
    message_id text        NOT NULL DEFAULT '',   -- the bus message it is about
    instance   text        NOT NULL DEFAULT '',   -- host:pid of the hub process
    attrs      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX system_log_at_idx ON system_log (at);
CREATE INDEX system_log_level_idx ON system_log (level, id) WHERE level >= 4;
CREATE INDEX system_log_request_idx ON system_log (request_id) WHERE request_id <> '';
CREATE INDEX system_log_message_idx ON system_log (message_id) WHERE message_id <> '';

CREATE TABLE operation_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    request_id  text        NOT NULL,
    user_id     text        NOT NULL,
    unit        text        NOT NULL DEFAULT '',
    roles       text        NOT NULL DEFAULT '',
    auth_method text        NOT NULL DEFAULT '',
    method      text        NOT NULL,
    route       text        NOT NULL,             -- the route pattern, e.g. /api/v1/persons/{personNo}
    path        text        NOT NULL,
    status      smallint    NOT NULL,
    duration_us bigint      NOT NULL,
    remote      text        NOT NULL DEFAULT ''
);
CREATE INDEX operation_log_at_idx ON operation_log (at);
CREATE INDEX operation_log_user_idx ON operation_log (user_id, at);
CREATE INDEX operation_log_request_idx ON operation_log (request_id);

-- zhianhub trace follows what a request or a message caused through the
-- outbox's correlation ids (events and feedback of a user action).
CREATE INDEX outbox_corr_idx ON outbox (corr) WHERE corr <> '';

-- +goose Down
DROP INDEX outbox_corr_idx;
DROP TABLE operation_log;
DROP TABLE system_log;
