//! Raw desired-state files, exactly as serde reads them from TOML.
//!
//! These types mirror the files field for field, with `deny_unknown_fields` so a typo is never
//! silently ignored, and with [`Spanned`] values so every later check can point at the line
//! and column of the value it rejects. Enumerations (`scope`, `status`, `sslmode`) are read as
//! strings and checked in [`super::load`], so that one file can report several bad values at
//! once. Nothing here is trusted: [`super::load`] turns these into the validated types of
//! [`super`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `neo.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNeo {
    pub format_version: Spanned<i64>,
    pub control_plane: Spanned<RawControlPlane>,
    #[serde(default)]
    pub policy: Option<Spanned<RawPolicy>>,
    #[serde(default)]
    pub schema_sets: BTreeMap<Spanned<String>, Spanned<RawSchemaSet>>,
    #[serde(default)]
    pub extensions: Option<Spanned<RawExtensions>>,
}

/// `[extensions]` in `neo.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtensions {
    /// The schema holding the extensions (default `public`).
    #[serde(default)]
    pub schema: Option<Spanned<String>>,
    #[serde(default)]
    pub names: Vec<Spanned<String>>,
}

/// `[control_plane]` in `neo.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControlPlane {
    pub region: Spanned<String>,
    pub database: Spanned<String>,
}

/// `[policy]` in `neo.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub allow_destroy: Option<Spanned<bool>>,
    /// A duration such as `"30d"`; `"0s"` is allowed.
    #[serde(default)]
    pub destroy_after: Option<Spanned<String>>,
    #[serde(default)]
    pub allow_rollback: Option<Spanned<bool>>,
    /// A count (`5`) or a percentage (`"10%"`).
    #[serde(default)]
    pub max_prune: Option<Spanned<toml::Value>>,
}

/// `[schema_sets.<name>]` in `neo.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchemaSet {
    pub scope: Spanned<String>,
    /// `"latest"` or a version number; `"latest"` when absent.
    #[serde(default)]
    pub target: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    /// `"report"` (default), `"repair"` or `"off"`.
    #[serde(default)]
    pub drift: Option<Spanned<String>>,
    #[serde(default)]
    pub drift_prune: Option<Spanned<bool>>,
}

/// `regions/<name>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    pub name: Spanned<String>,
    pub residency: Spanned<String>,
    pub postgres: Spanned<RawPostgres>,
    pub credentials: Spanned<RawCredentials>,
    #[serde(default)]
    pub apply: Option<Spanned<RawApply>>,
}

/// `[postgres]` in a region file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub host: Spanned<String>,
    pub port: Spanned<i64>,
    pub database: Spanned<String>,
    #[serde(default)]
    pub sslmode: Option<Spanned<String>>,
}

/// `[credentials]` in a region file: exactly one source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    #[serde(default)]
    pub vault_kv: Option<Spanned<String>>,
    #[serde(default)]
    pub vault_database_role: Option<Spanned<String>>,
    #[serde(default)]
    pub env: Option<Spanned<String>>,
    /// The KV secret's field holding the username (`vault_kv` only; default `username`).
    #[serde(default)]
    pub username_field: Option<Spanned<String>>,
    /// The KV secret's field holding the password (`vault_kv` only; default `password`).
    #[serde(default)]
    pub password_field: Option<Spanned<String>>,
    /// The role every session runs `SET ROLE` to.
    #[serde(default)]
    pub set_role: Option<Spanned<String>>,
}

/// `[apply]` in a region file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApply {
    #[serde(default)]
    pub max_parallel: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_failures: Option<Spanned<i64>>,
    #[serde(default)]
    pub lock_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub statement_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub lock_wait: Option<Spanned<String>>,
    #[serde(default)]
    pub retries: Option<Spanned<i64>>,
    #[serde(default)]
    pub transaction: Option<Spanned<String>>,
}

/// `tenants/<slug>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub slug: Spanned<String>,
    pub region: Spanned<String>,
    #[serde(default)]
    pub residency: Option<Spanned<String>>,
    #[serde(default)]
    pub status: Option<Spanned<String>>,
    #[serde(default)]
    pub schema_sets: BTreeMap<Spanned<String>, Spanned<i64>>,
}
