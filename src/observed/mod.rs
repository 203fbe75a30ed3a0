//! The observed state: what live PostgreSQL holds, as plain data.
//!
//! [`postgres`] reads it (read-only, a fixed number of queries per region whatever the number
//! of tenants); the planner compares it with the desired state. [`shape`] holds the
//! live-schema shapes `shape_query.rs` observes for drift detection. Nothing here does I/O, so
//! planner tests build these values by hand.

pub mod postgres;
pub mod shape;
pub(crate) mod shape_query;
mod state;

pub use state::{
    Bookkeeping, ControlPlaneState, DeadRun, HistoryRow, Observed, RegionObservation, RegionState,
    RegistryRow, TenantRow,
};
