//! Every statement neo-reconcile runs to change a database, built in one place.
//!
//! [`program`] turns a plan action into the [`Step`]s apply executes, in order; `plan
//! --show-sql` prints the same steps with [`render_steps`], so a reviewer sees exactly what
//! apply will send. The rules that keep this safe:
//!
//! - values (names of tenants, commits, error texts, durations, JSON) never appear in SQL
//!   text: a [`Statement`] carries them as [`Value`]s that apply binds as parameters of the
//!   extended query protocol;
//! - identifiers appear in SQL text only through [`ident`], the one quoting function;
//! - where a statement needs a dynamic identifier but cannot take parameters (a `DO` block),
//!   the name travels as a bound parameter into a transaction-local setting and the block
//!   quotes it with `format('%I', ..)`.
//!
//! Pure data: nothing here talks to a database.

mod actions;
mod drift;
#[cfg(test)]
mod join_tests;
mod split;
mod statement;
mod undo;

pub use actions::{
    bootstrap_schema, create_database, create_tenant, join_setup, join_transactions, program,
    programs, region_set_owner, registry_update, MigrationRun, Program, ProgramError,
};
pub use split::split_statements;
pub use statement::{
    ident, render_steps, RunValue, Statement, Step, Value, REGION_LOCK_KEY, REGISTRY_LOCK_KEY,
};
