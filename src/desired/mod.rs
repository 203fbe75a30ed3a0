//! The desired state: what a desired-state repository says the databases should be.
//!
//! [`load`] reads a tree (`neo.toml`, `regions/`, `tenants/`, `schemas/`), checks every rule
//! of format version 1 and returns either a validated [`Desired`] or the full list of
//! [`Diagnostic`]s. Everything downstream (the planner, apply) works only on [`Desired`], whose
//! invariants are: every tenant's region exists; every schema set's migrations are numbered
//! 1..=N without gaps; targets and pins are within 1..=N; `schema_sets` is in dependency order;
//! no credential value is held here, only where to fetch it; no derived PostgreSQL
//! identifier is longer than the 63 bytes PostgreSQL keeps (see [`identifiers`]).
//!
//! This file only declares the modules and re-exports what the rest of the program uses. The
//! domain types live one concept per file (`state`, `region`, `tenant`, `schema_set`), next
//! to the loader that builds them (`load/`, one module per part of the tree); the planner and
//! apply read them through the re-exports below.

mod credentials;
pub mod diagnostic;
mod extensions;
pub mod identifiers;
mod load;
pub mod raw;
mod region;
mod schema_set;
mod settings;
mod sql_check;
mod sql_names;
mod state;
mod tenant;

pub use credentials::database_role_parts;
pub use diagnostic::{Diagnostic, Severity};
pub use load::{load, Loaded};
pub use region::{
    ApplySettings, CredentialSource, Credentials, Endpoint, Region, SslMode, TransactionShape,
};
pub use schema_set::{DriftPolicy, Migration, SchemaSet, Scope};
pub use state::{ControlPlane, Desired, Extensions, MaxPrune, Policy};
pub use tenant::{Tenant, TenantStatus};

pub(crate) use load::{parse_toml_with, Required};
pub(crate) use settings::parse_duration;
