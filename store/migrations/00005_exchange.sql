-- Bus exchange state: inbox (de-duplication), resequencer, outbox (receipts,
-- events and filings to publish, with the resend schedule).

-- +goose Up
-- One row per distinct (sender, id) received. raw_sm3 is the SM3 of the
-- envelope bytes first processed: the same bytes again are a broker
-- redelivery (no answer), other bytes a sender's resend (DUPLICATE receipt).
-- Rows of non-final outcomes (E112-E114, E140, E199) are deleted so that a
-- resend is processed afresh.
CREATE TABLE inbox (
    sender      text        NOT NULL,
    id          uuid        NOT NULL,
    raw_sm3     bytea       NOT NULL,
    kind        text        NOT NULL,
    person_no   text        NOT NULL DEFAULT '',
    seq         bigint      NOT NULL DEFAULT 0,
    state       text        NOT NULL CHECK (state IN ('held', 'done')),
    code        text        NOT NULL DEFAULT '',
    reason      text        NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    done_at     timestamptz,
    PRIMARY KEY (sender, id)
);

-- Next expected seq per (sender, personNo).
CREATE TABLE sequence_in (
    sender    text   NOT NULL,
    person_no text   NOT NULL,
    next_seq  bigint NOT NULL DEFAULT 1 CHECK (next_seq >= 1),
    PRIMARY KEY (sender, person_no)
);

-- Messages that arrived ahead of a gap, held until the gap fills or the gap
-- timeout rejects them with E140.
CREATE TABLE reseq_held (
    sender     text        NOT NULL,
    person_no  text        NOT NULL,
    seq        bigint      NOT NULL,
    id         uuid        NOT NULL,
    kind       text        NOT NULL,
    corr       text        NOT NULL DEFAULT '',
    ts         timestamptz NOT NULL,
    raw        bytea       NOT NULL,
    payload    bytea       NOT NULL,
    code       text        NOT NULL DEFAULT '0000', -- payload validation result
    reason     text        NOT NULL DEFAULT '',
    held_since timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (sender, person_no, seq)
);
CREATE INDEX reseq_held_since_idx ON reseq_held (held_since);

-- Next seq this hub gives per (recipient, personNo) when filing.
CREATE TABLE sequence_out (
    to_node   text   NOT NULL,
    person_no text   NOT NULL,
    next_seq  bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (to_node, person_no)
);

-- Everything the hub publishes. to_node = '' marks an internal event (not
-- sealed). Filings (needs_receipt) stay 'sent' until their receipt, resent
-- on the schedule, 'flagged' after the give-up time; never deleted.
CREATE TABLE outbox (
    id              uuid        PRIMARY KEY,
    kind            text        NOT NULL,
    exchange        text        NOT NULL,
    routing_key     text        NOT NULL,
    to_node         text        NOT NULL DEFAULT '',
    corr            text        NOT NULL DEFAULT '',
    payload         bytea       NOT NULL,
    person_no       text        NOT NULL DEFAULT '',
    seq             bigint      NOT NULL DEFAULT 0,
    needs_receipt   boolean     NOT NULL,
    state           text        NOT NULL CHECK (state IN ('pending', 'sent', 'done', 'receipted', 'flagged')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    first_sent_at   timestamptz,
    last_sent_at    timestamptz,
    last_error      text        NOT NULL DEFAULT '',
    receipt_id      uuid,
    receipt_status  text        NOT NULL DEFAULT '',
    receipt_code    text        NOT NULL DEFAULT '',
    receipt_reason  text        NOT NULL DEFAULT '',
    receipt_at      timestamptz,
    actor           text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE state IN ('pending', 'sent');
CREATE INDEX outbox_state_idx ON outbox (state, created_at) WHERE state IN ('sent', 'flagged');
CREATE INDEX outbox_person_idx ON outbox (person_no, created_at) WHERE person_no <> '';

-- +goose Down
DROP TABLE outbox;
DROP TABLE sequence_out;
DROP TABLE reseq_held;
DROP TABLE sequence_in;
DROP TABLE inbox;
