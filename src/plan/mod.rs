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
//!
//! The pieces: `types.rs` holds the plan's data (what the JSON plan carries), `region.rs` the
//! walk through one region, `tenant.rs` a tenant's lifecycle, `sets.rs` the schema sets and
//! their history, `drift.rs` live-schema drift, `registry.rs` the registry rows, and
//! `render.rs` the plan as text, JSON and Markdown. This file ties them together: [`plan`] plans every selected region, then the
//! registry update.

mod drift;
mod guards;
mod region;
mod registry;
pub mod render;
mod rollback;
mod sets;
mod tenant;
mod types;

use std::collections::{BTreeMap, BTreeSet};

use crate::desired::{Desired, Region, TenantStatus};
use crate::observed::{ControlPlaneState, Observed, RegionObservation, RegionState, RegistryRow};
use region::RegionPlanner;
use registry::{registry_update, Projected};

pub use registry::observed_registry;
pub use types::{
    utc_timestamp, Action, BlockReason, Blocked, DesiredRef, DriftReport, MigrationStep, Plan,
    PlanOptions, RegionPlan, Scheduled, Selection, Summary, BOOKKEEPING_SCHEMA, REGISTRY_SCHEMA,
};

/// Computes the plan. Pure: the same inputs always give the same plan.
pub fn plan(desired: &Desired, observed: &Observed, options: &PlanOptions) -> Plan {
    let selected_tenant = |slug: &str| options.tenants.is_empty() || options.tenants.contains(slug);

    let mut regions = Vec::new();
    // The state each planned tenant will be in after apply, for the registry.
    let mut projections: BTreeMap<String, Option<Projected>> = BTreeMap::new();
    // Tenants whose region was planned, so their registry rows may be changed.
    let mut planned_regions = BTreeSet::new();
    // Tenants managed anywhere (not destroyed), to refuse creating one twice.
    let live_anywhere = live_anywhere(observed);
    let mut orphans = BTreeSet::new();
    for region in desired
        .regions
        .values()
        .filter(|r| region_selected(desired, options, &live_anywhere, r))
    {
        match observed.regions.get(&region.name) {
            Some(RegionObservation::Reachable(state)) => {
                let mut planner = RegionPlanner {
                    desired,
                    region,
                    state,
                    options,
                    selected_tenant: &selected_tenant,
                    out: region_plan(&region.name, None),
                    projections: &mut projections,
                    orphans: &mut orphans,
                    live_anywhere: &live_anywhere,
                };
                if planner.run() {
                    planned_regions.insert(region.name.clone());
                }
                regions.push(planner.out);
            }
            other => regions.push(region_plan(
                &region.name,
                Some(match other {
                    Some(RegionObservation::Unreachable { reason }) => reason.clone(),
                    _ => "not observed".to_string(),
                }),
            )),
        }
    }

    // The registry, in the control-plane region, when that region was planned.
    if let Some((observed_rows, out)) = registry_region(desired, observed, &mut regions) {
        if let Some(action) = registry_update(
            desired,
            options,
            observed_rows,
            &projections,
            &planned_regions,
            &orphans,
            &selected_tenant,
        ) {
            out.actions.push(action);
        }
    }

    guards::mass_prune(desired, observed, options, &mut regions);
    guards::orphaned_regions(desired, observed, options, &mut regions);
    let mut summary = summarize(&regions);
    rollback::rollback_prominence(desired, &regions, &mut summary);
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

/// The region of every tenant with a live (not destroyed) bookkeeping row, in any reachable
/// region.
fn live_anywhere(observed: &Observed) -> BTreeMap<&str, &str> {
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
    live_anywhere
}

/// Whether a region is planned: selected by `--region` (or no region selection), and under a
/// tenant selection, only the regions of the selected tenants are planned.
fn region_selected(
    desired: &Desired,
    options: &PlanOptions,
    live_anywhere: &BTreeMap<&str, &str>,
    region: &Region,
) -> bool {
    let selected_region = options.regions.is_empty() || options.regions.contains(&region.name);
    selected_region
        && (options.tenants.is_empty()
            || options.tenants.iter().any(|t| {
                desired
                    .tenants
                    .get(t)
                    .is_some_and(|t| t.region == region.name)
                    || live_anywhere.get(t.as_str()) == Some(&region.name.as_str())
            }))
}

/// An empty plan for a region: reachable without a `reason`, unreachable with one.
fn region_plan(name: &str, reason: Option<String>) -> RegionPlan {
    RegionPlan {
        name: name.to_string(),
        reachable: reason.is_none(),
        reason,
        actions: Vec::new(),
        blocked: Vec::new(),
        unmanaged: Vec::new(),
        scheduled: Vec::new(),
        drift: Vec::new(),
    }
}

/// Where the registry update goes: the control-plane region's plan, with the registry rows
/// observed there, when that region was planned, is reachable and its bookkeeping is not
/// newer than this build.
fn registry_region<'o, 'r>(
    desired: &Desired,
    observed: &'o Observed,
    regions: &'r mut [RegionPlan],
) -> Option<(&'o BTreeMap<String, RegistryRow>, &'r mut RegionPlan)> {
    static NO_ROWS: BTreeMap<String, RegistryRow> = BTreeMap::new();
    let cp = &desired.control_plane;
    let Some(RegionObservation::Reachable(state)) = observed.regions.get(&cp.region) else {
        return None;
    };
    let out = regions
        .iter_mut()
        .find(|r| r.name == cp.region && r.reachable)?;
    if out
        .blocked
        .iter()
        .any(|b| b.reason == BlockReason::BookkeepingTooNew)
    {
        return None;
    }
    let observed_rows = match &state.control_plane {
        Some(ControlPlaneState::Ready { rows, .. }) => rows,
        _ => &NO_ROWS,
    };
    Some((observed_rows, out))
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
                Action::Rollback { .. } => &mut s.rollback,
                Action::CreateTenant { .. } => &mut s.create_tenant,
                Action::SuspendTenant { .. } => &mut s.suspend_tenant,
                Action::ResumeTenant { .. } => &mut s.resume_tenant,
                Action::ArchiveTenant { .. } => &mut s.archive_tenant,
                Action::DestroyTenant { .. } => &mut s.destroy_tenant,
                Action::RestoreTenant { .. } => &mut s.restore_tenant,
                Action::RepairDrift { .. } => &mut s.repair_drift,
                Action::ComputeShape { .. } => &mut s.compute_shape,
                Action::UpdateRegistry { .. } => &mut s.update_registry,
                Action::CloseDeadRun { .. } => &mut s.close_dead_run,
            } += 1;
        }
    }
    s
}

#[cfg(test)]
mod rollback_tests;
#[cfg(test)]
mod tests;
