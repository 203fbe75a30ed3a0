//! Apply: converging live PostgreSQL to an approved plan, safely.
//!
//! Regions are applied in parallel, each under its advisory lock ([`lock`]). Under the lock,
//! the region is observed and planned again: if nothing is left to do (another run did it)
//! the region reports "no changes"; if the fresh plan differs from the approved one, the
//! region is refused as stale and nothing changes. Then bookkeeping is bootstrapped, the run
//! is recorded in `neo_reconcile.runs`, region-scope sets are migrated in order, and tenants
//! run in parallel (at most `max_parallel`, canaries first) on workers that each own a connection,
//! renewed every few dozen tenants.
//! Once `max_failures` tenants have failed in a region, no new tenant starts there. Last, the
//! registry is brought in line with what actually happened, in one transaction.

pub mod accept_drift;
pub mod adopt;
mod context;
pub mod execute;
pub mod lock;
mod region;
mod registry;
mod report;
pub mod retry;
mod runs;
pub mod shape;
mod stale;
mod tenants;

pub use context::RunContext;
pub use report::{describe, ApplyReport, RegionOutcome, RegionReport, TenantFailure};
pub use stale::{check_not_stale, stale_reason};

use crate::db::Connectors;
use crate::desired::Desired;
use crate::plan::{Action, Plan, PlanOptions, RegionPlan};
use crate::shutdown::Shutdown;
use region::RegionRun;
use stale::region_actions;

/// Applies an approved plan. `plan_text` is stored with each region's run for the audit.
/// Every connection of a region comes from its connector in `connectors`; `shutdown` stops
/// the apply at its next safe point.
pub async fn apply(
    desired: &Desired,
    approved: &Plan,
    options: &PlanOptions,
    connectors: &Connectors,
    ctx: &RunContext,
    plan_text: &str,
    shutdown: &Shutdown,
) -> ApplyReport {
    let futures = approved
        .regions
        .iter()
        .filter(|r| {
            (r.reachable && !region_actions(r).is_empty())
                || is_control_plane_with_registry(desired, r)
        })
        .map(|approved| async move {
            let Some(connector) = connectors.get(&approved.name) else {
                return RegionReport::new(
                    &approved.name,
                    RegionOutcome::Failed(format!("region {} has no connector", approved.name)),
                );
            };
            let run = RegionRun {
                desired,
                region: &desired.regions[&approved.name],
                connector,
                options,
                ctx,
                plan_text,
                shutdown,
            };
            region::apply_region(&run, approved).await
        });
    let mut report = ApplyReport {
        regions: futures_util::future::join_all(futures).await,
        registry: None,
    };

    // The registry follows what actually happened: observe again and apply its update.
    let touched = report.regions.iter().any(|r| r.applied > 0)
        || approved
            .regions
            .iter()
            .flat_map(|r| &r.actions)
            .any(|a| matches!(a, Action::UpdateRegistry { .. }));
    if touched {
        report.registry = Some(registry::update_registry(desired, options, connectors, ctx).await);
    }
    report
}

fn is_control_plane_with_registry(desired: &Desired, r: &RegionPlan) -> bool {
    r.name == desired.control_plane.region
        && r.actions
            .iter()
            .any(|a| matches!(a, Action::UpdateRegistry { .. }))
}

/// Per-region counts of actions, for the log lines that precede an apply.
pub fn log_plan(plan: &Plan) {
    for r in &plan.regions {
        for a in &r.actions {
            tracing::info!(region = %r.name, kind = a.kind(), tenant = a.tenant().unwrap_or("-"), "Planned: {}", describe(a));
        }
        for b in &r.blocked {
            tracing::warn!(region = %r.name, tenant = b.tenant.as_deref().unwrap_or("-"), "Blocked: {}", b.message);
        }
        if !r.reachable {
            tracing::warn!(region = %r.name, "Unreachable: {}", r.reason.as_deref().unwrap_or(""));
        }
    }
}
