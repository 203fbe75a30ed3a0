//! The planner: `plan(&Desired, &Observed, &PlanOptions) -> Plan`, a pure function.
//!
//! No I/O, no async, no clock: the date used to name archived schemas comes from the observed
//! database. The plan lists, per region and in the order apply runs them, the actions that
//! converge the live state, and the findings that block a target (never applied). Apply
//! re-plans before it changes anything, so what the plan shows is exactly what apply does.
//!
//! Order within a region: bootstrap (bookkeeping, then the registry), region-scope sets, then
//! tenants (canaries, pinned ahead of the fleet, first; then by slug), each tenant's sets in
//! dependency order, and last the registry update in the control-plane region.

pub mod render;
mod types;

use std::collections::{BTreeMap, BTreeSet};

use crate::desired::{Desired, Region, SchemaSet, Scope, Tenant, TenantStatus};
use crate::observed::{
    Bookkeeping, ControlPlaneState, HistoryRow, Observed, RegionObservation, RegionState,
    RegistryRow, TenantRow,
};

pub use types::{
    utc_timestamp, Action, BlockReason, Blocked, DesiredRef, MigrationStep, Plan, PlanOptions,
    RegionPlan, Scheduled, Selection, Summary, BOOKKEEPING_SCHEMA, REGISTRY_SCHEMA,
};

/// Computes the plan. Pure: the same inputs always give the same plan.
pub fn plan(desired: &Desired, observed: &Observed, options: &PlanOptions) -> Plan {
    let selected_region = |name: &str| options.regions.is_empty() || options.regions.contains(name);
    let selected_tenant = |slug: &str| options.tenants.is_empty() || options.tenants.contains(slug);

    let mut regions = Vec::new();
    // The state each planned tenant will be in after apply, for the registry.
    let mut projections: BTreeMap<String, Option<Projected>> = BTreeMap::new();
    // Tenants whose region was planned, so their registry rows may be changed.
    let mut planned_regions = BTreeSet::new();
    // Tenants managed anywhere (not destroyed), to refuse creating one twice.
    let mut live_anywhere: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, obs) in &observed.regions {
        if let RegionObservation::Reachable(RegionState {
            bookkeeping: Some(bk),
            ..
        }) = obs
        {
            for row in bk
                .tenants
                .values()
                .filter(|r| r.status != TenantStatus::Deleted)
            {
                live_anywhere.insert(&row.slug, name);
            }
        }
    }
    let mut orphans = BTreeSet::new();
    for region in desired
        .regions
        .values()
        .filter(|r| selected_region(&r.name))
    {
        // Under a tenant selection, only the regions of the selected tenants are planned.
        if !options.tenants.is_empty()
            && !options.tenants.iter().any(|t| {
                desired
                    .tenants
                    .get(t)
                    .is_some_and(|t| t.region == region.name)
                    || live_anywhere.get(t.as_str()) == Some(&region.name.as_str())
            })
        {
            continue;
        }
        match observed.regions.get(&region.name) {
            Some(RegionObservation::Reachable(state)) => {
                let mut planner = RegionPlanner {
                    desired,
                    region,
                    state,
                    options,
                    selected_tenant: &selected_tenant,
                    out: RegionPlan {
                        name: region.name.clone(),
                        reachable: true,
                        reason: None,
                        actions: Vec::new(),
                        blocked: Vec::new(),
                        unmanaged: Vec::new(),
                        scheduled: Vec::new(),
                    },
                    projections: &mut projections,
                    orphans: &mut orphans,
                    live_anywhere: &live_anywhere,
                };
                if planner.run() {
                    planned_regions.insert(region.name.clone());
                }
                regions.push(planner.out);
            }
            other => regions.push(RegionPlan {
                name: region.name.clone(),
                reachable: false,
                reason: Some(match other {
                    Some(RegionObservation::Unreachable { reason }) => reason.clone(),
                    _ => "not observed".to_string(),
                }),
                actions: Vec::new(),
                blocked: Vec::new(),
                unmanaged: Vec::new(),
                scheduled: Vec::new(),
            }),
        }
    }

    // The registry, in the control-plane region, when that region was planned.
    let cp = &desired.control_plane;
    if let (Some(RegionObservation::Reachable(state)), Some(out)) = (
        observed.regions.get(&cp.region),
        regions
            .iter_mut()
            .find(|r| r.name == cp.region && r.reachable),
    ) {
        let observed_rows = match &state.control_plane {
            Some(ControlPlaneState::Ready { rows, .. }) => rows.clone(),
            _ => BTreeMap::new(),
        };
        if out
            .blocked
            .iter()
            .all(|b| b.reason != BlockReason::BookkeepingTooNew)
        {
            if let Some(action) = registry_update(
                desired,
                options,
                &observed_rows,
                &projections,
                &planned_regions,
                &orphans,
                &selected_tenant,
            ) {
                out.actions.push(action);
            }
        }
    }

    let summary = summarize(&regions);
    Plan {
        format_version: 1,
        desired: DesiredRef {
            digest: desired.digest.clone(),
            commit: options.commit.clone(),
        },
        selection: Selection {
            regions: options.regions.clone(),
            tenants: options.tenants.clone(),
        },
        regions,
        summary,
    }
}

/// What a tenant will look like after apply, as the registry shows it.
#[derive(Debug, Clone)]
struct Projected {
    status: TenantStatus,
    schema: String,
    versions: BTreeMap<String, u32>,
}

struct RegionPlanner<'a, F: Fn(&str) -> bool> {
    desired: &'a Desired,
    region: &'a Region,
    state: &'a RegionState,
    options: &'a PlanOptions,
    selected_tenant: &'a F,
    out: RegionPlan,
    projections: &'a mut BTreeMap<String, Option<Projected>>,
    /// Managed tenants the desired state no longer places here; their registry rows stay.
    orphans: &'a mut BTreeSet<String>,
    /// Region of every tenant with a live bookkeeping row, in any reachable region.
    live_anywhere: &'a BTreeMap<&'a str, &'a str>,
}

impl<F: Fn(&str) -> bool> RegionPlanner<'_, F> {
    /// Plans the region; `false` when nothing beyond the finding could be planned.
    fn run(&mut self) -> bool {
        let latest = self.options.bookkeeping_latest;
        let version = self.state.bookkeeping.as_ref().map_or(0, |b| b.version);
        if version > latest {
            self.block(
                BlockReason::BookkeepingTooNew,
                None,
                None,
                Some(BOOKKEEPING_SCHEMA),
                format!(
                    "schema {BOOKKEEPING_SCHEMA} is at bookkeeping version {version} but this neo-reconcile knows only {latest}: upgrade neo-reconcile"
                ),
            );
            return false;
        }
        if version < latest {
            self.out.actions.push(Action::Bootstrap {
                database: self.region.postgres.database.clone(),
                schema: BOOKKEEPING_SCHEMA.to_string(),
                create_database: false,
                from: version,
                to: latest,
            });
        }
        if self.desired.control_plane.region == self.region.name {
            self.plan_control_plane_bootstrap();
        }
        if !self.plan_extensions() {
            return false;
        }

        let empty_history = Vec::new();
        let history = self
            .state
            .bookkeeping
            .as_ref()
            .map_or(&empty_history, |b| &b.history);
        let applied = index_history(history);

        // Region-scope sets.
        let mut blocked_sets = BTreeSet::new();
        for set in self
            .desired
            .schema_sets
            .iter()
            .filter(|s| s.scope == Scope::Region)
        {
            let schema = set.name.as_str();
            let rows = applied.get(&(schema, set.name.as_str()));
            let exists = self.state.schemas.contains(schema);
            if rows.is_none() && exists {
                self.block(
                    BlockReason::Unmanaged,
                    None,
                    Some(&set.name),
                    Some(schema),
                    format!("schema {schema} exists but neo-reconcile has no history for it: record what it holds first with `neo-reconcile adopt --schema-set {} --region {} --at-version <N>` (N = the last migration of schemas/{}/ it already holds; `--from-flyway` instead of `--at-version <N>` reads Flyway's history)", set.name, self.region.name, set.name),
                );
                blocked_sets.insert(set.name.clone());
                continue;
            }
            if rows.is_some() && !exists {
                self.block(
                    BlockReason::MissingOutOfBand,
                    None,
                    Some(&set.name),
                    Some(schema),
                    format!("schema {schema} has migration history but no longer exists (dropped out of band): restore it from backup"),
                );
                blocked_sets.insert(set.name.clone());
                continue;
            }
            if !self.plan_set(
                None,
                set,
                schema,
                set.target,
                rows.map_or(&[][..], Vec::as_slice),
                &blocked_sets,
            ) {
                blocked_sets.insert(set.name.clone());
            }
        }

        // Tenants: canaries first, then by slug.
        let empty_rows = BTreeMap::new();
        let rows = self
            .state
            .bookkeeping
            .as_ref()
            .map_or(&empty_rows, |b| &b.tenants);
        let mut tenants: Vec<&Tenant> = self
            .desired
            .tenants_in(&self.region.name)
            .filter(|t| (self.selected_tenant)(&t.slug))
            .collect();
        tenants.sort_by_key(|t| (!t.is_canary(self.desired), t.slug.clone()));
        for tenant in tenants {
            self.plan_tenant(tenant, rows.get(&tenant.slug), &applied, &blocked_sets);
        }

        // Managed tenants this region's desired state no longer has.
        for row in rows.values() {
            if !(self.selected_tenant)(&row.slug) || row.status == TenantStatus::Deleted {
                continue;
            }
            let elsewhere = self.desired.tenants.get(&row.slug).map(|t| &t.region);
            if elsewhere == Some(&self.region.name) {
                continue;
            }
            let (reason, message) = match elsewhere {
                Some(other) => (BlockReason::RegionMove, format!(
                    "tenant {} lives in region {} but tenants/{}.toml now says region {other:?}: neo-reconcile does not move data between regions (nor create a second copy in {other}); put the region back, or move the data yourself and give the tenant in {other} a new slug",
                    row.slug, self.region.name, row.slug
                )),
                None => (BlockReason::Orphaned, format!(
                    "tenant {} is managed in region {} but tenants/{}.toml is gone: restore the file with status = \"archived\" or \"deleted\" instead of removing it",
                    row.slug, self.region.name, row.slug
                )),
            };
            self.block(
                reason,
                Some(&row.slug),
                None,
                Some(&row.schema_name),
                message,
            );
            self.orphans.insert(row.slug.clone());
        }

        // Schemas that look like tenants but are not managed.
        let managed: BTreeSet<&str> = rows.values().map(|r| r.schema_name.as_str()).collect();
        self.out.unmanaged = self
            .state
            .schemas
            .iter()
            .filter(|s| s.starts_with("tenant_") && !managed.contains(s.as_str()))
            .cloned()
            .collect();
        true
    }

    /// Plans the extensions `[extensions]` lists; `false` when one blocks the region (its
    /// migrations would fail without it).
    fn plan_extensions(&mut self) -> bool {
        let wanted = &self.desired.extensions;
        let mut ok = true;
        let mut create_schema = !self.state.schemas.contains(&wanted.schema);
        for name in &wanted.names {
            let dba = format!(
                "CREATE EXTENSION IF NOT EXISTS \"{name}\" SCHEMA \"{}\";",
                wanted.schema
            );
            let problem = match self.state.extensions.get(name) {
                Some(schema) if *schema == wanted.schema => continue,
                Some(schema) => format!(
                    "extension {name} is installed in schema {schema}, but [extensions] schema is {}: a DBA runs ALTER EXTENSION \"{name}\" SET SCHEMA \"{}\"; (or set schema = \"{schema}\" in neo.toml)",
                    wanted.schema, wanted.schema
                ),
                None if !self.state.available_extensions.contains(name) => format!(
                    "extension {name} is not available on this server: install its package (for contrib extensions, PostgreSQL's contrib), then a DBA or the next apply runs {dba}"
                ),
                None if self.state.creatable_extensions.contains(name) => {
                    self.out.actions.push(Action::CreateExtension {
                        name: name.clone(),
                        schema: wanted.schema.clone(),
                        create_schema,
                    });
                    create_schema = false;
                    continue;
                }
                None => format!(
                    "extension {name} is missing and the login role may not create it (it is not trusted, or the role lacks CREATE on database {}): a DBA runs {dba}",
                    self.region.postgres.database
                ),
            };
            self.block(
                BlockReason::ExtensionMissing,
                None,
                None,
                Some(&wanted.schema),
                problem,
            );
            ok = false;
        }
        ok
    }

    fn plan_control_plane_bootstrap(&mut self) {
        let latest = self.options.registry_latest;
        let database = &self.desired.control_plane.database;
        let (create_database, from) = match &self.state.control_plane {
            None | Some(ControlPlaneState::NoDatabase) => (true, 0),
            Some(ControlPlaneState::Ready { version, .. }) => (false, *version),
        };
        if from > latest {
            self.block(
                BlockReason::BookkeepingTooNew,
                None,
                None,
                Some(REGISTRY_SCHEMA),
                format!("the registry in database {database} is at version {from} but this neo-reconcile knows only {latest}: upgrade neo-reconcile"),
            );
        } else if from < latest {
            self.out.actions.push(Action::Bootstrap {
                database: database.clone(),
                schema: REGISTRY_SCHEMA.to_string(),
                create_database,
                from,
                to: latest,
            });
        }
    }

    fn plan_tenant(
        &mut self,
        tenant: &Tenant,
        row: Option<&TenantRow>,
        applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
        region_blocked: &BTreeSet<String>,
    ) {
        let slug = tenant.slug.as_str();
        let schema = tenant.schema();
        let Some(row) = row else {
            // Never created here.
            if matches!(
                tenant.status,
                TenantStatus::Archived | TenantStatus::Deleted
            ) {
                self.projections.insert(slug.to_string(), None);
                return;
            }
            let taken: Vec<String> = [schema.clone(), tenant.owner_role(), tenant.rw_role()]
                .into_iter()
                .filter(|n| self.state.schemas.contains(n) || self.state.roles.contains(n))
                .collect();
            if let Some(other) = self
                .live_anywhere
                .get(slug)
                .filter(|r| **r != self.region.name)
            {
                self.block(
                    BlockReason::RegionMove,
                    Some(slug),
                    None,
                    None,
                    format!("tenant {slug} still lives in region {other}: neo-reconcile does not move data between regions, so it is not created here"),
                );
                return;
            }
            if !taken.is_empty() {
                self.block(
                    BlockReason::Unmanaged,
                    Some(slug),
                    None,
                    Some(&schema),
                    if taken.contains(&schema) {
                        let adopt: Vec<String> = self
                            .desired
                            .schema_sets
                            .iter()
                            .filter(|s| s.scope == Scope::Tenant)
                            .map(|s| format!("`neo-reconcile adopt --tenant {slug} --schema-set {} --at-version <N>`", s.name))
                            .collect();
                        format!("{} already exists without a bookkeeping row: adopt the schema with {} (N = the last migration of the set it already holds; `--from-flyway` instead of `--at-version <N>` reads Flyway's history) or drop the leftovers", taken.join(", "), adopt.join(" then "))
                    } else {
                        format!("{} already exists without a bookkeeping row, and schema {schema} does not, so there is nothing to adopt: drop the leftovers", taken.join(", "))
                    },
                );
                return;
            }
            self.out.actions.push(Action::CreateTenant {
                tenant: slug.to_string(),
                schema: schema.clone(),
                owner_role: tenant.owner_role(),
                rw_role: tenant.rw_role(),
            });
            let versions = self.plan_tenant_sets(tenant, &schema, applied, region_blocked);
            if tenant.status == TenantStatus::Suspended {
                self.out.actions.push(Action::SuspendTenant {
                    tenant: slug.to_string(),
                    schema: schema.clone(),
                    rw_role: tenant.rw_role(),
                });
            }
            self.project(slug, tenant.status, &schema, versions);
            return;
        };

        // History is keyed by the schema a migration ran in, tenant_<slug>, also after archiving.
        let live = live_versions(self.desired, &tenant.schema(), applied);
        let current = (row.status, tenant.status);
        match current {
            (TenantStatus::Active | TenantStatus::Suspended, _) => {
                let missing: Vec<&str> = [&row.schema_name]
                    .into_iter()
                    .filter(|s| !self.state.schemas.contains(*s))
                    .chain(
                        [&row.owner_role, &row.rw_role]
                            .into_iter()
                            .filter(|r| !self.state.roles.contains(*r)),
                    )
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    self.block(
                        BlockReason::MissingOutOfBand,
                        Some(slug),
                        None,
                        Some(&row.schema_name),
                        format!("{} missing, dropped out of band: restore from backup; neo-reconcile will not recreate an empty tenant over lost data", missing.join(", ")),
                    );
                    self.project(slug, row.status, &row.schema_name, live.clone());
                    return;
                }
                match tenant.status {
                    TenantStatus::Active | TenantStatus::Suspended => {
                        if row.status == TenantStatus::Suspended
                            && tenant.status == TenantStatus::Active
                        {
                            self.out.actions.push(Action::ResumeTenant {
                                tenant: slug.to_string(),
                                schema: row.schema_name.clone(),
                                rw_role: row.rw_role.clone(),
                            });
                        }
                        let versions = self.plan_tenant_sets(
                            tenant,
                            &row.schema_name,
                            applied,
                            region_blocked,
                        );
                        if row.status == TenantStatus::Active
                            && tenant.status == TenantStatus::Suspended
                        {
                            self.out.actions.push(Action::SuspendTenant {
                                tenant: slug.to_string(),
                                schema: row.schema_name.clone(),
                                rw_role: row.rw_role.clone(),
                            });
                        }
                        self.project(slug, tenant.status, &row.schema_name, versions);
                    }
                    TenantStatus::Archived => {
                        self.plan_archive(slug, row, &live);
                    }
                    TenantStatus::Deleted => {
                        // Deleting cuts access at once and keeps the data: the tenant is
                        // archived first, and dropped only after the retention period.
                        if let Some(archived) = self.plan_archive(slug, row, &live) {
                            let policy = &self.desired.policy;
                            if policy.allow_destroy && policy.destroy_after.is_zero() {
                                self.push_destroy(slug, row, &archived);
                            } else if policy.allow_destroy {
                                let due = self.state.now + policy.destroy_after.as_secs() as i64;
                                self.schedule_destroy(slug, &archived, due);
                            }
                        }
                    }
                }
            }
            (TenantStatus::Archived, TenantStatus::Archived) => {
                self.project(slug, row.status, &row.schema_name, live.clone());
            }
            (TenantStatus::Archived, TenantStatus::Deleted) => {
                if self.state.schemas.contains(&row.schema_name) {
                    self.plan_destroy(tenant, row, live.clone());
                } else {
                    self.block(
                        BlockReason::MissingOutOfBand,
                        Some(slug),
                        None,
                        Some(&row.schema_name),
                        format!(
                            "archived schema {} missing, dropped out of band",
                            row.schema_name
                        ),
                    );
                    self.project(slug, row.status, &row.schema_name, live.clone());
                }
            }
            (TenantStatus::Archived, _) => {
                self.plan_restore(tenant, row, &live, applied, region_blocked);
            }
            (TenantStatus::Deleted, TenantStatus::Deleted) => {
                self.projections.insert(slug.to_string(), None);
            }
            (TenantStatus::Deleted, _) => {
                self.block(
                    BlockReason::UnsupportedTransition,
                    Some(slug),
                    None,
                    None,
                    format!("tenant {slug} was destroyed; a destroyed slug is not reused: give the tenant a new slug"),
                );
                self.projections.insert(slug.to_string(), None);
            }
        }
    }

    /// Archives a tenant (its schema renamed to `archived_<slug>_<date>`, its rw role cut
    /// off, the data kept); returns the archived schema's name, or `None` when blocked.
    fn plan_archive(
        &mut self,
        slug: &str,
        row: &TenantRow,
        live: &BTreeMap<String, u32>,
    ) -> Option<String> {
        let archived = crate::desired::identifiers::archived_schema(slug, &self.state.today);
        if self.state.schemas.contains(&archived) {
            self.block(
                BlockReason::Unmanaged,
                Some(slug),
                None,
                Some(&archived),
                format!("cannot archive tenant {slug}: schema {archived} already exists; rename or drop it first"),
            );
            self.project(slug, row.status, &row.schema_name, live.clone());
            return None;
        }
        self.out.actions.push(Action::ArchiveTenant {
            tenant: slug.to_string(),
            schema: row.schema_name.clone(),
            archived_schema: archived.clone(),
            rw_role: row.rw_role.clone(),
        });
        self.project(slug, TenantStatus::Archived, &archived, live.clone());
        Some(archived)
    }

    /// Brings an archived tenant back to `active` or `suspended`: its schema renamed back,
    /// then its sets migrated as for any tenant.
    fn plan_restore(
        &mut self,
        tenant: &Tenant,
        row: &TenantRow,
        live: &BTreeMap<String, u32>,
        applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
        region_blocked: &BTreeSet<String>,
    ) {
        let slug = tenant.slug.as_str();
        let schema = tenant.schema();
        let missing: Vec<&str> = [&row.schema_name]
            .into_iter()
            .filter(|s| !self.state.schemas.contains(*s))
            .chain(
                [&row.owner_role, &row.rw_role]
                    .into_iter()
                    .filter(|r| !self.state.roles.contains(*r)),
            )
            .map(String::as_str)
            .collect();
        let message = if !missing.is_empty() {
            Some((
                BlockReason::MissingOutOfBand,
                format!("cannot restore archived tenant {slug}: {} missing, dropped out of band; restore from backup", missing.join(", ")),
            ))
        } else if self.state.schemas.contains(&schema) {
            Some((
                BlockReason::Unmanaged,
                format!("cannot restore archived tenant {slug} from schema {}: schema {schema} already exists; rename or drop it first", row.schema_name),
            ))
        } else {
            None
        };
        if let Some((reason, message)) = message {
            self.block(reason, Some(slug), None, Some(&row.schema_name), message);
            self.project(slug, row.status, &row.schema_name, live.clone());
            return;
        }
        self.out.actions.push(Action::RestoreTenant {
            tenant: slug.to_string(),
            archived_schema: row.schema_name.clone(),
            schema: schema.clone(),
            rw_role: row.rw_role.clone(),
        });
        let versions = self.plan_tenant_sets(tenant, &schema, applied, region_blocked);
        if tenant.status == TenantStatus::Suspended {
            self.out.actions.push(Action::SuspendTenant {
                tenant: slug.to_string(),
                schema: schema.clone(),
                rw_role: row.rw_role.clone(),
            });
        }
        self.project(slug, tenant.status, &schema, versions);
    }

    fn push_destroy(&mut self, slug: &str, row: &TenantRow, schema: &str) {
        self.out.actions.push(Action::DestroyTenant {
            tenant: slug.to_string(),
            schema: schema.to_string(),
            owner_role: row.owner_role.clone(),
            rw_role: row.rw_role.clone(),
        });
        self.projections.insert(slug.to_string(), None);
    }

    fn schedule_destroy(&mut self, slug: &str, schema: &str, due: i64) {
        self.out.scheduled.push(Scheduled {
            kind: "destroy_tenant".into(),
            tenant: slug.to_string(),
            schema: schema.to_string(),
            due: utc_timestamp(due),
        });
    }

    /// A deleted tenant whose schema is archived: dropped once `destroy_after` has passed
    /// since it was archived, and only with `allow_destroy = true`.
    fn plan_destroy(&mut self, tenant: &Tenant, row: &TenantRow, versions: BTreeMap<String, u32>) {
        let slug = tenant.slug.as_str();
        let policy = &self.desired.policy;
        if !policy.allow_destroy {
            self.block(
                BlockReason::DestroyNotAllowed,
                Some(slug),
                None,
                Some(&row.schema_name),
                format!("tenant {slug} is deleted: its access is cut and its data kept in schema {}; neo.toml has [policy] allow_destroy = false, so it is never dropped: set allow_destroy = true in a reviewed change to drop it", row.schema_name),
            );
            self.project(slug, row.status, &row.schema_name, versions);
            return;
        }
        let Some(archived_at) = row.archived_at else {
            self.block(
                BlockReason::UnsupportedTransition,
                Some(slug),
                None,
                Some(&row.schema_name),
                format!("tenant {slug} is deleted but the time it was archived is not recorded, so its retention period cannot be told: drop schema {} by hand once it may go", row.schema_name),
            );
            self.project(slug, row.status, &row.schema_name, versions);
            return;
        };
        let due = archived_at.saturating_add(policy.destroy_after.as_secs() as i64);
        if self.state.now >= due {
            self.push_destroy(slug, row, &row.schema_name);
        } else {
            self.schedule_destroy(slug, &row.schema_name, due);
            self.project(slug, row.status, &row.schema_name, versions);
        }
    }

    /// Plans a tenant's sets in dependency order; returns the versions it will be at.
    fn plan_tenant_sets(
        &mut self,
        tenant: &Tenant,
        schema: &str,
        applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
        region_blocked: &BTreeSet<String>,
    ) -> BTreeMap<String, u32> {
        let mut blocked = region_blocked.clone();
        let mut versions = BTreeMap::new();
        for set in self
            .desired
            .schema_sets
            .iter()
            .filter(|s| s.scope == Scope::Tenant)
        {
            let rows = applied
                .get(&(schema, set.name.as_str()))
                .map_or(&[][..], Vec::as_slice);
            let live = rows.last().map_or(0, |r| r.version);
            let target = tenant.target_of(set);
            if self.plan_set(Some(&tenant.slug), set, schema, target, rows, &blocked) {
                versions.insert(set.name.clone(), target);
            } else {
                blocked.insert(set.name.clone());
                if live > 0 {
                    versions.insert(set.name.clone(), live);
                }
            }
        }
        versions.retain(|_, v| *v > 0);
        versions
    }

    /// Checks one target of a set against its history and plans its migration. `false` when
    /// the target is blocked.
    fn plan_set(
        &mut self,
        tenant: Option<&str>,
        set: &SchemaSet,
        schema: &str,
        target: u32,
        rows: &[&HistoryRow],
        blocked: &BTreeSet<String>,
    ) -> bool {
        if let Some(dep) = set.depends_on.iter().find(|d| blocked.contains(*d)) {
            self.block(
                BlockReason::DependencyBlocked,
                tenant,
                Some(&set.name),
                Some(schema),
                format!(
                    "{} in {schema} depends on {dep}, which is blocked",
                    set.name
                ),
            );
            return false;
        }
        let mut ok = true;
        for (i, row) in rows.iter().enumerate() {
            let expected = i as u32 + 1;
            if row.version != expected {
                ok = false;
                self.block(
                    BlockReason::HistoryGap,
                    tenant,
                    Some(&set.name),
                    Some(schema),
                    format!("history of {} in {schema} records version {} without version {expected}: repair neo_reconcile.schema_history", set.name, row.version),
                );
                break;
            }
            match set.migration(row.version) {
                Some(m) if m.checksum != row.checksum => {
                    ok = false;
                    self.block(
                        BlockReason::ChecksumMismatch,
                        tenant,
                        Some(&set.name),
                        Some(schema),
                        format!(
                            "checksum mismatch: {} (version {}) was applied to {schema} on {} by {} with checksum {}, but the file now has {}: a migration must never change once applied; restore the file or add a new migration",
                            m.file, row.version, row.applied_at, row.applied_by, short(&row.checksum), short(&m.checksum)
                        ),
                    );
                }
                _ => {}
            }
        }
        let live = rows.last().map_or(0, |r| r.version);
        if live > target {
            ok = false;
            let unknown = if live > set.latest() {
                format!(" (the repository has only up to V{})", set.latest())
            } else {
                String::new()
            };
            self.block(
                BlockReason::Downgrade,
                tenant,
                Some(&set.name),
                Some(schema),
                format!("{} in {schema} is at version {live}{unknown}, above the target {target}: neo-reconcile never downgrades; raise the target or write a forward migration", set.name),
            );
        }
        if !ok {
            return false;
        }
        if live < target {
            self.out.actions.push(Action::Migrate {
                tenant: tenant.map(str::to_string),
                schema_set: set.name.clone(),
                schema: schema.to_string(),
                from: live,
                to: target,
                versions: set.migrations[live as usize..target as usize]
                    .iter()
                    .map(|m| MigrationStep {
                        version: m.version,
                        description: m.description.clone(),
                        file: m.file.clone(),
                        checksum: m.checksum.clone(),
                        no_transaction: m.no_transaction,
                    })
                    .collect(),
            });
        }
        true
    }

    fn project(
        &mut self,
        slug: &str,
        status: TenantStatus,
        schema: &str,
        versions: BTreeMap<String, u32>,
    ) {
        self.projections.insert(
            slug.to_string(),
            Some(Projected {
                status,
                schema: schema.to_string(),
                versions,
            }),
        );
    }

    fn block(
        &mut self,
        reason: BlockReason,
        tenant: Option<&str>,
        schema_set: Option<&str>,
        schema: Option<&str>,
        message: String,
    ) {
        self.out.blocked.push(Blocked {
            reason,
            tenant: tenant.map(str::to_string),
            schema_set: schema_set.map(str::to_string),
            schema: schema.map(str::to_string),
            message,
        });
    }
}

/// The live version of each tenant-scope set in a schema (sets never applied are left out).
fn live_versions(
    desired: &Desired,
    schema: &str,
    applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
) -> BTreeMap<String, u32> {
    desired
        .schema_sets
        .iter()
        .filter(|s| s.scope == Scope::Tenant)
        .filter_map(|s| {
            Some((
                s.name.clone(),
                applied.get(&(schema, s.name.as_str()))?.last()?.version,
            ))
        })
        .collect()
}

/// Successful history rows by (schema, set), sorted by version.
fn index_history(history: &[HistoryRow]) -> BTreeMap<(&str, &str), Vec<&HistoryRow>> {
    let mut out: BTreeMap<(&str, &str), Vec<&HistoryRow>> = BTreeMap::new();
    for row in history.iter().filter(|r| r.success) {
        out.entry((row.target_schema.as_str(), row.schema_set.as_str()))
            .or_default()
            .push(row);
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|r| r.version);
    }
    out
}

/// The registry change that records the live state as observed, assuming no pending action:
/// what apply writes at the end of a run, whatever succeeded or failed.
pub fn observed_registry(
    desired: &Desired,
    observed: &Observed,
    options: &PlanOptions,
) -> Option<Action> {
    let selected_tenant = |slug: &str| options.tenants.is_empty() || options.tenants.contains(slug);
    let mut projections = BTreeMap::new();
    let mut planned_regions = BTreeSet::new();
    let mut orphans = BTreeSet::new();
    for (name, obs) in &observed.regions {
        let RegionObservation::Reachable(state) = obs else {
            continue;
        };
        if !desired.regions.contains_key(name)
            || !(options.regions.is_empty() || options.regions.contains(name))
        {
            continue;
        }
        planned_regions.insert(name.clone());
        let empty = Bookkeeping::default();
        let bk = state.bookkeeping.as_ref().unwrap_or(&empty);
        let applied = index_history(&bk.history);
        for tenant in desired
            .tenants_in(name)
            .filter(|t| selected_tenant(&t.slug))
        {
            let projected = bk
                .tenants
                .get(&tenant.slug)
                .filter(|r| r.status != TenantStatus::Deleted)
                .map(|row| Projected {
                    status: row.status,
                    schema: row.schema_name.clone(),
                    versions: live_versions(desired, &tenant.schema(), &applied),
                });
            projections.insert(tenant.slug.clone(), projected);
        }
        for row in bk.tenants.values() {
            if desired.tenants.get(&row.slug).map(|t| &t.region) != Some(name) {
                orphans.insert(row.slug.clone());
            }
        }
    }
    let rows = match observed.regions.get(&desired.control_plane.region) {
        Some(RegionObservation::Reachable(RegionState {
            control_plane: Some(ControlPlaneState::Ready { rows, .. }),
            ..
        })) => rows.clone(),
        _ => BTreeMap::new(),
    };
    registry_update(
        desired,
        options,
        &rows,
        &projections,
        &planned_regions,
        &orphans,
        &selected_tenant,
    )
}

/// The registry change: rows of planned tenants that differ from the live ones.
fn registry_update(
    desired: &Desired,
    options: &PlanOptions,
    observed: &BTreeMap<String, RegistryRow>,
    projections: &BTreeMap<String, Option<Projected>>,
    planned_regions: &BTreeSet<String>,
    orphans: &BTreeSet<String>,
    selected_tenant: &dyn Fn(&str) -> bool,
) -> Option<Action> {
    let mut upsert = Vec::new();
    let mut delete = Vec::new();
    for (slug, projected) in projections {
        let tenant = &desired.tenants[slug];
        let region = &desired.regions[&tenant.region];
        match projected {
            Some(p) => {
                let row = RegistryRow {
                    tenant: slug.clone(),
                    region: region.name.clone(),
                    host: region.postgres.host.clone(),
                    port: region.postgres.port,
                    database: region.postgres.database.clone(),
                    schema: p.schema.clone(),
                    status: p.status,
                    schema_versions: p.versions.clone(),
                    commit: options.commit.clone(),
                };
                if !observed.get(slug).is_some_and(|o| o.same_content(&row)) {
                    upsert.push(row);
                }
            }
            None => {
                if observed.contains_key(slug) {
                    delete.push(slug.clone());
                }
            }
        }
    }
    // Stale rows: tenants neither desired nor held by any planned region.
    for (slug, row) in observed {
        if !projections.contains_key(slug)
            && !desired.tenants.contains_key(slug)
            && !orphans.contains(slug)
            && planned_regions.contains(&row.region)
            && selected_tenant(slug)
        {
            delete.push(slug.clone());
        }
    }
    delete.sort();
    if upsert.is_empty() && delete.is_empty() {
        return None;
    }
    let touched: BTreeSet<&String> = upsert.iter().map(|r| &r.tenant).chain(&delete).collect();
    Some(Action::UpdateRegistry {
        database: desired.control_plane.database.clone(),
        before: observed
            .values()
            .filter(|r| touched.contains(&r.tenant))
            .cloned()
            .collect(),
        upsert,
        delete,
    })
}

fn summarize(regions: &[RegionPlan]) -> Summary {
    let mut s = Summary::default();
    for r in regions {
        if !r.reachable {
            s.unreachable += 1;
        }
        s.blocked += r.blocked.len();
        for a in &r.actions {
            s.changes += 1;
            *match a {
                Action::Bootstrap { .. } => &mut s.bootstrap,
                Action::CreateExtension { .. } => &mut s.create_extension,
                Action::Migrate { .. } => &mut s.migrate,
                Action::CreateTenant { .. } => &mut s.create_tenant,
                Action::SuspendTenant { .. } => &mut s.suspend_tenant,
                Action::ResumeTenant { .. } => &mut s.resume_tenant,
                Action::ArchiveTenant { .. } => &mut s.archive_tenant,
                Action::DestroyTenant { .. } => &mut s.destroy_tenant,
                Action::RestoreTenant { .. } => &mut s.restore_tenant,
                Action::UpdateRegistry { .. } => &mut s.update_registry,
            } += 1;
        }
    }
    s
}

fn short(checksum: &str) -> &str {
    &checksum[..checksum.len().min(12)]
}

#[cfg(test)]
mod tests;
