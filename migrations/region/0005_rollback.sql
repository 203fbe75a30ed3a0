-- Rollback with undo files. A history row records either the application of a migration
-- ('apply') or of its undo file ('undo'). An undo also marks the row of the application it
-- reverses (reverted_by): history keeps both, and a version applied again later gets a new
-- row. A version is applied (and not reverted) at most once per target.
ALTER TABLE neo_reconcile.schema_history
    ADD COLUMN direction   text   NOT NULL DEFAULT 'apply' CHECK (direction IN ('apply', 'undo')),
    ADD COLUMN reverted_by bigint REFERENCES neo_reconcile.schema_history (id);
DROP INDEX neo_reconcile.schema_history_applied_once;
CREATE UNIQUE INDEX schema_history_applied_once
    ON neo_reconcile.schema_history (target_schema, schema_set, version)
    WHERE success AND direction = 'apply' AND reverted_by IS NULL;
