-- Message reminders (消息提醒): the per-user and per-unit inbox of the
-- portal. Producers (notices, smart push, warnings, dispatch orders, tasks)
-- deliver items in their own transaction; a unit's item is shown to every
-- user of that unit, each with their own read mark. Delivery is idempotent
-- per (recipient, dedup_key), and notifies channel 'inbox' at commit so that
-- live streams (SSE) in any hub process learn of it.

-- +goose Up
CREATE TABLE inbox_item (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient_kind text        NOT NULL CHECK (recipient_kind IN ('user', 'unit')),
    recipient      text        NOT NULL CHECK (recipient <> ''),
    kind           text        NOT NULL CHECK (kind <> ''),
    ref            text        NOT NULL DEFAULT '',
    title          text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body           text        NOT NULL DEFAULT '',
    level          smallint    NOT NULL DEFAULT 0 CHECK (level BETWEEN 0 AND 4),
    dedup_key      text        NOT NULL CHECK (dedup_key <> ''),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (recipient_kind, recipient, dedup_key)
);
CREATE INDEX inbox_item_recipient_idx ON inbox_item (recipient_kind, recipient, id DESC);

-- Read marks: one row per (item, user) that has read it.
CREATE TABLE inbox_read (
    item_id bigint      NOT NULL REFERENCES inbox_item (id) ON DELETE CASCADE,
    user_id text        NOT NULL,
    read_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, item_id)
);

-- +goose Down
DROP TABLE inbox_read;
DROP TABLE inbox_item;
