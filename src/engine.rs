//! The glue between the stages, shared by the subcommands: load and validate the desired
//! state, observe the selected regions, plan. I/O lives here and in [`crate::observed`]; the
//! decisions live in [`crate::plan`].

use std::collections::BTreeSet;
use std::path::Path;

use crate::bookkeeping;
use crate::db::Connectors;
use crate::desired::{self, Desired, Diagnostic, Region, Severity};
use crate::observed::{self, Observed};
use crate::plan::{self, Plan, PlanOptions};
use crate::sources::git;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{root} is not a valid desired-state tree ({errors} error(s)); run `neo-reconcile validate {root}`")]
    Invalid {
        root: String,
        errors: usize,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("unknown {what} {name:?}: known {what}s are {known}")]
    UnknownSelection {
        what: &'static str,
        name: String,
        known: String,
    },
}

/// Loads the desired state, or fails with every diagnostic.
pub fn load_desired(root: &Path) -> Result<Desired, EngineError> {
    let loaded = desired::load(root);
    match loaded.desired {
        Some(d) => {
            for w in loaded
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Warning)
            {
                tracing::warn!(file = %w.file, line = w.line, field = %w.field, "{}", w.message);
            }
            Ok(d)
        }
        None => Err(EngineError::Invalid {
            root: root.display().to_string(),
            errors: loaded
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count(),
            diagnostics: loaded.diagnostics,
        }),
    }
}

/// The plan options for a selection, checking that every named region and tenant exists.
pub fn plan_options(
    desired: &Desired,
    regions: &[String],
    tenants: &[String],
) -> Result<PlanOptions, EngineError> {
    for r in regions {
        if !desired.regions.contains_key(r) {
            return Err(EngineError::UnknownSelection {
                what: "region",
                name: r.clone(),
                known: desired
                    .regions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    for t in tenants {
        if !desired.tenants.contains_key(t) {
            return Err(EngineError::UnknownSelection {
                what: "tenant",
                name: t.clone(),
                known: desired
                    .tenants
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(PlanOptions {
        regions: regions.iter().cloned().collect(),
        tenants: tenants.iter().cloned().collect(),
        bookkeeping_latest: bookkeeping::latest(&bookkeeping::region()),
        registry_latest: bookkeeping::latest(&bookkeeping::control_plane()),
        commit: git::head_commit(&desired.root),
        allow_mass_prune: false,
    })
}

/// The regions a plan with these options observes.
pub fn regions_to_observe<'a>(desired: &'a Desired, options: &PlanOptions) -> Vec<&'a Region> {
    let mut names: BTreeSet<&str> = desired.regions.keys().map(String::as_str).collect();
    if !options.regions.is_empty() {
        names.retain(|n| options.regions.contains(*n));
    }
    // Tenant selections still observe every selected region: a tenant may live elsewhere.
    names.into_iter().map(|n| &desired.regions[n]).collect()
}

/// Observes the selected regions and plans.
pub async fn observe_and_plan(
    desired: &Desired,
    options: &PlanOptions,
    connectors: &Connectors,
) -> (Observed, Plan) {
    let regions = regions_to_observe(desired, options);
    let observed = observed::postgres::observe(desired, &regions, connectors).await;
    let plan = plan::plan(desired, &observed, options);
    tracing::info!(
        changes = plan.summary.changes,
        blocked = plan.summary.blocked,
        unreachable = plan.summary.unreachable,
        digest = %plan.desired.digest,
        "Plan computed."
    );
    (observed, plan)
}
