//! `neo-reconcile apply`: converge live PostgreSQL to the plan. Logs the whole plan before
//! changing anything, asks for confirmation on a terminal unless `--auto-approve`, refuses
//! without a terminal. `--plan FILE` applies exactly a saved plan, refusing a stale one.
//! Exit codes: see [`ExitStatus`].

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use neo_reconcile::apply::{self, RegionOutcome, RunContext};
use neo_reconcile::daemon;
use neo_reconcile::engine;
use neo_reconcile::plan::{BlockReason, Plan};
use neo_reconcile::reconcile::{self, Approval, ErrorKind, Mode, ReconcileError, Selection};
use neo_reconcile::shutdown::Shutdown;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The root of the desired-state tree.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Apply exactly this plan, saved by `plan --out FILE`.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Apply only this region (repeatable).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// Apply only this tenant (repeatable).
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// The daemon's configuration on this host: a manual apply respects its maintenance
    /// windows (ignored when the file does not exist).
    #[arg(long, value_name = "FILE", default_value = daemon::config::DEFAULT_PATH)]
    pub daemon_config: PathBuf,
    /// Apply also in regions whose maintenance window is closed. The override is recorded in
    /// the run row (its command line).
    #[arg(long)]
    pub override_window: bool,
    /// Apply a plan that archives or destroys more tenants than `[policy] max_prune` allows
    /// (refused as a whole without it). The override is recorded in the run row (its command
    /// line).
    #[arg(long)]
    pub allow_mass_prune: bool,
    #[command(flatten)]
    pub vault: super::vault::VaultArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let desired = super::load_desired_or_report(&args.dir)?;
    let runtime = super::runtime()?;
    let saved = match &args.plan {
        Some(path) => {
            if !args.regions.is_empty() || !args.tenants.is_empty() {
                bail!("--plan applies the selection saved in the plan; do not combine it with --region or --tenant");
            }
            Some(read_saved(path)?)
        }
        None => None,
    };
    let selection = match &saved {
        Some(p) => Selection {
            regions: p.selection.regions.iter().cloned().collect(),
            tenants: p.selection.tenants.iter().cloned().collect(),
        },
        None => Selection {
            regions: args.regions.clone(),
            tenants: args.tenants.clone(),
        },
    };
    let options = reconcile::plan_options(&desired, &selection)?;
    if !windows_allow(&args, &desired, &options)? {
        return Ok(ExitStatus::CouldNotStart.into());
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let ctx = RunContext::current(command, options.commit.clone());
    // A saved plan was reviewed when it was saved (as with Terraform's saved plans).
    let ask = !args.auto_approve && args.plan.is_none();
    let approve = move |plan: &Plan, text: &str| {
        print!("{text}");
        if !ask {
            return Approval::Approved;
        }
        match confirm(plan.summary.changes) {
            Ok(true) => Approval::Approved,
            Ok(false) => Approval::Declined("Apply cancelled; nothing was changed.".into()),
            Err(e) => Approval::Declined(format!("error: {e:#}")),
        }
    };
    let mode = Mode::Apply {
        saved,
        approve: &approve,
        ctx,
        allow_mass_prune: args.allow_mass_prune,
    };
    let (trigger, shutdown) = Shutdown::new();
    let outcome = runtime.block_on(async {
        // Listening first: a stop request while the logins are fetched still ends below, with
        // the leases revoked.
        super::stop_on_signal(trigger);
        let regions = engine::regions_to_observe(&desired, &options);
        let logins = super::vault::Logins::open(&args.vault, &regions).await?;
        let outcome =
            reconcile::once(&desired, &selection, &mode, &logins.connectors, &shutdown).await;
        // Every path of a run ends here, a stop request (Ctrl-C, SIGTERM) too: the leases of
        // its dynamic logins are revoked.
        logins.finish().await;
        anyhow::Ok(outcome)
    })?;
    let outcome = match outcome {
        Ok(o) => o,
        Err(ReconcileError::DesiredChanged { saved, now }) => {
            eprintln!(
                "error: stale plan: the desired state changed since the plan was saved (digest {saved} then, {now} now); run `neo-reconcile plan` again"
            );
            return Ok(ExitStatus::CouldNotStart.into());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some((kind, reasons)) = &outcome.refused {
        print_refused(&outcome, *kind, reasons);
        return Ok(ExitStatus::CouldNotStart.into());
    }
    if !outcome.plan.has_changes() {
        // Approval was not asked, so the plan was not printed yet.
        print!("{}", outcome.plan_text.as_deref().unwrap_or_default());
    }
    let Some(report) = &outcome.report else {
        println!("No changes.");
        return Ok(exit_status(&outcome.plan, None).into());
    };
    print_report(report);
    let status = exit_status(&outcome.plan, Some(report));
    println!(
        "{}",
        match status {
            ExitStatus::Converged => "Apply complete.",
            ExitStatus::Blocked => "Apply complete, but blocked items remain (see above).",
            ExitStatus::CouldNotStart => "Apply could not start; nothing was changed.",
            ExitStatus::Failed => "Apply finished with errors.",
        }
    );
    Ok(status.into())
}

/// Prints why apply did not start: a stale plan, a declined approval, or a plan refused as a
/// whole (a mass prune, whose plan is printed first since approval was not asked).
fn print_refused(outcome: &reconcile::RunOutcome, kind: ErrorKind, reasons: &[String]) {
    if kind == ErrorKind::Transient {
        for r in reasons {
            eprintln!("error: stale plan: {r}");
        }
        eprintln!("Nothing was changed. Run `neo-reconcile plan` again.");
    } else {
        let mass_prune = outcome
            .plan
            .regions
            .iter()
            .flat_map(|r| &r.blocked)
            .any(|b| b.reason == BlockReason::MassPrune);
        if mass_prune {
            // Refused before approval was asked: the plan was not printed yet.
            print!("{}", outcome.plan_text.as_deref().unwrap_or_default());
        }
        for r in reasons {
            if let Some(e) = r.strip_prefix("error: ") {
                eprintln!("error: {e}");
            } else {
                println!("{r}");
            }
        }
    }
}

fn read_saved(path: &std::path::Path) -> anyhow::Result<Plan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let plan: Plan = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a plan saved by `neo-reconcile plan --out`",
            path.display()
        )
    })?;
    if plan.format_version != 1 {
        bail!(
            "{}: unsupported plan format_version {}",
            path.display(),
            plan.format_version
        );
    }
    Ok(plan)
}

fn print_report(report: &apply::ApplyReport) {
    println!();
    for r in &report.regions {
        let run = r
            .run_id
            .map(|id| format!(" (run {id})"))
            .unwrap_or_default();
        match &r.outcome {
            RegionOutcome::Applied => {
                println!("Region {}: {} action(s) applied{run}", r.name, r.applied)
            }
            RegionOutcome::NoChanges => println!(
                "Region {}: no changes (the live state already matches)",
                r.name
            ),
            RegionOutcome::Stale(m) => println!("Region {}: REFUSED, {m}; nothing changed", r.name),
            RegionOutcome::LockTimeout(m) => println!("Region {}: NOT APPLIED, {m}", r.name),
            RegionOutcome::Failed(m) => println!("Region {}: FAILED{run}: {m}", r.name),
        }
        for f in &r.failed {
            println!("  tenant {} FAILED: {}", f.tenant, f.error);
        }
        for (t, why) in &r.not_started {
            println!("  tenant {t} not started: {why}");
        }
    }
    match &report.registry {
        Some(Ok(n)) => println!("Registry: {n} row(s) written."),
        Some(Err(e)) => println!("Registry: FAILED: {e}"),
        None => {}
    }
}

/// How an apply ended, as its exit code (documented in the README and `--help`). Usage errors
/// exit 2, from the argument parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything selected converged.
    Converged = 0,
    /// 1: nothing was changed: bad input, a refused or stale plan, or every region with work
    /// unreachable, locked by another run or stale.
    CouldNotStart = 1,
    /// 3: some targets failed (a tenant, a region-scope set, the registry), or some regions
    /// could not start while others changed.
    Failed = 3,
    /// 4: everything that could run succeeded, but blocked findings remain for a human.
    Blocked = 4,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s as u8)
    }
}

/// The exit status of an apply of `approved` that ended with `report` (`None`: nothing to
/// apply).
pub fn exit_status(approved: &Plan, report: Option<&apply::ApplyReport>) -> ExitStatus {
    let unreachable = approved.summary.unreachable > 0;
    let Some(report) = report else {
        return if unreachable {
            ExitStatus::CouldNotStart
        } else if approved.is_blocked() {
            ExitStatus::Blocked
        } else {
            ExitStatus::Converged
        };
    };
    // A region that failed before it changed anything (no connection, no credentials) did
    // not start, like one that was locked or stale.
    let not_started = |r: &apply::RegionReport| match r.outcome {
        RegionOutcome::Stale(_) | RegionOutcome::LockTimeout(_) => true,
        RegionOutcome::Failed(_) => r.run_id.is_none() && r.applied == 0,
        RegionOutcome::Applied | RegionOutcome::NoChanges => false,
    };
    let changed = report.regions.iter().any(|r| r.applied > 0);
    let failed = matches!(report.registry, Some(Err(_)))
        || report.regions.iter().any(|r| {
            (matches!(r.outcome, RegionOutcome::Failed(_)) && !not_started(r))
                || !r.failed.is_empty()
                || !r.not_started.is_empty()
        });
    let some_not_started = unreachable || report.regions.iter().any(not_started);
    if failed || (some_not_started && changed) {
        ExitStatus::Failed
    } else if some_not_started {
        ExitStatus::CouldNotStart
    } else if approved.is_blocked() {
        ExitStatus::Blocked
    } else {
        ExitStatus::Converged
    }
}

fn confirm(changes: usize) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to apply without a terminal to confirm on; pass --auto-approve");
    }
    print!("\nApply these {changes} change(s)? Only 'yes' is accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use apply::{ApplyReport, RegionReport, TenantFailure};
    use neo_reconcile::plan::{DesiredRef, Selection, Summary};

    fn plan(blocked: usize, unreachable: usize) -> Plan {
        Plan {
            format_version: 1,
            desired: DesiredRef {
                digest: String::new(),
                commit: None,
            },
            selection: Selection::default(),
            regions: Vec::new(),
            summary: Summary {
                changes: 1,
                blocked,
                unreachable,
                ..Summary::default()
            },
        }
    }

    fn region(outcome: RegionOutcome, applied: usize, run: bool, failed: bool) -> RegionReport {
        RegionReport {
            name: "us".into(),
            outcome,
            applied,
            failed: if failed {
                vec![TenantFailure {
                    tenant: "acme".into(),
                    error: "boom".into(),
                }]
            } else {
                vec![]
            },
            not_started: vec![],
            run_id: run.then_some(1),
        }
    }

    fn check(plan: Plan, regions: Vec<RegionReport>, expect: ExitStatus) {
        let report = ApplyReport {
            regions,
            registry: None,
        };
        assert_eq!(exit_status(&plan, Some(&report)), expect);
    }

    #[test]
    fn exit_status_tells_converged_failed_blocked_and_not_started_apart() {
        use RegionOutcome::*;
        check(
            plan(0, 0),
            vec![region(Applied, 3, true, false)],
            ExitStatus::Converged,
        );
        check(
            plan(0, 0),
            vec![region(NoChanges, 0, false, false)],
            ExitStatus::Converged,
        );
        check(
            plan(1, 0),
            vec![region(Applied, 3, true, false)],
            ExitStatus::Blocked,
        );
        check(
            plan(1, 0),
            vec![region(Applied, 2, true, true)],
            ExitStatus::Failed,
        );
        check(
            plan(0, 0),
            vec![region(Failed("x".into()), 1, true, false)],
            ExitStatus::Failed,
        );
        check(
            plan(0, 0),
            vec![region(LockTimeout("x".into()), 0, false, false)],
            ExitStatus::CouldNotStart,
        );
        check(
            plan(0, 0),
            vec![region(Stale("x".into()), 0, false, false)],
            ExitStatus::CouldNotStart,
        );
        check(
            plan(0, 0),
            vec![region(Failed("no connection".into()), 0, false, false)],
            ExitStatus::CouldNotStart,
        );
        check(
            plan(0, 1),
            vec![region(NoChanges, 0, false, false)],
            ExitStatus::CouldNotStart,
        );
        // Some regions changed while another could not start: that region's targets failed.
        check(
            plan(0, 0),
            vec![
                region(Applied, 2, true, false),
                region(LockTimeout("x".into()), 0, false, false),
            ],
            ExitStatus::Failed,
        );
        check(
            plan(0, 1),
            vec![region(Applied, 2, true, false)],
            ExitStatus::Failed,
        );
        assert_eq!(exit_status(&plan(0, 0), None), ExitStatus::Converged);
        assert_eq!(exit_status(&plan(2, 0), None), ExitStatus::Blocked);
        assert_eq!(exit_status(&plan(0, 1), None), ExitStatus::CouldNotStart);
    }
}

/// Whether the daemon's maintenance windows (when its configuration is on this host) allow
/// applying now in every region the run covers; when they do not, says which and why, unless
/// `--override-window` was given, which is logged and recorded in the run row.
fn windows_allow(
    args: &Args,
    desired: &neo_reconcile::desired::Desired,
    options: &neo_reconcile::plan::PlanOptions,
) -> anyhow::Result<bool> {
    if !args.daemon_config.exists() {
        return Ok(true);
    }
    let config = daemon::config::load(&args.daemon_config).map_err(|e| {
        anyhow::anyhow!(
            "{e}\nthe daemon's configuration {} holds the maintenance windows a manual apply respects: fix it, or name another with --daemon-config",
            args.daemon_config.display()
        )
    })?;
    let regions: Vec<String> = engine::regions_to_observe(desired, options)
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let (_, closed) =
        daemon::schedule::split_by_windows(&regions, &config.reconcile.windows, chrono::Utc::now());
    if closed.is_empty() {
        return Ok(true);
    }
    for (region, why) in &closed {
        if args.override_window {
            tracing::warn!(region = %region, reason = %why, file = %args.daemon_config.display(), "Maintenance window closed; applying anyway (--override-window, recorded in the run row).");
        } else {
            eprintln!(
                "error: region {region} is outside its maintenance window ({why}, {}); nothing was changed. Wait for the window, or pass --override-window (recorded in the run row).",
                args.daemon_config.display()
            );
        }
    }
    Ok(args.override_window)
}
