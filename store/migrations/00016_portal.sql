-- Portal features on the inbox (00013): system notices (系统公告) and smart
-- push rules (智能推送).
--
-- inbox_item gains an audience by role (a unit's item that only the users
-- of that unit holding one of the roles see; empty = every user of the
-- unit) and a withdrawal mark (a withdrawn notice's reminders are hidden,
-- not deleted: their dedup keys stay taken, so that nothing delivers them
-- again).

-- +goose Up
ALTER TABLE inbox_item
    ADD COLUMN audience_roles text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN withdrawn_at   timestamptz;
CREATE INDEX inbox_item_ref_idx ON inbox_item (kind, ref) WHERE ref <> '';

-- A notice: draft → published → withdrawn. unit is the author's unit (who
-- may edit it: managers of that unit or of a unit above it); the audience
-- is by unit (each with its subtree) and optionally by role.
CREATE TABLE notice (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state           text        NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'published', 'withdrawn')),
    title           text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body            text        NOT NULL DEFAULT '',
    level           smallint    NOT NULL DEFAULT 0 CHECK (level BETWEEN 0 AND 4),
    unit            text        NOT NULL,
    audience_units  text[]      NOT NULL CHECK (cardinality(audience_units) > 0),
    audience_roles  text[]      NOT NULL DEFAULT '{}',
    created_by      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_by    text        NOT NULL DEFAULT '',
    published_at    timestamptz,
    withdrawn_by    text        NOT NULL DEFAULT '',
    withdrawn_at    timestamptz,
    withdraw_reason text        NOT NULL DEFAULT ''
);
CREATE INDEX notice_state_idx ON notice (state, id DESC);

-- A smart-push rule: events of event_kind (and category, level, unit scope)
-- become inbox items of the owner, a user or a unit. owner_unit is the
-- owning user's unit (the unit of a unit's rule), named in push.delivered.
CREATE TABLE push_rule (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_kind  text        NOT NULL CHECK (owner_kind IN ('user', 'unit')),
    owner       text        NOT NULL CHECK (owner <> ''),
    owner_unit  text        NOT NULL,
    event_kind  text        NOT NULL CHECK (event_kind <> ''),
    category    text        NOT NULL DEFAULT '',
    unit_scope  text        NOT NULL DEFAULT '',
    max_level   smallint    NOT NULL DEFAULT 0 CHECK (max_level BETWEEN 0 AND 4),
    enabled     boolean     NOT NULL DEFAULT true,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX push_rule_kind_idx ON push_rule (event_kind) WHERE enabled;
CREATE INDEX push_rule_owner_idx ON push_rule (owner_kind, owner, id);

-- +goose Down
DROP TABLE push_rule;
DROP TABLE notice;
DROP INDEX inbox_item_ref_idx;
ALTER TABLE inbox_item DROP COLUMN withdrawn_at, DROP COLUMN audience_roles;
