//! One reconcile: observe, plan, log the plan, and (in apply mode) apply what was approved.
//!
//! [`once`] is the single entry point the CLI's `plan` and `apply` call, and the one a
//! long-lived process calls on every change or tick: nobody else strings the stages
//! together. Loading the desired state and resolving the regions' logins stay with the caller
//! (a CLI run loads a directory and resolves once; a daemon keeps both between runs).
//! The result is a value, [`RunOutcome`], that says per region whether it converged, has
//! changes pending, is blocked for a human, or failed, and of which [`ErrorKind`]: the caller
//! turns it into output and exit codes, or into a retry schedule.

use crate::apply::{self, ApplyReport, RegionOutcome, RunContext};
use crate::db::Connectors;
use crate::desired::Desired;
use crate::engine::{self, EngineError};
use crate::plan::render::{self, TextOptions};
use crate::plan::{BlockReason, Plan, PlanOptions};
use crate::shutdown::Shutdown;

/// Which regions and tenants a run covers (everything when both are empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub regions: Vec<String>,
    pub tenants: Vec<String>,
}

/// What a caller says about a plan before anything changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    Approved,
    /// Not applied; the reason is reported.
    Declined(String),
}

/// What a run does.
pub enum Mode<'a> {
    /// Observe and plan; change nothing.
    Plan,
    /// Observe, plan, log the plan, ask `approve`, and apply.
    Apply {
        /// A saved plan to apply exactly; refused, changing nothing, when the desired state
        /// or the live state changed since it was saved.
        saved: Option<Plan>,
        /// Sees the plan and its text (both already logged) before anything changes. Not
        /// asked when there is nothing to apply.
        approve: &'a (dyn Fn(&Plan, &str) -> Approval + Sync),
        ctx: RunContext,
        /// `--allow-mass-prune`: apply a plan that archives or destroys more tenants than
        /// `[policy] max_prune` allows (without it, such a plan is refused as a whole).
        allow_mass_prune: bool,
    },
}

/// Why a failure happened, which decides what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// May go away by itself: a region unreachable, a lock held by another run, a stale plan,
    /// a stop request. Try again later, with backoff.
    Transient,
    /// Needs a human (a new commit or an operator): blocked findings, a refused approval.
    NeedsHuman,
    /// A target (a tenant, a region-scope set, the registry) failed after its retries: a
    /// failing migration stays failing until someone changes something.
    Target,
}

/// How one region ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionStatus {
    /// The live state matches the desired state (after this run's changes, if any).
    Converged,
    /// Plan mode: this many changes would be applied.
    ChangesPending(usize),
    /// Blocked findings wait for a human; everything else converged or is pending.
    Blocked(Vec<String>),
    Failed {
        kind: ErrorKind,
        message: String,
    },
}

/// The outcome of a run, region by region.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The plan that was made (or the saved plan that was applied).
    pub plan: Plan,
    /// The plan as text, as logged before apply (apply mode only).
    pub plan_text: Option<String>,
    /// Set when apply did not start: a stale saved plan, or a declined approval.
    pub refused: Option<(ErrorKind, Vec<String>)>,
    /// What apply did, when it ran.
    pub report: Option<ApplyReport>,
    /// Per region, in plan order.
    pub regions: Vec<(String, RegionStatus)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Selection(#[from] EngineError),
    #[error("stale plan: the desired state changed since the plan was saved (digest {saved} then, {now} now); run `neo-reconcile plan` again")]
    DesiredChanged { saved: String, now: String },
}

/// Runs one reconcile of `desired` over `selection`.
pub async fn once(
    desired: &Desired,
    selection: &Selection,
    mode: &Mode<'_>,
    connectors: &Connectors,
    shutdown: &Shutdown,
) -> Result<RunOutcome, ReconcileError> {
    let (regions, tenants) = match mode {
        Mode::Apply {
            saved: Some(saved), ..
        } => (
            saved.selection.regions.iter().cloned().collect(),
            saved.selection.tenants.iter().cloned().collect(),
        ),
        _ => (selection.regions.clone(), selection.tenants.clone()),
    };
    let mut options = engine::plan_options(desired, &regions, &tenants)?;
    options.allow_mass_prune = matches!(
        mode,
        Mode::Apply {
            allow_mass_prune: true,
            ..
        }
    );
    let (_, fresh) = engine::observe_and_plan(desired, &options, connectors).await;
    let Mode::Apply {
        saved,
        approve,
        ctx,
        allow_mass_prune,
    } = mode
    else {
        let regions = statuses(&fresh, None, false);
        return Ok(RunOutcome {
            plan: fresh,
            plan_text: None,
            refused: None,
            report: None,
            regions,
        });
    };

    let mut refused = None;
    let mut approved = match saved {
        Some(saved) => {
            if saved.desired.digest != desired.digest {
                return Err(ReconcileError::DesiredChanged {
                    saved: short(&saved.desired.digest).to_string(),
                    now: short(&desired.digest).to_string(),
                });
            }
            if let Err(reasons) = apply::check_not_stale(saved, &fresh) {
                refused = Some((ErrorKind::Transient, reasons));
            }
            saved.clone()
        }
        None => fresh,
    };
    if *allow_mass_prune {
        // A saved plan made without the override carries the finding; the override lifts it.
        lift_mass_prune(&mut approved);
    } else if refused.is_none() {
        let prune: Vec<String> = approved
            .regions
            .iter()
            .flat_map(|r| &r.blocked)
            .filter(|b| b.reason == BlockReason::MassPrune)
            .map(|b| format!("error: refused as a whole: {}", b.message))
            .take(1)
            .collect();
        if !prune.is_empty() {
            refused = Some((ErrorKind::NeedsHuman, prune));
        }
    }
    // The plan is logged in full before anything changes.
    let plan_text = render::text(&approved, desired, TextOptions::default());
    apply::log_plan(&approved);
    tracing::info!(plan = %plan_text, "Plan to apply.");

    let mut report = None;
    if refused.is_none() && approved.has_changes() {
        match approve(&approved, &plan_text) {
            Approval::Declined(why) => refused = Some((ErrorKind::NeedsHuman, vec![why])),
            Approval::Approved => {
                report = Some(
                    apply::apply(
                        desired, &approved, &options, connectors, ctx, &plan_text, shutdown,
                    )
                    .await,
                )
            }
        }
    }
    let regions = statuses(&approved, report.as_ref(), true);
    Ok(RunOutcome {
        plan: approved,
        plan_text: Some(plan_text),
        refused,
        report,
        regions,
    })
}

/// Each region's status from its plan and, when apply ran, its report.
fn statuses(
    plan: &Plan,
    report: Option<&ApplyReport>,
    applying: bool,
) -> Vec<(String, RegionStatus)> {
    plan.regions
        .iter()
        .map(|r| {
            let blocked: Vec<String> = r.blocked.iter().map(|b| b.message.clone()).collect();
            let applied = report.and_then(|rep| rep.regions.iter().find(|x| x.name == r.name));
            let status = if !r.reachable {
                RegionStatus::Failed {
                    kind: ErrorKind::Transient,
                    message: r.reason.clone().unwrap_or_default(),
                }
            } else if let Some(failure) = applied.and_then(region_failure) {
                failure
            } else if !blocked.is_empty() {
                RegionStatus::Blocked(blocked)
            } else if !applying && !r.actions.is_empty() {
                RegionStatus::ChangesPending(r.actions.len())
            } else if applying && report.is_none() && !r.actions.is_empty() {
                // Apply did not run (refused or declined): the changes are still pending.
                RegionStatus::ChangesPending(r.actions.len())
            } else {
                RegionStatus::Converged
            };
            (r.name.clone(), status)
        })
        .collect()
}

/// The failure of a region's apply, if it failed, with its kind.
fn region_failure(r: &apply::RegionReport) -> Option<RegionStatus> {
    let failed = |kind, message: String| Some(RegionStatus::Failed { kind, message });
    match &r.outcome {
        RegionOutcome::LockTimeout(m) | RegionOutcome::Stale(m) => {
            failed(ErrorKind::Transient, m.clone())
        }
        // Nothing started (no connection, no credentials): try again later.
        RegionOutcome::Failed(m) if r.run_id.is_none() && r.applied == 0 => {
            failed(ErrorKind::Transient, m.clone())
        }
        RegionOutcome::Failed(m) => failed(ErrorKind::Target, m.clone()),
        RegionOutcome::Applied | RegionOutcome::NoChanges => {
            if let Some(f) = r.failed.first() {
                failed(
                    ErrorKind::Target,
                    format!(
                        "{} tenant(s) failed, first {}: {}",
                        r.failed.len(),
                        f.tenant,
                        f.error
                    ),
                )
            } else if let Some((t, why)) = r.not_started.first() {
                failed(
                    ErrorKind::Transient,
                    format!(
                        "{} tenant(s) not started, first {t}: {why}",
                        r.not_started.len()
                    ),
                )
            } else {
                None
            }
        }
    }
}

/// Removes the mass-prune findings of a plan applied with `--allow-mass-prune`.
fn lift_mass_prune(plan: &mut Plan) {
    let mut lifted = 0;
    for r in &mut plan.regions {
        let before = r.blocked.len();
        r.blocked.retain(|b| b.reason != BlockReason::MassPrune);
        lifted += before - r.blocked.len();
    }
    plan.summary.blocked -= lifted;
    if lifted > 0 {
        tracing::warn!(
            "This plan archives or destroys more tenants than [policy] max_prune allows; applying anyway (--allow-mass-prune, recorded in the run row)."
        );
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// The options `once` plans with, for callers that need them (e.g. to resolve the regions to
/// connect to first).
pub fn plan_options(desired: &Desired, selection: &Selection) -> Result<PlanOptions, EngineError> {
    engine::plan_options(desired, &selection.regions, &selection.tenants)
}
