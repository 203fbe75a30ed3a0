-- neo:no-transaction
-- tenant_template U6: undoes V6 (drops its partial index without blocking writes).
--
-- Like V6, this file runs outside a transaction: DROP INDEX CONCURRENTLY cannot run in one.
-- IF EXISTS makes it safe to run again after an interrupted attempt.
DROP INDEX CONCURRENTLY IF EXISTS projects_active_created_at_idx;
