//! What an apply did: per region, what was applied, what failed and what did not start.

use crate::plan;
use crate::plan::Action;

/// What happened in each region, and to the registry.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub regions: Vec<RegionReport>,
    pub registry: Option<Result<usize, String>>,
}

impl ApplyReport {
    pub fn succeeded(&self) -> bool {
        self.regions.iter().all(|r| r.succeeded()) && !matches!(self.registry, Some(Err(_)))
    }
}

#[derive(Debug, Clone)]
pub struct RegionReport {
    pub name: String,
    pub outcome: RegionOutcome,
    /// Actions that completed.
    pub applied: usize,
    pub failed: Vec<TenantFailure>,
    /// Tenants not started because of `max_failures` or a failed canary, with the reason.
    pub not_started: Vec<(String, String)>,
    pub run_id: Option<i64>,
}

impl RegionReport {
    pub(super) fn new(name: &str, outcome: RegionOutcome) -> Self {
        RegionReport {
            name: name.to_string(),
            outcome,
            applied: 0,
            failed: Vec::new(),
            not_started: Vec::new(),
            run_id: None,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(
            self.outcome,
            RegionOutcome::Applied | RegionOutcome::NoChanges
        ) && self.failed.is_empty()
            && self.not_started.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionOutcome {
    /// Every planned action ran (some tenants may have failed: see the report).
    Applied,
    /// Nothing to do, or another run already did it.
    NoChanges,
    /// The live state changed since the plan; nothing was changed here.
    Stale(String),
    /// Another neo-reconcile held the region for longer than `lock_wait`.
    LockTimeout(String),
    /// The region could not be reached, or a step outside any tenant failed.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct TenantFailure {
    pub tenant: String,
    pub error: String,
}

/// A short description of an action, for logs and reports.
pub fn describe(action: &Action) -> String {
    plan::render::action_line(action)
        .trim_start_matches(['+', '~', '-', ' '])
        .to_string()
}
