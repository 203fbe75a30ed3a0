//! A region as validated: where its PostgreSQL cluster is, where its login comes from (never
//! the login itself), and how apply behaves in it.

use std::time::Duration;

use serde::Serialize;

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

    /// Where the login comes from, in words (no value): `Vault <path>` or `env <PREFIX>`.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Env(prefix) => format!("env {prefix}"),
            other => format!("Vault {}", other.vault_path().unwrap_or_default()),
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
    /// How a target's migrations are grouped into transactions.
    pub transaction: TransactionShape,
}

/// `[apply] transaction`: how a target's (a tenant's, or a region-scope set's) pending
/// migrations are grouped into transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionShape {
    /// `"per_tenant"` (the default): all of a tenant's pending transactional migrations,
    /// their history rows and its lifecycle action in one transaction; a failure rolls the
    /// whole tenant back to where it was. A `-- neo:no-transaction` migration splits the group
    /// where it stands.
    #[default]
    PerTenant,
    /// `"per_migration"`: each migration in a transaction of its own with its history row.
    PerMigration,
}

impl TransactionShape {
    pub const NAMES: [&'static str; 2] = ["per_tenant", "per_migration"];

    pub fn name(self) -> &'static str {
        match self {
            TransactionShape::PerTenant => "per_tenant",
            TransactionShape::PerMigration => "per_migration",
        }
    }
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
            transaction: TransactionShape::default(),
        }
    }
}
