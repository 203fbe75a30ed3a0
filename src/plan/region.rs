//! Planning one reachable region: [`RegionPlanner`] and its walk through the region in the
//! order apply runs it (bookkeeping and registry bootstrap, extensions, region-scope sets,
//! tenants, then the findings about tenants and schemas the desired state no longer places
//! here), with the helpers every part of the walk records findings and projections through.
//! The tenants' lifecycle lives in `tenant.rs`, the schema sets in `sets.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::registry::Projected;
use super::sets::index_history;
use super::types::{
    Action, BlockReason, Blocked, PlanOptions, RegionPlan, BOOKKEEPING_SCHEMA, REGISTRY_SCHEMA,
};
use crate::desired::{Desired, Region, Tenant, TenantStatus};
use crate::observed::{ControlPlaneState, RegionState, TenantRow};

/// Plans one reachable region into `out`. What it settles about tenants (their state after
/// apply, the orphans) is shared across regions for the registry update.
pub(super) struct RegionPlanner<'a, F: Fn(&str) -> bool> {
    pub(super) desired: &'a Desired,
    pub(super) region: &'a Region,
    pub(super) state: &'a RegionState,
    pub(super) options: &'a PlanOptions,
    pub(super) selected_tenant: &'a F,
    pub(super) out: RegionPlan,
    pub(super) projections: &'a mut BTreeMap<String, Option<Projected>>,
    /// Managed tenants the desired state no longer places here; their registry rows stay.
    pub(super) orphans: &'a mut BTreeSet<String>,
    /// Region of every tenant with a live bookkeeping row, in any reachable region.
    pub(super) live_anywhere: &'a BTreeMap<&'a str, &'a str>,
}

impl<F: Fn(&str) -> bool> RegionPlanner<'_, F> {
    /// Plans the region; `false` when nothing beyond the finding could be planned.
    pub(super) fn run(&mut self) -> bool {
        if !self.plan_bootstrap() {
            return false;
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
        let blocked_sets = self.plan_region_sets(&applied);

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
        // Keys compared by reference: a key that owned the slug would allocate at each
        // comparison.
        tenants.sort_by(|a, b| {
            (!a.is_canary(self.desired), &a.slug).cmp(&(!b.is_canary(self.desired), &b.slug))
        });
        for tenant in tenants {
            self.plan_tenant(tenant, rows.get(&tenant.slug), &applied, &blocked_sets);
        }

        // Managed tenants this region's desired state no longer has.
        self.block_orphans(rows);

        // Expected shapes the next plan's drift checks need.
        self.plan_expected_shapes();

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

    /// Plans neo-reconcile's own schemas: bookkeeping, and the registry in the control-plane
    /// region. `false` when the bookkeeping is newer than this build.
    fn plan_bootstrap(&mut self) -> bool {
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
        if let Some(dead) = self
            .state
            .bookkeeping
            .as_ref()
            .and_then(|b| b.dead_run.as_ref())
        {
            self.out.actions.push(Action::CloseDeadRun {
                runs: dead.runs.clone(),
                holder: dead.holder.clone(),
            });
        }
        if self.desired.control_plane.region == self.region.name {
            self.plan_control_plane_bootstrap();
        }
        true
    }

    /// Blocks the managed tenants this region's desired state no longer has: gone from the
    /// desired state, or moved to another region.
    fn block_orphans(&mut self, rows: &BTreeMap<String, TenantRow>) {
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

    pub(super) fn project(
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

    pub(super) fn block(
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
