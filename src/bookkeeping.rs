//! neo-reconcile's own schemas, embedded from the top-level `migrations/` with sqlx:
//! `migrations/region` creates schema `neo_reconcile` in every region database, and
//! `migrations/control_plane` creates the registry (`admin.database_connections`) in the
//! control-plane database. sqlx's `_sqlx_migrations` table lives in the same schema.

use sqlx::migrate::Migrator;

/// The bookkeeping schema of a region database.
pub static REGION: Migrator = sqlx::migrate!("./migrations/region");

/// The registry schema of the control-plane database.
pub static CONTROL_PLANE: Migrator = sqlx::migrate!("./migrations/control_plane");

/// The highest version a migrator holds.
pub fn latest(migrator: &Migrator) -> u32 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0) as u32
}
