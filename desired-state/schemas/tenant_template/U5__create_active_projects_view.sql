-- tenant_template U5: undoes V5 (drops the active_projects view).
--
-- An undo file runs only when a revert lowers the target below 5 and neo.toml has
-- [policy] allow_rollback = true. It runs in its own transaction with its history row.

DROP VIEW active_projects;
