-- tenant_template V1: the core tables of a tenant.
--
-- Tenant scope: applied to each tenant schema tenant_<slug> with search_path set to that
-- schema, so nothing here names a schema. The identity sequences and the primary-key indexes
-- are created in the same schema as their tables.

CREATE TABLE users (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email        text        NOT NULL,
    display_name text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Deleting a user deletes the projects they own.
    owner_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE users IS 'People who can sign in to this tenant.';
COMMENT ON TABLE projects IS 'Projects owned by a user of this tenant.';
