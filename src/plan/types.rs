//! The plan's data: the constants naming neo-reconcile's own schemas, [`PlanOptions`], and
//! [`Plan`] with everything it holds (regions, actions, findings, scheduled actions, the
//! summary), as the JSON plan serializes them. Also [`utc_timestamp`], the format of
//! [`Scheduled::due`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::observed::RegistryRow;

/// The schema holding neo-reconcile's bookkeeping in each region database.
pub const BOOKKEEPING_SCHEMA: &str = "neo_reconcile";
/// The schema holding the registry in the control-plane database.
pub const REGISTRY_SCHEMA: &str = "admin";

/// What to plan, and what this build of neo-reconcile brings.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Only these regions (all when empty).
    pub regions: BTreeSet<String>,
    /// Only these tenants (all when empty). Their region's bootstrap and region-scope sets are
    /// planned too, since the tenants depend on them.
    pub tenants: BTreeSet<String>,
    /// The number of bookkeeping migrations this build embeds.
    pub bookkeeping_latest: u32,
    /// The number of registry migrations this build embeds.
    pub registry_latest: u32,
    /// The desired state's git commit, when it comes from a git repository.
    pub commit: Option<String>,
    /// `apply --allow-mass-prune`: a plan archiving or destroying more tenants than
    /// `[policy] max_prune` allows is not blocked.
    pub allow_mass_prune: bool,
}

/// A plan: the actions and findings of every region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub desired: DesiredRef,
    /// The `--region`/`--tenant` selection the plan was made with (empty: everything).
    #[serde(default)]
    pub selection: Selection,
    pub regions: Vec<RegionPlan>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub regions: BTreeSet<String>,
    pub tenants: BTreeSet<String>,
}

/// Which desired state a plan was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredRef {
    /// [`Desired::digest`](crate::desired::Desired::digest).
    pub digest: String,
    #[serde(default)]
    pub commit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionPlan {
    pub name: String,
    pub reachable: bool,
    /// Why the region could not be observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub actions: Vec<Action>,
    pub blocked: Vec<Blocked>,
    /// Schemas named like tenants (`tenant_*`) that neo-reconcile does not manage. Reported,
    /// never touched.
    pub unmanaged: Vec<String>,
    /// Actions that become due later (a deleted tenant's destruction after its retention
    /// period). Not changes: nothing runs until a plan made after that time includes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduled: Vec<Scheduled>,
    /// Live schemas that differ from what their recorded versions create, with the diff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftReport>,
}

/// A target whose live schema differs from the shape its recorded versions should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub schema: String,
    /// The versions the shape is expected from (`tenant_template V5`).
    pub expected: String,
    /// Whether a `repair_drift` action of this plan puts it back (otherwise it blocks).
    pub repaired: bool,
    /// The unified diff of the normalized descriptions, expected (`-`) against live (`+`).
    pub diff: Vec<String>,
}

/// An action planned for later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    /// The action's kind, as in [`Action::kind`].
    pub kind: String,
    pub tenant: String,
    pub schema: String,
    /// When it becomes due: UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub due: String,
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC), without a clock or a date
/// crate: the civil-from-days conversion of Howard Hinnant's date algorithms.
pub fn utc_timestamp(epoch: i64) -> String {
    let (days, secs) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// One change apply makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Create or upgrade neo-reconcile's own schema (`neo_reconcile` in a region database, or
    /// `admin` in the control-plane database).
    Bootstrap {
        database: String,
        schema: String,
        create_database: bool,
        from: u32,
        to: u32,
    },
    /// Create an extension `[extensions]` lists, once in the region database (and its schema
    /// first, when it does not exist).
    CreateExtension {
        name: String,
        schema: String,
        create_schema: bool,
    },
    /// Apply migrations `from + 1 ..= to` of a set to one schema.
    Migrate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        schema_set: String,
        schema: String,
        from: u32,
        to: u32,
        versions: Vec<MigrationStep>,
    },
    /// Take a set in one schema back from `from` to `to` (`to < from`): the undo files of
    /// versions `from, from - 1, ..., to + 1`, in that order (`versions` lists them so), each
    /// in a transaction of its own with its history row.
    Rollback {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        schema_set: String,
        schema: String,
        from: u32,
        to: u32,
        versions: Vec<MigrationStep>,
    },
    CreateTenant {
        tenant: String,
        schema: String,
        owner_role: String,
        rw_role: String,
    },
    SuspendTenant {
        tenant: String,
        schema: String,
        rw_role: String,
    },
    ResumeTenant {
        tenant: String,
        schema: String,
        rw_role: String,
    },
    ArchiveTenant {
        tenant: String,
        schema: String,
        archived_schema: String,
        rw_role: String,
    },
    DestroyTenant {
        tenant: String,
        schema: String,
        owner_role: String,
        rw_role: String,
    },
    /// Bring an archived tenant back: rename its schema back and give its rw role access again.
    RestoreTenant {
        tenant: String,
        archived_schema: String,
        schema: String,
        rw_role: String,
    },
    /// Close what a run that died holding the region lock left behind: its `runs` rows still
    /// marked `running` become `interrupted` and its `lock_holder` row is replaced, by taking the
    /// region lock and starting a run (nothing else changes).
    CloseDeadRun {
        runs: Vec<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<String>,
    },
    /// Put back the objects of a drifted schema that carry no data (indexes, views,
    /// functions, triggers, check and foreign-key constraints, privileges), in one transaction.
    /// The statements are unqualified and name the schema's roles `"@owner"`/`"@rw"` and the
    /// schema `"@schema"`: `sql::program` puts the real names in.
    RepairDrift {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        schema: String,
        /// The versions the definitions come from.
        expected: String,
        statements: Vec<String>,
    },
    /// Compute the expected shape of a combination of set versions (migrations 1..V run in a
    /// scratch schema inside a transaction that is rolled back) and keep it in
    /// `neo_reconcile.expected_shapes` under `id`, for the drift checks of later plans. Planned
    /// for the versions targets have after this plan when no shape is cached for them.
    ComputeShape {
        /// The versions, as the plan names them ("tenant_template V5").
        versions: String,
        /// The sets and versions.
        key: crate::observed::shape::ShapeKey,
        /// Whether tenant schemas (`tenant`) or a region-scope set's schema (`region`) have it.
        scope: crate::desired::Scope,
        /// The `observed::shape::shape_id` of the key.
        id: String,
    },
    /// Bring `admin.database_connections` in line, in one transaction.
    UpdateRegistry {
        database: String,
        upsert: Vec<RegistryRow>,
        delete: Vec<String>,
        /// The rows as they are now, for the diff (not compared for staleness).
        #[serde(default)]
        before: Vec<RegistryRow>,
    },
}

impl Action {
    /// The action's kind as named in the JSON plan.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Bootstrap { .. } => "bootstrap",
            Action::CreateExtension { .. } => "create_extension",
            Action::Migrate { .. } => "migrate",
            Action::Rollback { .. } => "rollback",
            Action::CreateTenant { .. } => "create_tenant",
            Action::SuspendTenant { .. } => "suspend_tenant",
            Action::ResumeTenant { .. } => "resume_tenant",
            Action::ArchiveTenant { .. } => "archive_tenant",
            Action::DestroyTenant { .. } => "destroy_tenant",
            Action::RestoreTenant { .. } => "restore_tenant",
            Action::RepairDrift { .. } => "repair_drift",
            Action::ComputeShape { .. } => "compute_shape",
            Action::UpdateRegistry { .. } => "update_registry",
            Action::CloseDeadRun { .. } => "close_dead_run",
        }
    }

    /// The tenant an action concerns, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Action::Migrate { tenant, .. }
            | Action::Rollback { tenant, .. }
            | Action::RepairDrift { tenant, .. } => tenant.as_deref(),
            Action::CreateTenant { tenant, .. }
            | Action::SuspendTenant { tenant, .. }
            | Action::ResumeTenant { tenant, .. }
            | Action::ArchiveTenant { tenant, .. }
            | Action::DestroyTenant { tenant, .. }
            | Action::RestoreTenant { tenant, .. } => Some(tenant),
            Action::Bootstrap { .. }
            | Action::CreateExtension { .. }
            | Action::CloseDeadRun { .. }
            | Action::ComputeShape { .. }
            | Action::UpdateRegistry { .. } => None,
        }
    }
}

/// One migration of a [`Action::Migrate`], or one undo file of an [`Action::Rollback`] (its
/// `file` and `checksum` are then the undo file's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationStep {
    pub version: u32,
    pub description: String,
    pub file: String,
    pub checksum: String,
    pub no_transaction: bool,
}

/// A finding that blocks a target: listed in the plan, never applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub reason: BlockReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReason {
    /// An applied migration's checksum differs from its file.
    ChecksumMismatch,
    /// The live version is above the desired target and the repository no longer has the
    /// migrations (nor undo files) of the versions above it.
    Downgrade,
    /// A rollback (the live version above the target) while `[policy] allow_rollback` is not
    /// true.
    RollbackNotAllowed,
    /// A rollback across a version that has no undo file.
    UndoMissing,
    /// A region-scope set would be rolled back while a tenant-scope set that depends on it is
    /// still above its target in some tenant: the tenants go back first.
    RollbackOrder,
    /// The plan archives or destroys more tenants than `[policy] max_prune` allows, in total
    /// or in one region: nothing is applied unless apply runs with `--allow-mass-prune`.
    MassPrune,
    /// History has a hole (a version recorded without the ones before it).
    HistoryGap,
    /// A managed schema or role is missing, dropped out of band.
    MissingOutOfBand,
    /// A schema or role with a managed name exists but neo-reconcile has no record of it.
    Unmanaged,
    /// A set this one depends on is blocked.
    DependencyBlocked,
    /// `status = "deleted"` while `allow_destroy = false`.
    DestroyNotAllowed,
    /// A status change neo-reconcile does not make (un-archiving, reusing a destroyed slug).
    UnsupportedTransition,
    /// A managed tenant is no longer in the desired state of this region.
    Orphaned,
    /// A managed tenant's file names another region: data is never moved or copied between
    /// regions (data residency).
    RegionMove,
    /// neo-reconcile's own schema is newer than this build.
    BookkeepingTooNew,
    /// A target's live schema differs from what its recorded versions create, and the
    /// difference is not put back (`drift = "report"`, or tables and columns).
    Drift,
    /// An extension `[extensions]` lists is missing and the login role may not create it (or
    /// lives in another schema): the region waits for a DBA.
    ExtensionMissing,
}

/// Counts of the plan, as the closing line and the JSON `summary` show them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The total number of actions.
    pub changes: usize,
    pub bootstrap: usize,
    pub migrate: usize,
    /// Rollbacks (undo files run), and how prominent they are: the most versions one rollback
    /// goes back, and whether every tenant of a tenant-scope set is rolled back.
    #[serde(default)]
    pub rollback: usize,
    #[serde(default)]
    pub rollback_max_versions: u32,
    #[serde(default)]
    pub rollback_all_tenants: bool,
    pub create_tenant: usize,
    pub suspend_tenant: usize,
    pub resume_tenant: usize,
    pub archive_tenant: usize,
    pub destroy_tenant: usize,
    #[serde(default)]
    pub restore_tenant: usize,
    #[serde(default)]
    pub create_extension: usize,
    #[serde(default)]
    pub repair_drift: usize,
    #[serde(default)]
    pub compute_shape: usize,
    pub update_registry: usize,
    #[serde(default)]
    pub close_dead_run: usize,
    pub blocked: usize,
    pub unreachable: usize,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.summary.changes > 0
    }

    /// Whether the plan cannot be applied as a whole: something is blocked or unreachable.
    pub fn is_blocked(&self) -> bool {
        self.summary.blocked > 0 || self.summary.unreachable > 0
    }
}
