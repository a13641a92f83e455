-- Local access control of the HTTP API (package store/access, adapters/auth):
-- certificate bindings (an officer certificate's serial and issuer to a user
-- id and unit), locally granted roles, and locked accounts. Every change is
-- made by an administrator through the API and audited in the same
-- transaction (audit.Stage); rows keep who made them.

-- +goose Up
CREATE TABLE cert_binding (
    id            bigserial   PRIMARY KEY,
    -- Upper-case hex without leading zeros, as access.NormalizeSerial gives.
    serial        text        NOT NULL CHECK (serial ~ '^[0-9A-F]{1,64}$'),
    -- The issuer DN as Go's pkix.Name.String renders it (RFC 2253 order).
    issuer        text        NOT NULL CHECK (issuer <> '' AND length(issuer) <= 1024),
    user_id       text        NOT NULL CHECK (user_id ~ '^[A-Za-z0-9._@-]{1,64}$'),
    unit          text        NOT NULL CHECK (unit ~ '^[0-9]{12}$'),
    note          text        NOT NULL DEFAULT '',
    created_by    text        NOT NULL CHECK (created_by <> ''),
    created_at    timestamptz NOT NULL,
    revoked_at    timestamptz NULL,
    revoked_by    text        NULL,
    revoke_reason text        NULL,
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL) AND (revoked_at IS NULL) = (revoke_reason IS NULL))
);

-- At most one binding in force per certificate; revoked ones stay as history.
CREATE UNIQUE INDEX cert_binding_active ON cert_binding (serial, issuer) WHERE revoked_at IS NULL;
CREATE INDEX cert_binding_user ON cert_binding (user_id);

-- Roles granted locally (the unified-authorization adapter will feed them
-- later). A revoked grant is deleted; the audit chain keeps its history.
CREATE TABLE user_role (
    user_id    text        NOT NULL CHECK (user_id ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role       text        NOT NULL CHECK (role ~ '^[a-z][a-z0-9._-]{0,31}$'),
    granted_by text        NOT NULL CHECK (granted_by <> ''),
    granted_at timestamptz NOT NULL,
    reason     text        NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, role)
);

-- Locked accounts: refused at authentication whatever their credentials.
CREATE TABLE account_lock (
    user_id   text        PRIMARY KEY CHECK (user_id ~ '^[A-Za-z0-9._@-]{1,64}$'),
    reason    text        NOT NULL CHECK (reason <> ''),
    locked_by text        NOT NULL CHECK (locked_by <> ''),
    locked_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE account_lock;
DROP TABLE user_role;
DROP TABLE cert_binding;
