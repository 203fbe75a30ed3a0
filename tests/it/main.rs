//! neo-reconcile's integration tests: one binary, one module per area, real PostgreSQL
//! clusters started by `support::pg` and the built `neo-reconcile` binary.

mod adopt;
mod apply;
mod corpus;
mod daemon;
mod daemon_vault;
mod drift;
mod drift_cost;
mod extensions;
mod harness;
mod migrations;
mod plan;
mod reconcile;
mod remedies;
mod robustness;
mod rollback;
mod safety;
mod support;
mod systemd;
mod tidy;
mod transaction_guard;
mod transaction_shape;
mod validate;
mod validate_mutations;
mod vault;
mod vault_failures;
mod vault_leases;
mod world;
