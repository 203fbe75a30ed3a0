//! Schema sets and their migrations, as validated: a set's scope, its target version, its
//! migration files numbered 1..=N and the undo files of some of them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Where a schema set is applied.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
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
    /// Undo files (`U<n>__<description>.sql`) by the version they undo; any subset of the
    /// versions. Each is a [`Migration`] whose `file` is the undo file.
    pub undo: BTreeMap<u32, Migration>,
    /// What a plan does about live-schema drift in this set's targets (`drift`).
    pub drift: DriftPolicy,
    /// Whether objects a target has beyond its expected shape are dropped under
    /// `drift = "repair"` (`drift_prune`).
    pub drift_prune: bool,
}

/// `drift` of a schema set: what a plan does when a target's live schema differs from what
/// its recorded version should look like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Drift is not looked for (a quick plan).
    Off,
    /// Drifted targets are blocked with the diff (the default).
    #[default]
    Report,
    /// Objects that carry no data are put back from the expected definition; tables and
    /// columns stay blocked.
    Repair,
}

impl DriftPolicy {
    /// The value as written in `neo.toml`.
    pub fn parse(value: &str) -> Option<DriftPolicy> {
        match value {
            "off" => Some(DriftPolicy::Off),
            "report" => Some(DriftPolicy::Report),
            "repair" => Some(DriftPolicy::Repair),
            _ => None,
        }
    }
}

impl fmt::Display for DriftPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriftPolicy::Off => "off",
            DriftPolicy::Report => "report",
            DriftPolicy::Repair => "repair",
        })
    }
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

    /// The undo file of a version, if the set has one.
    pub fn undo(&self, version: u32) -> Option<&Migration> {
        self.undo.get(&version)
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
    /// It adds a value to an enum type (`ALTER TYPE ... ADD VALUE`): the transaction it runs
    /// in must commit before a later migration may use the value, so it ends a tenant's
    /// transaction (see `[apply] transaction`).
    pub adds_enum_value: bool,
}
