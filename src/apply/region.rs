//! Applying one region: take its lock, plan again under it, bootstrap, record the run, run
//! the extensions and region-scope sets, then the tenants (canaries first), compute the
//! expected shapes the plan lists, record how it ended, and record the live-schema
//! fingerprints of the schemas that changed. Every connection comes from the region's [`Connector`].

use std::sync::atomic::AtomicU32;
use std::sync::Mutex;

use sqlx::postgres::PgConnection;
use sqlx::Connection;

use super::context::RunContext;
use super::lock::{self, RegionLock};
use super::report::{describe, RegionOutcome, RegionReport};
use super::runs::{bootstrap, finish_run, start_run};
use super::stale::{region_actions, stale_reason};
use super::tenants::{TenantResults, TenantRunner};
use crate::db::Connector;
use crate::desired::{Desired, Region};
use crate::observed::postgres::observe_region;
use crate::observed::shape_query;
use crate::observed::{Observed, RegionObservation};
use crate::plan::{self, Action, PlanOptions, RegionPlan};
use crate::shutdown::Shutdown;

/// What every step of one region's apply needs, for the length of that apply.
pub(super) struct RegionRun<'a> {
    pub desired: &'a Desired,
    pub region: &'a Region,
    pub connector: &'a Connector,
    pub options: &'a PlanOptions,
    pub ctx: &'a RunContext,
    /// The approved plan as text, stored with the run for the audit.
    pub plan_text: &'a str,
    pub shutdown: &'a Shutdown,
}

/// Applies one region's part of the approved plan under the region lock, which is released
/// on every path.
pub(super) async fn apply_region(run: &RegionRun<'_>, approved: &RegionPlan) -> RegionReport {
    let name = run.region.name.as_str();
    let fail = |e: String| RegionReport::new(name, RegionOutcome::Failed(e));
    let mut lock_conn = match run.connector.connect_region().await {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let acquired = tokio::select! {
        acquired = RegionLock::acquire(&mut lock_conn, run.region.apply.lock_wait) => Some(acquired),
        _ = run.shutdown.requested() => None,
    };
    let lock = match acquired {
        Some(Ok(l)) => l,
        Some(Err(lock::LockError::Timeout {
            waited_secs,
            holder,
        })) => {
            return RegionReport::new(
                name,
                RegionOutcome::LockTimeout(format!(
                    "region {name} is locked by {holder}; gave up after {waited_secs}s"
                )),
            )
        }
        Some(Err(e)) => return fail(e.to_string()),
        None => {
            lock_conn.close().await.ok();
            return RegionReport::new(
                name,
                RegionOutcome::LockTimeout(format!(
                    "asked to stop while waiting for the lock of region {name}"
                )),
            );
        }
    };
    tracing::info!(region = %name, "Took the region lock.");
    let report = apply_locked(run, &mut lock_conn, &lock, approved).await;
    lock.release(&mut lock_conn).await;
    lock_conn.close().await.ok();
    report
}

/// The fresh plan of the region under its lock, or the report that ends the region here
/// (nothing left to do, stale, or not observable).
async fn replan(run: &RegionRun<'_>, approved: &RegionPlan) -> Result<RegionPlan, RegionReport> {
    let name = run.region.name.as_str();
    let state = observe_region(run.desired, run.region, run.connector)
        .await
        .map_err(|e| RegionReport::new(name, RegionOutcome::Failed(e.to_string())))?;
    let observed = Observed {
        regions: [(name.to_string(), RegionObservation::Reachable(state))]
            .into_iter()
            .collect(),
    };
    let region_only = PlanOptions {
        regions: [name.to_string()].into_iter().collect(),
        ..run.options.clone()
    };
    let no_changes = || RegionReport::new(name, RegionOutcome::NoChanges);
    let fresh = plan::plan(run.desired, &observed, &region_only)
        .regions
        .into_iter()
        .next()
        .ok_or_else(no_changes)?;
    if region_actions(&fresh).is_empty() {
        if !region_actions(approved).is_empty() {
            tracing::info!(region = %name, "Nothing left to do: the live state already matches (another run applied it).");
        }
        return Err(no_changes());
    }
    if let Some(reason) = stale_reason(approved, &fresh) {
        tracing::warn!(region = %name, reason = %reason, "Stale plan; changing nothing in this region.");
        return Err(RegionReport::new(
            name,
            RegionOutcome::Stale(format!("stale plan: {reason}")),
        ));
    }
    Ok(fresh)
}

async fn apply_locked(
    run: &RegionRun<'_>,
    lock_conn: &mut PgConnection,
    lock: &RegionLock,
    approved: &RegionPlan,
) -> RegionReport {
    let name = run.region.name.as_str();
    // Plan again under the lock: another run may have changed the region while we waited.
    let fresh = match replan(run, approved).await {
        Ok(fresh) => fresh,
        Err(report) => return report,
    };
    let actions = region_actions(&fresh);
    let mut report = RegionReport::new(name, RegionOutcome::Applied);

    // Bootstrap neo-reconcile's own schemas first: the run and the lock holder are recorded there.
    for action in &actions {
        if let Action::Bootstrap {
            database,
            schema,
            create_database,
            from,
            to,
        } = action
        {
            if let Err(e) =
                bootstrap(lock_conn, run.connector, database, schema, *create_database).await
            {
                return RegionReport::new(
                    name,
                    RegionOutcome::Failed(format!("bootstrap of {schema} in {database}: {e}")),
                );
            }
            tracing::info!(region = %name, database = %database, schema = %schema, from, to, "Bootstrapped.");
            report.applied += 1;
        }
    }
    if let Err(e) = lock.record_holder(lock_conn, run.ctx).await {
        tracing::warn!(region = %name, error = %e, "Could not record the lock holder.");
    }
    let run_id = match start_run(lock_conn, run.desired, run.ctx, run.plan_text).await {
        Ok(id) => id,
        Err(e) => {
            return RegionReport::new(
                name,
                RegionOutcome::Failed(format!("cannot record the run: {e}")),
            )
        }
    };
    report.run_id = Some(run_id);
    for action in &actions {
        if let Action::CloseDeadRun { runs, holder } = action {
            tracing::info!(region = %name, runs = ?runs, holder = ?holder, "Closed a dead run's leftovers: its runs are marked interrupted, its lock holder row replaced.");
            report.applied += 1;
        }
    }

    let runner = TenantRunner {
        run,
        run_id,
        failures: AtomicU32::new(0),
        results: Mutex::new(TenantResults::default()),
    };
    if let Err(e) = run_region_targets(&runner, &actions, &mut report).await {
        finish_run(lock_conn, run_id, "failed", Some(&e)).await;
        report.outcome = RegionOutcome::Failed(e);
        return report;
    }
    run_tenants(&runner, &actions).await;
    report.applied += compute_shapes(run, lock_conn, &actions).await;

    let r = runner
        .results
        .into_inner()
        .expect("no panics hold this lock");
    report.applied += r.applied;
    report.failed = r.failed;
    report.not_started = r.not_started;
    let (outcome, error) = run_outcome(&report);
    finish_run(lock_conn, run_id, outcome, error.as_deref()).await;
    record_fingerprints(run, lock_conn).await;
    report
}

/// Observes the region again, still under its lock, and records the fingerprints of the
/// schemas whose catalog changed since they were last recorded (those this apply migrated,
/// created or repaired, and any changed out of band), so that later plans describe only the
/// schemas that change after this. A failure is a warning: plans then describe more.
async fn record_fingerprints(run: &RegionRun<'_>, conn: &mut PgConnection) {
    let name = run.region.name.as_str();
    let recorded = match observe_region(run.desired, run.region, run.connector).await {
        Ok(state) => shape_query::record_fingerprints(conn, &state.shapes)
            .await
            .map(|()| state.shapes.described.len())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match recorded {
        Ok(n) => tracing::info!(region = %name, schemas = n, "Recorded live-schema fingerprints."),
        Err(e) => {
            tracing::warn!(region = %name, error = %e, "Live-schema fingerprints not recorded; the next plans describe the changed schemas.")
        }
    }
}

/// Extensions, then region-scope sets, in order: tenants depend on them, so the first
/// failure ends the region.
async fn run_region_targets(
    runner: &TenantRunner<'_>,
    actions: &[&Action],
    report: &mut RegionReport,
) -> Result<(), String> {
    for action in actions.iter().filter(|a| {
        matches!(
            a,
            Action::CreateExtension { .. }
                | Action::Migrate { tenant: None, .. }
                | Action::Rollback { tenant: None, .. }
                | Action::RepairDrift { tenant: None, .. }
        )
    }) {
        if runner.run.shutdown.is_requested() {
            return Err(
                "neo-reconcile was asked to stop before the region-scope sets were done".into(),
            );
        }
        let mut conn = None;
        let (applied, error) = runner
            .run_target(&mut conn, &describe(action), &[action])
            .await;
        if let Some(c) = conn {
            c.close().await.ok();
        }
        report.applied += applied;
        if let Some(e) = error {
            return Err(e);
        }
    }
    Ok(())
}

/// The expected shapes to compute, last: they only serve the drift checks of later plans, so
/// one that cannot be computed now is a warning and the next apply tries again. Returns how
/// many were recorded (a lasting failure is recorded too, and logged). They run on the lock's
/// own connection, which holds nothing else meanwhile.
async fn compute_shapes(
    run: &RegionRun<'_>,
    conn: &mut PgConnection,
    actions: &[&Action],
) -> usize {
    let name = run.region.name.as_str();
    let mut done = 0;
    for action in actions {
        let Action::ComputeShape {
            versions,
            key,
            scope,
            id,
        } = action
        else {
            continue;
        };
        if run.shutdown.is_requested() {
            break;
        }
        match super::shape::compute(conn, run.desired, run.ctx, key, id, *scope).await {
            Ok(()) => {
                tracing::info!(region = %name, versions = %versions, "Computed the expected shape.");
                done += 1;
            }
            Err(f) if f.lasting => {
                tracing::warn!(region = %name, versions = %versions, reason = %f.reason, "The expected shape cannot be computed (a migration fails in a scratch schema): targets at these versions are not checked for drift until a file changes.");
                done += 1;
            }
            Err(f) => {
                tracing::warn!(region = %name, versions = %versions, reason = %f.reason, "Expected shape not computed; the next apply tries again.");
            }
        }
    }
    done
}

/// The tenants, grouped, in plan order: canaries first; when a canary fails, the fleet does
/// not start.
async fn run_tenants(runner: &TenantRunner<'_>, actions: &[&Action]) {
    let desired = runner.run.desired;
    let mut groups: Vec<(String, Vec<&Action>)> = Vec::new();
    for action in actions {
        if let Some(t) = action.tenant() {
            match groups.iter_mut().find(|(slug, _)| slug == t) {
                Some((_, list)) => list.push(action),
                None => groups.push((t.to_string(), vec![action])),
            }
        }
    }
    let (canaries, fleet): (Vec<_>, Vec<_>) = groups.into_iter().partition(|(slug, _)| {
        desired
            .tenants
            .get(slug)
            .is_some_and(|t| t.is_canary(desired))
    });
    runner.run(&canaries, u32::MAX).await;
    let canary_failed = runner.lock().failed.first().map(|f| f.tenant.clone());
    match canary_failed {
        Some(canary) => {
            let mut r = runner.lock();
            for (slug, _) in &fleet {
                r.not_started
                    .push((slug.clone(), format!("canary {canary} failed")));
            }
        }
        None => {
            runner
                .run(&fleet, runner.run.region.apply.max_failures)
                .await
        }
    }
}

/// The outcome and error recorded in the region's `runs` row.
fn run_outcome(report: &RegionReport) -> (&'static str, Option<String>) {
    if report.failed.is_empty() && report.not_started.is_empty() {
        return ("succeeded", None);
    }
    let failed: Vec<String> = report
        .failed
        .iter()
        .map(|f| format!("{}: {}", f.tenant, f.error))
        .collect();
    (
        "failed",
        Some(format!(
            "{} tenant(s) failed, {} not started: {}",
            report.failed.len(),
            report.not_started.len(),
            failed.join("; ")
        )),
    )
}
