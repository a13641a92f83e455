-- Audit chain: an append-only, hash-chained log of who did what, with SM2
-- signed checkpoints. See package store/audit for the hash and signature
-- inputs.

-- +goose Up
CREATE TABLE audit_entry (
    seq            bigint      PRIMARY KEY CHECK (seq > 0),
    at             timestamptz NOT NULL,
    actor          text        NOT NULL,
    unit           text        NOT NULL,
    role           text        NOT NULL,
    action         text        NOT NULL,
    object         text        NOT NULL,
    result         text        NOT NULL,
    reason         text        NOT NULL,
    correlation_id text        NOT NULL,
    detail         jsonb       NOT NULL CHECK (jsonb_typeof(detail) = 'object'),
    prev_hash      bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash           bytea       NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE audit_checkpoint (
    seq       bigint      PRIMARY KEY CHECK (seq > 0),   -- the entry it seals
    hash      bytea       NOT NULL CHECK (length(hash) = 32),
    at        timestamptz NOT NULL,
    key_id    text        NOT NULL,
    max_gap   bigint      NOT NULL CHECK (max_gap > 0),  -- next checkpoint at most this many entries later
    signature bytea       NOT NULL
);

-- The single head row: the end of the chain and the checkpoint in force.
-- Writers lock it (SELECT ... FOR UPDATE) to serialize batches across
-- processes.
CREATE TABLE audit_head (
    id             boolean     PRIMARY KEY DEFAULT true CHECK (id),
    last_seq       bigint      NOT NULL,
    last_hash      bytea       NOT NULL CHECK (length(last_hash) = 32),
    checkpoint_seq bigint      NOT NULL,
    checkpoint_at  timestamptz NULL,
    checkpoint_gap bigint      NOT NULL CHECK (checkpoint_gap > 0)
);

-- Genesis: no entry yet, prev_hash of entry 1 is 32 zero bytes, and the
-- first entry must carry a checkpoint (gap 1).
INSERT INTO audit_head (id, last_seq, last_hash, checkpoint_seq, checkpoint_at, checkpoint_gap)
VALUES (true, 0, decode(repeat('00', 32), 'hex'), 0, NULL, 1);

-- Append-only at the database level: rows of audit_entry and audit_checkpoint
-- can be neither updated nor deleted, the tables not truncated, and the head
-- never moved backwards, unless the session sets zhianhub.audit_archive = 'on'
-- (reserved for archival). This stops mistakes and casual tampering; a
-- superuser can still do anything, which is what Verify is for.

-- +goose StatementBegin
CREATE FUNCTION audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('zhianhub.audit_archive', true), '') <> 'on' THEN
        RAISE EXCEPTION 'audit: % on % is not allowed: the audit log is append-only', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_LEVEL = 'STATEMENT' THEN
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION audit_head_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('zhianhub.audit_archive', true), '') = 'on' THEN
        IF TG_LEVEL = 'STATEMENT' THEN
            RETURN NULL;
        ELSIF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id = OLD.id AND NEW.last_seq >= OLD.last_seq AND NEW.checkpoint_seq >= OLD.checkpoint_seq THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit: % on audit_head is not allowed: the head only moves forward', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_entry_append_only
    BEFORE UPDATE OR DELETE ON audit_entry
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_entry_no_truncate
    BEFORE TRUNCATE ON audit_entry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoint_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoint_no_truncate
    BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_head_forward_only
    BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();
CREATE TRIGGER audit_head_no_truncate
    BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_forward_only();

-- +goose Down
DROP TABLE audit_head;
DROP TABLE audit_checkpoint;
DROP TABLE audit_entry;
DROP FUNCTION audit_head_forward_only();
DROP FUNCTION audit_append_only();
