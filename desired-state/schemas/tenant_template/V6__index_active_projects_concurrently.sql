-- neo:no-transaction
-- tenant_template V6: a partial index for the active_projects listing, built without
-- blocking writes.
--
-- CREATE INDEX CONCURRENTLY cannot run inside a transaction block, hence the first line:
-- neo-reconcile runs this file on its own, outside a transaction, one statement at a time,
-- and records it only once every statement succeeded.
--
-- A CREATE INDEX CONCURRENTLY that fails or is interrupted leaves an INVALID index behind,
-- so the file first drops any leftover from an earlier attempt: it is safe to run again.
DROP INDEX CONCURRENTLY IF EXISTS projects_active_created_at_idx;
CREATE INDEX CONCURRENTLY projects_active_created_at_idx ON projects (owner_id, created_at DESC) WHERE NOT archived;
