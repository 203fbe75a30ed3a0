//! The guards against destructive merges. A plan that archives or destroys more tenants than
//! `[policy] max_prune` allows, in total or in one region, is blocked as a whole (every
//! region with such actions gets the finding, and apply refuses the whole plan), unless the
//! plan is made for an apply run with `--allow-mass-prune`. The actions stay in the plan, so
//! that the reviewer sees which tenants a merge would prune. And a region file removed while
//! the registry still places tenants there: those tenants are reported as orphaned and left
//! alone.

use std::collections::{BTreeMap, BTreeSet};

use super::types::{Action, BlockReason, Blocked, PlanOptions, RegionPlan};
use crate::desired::{Desired, TenantStatus};
use crate::observed::{ControlPlaneState, Observed, RegionObservation};

/// Adds the [`BlockReason::MassPrune`] finding to every region that prunes tenants when the
/// plan prunes more than `[policy] max_prune` allows, in total or in one region.
pub(super) fn mass_prune(
    desired: &Desired,
    observed: &Observed,
    options: &PlanOptions,
    regions: &mut [RegionPlan],
) {
    let max = desired.policy.max_prune;
    // Per region: the tenants pruned and the tenants managed there (not destroyed).
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in regions.iter().filter(|r| r.reachable) {
        let pruned: BTreeSet<&str> = r
            .actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::ArchiveTenant { .. } | Action::DestroyTenant { .. }
                )
            })
            .filter_map(Action::tenant)
            .collect();
        let managed = match observed.regions.get(&r.name) {
            Some(RegionObservation::Reachable(state)) => {
                state.bookkeeping.as_ref().map_or(0, |b| {
                    b.tenants
                        .values()
                        .filter(|t| t.status != TenantStatus::Deleted)
                        .count()
                })
            }
            _ => 0,
        };
        counts.insert(r.name.clone(), (pruned.len(), managed));
    }
    let (pruned, managed) = counts
        .values()
        .fold((0, 0), |(p, m), (rp, rm)| (p + rp, m + rm));
    let mut reasons = Vec::new();
    if pruned > max.limit(managed) {
        reasons.push(format!(
            "{pruned} of {managed} managed tenants in total (at most {} allowed)",
            max.limit(managed)
        ));
    }
    for (name, (p, m)) in &counts {
        if *p > max.limit(*m) {
            reasons.push(format!(
                "{p} of {m} in region {name} (at most {} allowed)",
                max.limit(*m)
            ));
        }
    }
    if reasons.is_empty() || options.allow_mass_prune {
        return;
    }
    let message = format!(
        "this plan archives or destroys {}, more than [policy] max_prune = \"{max}\" allows: the whole plan is refused and nothing is applied. If a merge removed or archived these tenants by mistake, revert it; if it is intended, apply with --allow-mass-prune (recorded in the run row), or raise max_prune in neo.toml",
        reasons.join("; ")
    );
    for r in regions
        .iter_mut()
        .filter(|r| counts.get(r.name.as_str()).is_some_and(|(p, _)| *p > 0))
    {
        r.blocked.push(Blocked {
            reason: BlockReason::MassPrune,
            tenant: None,
            schema_set: None,
            schema: None,
            message: message.clone(),
        });
    }
}

/// Reports, in the control-plane region's plan, the tenants the registry places in a region
/// whose file is gone from the desired state: the region is no longer observed, its database
/// still holds them, and nothing touches them (their registry rows stay).
pub(super) fn orphaned_regions(
    desired: &Desired,
    observed: &Observed,
    options: &PlanOptions,
    regions: &mut [RegionPlan],
) {
    let cp = &desired.control_plane.region;
    let Some(RegionObservation::Reachable(state)) = observed.regions.get(cp) else {
        return;
    };
    let Some(ControlPlaneState::Ready { rows, .. }) = &state.control_plane else {
        return;
    };
    let Some(out) = regions.iter_mut().find(|r| &r.name == cp && r.reachable) else {
        return;
    };
    for row in rows
        .values()
        .filter(|r| r.status != TenantStatus::Deleted && !desired.regions.contains_key(&r.region))
        .filter(|r| options.tenants.is_empty() || options.tenants.contains(&r.tenant))
    {
        out.blocked.push(Blocked {
            reason: BlockReason::Orphaned,
            tenant: Some(row.tenant.clone()),
            schema_set: None,
            schema: Some(row.schema.clone()),
            message: format!(
                "tenant {} is registered in region {}, whose file regions/{}.toml is gone: its database ({} at {}:{}) still holds schema {}, which neo-reconcile no longer observes and never touches; put the region file back, or move or archive the tenants first and remove the region once it holds none",
                row.tenant, row.region, row.region, row.database, row.host, row.port, row.schema
            ),
        });
    }
}
