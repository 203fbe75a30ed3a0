//! `neo-reconcile adopt`: records existing schemas (migrated by Flyway or by hand) as managed,
//! without running migration SQL. The set's scope decides the form:
//!
//! - tenant-scope set: `adopt [DIR] (--tenant T... | --all) --schema-set S (--at-version N | --from-flyway)`;
//! - region-scope set: `adopt [DIR] --schema-set S [--region R]... (--at-version N | --from-flyway)`,
//!   every region of the desired state when no `--region` is given.
//!
//! - drift: `adopt [DIR] --accept-drift TENANT --reason TEXT` records the tenant's live schema
//!   as accepted at its current versions (see `apply::accept_drift`).
//!
//! Exit 0 when every target was adopted, 1 when any was refused.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use neo_reconcile::apply::accept_drift;
use neo_reconcile::apply::adopt::{self, AdoptFrom, AdoptOutcome};
use neo_reconcile::apply::RunContext;
use neo_reconcile::desired::{Desired, Region, SchemaSet, Scope, Tenant, TenantStatus};
use neo_reconcile::sources::git;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("who").args(["tenants", "all"])))]
#[command(group(clap::ArgGroup::new("from").args(["at_version", "from_flyway"])))]
pub struct Args {
    /// The root of the desired-state tree.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub vault: super::vault::VaultArgs,
    /// Adopt this tenant's schema (repeatable; tenant-scope sets).
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// Adopt every active or suspended tenant of the desired state (tenant-scope sets).
    #[arg(long)]
    pub all: bool,
    /// Adopt the set's schema in this region (repeatable; region-scope sets; default: every
    /// region).
    #[arg(long = "region", value_name = "REGION", conflicts_with = "who")]
    pub regions: Vec<String>,
    /// The schema set the existing schemas follow.
    #[arg(long, value_name = "SET", required_unless_present = "accept_drift")]
    pub schema_set: Option<String>,
    /// Accept this tenant's live schema as it is (an out-of-band change made on purpose)
    /// until its next migration.
    #[arg(long, value_name = "TENANT", conflicts_with_all = ["tenants", "all", "regions", "schema_set", "from"], requires = "reason")]
    pub accept_drift: Option<String>,
    /// Why the drift is accepted (recorded with who accepted it).
    #[arg(long, value_name = "TEXT", requires = "accept_drift")]
    pub reason: Option<String>,
    /// Record versions 1 to N as applied.
    #[arg(long, value_name = "N")]
    pub at_version: Option<u32>,
    /// Record the versions each schema's flyway_schema_history shows as applied.
    #[arg(long)]
    pub from_flyway: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let desired = super::load_desired_or_report(&args.dir)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let ctx = RunContext::current(command, git::head_commit(&desired.root));
    if let Some(slug) = &args.accept_drift {
        return accept(&args, &desired, slug, &ctx);
    }
    let name = args.schema_set.clone().unwrap_or_default();
    let set = desired
        .schema_set(&name)
        .ok_or_else(|| anyhow!("unknown schema set {name:?}"))?;
    let from = match (args.at_version, args.from_flyway) {
        (Some(n), _) => AdoptFrom::AtVersion(n),
        (None, true) => AdoptFrom::Flyway,
        (None, false) => bail!("say what the schemas hold: --at-version N or --from-flyway"),
    };
    let outcomes = match set.scope {
        Scope::Tenant => {
            if !args.regions.is_empty() {
                bail!(
                    "{} is a tenant-scope set: name its tenants with --tenant or --all, not --region",
                    set.name
                );
            }
            let tenants = selected_tenants(&args, &desired, set)?;
            let regions: Vec<&Region> = desired
                .regions
                .values()
                .filter(|r| tenants.iter().any(|t| t.region == r.name))
                .collect();
            super::runtime()?.block_on(async {
                let logins = super::vault::Logins::open(&args.vault, &regions).await?;
                let outcomes = super::until_signal(adopt::adopt_tenants(
                    &desired,
                    &tenants,
                    set,
                    from,
                    &logins.connectors,
                    &ctx,
                ))
                .await;
                logins.finish().await;
                outcomes.ok_or_else(|| {
                    anyhow::anyhow!("interrupted; what was not recorded yet was rolled back")
                })
            })?
        }
        Scope::Region => {
            if args.all || !args.tenants.is_empty() {
                bail!(
                    "{} is a region-scope set: its schema is adopted per region (--region R, or every region without --region), not per tenant",
                    set.name
                );
            }
            let regions = selected_regions(&args, &desired)?;
            super::runtime()?.block_on(async {
                let logins = super::vault::Logins::open(&args.vault, &regions).await?;
                let outcomes = super::until_signal(adopt::adopt_region_set(
                    &regions,
                    set,
                    from,
                    &logins.connectors,
                    &ctx,
                ))
                .await;
                logins.finish().await;
                outcomes.ok_or_else(|| {
                    anyhow::anyhow!("interrupted; what was not recorded yet was rolled back")
                })
            })?
        }
    };
    let mut refused = 0;
    for o in &outcomes {
        match o {
            AdoptOutcome::Adopted { target, versions } => {
                println!(
                    "adopted {target}: {} versions 1 to {versions} recorded",
                    set.name
                )
            }
            AdoptOutcome::Refused { target, reason } => {
                refused += 1;
                println!("REFUSED {target}: {reason}");
            }
        }
    }
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The tenants `--tenant` or `--all` name for a tenant-scope set.
fn selected_tenants<'a>(
    args: &Args,
    desired: &'a Desired,
    set: &SchemaSet,
) -> anyhow::Result<Vec<&'a Tenant>> {
    let tenants: Vec<&Tenant> = if args.all {
        desired
            .tenants
            .values()
            .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
            .collect()
    } else if args.tenants.is_empty() {
        bail!(
            "{} is a tenant-scope set: name its tenants with --tenant or --all",
            set.name
        );
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
    Ok(tenants)
}

/// The regions `--region` names (every region without it) for a region-scope set.
fn selected_regions<'a>(args: &Args, desired: &'a Desired) -> anyhow::Result<Vec<&'a Region>> {
    let regions: Vec<&Region> = if args.regions.is_empty() {
        desired.regions.values().collect()
    } else {
        let mut v: Vec<&Region> = Vec::new();
        for name in &args.regions {
            match desired.regions.get(name) {
                Some(r) if v.iter().any(|seen| seen.name == r.name) => {}
                Some(r) => v.push(r),
                None => bail!("unknown region {name:?}"),
            }
        }
        v
    };
    Ok(regions)
}

/// `--accept-drift TENANT --reason TEXT`.
fn accept(
    args: &Args,
    desired: &Desired,
    slug: &str,
    ctx: &RunContext,
) -> anyhow::Result<ExitCode> {
    let tenant = desired
        .tenants
        .get(slug)
        .ok_or_else(|| anyhow!("unknown tenant {slug:?}"))?;
    let region = &desired.regions[&tenant.region];
    let reason = args.reason.clone().unwrap_or_default();
    let outcome = super::runtime()?.block_on(async {
        let logins = super::vault::Logins::open(&args.vault, &[region]).await?;
        let connector = logins
            .connectors
            .get(&region.name)
            .ok_or_else(|| anyhow!("region {} has no login", region.name));
        let outcome = match connector {
            Ok(c) => accept_drift::accept_drift(desired, tenant, c, ctx, &reason)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        logins.finish().await;
        outcome
    });
    match outcome {
        Ok(accept_drift::Accepted::Recorded { schema, versions }) => {
            println!("accepted the live shape of {schema} at {versions} for tenant {slug}, until its next migration");
            Ok(ExitCode::SUCCESS)
        }
        Ok(accept_drift::Accepted::NoDrift { schema }) => {
            println!("{schema} has no drift: nothing to accept");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("REFUSED tenant {slug}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
