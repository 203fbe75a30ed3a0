//! The observed state as plain data: what each region's database holds, as far as the
//! planner needs to know.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::shape::Shapes;
use crate::desired::TenantStatus;

/// Every region's observation, by region name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub regions: BTreeMap<String, RegionObservation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionObservation {
    Reachable(RegionState),
    /// The region could not be observed; `reason` says why (never a credential).
    Unreachable {
        reason: String,
    },
}

/// One region's database, as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionState {
    /// The database server's date (`yyyymmdd`), used to name archived schemas. Taken from the
    /// server so that the planner needs no clock.
    pub today: String,
    /// The database server's time, in seconds since the Unix epoch: when a deleted tenant's
    /// retention period ends is decided against it, so that the planner needs no clock.
    pub now: i64,
    /// Every schema of the region database except PostgreSQL's own.
    pub schemas: BTreeSet<String>,
    /// Every role whose name starts with `tenant_`.
    pub roles: BTreeSet<String>,
    /// The extensions installed in the database: name → schema.
    pub extensions: BTreeMap<String, String>,
    /// The extensions the server can install (`pg_available_extensions`).
    pub available_extensions: BTreeSet<String>,
    /// The extensions the login role may create itself: trusted ones when it has `CREATE` on
    /// the database, every available one for a superuser.
    pub creatable_extensions: BTreeSet<String>,
    /// neo-reconcile's bookkeeping; `None` when schema `neo_reconcile` does not exist.
    pub bookkeeping: Option<Bookkeeping>,
    /// The registry, observed only in the control-plane region.
    pub control_plane: Option<ControlPlaneState>,
    /// Live-schema shapes of the checked schemas (empty when nothing is checked).
    pub shapes: Shapes,
}

/// The content of schema `neo_reconcile` in a region database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    /// How many of neo-reconcile's own bookkeeping migrations are applied (0: none yet).
    pub version: u32,
    pub history: Vec<HistoryRow>,
    pub tenants: BTreeMap<String, TenantRow>,
    /// What a run whose process died left behind, if anything.
    pub dead_run: Option<DeadRun>,
}

/// The traces of a run that died holding the region lock (killed, or its host lost): its
/// `runs` rows still say `running` and its `lock_holder` row names a database session that
/// is gone. The lock itself went with the session; the rows stay until a run takes the lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadRun {
    /// The ids of the `runs` rows still marked `running`.
    pub runs: Vec<i64>,
    /// Who held the lock, as the `lock_holder` row says (`pid 123 on host h`), when the row is
    /// still there.
    pub holder: Option<String>,
}

/// A row of `neo_reconcile.schema_history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub target_schema: String,
    pub schema_set: String,
    pub version: u32,
    pub description: String,
    pub checksum: String,
    /// RFC 3339, UTC.
    pub applied_at: String,
    pub applied_by: String,
    pub success: bool,
}

/// A row of `neo_reconcile.tenants`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub slug: String,
    pub status: TenantStatus,
    pub schema_name: String,
    pub owner_role: String,
    pub rw_role: String,
    /// When the tenant was archived, in seconds since the Unix epoch (archived tenants only).
    pub archived_at: Option<i64>,
}

/// The control-plane database, as observed from its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlPlaneState {
    /// The control-plane database does not exist yet.
    NoDatabase,
    /// The database exists; `version` is how many registry migrations are applied (0 when the
    /// `admin` schema is not set up yet, and then `rows` is empty).
    Ready {
        version: u32,
        rows: BTreeMap<String, RegistryRow>,
    },
}

/// A row of `admin.database_connections`. Never a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRow {
    pub tenant: String,
    pub region: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub schema: String,
    pub status: TenantStatus,
    /// The version of each tenant-scope set.
    pub schema_versions: BTreeMap<String, u32>,
    /// The desired-state commit that last changed the row (not compared when planning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl RegistryRow {
    /// Whether two rows differ in anything but the commit that wrote them.
    pub fn same_content(&self, other: &RegistryRow) -> bool {
        // Every field but `commit`, named so that a new field is not forgotten here.
        let RegistryRow {
            tenant,
            region,
            host,
            port,
            database,
            schema,
            status,
            schema_versions,
            commit: _,
        } = self;
        *tenant == other.tenant
            && *region == other.region
            && *host == other.host
            && *port == other.port
            && *database == other.database
            && *schema == other.schema
            && *status == other.status
            && *schema_versions == other.schema_versions
    }

    /// One line per row, for the unified diff in the rendered plan.
    pub fn render_line(&self) -> String {
        let versions: Vec<String> = self
            .schema_versions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{} region={} at={}:{}/{} schema={} status={} versions={}",
            self.tenant,
            self.region,
            self.host,
            self.port,
            self.database,
            self.schema,
            self.status,
            if versions.is_empty() {
                "-".to_string()
            } else {
                versions.join(",")
            }
        )
    }
}
