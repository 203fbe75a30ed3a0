-- The central registry other services read, in the control-plane database, schema admin.
-- One row per tenant. Never a password: services get credentials from Vault.
CREATE TABLE admin.database_connections (
    tenant_slug     text PRIMARY KEY,
    region          text        NOT NULL,
    host            text        NOT NULL,
    port            integer     NOT NULL CHECK (port BETWEEN 1 AND 65535),
    database_name   text        NOT NULL,
    schema_name     text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('active', 'suspended', 'archived', 'deleted')),
    -- {"tenant_template": 5, ...}: the version of each tenant-scope set.
    schema_versions jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- The desired-state commit that last changed this row.
    git_commit      text
);
