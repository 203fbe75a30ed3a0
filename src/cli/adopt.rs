//! `neo-reconcile adopt [DIR] (--tenant T | --all) --schema-set S (--at-version N | --from-flyway)`:
//! records existing tenant schemas (migrated by Flyway or by hand) as managed, without running
//! migration SQL. Exit 0 when every tenant was adopted, 1 when any was refused.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use neo_reconcile::apply::adopt::{self, AdoptFrom, AdoptOutcome};
use neo_reconcile::apply::RunContext;
use neo_reconcile::desired::{Tenant, TenantStatus};
use neo_reconcile::sources::credentials::Sources;
use neo_reconcile::sources::git;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["tenants", "all"])))]
#[command(group(clap::ArgGroup::new("from").required(true).args(["at_version", "from_flyway"])))]
pub struct Args {
    /// The root of the desired-state tree.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Adopt this tenant (repeatable).
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// Adopt every active or suspended tenant of the desired state.
    #[arg(long)]
    pub all: bool,
    /// The tenant-scope schema set the existing schemas follow.
    #[arg(long, value_name = "SET")]
    pub schema_set: String,
    /// Record versions 1 to N as applied.
    #[arg(long, value_name = "N")]
    pub at_version: Option<u32>,
    /// Record the versions each schema's flyway_schema_history shows as applied.
    #[arg(long)]
    pub from_flyway: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let desired = super::load_desired_or_report(&args.dir)?;
    let set = desired
        .schema_set(&args.schema_set)
        .ok_or_else(|| anyhow!("unknown schema set {:?}", args.schema_set))?;
    adopt::check_set(set).map_err(|e| anyhow!(e))?;
    let tenants: Vec<&Tenant> = if args.all {
        desired
            .tenants
            .values()
            .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
            .collect()
    } else {
        let mut v = Vec::new();
        for slug in &args.tenants {
            match desired.tenants.get(slug) {
                Some(t) => v.push(t),
                None => bail!("unknown tenant {slug:?}"),
            }
        }
        v
    };
    let from = match args.at_version {
        Some(n) => AdoptFrom::AtVersion(n),
        None => AdoptFrom::Flyway,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let ctx = RunContext::current(command, git::head_commit(&desired.root));
    let outcomes =
        super::runtime()?.block_on(adopt::adopt(&desired, &tenants, set, from, &Sources, &ctx));
    let mut refused = 0;
    for o in &outcomes {
        match o {
            AdoptOutcome::Adopted { tenant, versions } => {
                println!(
                    "adopted {tenant}: {} versions 1 to {versions} recorded",
                    set.name
                )
            }
            AdoptOutcome::Refused { tenant, reason } => {
                refused += 1;
                println!("REFUSED {tenant}: {reason}");
            }
        }
    }
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
