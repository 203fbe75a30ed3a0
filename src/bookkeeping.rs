//! neo-reconcile's own schemas, embedded from the top-level `migrations/` with sqlx:
//! `migrations/region` creates schema `neo_reconcile` in every region database, and
//! `migrations/control_plane` creates the registry (`admin.database_connections`) in the
//! control-plane database. sqlx's `_sqlx_migrations` table lives in the same schema.
//!
//! sqlx's own advisory lock is turned off: apply already holds the region lock, and sqlx's
//! runner does not release its lock when a migration fails.

use sqlx::migrate::Migrator;

/// The bookkeeping schema of a region database.
pub fn region() -> Migrator {
    let mut m = sqlx::migrate!("./migrations/region");
    m.set_locking(false);
    m
}

/// The registry schema of the control-plane database.
pub fn control_plane() -> Migrator {
    let mut m = sqlx::migrate!("./migrations/control_plane");
    m.set_locking(false);
    m
}

/// The highest version a migrator holds.
pub fn latest(migrator: &Migrator) -> u32 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0) as u32
}
