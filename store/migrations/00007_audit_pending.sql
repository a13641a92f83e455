-- Staged audit entries (the outbox of the audit chain). A caller inserts its
-- entries here with audit.Stage inside the transaction that makes the effect
-- they record, so both commit or neither does; the audit Writer's chainer
-- later moves them, in id order, into audit_entry (one transaction per batch
-- that also moves audit_head) and deletes them here. See package store/audit.
--
-- Rows here are not yet protected by the chain: until chained (PendingPoll,
-- 200 ms by default) they can be deleted by anyone with DELETE on the table.

-- +goose Up
CREATE TABLE audit_pending (
    id             bigserial   PRIMARY KEY,
    at             timestamptz NOT NULL,
    actor          text        NOT NULL CHECK (actor <> ''),
    unit           text        NOT NULL DEFAULT '',
    role           text        NOT NULL DEFAULT '',
    action         text        NOT NULL CHECK (action <> ''),
    object         text        NOT NULL DEFAULT '',
    result         text        NOT NULL CHECK (result <> ''),
    reason         text        NOT NULL DEFAULT '',
    correlation_id text        NOT NULL DEFAULT '',
    detail         jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
) WITH (
    -- A queue: rows are inserted and deleted all day. Vacuum it often so
    -- that the chainer's ORDER BY id scan does not wade through dead rows.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000
);

-- Insert-only for callers: staged rows cannot be updated (statement-level
-- triggers, so inserts and the chainer's deletes pay nothing per row). The
-- chainer deletes what it chained; DELETE is not guarded, as any guard would
-- be one the same role can lift (zhianhub.audit_archive = 'on' lifts these).
CREATE TRIGGER audit_pending_no_update
    BEFORE UPDATE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_pending_no_truncate
    BEFORE TRUNCATE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- The chainer's check that it chained every row it meant to (see
-- chainFromPendingSQL in store/audit): if some vanished meanwhile, abort the
-- statement rather than leave a hole in the chain.
-- +goose StatementBegin
CREATE FUNCTION audit_pending_chained(head_moved bigint, chained bigint, expected integer) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF head_moved > 0 AND chained <> expected THEN
        RAISE EXCEPTION 'audit: % of % staged entries vanished while being chained', expected - chained, expected
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN head_moved;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION audit_pending_chained(bigint, bigint, integer);
DROP TABLE audit_pending;
