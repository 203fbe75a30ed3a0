//! The validated tree as a whole: [`Desired`] and the settings of `neo.toml` that apply to
//! every region (the control plane, the destroy policy, the extensions).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::extensions;
use super::region::Region;
use super::schema_set::SchemaSet;
use super::tenant::Tenant;

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
    /// Whether a set's target (or a tenant's pin) below the live version may be reached by
    /// running undo files.
    pub allow_rollback: bool,
    /// How many tenants one plan may archive or destroy, in total and in one region, before
    /// it is refused as a whole (unless apply runs with `--allow-mass-prune`).
    pub max_prune: MaxPrune,
}

/// `[policy] max_prune`: a number of tenants, or a percentage of the managed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxPrune {
    Count(u32),
    Percent(u32),
}

impl MaxPrune {
    /// The default, `"10%"`.
    pub const DEFAULT: MaxPrune = MaxPrune::Percent(10);

    /// The most tenants that may be pruned out of `managed`: a percentage rounds down, but
    /// a positive one never below one tenant (pruning the one tenant of a small region is not
    /// a mass prune).
    pub fn limit(self, managed: usize) -> usize {
        match self {
            MaxPrune::Count(n) => n as usize,
            MaxPrune::Percent(0) => 0,
            MaxPrune::Percent(p) => (managed * p as usize / 100).max(1),
        }
    }
}

impl std::fmt::Display for MaxPrune {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxPrune::Count(n) => write!(f, "{n}"),
            MaxPrune::Percent(p) => write!(f, "{p}%"),
        }
    }
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
            allow_rollback: false,
            max_prune: MaxPrune::DEFAULT,
        }
    }
}
