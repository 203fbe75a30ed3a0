//! `neo-reconcile apply`: converge live PostgreSQL to the plan. Logs the whole plan before
//! changing anything, asks for confirmation on a terminal unless `--auto-approve`, refuses
//! without a terminal. `--plan FILE` applies exactly a saved plan, refusing a stale one.
//! Exit 0 when everything converged, 1 when anything failed, was blocked or was refused.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use neo_reconcile::apply::{self, RegionOutcome, RunContext};
use neo_reconcile::engine;
use neo_reconcile::plan::render::{self, TextOptions};
use neo_reconcile::plan::Plan;
use neo_reconcile::sources::credentials::Sources;

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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let desired = super::load_desired_or_report(&args.dir)?;
    let runtime = super::runtime()?;
    let saved = match &args.plan {
        Some(path) => {
            if !args.regions.is_empty() || !args.tenants.is_empty() {
                bail!("--plan applies the selection saved in the plan; do not combine it with --region or --tenant");
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
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
            Some(plan)
        }
        None => None,
    };
    let (regions, tenants): (Vec<String>, Vec<String>) = match &saved {
        Some(p) => (
            p.selection.regions.iter().cloned().collect(),
            p.selection.tenants.iter().cloned().collect(),
        ),
        None => (args.regions.clone(), args.tenants.clone()),
    };
    let options = engine::plan_options(&desired, &regions, &tenants)?;
    let (_, fresh) = runtime.block_on(engine::observe_and_plan(&desired, &options, &Sources));

    let approved = match saved {
        Some(saved) => {
            if saved.desired.digest != desired.digest {
                eprintln!(
                    "error: stale plan: the desired state changed since the plan was saved (digest {} then, {} now); run `neo-reconcile plan` again",
                    short(&saved.desired.digest),
                    short(&desired.digest)
                );
                return Ok(ExitCode::from(1));
            }
            if let Err(reasons) = apply::check_not_stale(&saved, &fresh) {
                for r in &reasons {
                    eprintln!("error: stale plan: {r}");
                }
                eprintln!("Nothing was changed. Run `neo-reconcile plan` again.");
                return Ok(ExitCode::from(1));
            }
            saved
        }
        None => fresh,
    };

    let text = render::text(&approved, &desired, TextOptions::default());
    print!("{text}");
    apply::log_plan(&approved);
    tracing::info!(plan = %text, "Plan to apply.");
    if !approved.has_changes() {
        println!("No changes.");
        return Ok(if approved.is_blocked() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }

    // A saved plan was reviewed when it was saved (as with Terraform's saved plans).
    if !args.auto_approve && args.plan.is_none() && !confirm(approved.summary.changes)? {
        println!("Apply cancelled; nothing was changed.");
        return Ok(ExitCode::from(1));
    }

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let ctx = RunContext::current(command, options.commit.clone());
    let report = runtime.block_on(apply::apply(
        &desired, &approved, &options, &Sources, &ctx, &text,
    ));

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
            println!("  tenant {} FAILED (rolled back): {}", f.tenant, f.error);
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
    let ok = report.succeeded() && !approved.is_blocked();
    println!(
        "{}",
        if ok {
            "Apply complete."
        } else {
            "Apply finished with errors."
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}
