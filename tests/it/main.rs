//! neo-reconcile's integration tests: one binary, one module per area, real PostgreSQL
//! clusters started by `support::pg` and the built `neo-reconcile` binary.

mod adopt;
mod apply;
mod harness;
mod migrations;
mod plan;
mod remedies;
mod support;
mod validate;
mod world;
