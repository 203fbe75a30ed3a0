-- How many statements of a `-- neo:no-transaction` migration completed before an attempt of it
-- failed (they stay committed): the next apply of the same file continues after them. NULL
-- for transactional migrations, whose failed attempts leave nothing behind.
ALTER TABLE neo_reconcile.schema_history ADD COLUMN statements_completed int;
