//! neo-reconcile: a declarative GitOps reconciler for multi-tenant, multi-region PostgreSQL.
//!
//! The pipeline, one module per stage (see ARCHITECTURE.md): [`desired`] reads and validates
//! the desired-state tree; [`observed`] reads live PostgreSQL; [`plan`] compares the two, a
//! pure function; [`sources`] is where credentials and the git commit come from;
//! [`bookkeeping`] embeds neo-reconcile's own schemas; [`sql`] builds every statement apply
//! runs, so that `plan --show-sql` shows the same.

pub mod apply;
pub mod bookkeeping;
pub mod daemon;
pub mod db;
pub mod desired;
pub mod engine;
pub mod observed;
pub mod plan;
pub mod reconcile;
pub mod shutdown;
pub mod sources;
pub mod sql;
