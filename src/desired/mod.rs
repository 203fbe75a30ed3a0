//! The desired state: what a desired-state repository says the databases should be.
//!
//! [`load`] reads a tree (`neo.toml`, `regions/`, `tenants/`, `schemas/`), checks every rule
//! of format version 1 and returns either a validated [`Desired`] or the full list of
//! [`Diagnostic`]s. Everything downstream (the planner, apply) works only on [`Desired`], whose
//! invariants are: every tenant's region exists; every schema set's migrations are numbered
//! 1..=N without gaps; targets and pins are within 1..=N; `schema_sets` is in dependency order;
//! no credential value is held here, only where to fetch it; no derived PostgreSQL
//! identifier is longer than the 63 bytes PostgreSQL keeps (see [`identifiers`]).

mod credentials;
pub mod diagnostic;
mod extensions;
pub mod identifiers;
mod load;
pub mod raw;
mod settings;
mod sql_check;
mod sql_names;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use credentials::database_role_parts;
pub use diagnostic::{Diagnostic, Severity};
pub use load::{load, Loaded};
pub(crate) use load::{parse_toml_with, Required};
pub(crate) use settings::parse_duration;

/// A validated desired-state tree.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The directory the tree was read from.
    pub root: PathBuf,
    pub control_plane: ControlPlane,
    pub policy: Policy,
    /// The extensions every region database needs, and their schema.
    pub extensions: Extensions,
    /// The schema sets, in dependency order (a set comes after every set it depends on; ties
    /// are broken by name so the order is stable).
    pub schema_sets: Vec<SchemaSet>,
    pub regions: BTreeMap<String, Region>,
    pub tenants: BTreeMap<String, Tenant>,
    /// The SHA-256 of every file that makes up the desired state (path and content), in hex.
    /// Two trees with the same digest plan the same way.
    pub digest: String,
}

impl Desired {
    pub fn schema_set(&self, name: &str) -> Option<&SchemaSet> {
        self.schema_sets.iter().find(|s| s.name == name)
    }

    /// The tenants of one region, by slug.
    pub fn tenants_in<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a Tenant> + 'a {
        self.tenants.values().filter(move |t| t.region == region)
    }
}

/// Where the central registry (`admin.database_connections`) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    pub region: String,
    pub database: String,
}

/// `[extensions]`: created once per region database, in `schema`, which every migration has
/// on its search path after the target schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extensions {
    pub schema: String,
    /// In the order `neo.toml` lists them.
    pub names: Vec<String>,
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            schema: extensions::DEFAULT_SCHEMA.to_string(),
            names: Vec::new(),
        }
    }
}

/// `[policy]` in `neo.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Whether a `deleted` tenant's data may be dropped.
    pub allow_destroy: bool,
    /// How long a deleted tenant's archived schema is kept before it may be dropped (only
    /// matters with `allow_destroy`). Zero means no retention.
    pub destroy_after: Duration,
}

impl Policy {
    /// `destroy_after` when `neo.toml` does not set it: 30 days.
    pub const DEFAULT_DESTROY_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_destroy: false,
            destroy_after: Policy::DEFAULT_DESTROY_AFTER,
        }
    }
}

/// Where a schema set is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Once per region database, into a schema named after the set.
    Region,
    /// Into every tenant's schema `tenant_<slug>`.
    Tenant,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Region => "region",
            Scope::Tenant => "tenant",
        })
    }
}

/// A named, versioned sequence of migrations.
#[derive(Debug, Clone)]
pub struct SchemaSet {
    pub name: String,
    pub scope: Scope,
    /// The version every target of this set should be at (`"latest"` already resolved).
    pub target: u32,
    pub depends_on: Vec<String>,
    /// Migrations by version: `migrations[i].version == i + 1`.
    pub migrations: Vec<Migration>,
}

impl SchemaSet {
    pub fn latest(&self) -> u32 {
        self.migrations.len() as u32
    }

    /// The migration of a version, if the set has it.
    pub fn migration(&self, version: u32) -> Option<&Migration> {
        version
            .checked_sub(1)
            .and_then(|i| self.migrations.get(i as usize))
    }
}

/// One versioned migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub description: String,
    /// The file, relative to the tree's root (`schemas/tenant_template/V1__init.sql`).
    pub file: String,
    /// The SQL that runs: the file's text, without a `BEGIN; ... COMMIT;` pair wrapping the
    /// whole file (neo-reconcile runs each migration in a transaction of its own).
    pub sql: String,
    /// The statements of `sql` in order, as PostgreSQL's parser delimits them (trimmed,
    /// without their semicolons); a `-- neo:no-transaction` migration runs them one by one.
    pub statements: Vec<String>,
    /// SHA-256 of the file's bytes, in lowercase hex (not of `sql`: the file is what is
    /// versioned, and what Flyway-adopted history records).
    pub checksum: String,
    /// The file's first line is `-- neo:no-transaction`: it runs alone, outside a transaction.
    pub no_transaction: bool,
}

/// One PostgreSQL cluster and the database neo-reconcile manages in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub residency: String,
    pub postgres: Endpoint,
    pub credentials: Credentials,
    pub apply: ApplySettings,
}

/// How to reach a region's database. Never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub sslmode: SslMode,
}

/// libpq's `sslmode`, as PostgreSQL documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const NAMES: [&'static str; 5] =
        ["disable", "prefer", "require", "verify-ca", "verify-full"];

    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A region's `[credentials]`: where its login comes from, and the role its sessions act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub source: CredentialSource,
    /// `set_role`: every session of the region first runs `SET ROLE` to it (set at connection
    /// start), so that what it creates belongs to a stable role and not to a short-lived login.
    pub set_role: Option<String>,
}

impl Credentials {
    /// Credentials from `source`, without `set_role`.
    pub fn from(source: CredentialSource) -> Credentials {
        Credentials {
            source,
            set_role: None,
        }
    }
}

/// Where a region's database credentials come from. Only the location is held, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A KV v2 secret (`<mount>/<path>`) holding the username and the password in the named
    /// fields (`username` and `password` unless configured).
    VaultKv {
        path: String,
        username_field: String,
        password_field: String,
    },
    /// A Vault database secrets engine role (`<mount>/creds/<role>`) issuing dynamic,
    /// leased credentials.
    VaultDatabaseRole(String),
    /// Development and CI only: `<PREFIX>_USER` and `<PREFIX>_PASSWORD` from the environment.
    Env(String),
}

impl CredentialSource {
    /// The Vault path the source reads, if it is a Vault source.
    pub fn vault_path(&self) -> Option<&str> {
        match self {
            CredentialSource::VaultKv { path, .. } | CredentialSource::VaultDatabaseRole(path) => {
                Some(path)
            }
            CredentialSource::Env(_) => None,
        }
    }
}

/// How apply behaves in a region (`[apply]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplySettings {
    /// Tenants migrated at once.
    pub max_parallel: u32,
    /// Once this many tenants have failed, no new tenant is started.
    pub max_failures: u32,
    /// PostgreSQL `lock_timeout` for each migration.
    pub lock_timeout: Duration,
    /// PostgreSQL `statement_timeout` for each migration.
    pub statement_timeout: Duration,
    /// How long to wait for another neo-reconcile that holds the region's lock.
    pub lock_wait: Duration,
    /// How many times a tenant whose work failed transiently (lock timeout, deadlock,
    /// serialization failure, dropped connection) is tried again.
    pub retries: u32,
}

impl Default for ApplySettings {
    fn default() -> Self {
        ApplySettings {
            max_parallel: 4,
            max_failures: 1,
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15 * 60),
            lock_wait: Duration::from_secs(60),
            retries: 3,
        }
    }
}

/// A tenant's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
    Archived,
    Deleted,
}

impl TenantStatus {
    pub const NAMES: [&'static str; 4] = ["active", "suspended", "archived", "deleted"];

    pub fn parse(s: &str) -> Option<TenantStatus> {
        Some(match s {
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            "archived" => TenantStatus::Archived,
            "deleted" => TenantStatus::Deleted,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub slug: String,
    pub region: String,
    pub status: TenantStatus,
    /// Per-tenant versions of tenant-scope sets that differ from the fleet (canaries).
    pub pins: BTreeMap<String, u32>,
}

impl Tenant {
    /// The schema holding the tenant's data: `tenant_<slug>`.
    pub fn schema(&self) -> String {
        identifiers::tenant_schema(&self.slug)
    }

    /// The NOLOGIN role owning the tenant's schema and objects.
    pub fn owner_role(&self) -> String {
        identifiers::tenant_owner_role(&self.slug)
    }

    /// The NOLOGIN role granting read/write; applications' login roles are its members.
    pub fn rw_role(&self) -> String {
        identifiers::tenant_rw_role(&self.slug)
    }

    /// The name the tenant's schema gets when it is archived on `date` (`yyyymmdd`).
    pub fn archived_schema(&self, date: &str) -> String {
        identifiers::archived_schema(&self.slug, date)
    }

    /// The version this tenant should be at for a tenant-scope set.
    pub fn target_of(&self, set: &SchemaSet) -> u32 {
        self.pins.get(&set.name).copied().unwrap_or(set.target)
    }

    /// Whether the tenant is pinned ahead of the fleet for any set (a canary).
    pub fn is_canary(&self, desired: &Desired) -> bool {
        self.pins
            .iter()
            .any(|(set, &v)| desired.schema_set(set).is_some_and(|s| v > s.target))
    }
}
