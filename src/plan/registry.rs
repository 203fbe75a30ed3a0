//! The registry (`admin.database_connections` in the control-plane database): [`Projected`],
//! what a planned tenant will look like after apply, and the [`Action::UpdateRegistry`] that
//! brings the registry rows in line with it, both for a plan ([`registry_update`]) and for the
//! live state apply leaves behind ([`observed_registry`]).

use std::collections::{BTreeMap, BTreeSet};

use super::sets::{index_history, live_versions};
use super::types::{Action, PlanOptions};
use crate::desired::{Desired, TenantStatus};
use crate::observed::{
    Bookkeeping, ControlPlaneState, Observed, RegionObservation, RegionState, RegistryRow,
};

/// What a tenant will look like after apply, as the registry shows it.
#[derive(Debug, Clone)]
pub(super) struct Projected {
    pub(super) status: TenantStatus,
    pub(super) schema: String,
    pub(super) versions: BTreeMap<String, u32>,
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
pub(super) fn registry_update(
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
