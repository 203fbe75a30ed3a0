-- neo-reconcile's bookkeeping in each region database, schema neo_reconcile.
-- The schema itself is created before sqlx's migrator runs (its _sqlx_migrations table lives
-- there too). Every object is schema-qualified: this file never relies on search_path.

-- Every migration neo-reconcile applied (or adopted), one row per target schema, set and version.
CREATE TABLE neo_reconcile.schema_history (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target_schema  text        NOT NULL,
    schema_set     text        NOT NULL,
    version        integer     NOT NULL CHECK (version >= 1),
    description    text        NOT NULL,
    -- SHA-256 of the migration file's bytes, lowercase hex.
    checksum       text        NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    applied_at     timestamptz NOT NULL DEFAULT now(),
    -- The database role and host that applied it ("neo_migrator@bastion-1").
    applied_by     text        NOT NULL,
    git_commit     text,
    execution_ms   bigint      NOT NULL DEFAULT 0,
    success        boolean     NOT NULL,
    -- 'flyway' or 'manual' when the row was recorded by `adopt` without running SQL.
    adopted_from   text CHECK (adopted_from IN ('flyway', 'manual'))
);
-- A version succeeds at most once per target; failed attempts stay for the audit trail.
CREATE UNIQUE INDEX schema_history_applied_once
    ON neo_reconcile.schema_history (target_schema, schema_set, version) WHERE success;

-- The tenants this region's database holds, as neo-reconcile last left them.
CREATE TABLE neo_reconcile.tenants (
    slug        text PRIMARY KEY,
    status      text        NOT NULL CHECK (status IN ('active', 'suspended', 'archived', 'deleted')),
    schema_name text        NOT NULL,
    owner_role  text        NOT NULL,
    rw_role     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- The desired-state commit that last changed this row.
    git_commit  text
);
