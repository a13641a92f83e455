-- Key-person registry (store/registry): the records this hub holds, received
-- from the bus ('in') or filed by the hub itself ('out'), with their controls,
-- verification tasks and the history of the messages applied to them.
--
-- Personal data (ID number, name, addresses) is stored only encrypted with the
-- field encryption (crypto/fieldenc); the additional data binds each value to
-- 'person.<column>/<person_no>'. id_no_bidx is the keyed blind index (domain
-- 'id_no') of the normalized ID number for equality lookups. There is no
-- column for ethnicity, religion or health, and none may be added.

-- +goose Up
CREATE TABLE person (
    person_no      text        PRIMARY KEY CHECK (person_no ~ '^[0-9]{20}$'),
    source_node    text        NOT NULL CHECK (source_node ~ '^[0-9]{12}$'), -- peer of the register message
    origin         text        NOT NULL CHECK (origin IN ('in', 'out')),     -- received, or filed by this hub
    state          text        NOT NULL CHECK (state IN ('ACTIVE', 'CANCELLED')),
    id_type        text        NOT NULL,
    id_no_enc      bytea       NOT NULL,
    id_no_bidx     bytea       NOT NULL CHECK (length(id_no_bidx) = 32),
    name_enc       bytea       NOT NULL,
    sex            text        NOT NULL,
    birth_date     date        NOT NULL,
    hukou_region   text        NOT NULL,
    hukou_addr_enc bytea       NULL,                                          -- NULL: no address
    resid_region   text        NOT NULL DEFAULT '',
    resid_addr_enc bytea       NULL,
    categories     text[]      NOT NULL CHECK (cardinality(categories) BETWEEN 1 AND 8),
    basis          jsonb       NOT NULL CHECK (jsonb_typeof(basis) = 'object'),
    review_by      date        NOT NULL,
    unit           text        NOT NULL,
    officer        text        NOT NULL,
    registered_at  timestamptz NOT NULL,
    cancelled_at   timestamptz NULL,
    cancel_reason  text        NULL,
    cancel_basis   jsonb       NULL,
    last_msg_id    uuid        NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CHECK ((state = 'CANCELLED') = (cancelled_at IS NOT NULL))
);
CREATE INDEX person_id_no_bidx_idx ON person (id_no_bidx);
CREATE INDEX person_review_idx ON person (review_by) WHERE state = 'ACTIVE';

CREATE TABLE control (
    control_no    text        PRIMARY KEY CHECK (control_no ~ '^[0-9]{20}$'),
    person_no     text        NOT NULL REFERENCES person (person_no),
    level         smallint    NOT NULL CHECK (level BETWEEN 1 AND 3),
    measures      text[]      NOT NULL,
    regions       text[]      NOT NULL,
    valid_from    timestamptz NOT NULL,
    valid_to      timestamptz NOT NULL CHECK (valid_to > valid_from),
    basis         jsonb       NOT NULL CHECK (jsonb_typeof(basis) = 'object'),
    state         text        NOT NULL CHECK (state IN ('OPEN', 'RELEASED', 'EXPIRED', 'CANCELLED')),
    closed_at     timestamptz NULL,
    close_reason  text        NULL,
    opened_by_msg uuid        NOT NULL,
    closed_by_msg uuid        NULL,  -- NULL when expired by the holder
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CHECK ((state = 'OPEN') = (closed_at IS NULL))
);
CREATE INDEX control_person_idx ON control (person_no, valid_from);
CREATE INDEX control_open_valid_to_idx ON control (valid_to) WHERE state = 'OPEN';

CREATE TABLE task (
    task_no        text        PRIMARY KEY CHECK (task_no ~ '^[0-9]{20}$'),
    person_no      text        NOT NULL REFERENCES person (person_no),
    items          text[]      NOT NULL,
    assigned_unit  text        NOT NULL,
    deadline       timestamptz NOT NULL,
    note           text        NOT NULL DEFAULT '',
    state          text        NOT NULL CHECK (state IN ('ISSUED', 'SIGNED')),
    issued_msg_id  uuid        NOT NULL,
    signed_unit    text        NULL,
    signed_officer text        NULL,
    signed_at      timestamptz NULL,
    sign_msg_id    uuid        NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CHECK ((state = 'SIGNED') = (sign_msg_id IS NOT NULL))
);
CREATE INDEX task_person_idx ON task (person_no);
CREATE INDEX task_unit_idx ON task (assigned_unit, task_no);
CREATE INDEX task_state_idx ON task (state, task_no);

-- One row per message applied to a person (UNIQUE (msg_id, direction): a
-- message has at most one effect), plus rows of the holder's own actions
-- (direction 'local', msg_id NULL: a control closed at expiry). fields names
-- the changed fields only; detail holds no plaintext personal data.
CREATE TABLE person_history (
    id          bigserial   PRIMARY KEY,
    person_no   text        NOT NULL REFERENCES person (person_no),
    msg_id      uuid        NULL,
    direction   text        NOT NULL CHECK (direction IN ('in', 'out', 'local')),
    node        text        NOT NULL DEFAULT '',
    kind        text        NOT NULL,
    at          timestamptz NOT NULL,
    fields      text[]      NOT NULL DEFAULT '{}',
    detail      jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),
    recorded_at timestamptz NOT NULL,
    UNIQUE (msg_id, direction),
    CHECK ((msg_id IS NULL) = (direction = 'local'))
);
CREATE INDEX person_history_person_idx ON person_history (person_no, id);

-- +goose Down
DROP TABLE person_history;
DROP TABLE task;
DROP TABLE control;
DROP TABLE person;
