-- tenant_template V4: projects can be archived instead of deleted.
--
-- Since PostgreSQL 11, ADD COLUMN with a constant DEFAULT does not rewrite the table, so
-- this is quick even on a tenant with many projects.

ALTER TABLE projects
    ADD COLUMN archived boolean NOT NULL DEFAULT false,
    ADD COLUMN visibility text NOT NULL DEFAULT 'private'
        CONSTRAINT projects_visibility_check CHECK (visibility IN ('private', 'internal', 'public'));

COMMENT ON COLUMN projects.archived IS 'Archived projects are hidden from listings but kept.';
