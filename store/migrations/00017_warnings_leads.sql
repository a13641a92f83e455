-- Portal features: warnings (信息预警) from the internal modules with their
-- lifecycle and overdue escalation (督办), and leads (信息线索) with the
-- merging of duplicates by content. Events consumed from zhian.events are
-- remembered by messageId per consumer (portal_event_seen), so that a
-- redelivered event has no second effect.

-- +goose Up
CREATE TABLE warning (
    warning_id     text        PRIMARY KEY CHECK (warning_id ~ '^[0-9]{20}$'),
    level          smallint    NOT NULL CHECK (level BETWEEN 1 AND 4),
    category       text        NOT NULL CHECK (category ~ '^[0-9]{4}$'),
    title          text        NOT NULL CHECK (length(title) BETWEEN 1 AND 100),
    content        text        NOT NULL DEFAULT '',
    person_no      text        NOT NULL DEFAULT '',
    -- unit is the responsible unit now; holders every unit that was
    -- responsible (the issued one, then each transfer's): the data scope.
    unit           text        NOT NULL CHECK (unit ~ '^[0-9]{12}$'),
    holders        text[]      NOT NULL,
    deadline       timestamptz NOT NULL,
    issued_at      timestamptz NOT NULL,
    source         text        NOT NULL DEFAULT '',   -- publishing module
    message_id     uuid        NOT NULL UNIQUE,       -- the warning.issued event
    state          text        NOT NULL CHECK (state IN ('issued', 'signed', 'in_progress', 'done', 'false_alarm', 'transferred')),
    signed_unit    text        NOT NULL DEFAULT '',
    signed_officer text        NOT NULL DEFAULT '',
    signed_at      timestamptz,
    result         text        NOT NULL DEFAULT '',   -- warning.feedback result of a finish
    detail         text        NOT NULL DEFAULT '',   -- the finishing unit's account
    finished_at    timestamptz,
    escalated_at   timestamptz,                       -- overdue escalation (督办), once
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX warning_holders_idx ON warning USING gin (holders);
CREATE INDEX warning_overdue_idx ON warning (deadline)
    WHERE escalated_at IS NULL AND state IN ('issued', 'signed', 'in_progress', 'transferred');

-- Every step of a warning's lifecycle, oldest first.
CREATE TABLE warning_step (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    warning_id text        NOT NULL REFERENCES warning (warning_id),
    action     text        NOT NULL,  -- issue, sign, start, finish, transfer, escalate
    from_state text        NOT NULL DEFAULT '',
    to_state   text        NOT NULL,
    unit       text        NOT NULL DEFAULT '',
    actor      text        NOT NULL,
    officer    text        NOT NULL DEFAULT '',
    to_unit    text        NOT NULL DEFAULT '',
    note       text        NOT NULL DEFAULT '',
    at         timestamptz NOT NULL
);
CREATE INDEX warning_step_warning_idx ON warning_step (warning_id, id);

-- Leads. A lead whose normalized content, category and region equal those
-- of a primary lead registered within the merge window is stored as its
-- duplicate (merged_into = the primary); a primary has merged_into NULL.
CREATE TABLE lead (
    lead_id       text        PRIMARY KEY CHECK (lead_id ~ '^[0-9]{20}$'),
    source        text        NOT NULL,
    category      text        NOT NULL CHECK (category ~ '^[0-9]{4}$'),
    content       text        NOT NULL CHECK (content <> ''),
    content_hash  bytea       NOT NULL,  -- SM3 of the normalized content
    region        text        NOT NULL CHECK (region ~ '^[0-9]{6}$'),
    unit          text        NOT NULL CHECK (unit ~ '^[0-9]{12}$'),
    officer       text        NOT NULL,
    registered_at timestamptz NOT NULL,
    merged_into   text        REFERENCES lead (lead_id),
    via           text        NOT NULL CHECK (via IN ('api', 'bus')),
    actor         text        NOT NULL,
    message_id    uuid        UNIQUE,    -- the lead.registered event (bus intake)
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX lead_merge_idx ON lead (category, region, content_hash, registered_at) WHERE merged_into IS NULL;
CREATE INDEX lead_merged_into_idx ON lead (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX lead_unit_idx ON lead (unit, lead_id);

-- Next serial of the lead numbers of one prefix (region + date).
CREATE TABLE lead_serial (
    prefix text   PRIMARY KEY,
    next   bigint NOT NULL
);

-- Events of zhian.events already processed, per consumer.
CREATE TABLE portal_event_seen (
    consumer   text        NOT NULL,
    message_id uuid        NOT NULL,
    kind       text        NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer, message_id)
);

-- +goose Down
DROP TABLE portal_event_seen;
DROP TABLE lead_serial;
DROP TABLE lead;
DROP TABLE warning_step;
DROP TABLE warning;
