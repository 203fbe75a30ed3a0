//! Test helpers for the daemon's observers: a [`RunOutcome`] built by hand, without a
//! database, in the shape [`crate::reconcile::once`] returns it.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::plan::{Action, BlockReason, Blocked, DesiredRef, Plan, RegionPlan, Selection, Summary};
use crate::reconcile::{RegionStatus, RunOutcome};

/// A fixed wall-clock time, `secs` after the Unix epoch.
pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// One region of a hand-made plan: `actions` tenant creations and `blocked` findings.
pub fn region_plan(name: &str, actions: usize, blocked: usize, reachable: bool) -> RegionPlan {
    RegionPlan {
        name: name.to_string(),
        reachable,
        reason: (!reachable).then(|| "connection refused".to_string()),
        actions: (0..actions)
            .map(|i| Action::CreateTenant {
                tenant: format!("t{i}"),
                schema: format!("tenant_t{i}"),
                owner_role: format!("t{i}_owner"),
                rw_role: format!("t{i}_rw"),
            })
            .collect(),
        blocked: (0..blocked)
            .map(|i| Blocked {
                reason: BlockReason::ChecksumMismatch,
                tenant: Some(format!("b{i}")),
                schema_set: Some("tenant".to_string()),
                schema: Some(format!("tenant_b{i}")),
                message: format!("tenant b{i}: migration 3 checksum differs from its file"),
            })
            .collect(),
        unmanaged: Vec::new(),
        scheduled: Vec::new(),
        drift: Vec::new(),
    }
}

/// A run's outcome over the given regions, each with its plan and its status.
pub fn outcome(regions: Vec<(RegionPlan, RegionStatus)>) -> RunOutcome {
    let summary = Summary {
        changes: regions.iter().map(|(r, _)| r.actions.len()).sum(),
        create_tenant: regions.iter().map(|(r, _)| r.actions.len()).sum(),
        blocked: regions.iter().map(|(r, _)| r.blocked.len()).sum(),
        unreachable: regions.iter().filter(|(r, _)| !r.reachable).count(),
        ..Summary::default()
    };
    let statuses = regions
        .iter()
        .map(|(r, s)| (r.name.clone(), s.clone()))
        .collect();
    RunOutcome {
        plan: Plan {
            format_version: 1,
            desired: DesiredRef {
                digest: "d1g3st".to_string(),
                commit: Some("abc1234def".to_string()),
            },
            selection: Selection {
                regions: BTreeSet::new(),
                tenants: BTreeSet::new(),
            },
            regions: regions.into_iter().map(|(r, _)| r).collect(),
            summary,
        },
        plan_text: None,
        refused: None,
        report: None,
        regions: statuses,
    }
}
