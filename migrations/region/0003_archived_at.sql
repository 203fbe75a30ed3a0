-- When a tenant was archived: a deleted tenant's archived schema is dropped only once
-- [policy] destroy_after has passed since then. Tenants archived before this column existed
-- count from their row's last change, the best record there is.
ALTER TABLE neo_reconcile.tenants ADD COLUMN archived_at timestamptz;
UPDATE neo_reconcile.tenants SET archived_at = updated_at WHERE status = 'archived';
