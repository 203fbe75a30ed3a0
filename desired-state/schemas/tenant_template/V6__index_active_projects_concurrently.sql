-- neo:no-transaction
-- tenant_template V6: a partial index for the active_projects listing, built without
-- blocking writes.
--
-- CREATE INDEX CONCURRENTLY cannot run inside a transaction block, hence the first line:
-- neo-reconcile runs this file on its own, outside a transaction, as a single statement.
-- If it fails part-way, PostgreSQL leaves an INVALID index behind that must be dropped
-- (DROP INDEX CONCURRENTLY projects_active_created_at_idx) before the migration is retried.
CREATE INDEX CONCURRENTLY projects_active_created_at_idx ON projects (owner_id, created_at DESC) WHERE NOT archived;
