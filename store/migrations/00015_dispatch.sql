-- City feedback bus (feedback-bus.md): dispatch orders received from the
-- city bureau, their target units with each unit's state, and the history
-- of every feedback the hub filed to the city bureau. The exchange tables
-- (inbox, sequence_in, reseq_held, sequence_out, outbox) serve the city bus
-- too: their person_no columns hold the city bus's ordering key, refNo.

-- +goose Up
CREATE TABLE dispatch_order (
    order_no    text        PRIMARY KEY CHECK (order_no ~ '^[0-9]{20}$'),
    message_id  uuid        NOT NULL UNIQUE, -- the dispatch.order message that created it
    sender      text        NOT NULL,        -- the city bureau's node
    title       text        NOT NULL,
    content     text        NOT NULL,
    level       smallint    NOT NULL CHECK (level BETWEEN 1 AND 3),
    deadline    timestamptz NOT NULL,
    issued_by   text        NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX dispatch_order_received_idx ON dispatch_order (received_at DESC, order_no DESC);

-- One row per target unit: delivered when the order arrives (and its inbox
-- item is delivered in the same transaction), submitted once the unit has
-- reported; the last feedback's message id, number and result are kept.
CREATE TABLE dispatch_unit (
    order_no     text        NOT NULL REFERENCES dispatch_order (order_no),
    unit         text        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('delivered', 'submitted')),
    delivered_at timestamptz NOT NULL,
    feedback_id  uuid,
    feedback_no  text        NOT NULL DEFAULT '',
    result       text        NOT NULL DEFAULT '',
    submitted_at timestamptz,
    PRIMARY KEY (order_no, unit)
);
CREATE INDEX dispatch_unit_unit_idx ON dispatch_unit (unit, state);

-- Every feedback filed to the city bureau, of any refType (warning, task,
-- dispatch, lead); message_id is the outbox row that carries it.
CREATE TABLE feedback (
    message_id  uuid        PRIMARY KEY,
    feedback_no text        NOT NULL UNIQUE,
    to_node     text        NOT NULL,
    ref_type    text        NOT NULL CHECK (ref_type IN ('warning', 'task', 'dispatch', 'lead')),
    ref_no      text        NOT NULL,
    seq         bigint      NOT NULL,
    unit        text        NOT NULL,
    officer     text        NOT NULL,
    result      text        NOT NULL,
    detail      text        NOT NULL,
    attachments jsonb       NOT NULL DEFAULT '[]',
    at          timestamptz NOT NULL,
    filed_at    timestamptz NOT NULL
);
CREATE INDEX feedback_ref_idx ON feedback (ref_type, ref_no, filed_at);

-- Serials of the feedback numbers the hub assigns (dispatch.NextFeedbackNo).
CREATE SEQUENCE feedback_no_seq;

-- +goose Down
DROP SEQUENCE feedback_no_seq;
DROP TABLE feedback;
DROP TABLE dispatch_unit;
DROP TABLE dispatch_order;
