//! neo-reconcile: a declarative GitOps reconciler for multi-tenant, multi-region PostgreSQL.
//!
//! The pipeline, one module per stage (see ARCHITECTURE.md):
//! [`desired`] reads and validates the desired-state tree. Later stages observe live
//! PostgreSQL, plan, and apply.

pub mod desired;
