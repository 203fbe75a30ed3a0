//! The daemon's status in memory, as `/status`, `/readyz` and `/healthz` show it.
//!
//! [`StatusObserver`] is an [`Observer`]: the loop's calls only update a small state behind a
//! mutex, never held across an await. A [`StatusHandle`] reads it from the HTTP server and
//! renders it as a [`StatusDoc`], whose JSON is `/status`. Time is passed in by the caller
//! (the loop's clock for events, the server's clock for the staleness of a rendering), so
//! tests need no real clock. Nothing secret is stored: the messages come from the loop's
//! events and from [`RunOutcome`], which are secret-free by construction.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::observer::{Fetched, Loaded, Observer, Reconciled, Trigger};
use crate::plan::{utc_timestamp, Summary};
use crate::reconcile::{ErrorKind, RegionStatus, RunOutcome};

/// Tells the wall-clock time: [`system_clock`] in the daemon, a fixed or stepped time in
/// tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// At most this many blocked findings are kept per region; the count is always exact.
const MAX_BLOCKED_SHOWN: usize = 20;
/// At most this many problems of an invalid commit are shown; the count is always exact.
const MAX_PROBLEMS_SHOWN: usize = 100;

/// A fetch error with any `user:password@` of a URL replaced by `***@`: the configuration
/// keeps tokens in files, but a URL written with one must not leak through an error message.
pub fn redact_userinfo(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// The label of a trigger, as the status and the logs name it.
pub fn trigger_label(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Start => "start",
        Trigger::NewCommit => "new_commit",
        Trigger::Resync => "resync",
        Trigger::WindowOpened => "window_opened",
        Trigger::Retry => "retry",
    }
}

/// The label of an error kind, as the status and the metrics name it.
pub fn kind_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Transient => "transient",
        ErrorKind::NeedsHuman => "needs_human",
        ErrorKind::Target => "target",
    }
}

/// The label of a region's outcome, as the status and the metrics name it.
pub fn outcome_label(status: &RegionStatus) -> &'static str {
    match status {
        RegionStatus::Converged => "converged",
        RegionStatus::ChangesPending(_) => "changes_pending",
        RegionStatus::Blocked(_) => "blocked",
        RegionStatus::Failed { .. } => "failed",
    }
}

/// Seconds since the Unix epoch (0 for times before it).
pub fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A time as `YYYY-MM-DDTHH:MM:SSZ`, the format of the plan's timestamps.
fn rfc3339(t: SystemTime) -> String {
    utc_timestamp(epoch_seconds(t) as i64)
}

/// What one region looks like after a reconcile, derived from the run's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionView {
    pub name: String,
    pub outcome: &'static str,
    /// The error kind, for a failed region.
    pub kind: Option<ErrorKind>,
    /// Why it failed, for a failed region.
    pub message: Option<String>,
    /// Planned changes that were not applied (detect-only, window closed, refused, failed).
    pub pending: usize,
    /// The blocked findings' messages.
    pub blocked: Vec<String>,
    /// Changes apply made in this run.
    pub applied: usize,
    pub reachable: bool,
    pub unmanaged: usize,
    pub scheduled: usize,
    /// Whether this run counts as a success for the region: converged, or changes pending
    /// only because apply was not allowed to run.
    pub success: bool,
}

/// Each region of a run's outcome as a [`RegionView`], in plan order.
pub fn region_views(outcome: &RunOutcome) -> Vec<RegionView> {
    outcome
        .regions
        .iter()
        .map(|(name, status)| {
            let plan = outcome.plan.regions.iter().find(|r| &r.name == name);
            let actions = plan.map_or(0, |r| r.actions.len());
            let applied = outcome
                .report
                .as_ref()
                .and_then(|rep| rep.regions.iter().find(|r| &r.name == name))
                .map_or(0, |r| r.applied);
            let (kind, message) = match status {
                RegionStatus::Failed { kind, message } => (Some(*kind), Some(message.clone())),
                _ => (None, None),
            };
            let pending = match status {
                RegionStatus::Converged => 0,
                RegionStatus::ChangesPending(n) => *n,
                _ => actions.saturating_sub(applied),
            };
            let blocked = match status {
                RegionStatus::Blocked(b) => b.clone(),
                _ => plan.map_or_else(Vec::new, |r| {
                    r.blocked.iter().map(|b| b.message.clone()).collect()
                }),
            };
            RegionView {
                name: name.clone(),
                outcome: outcome_label(status),
                kind,
                message,
                pending,
                blocked,
                applied,
                reachable: plan.map_or(true, |r| r.reachable),
                unmanaged: plan.map_or(0, |r| r.unmanaged.len()),
                scheduled: plan.map_or(0, |r| r.scheduled.len()),
                success: matches!(
                    status,
                    RegionStatus::Converged | RegionStatus::ChangesPending(_)
                ),
            }
        })
        .collect()
}

/// A short, human summary of a run for systemd's `STATUS=` line and the logs, e.g.
/// `commit abc1234: 2 regions converged, 1 changes pending`.
pub fn summary_line(commit: &str, views: &[RegionView]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in views {
        *counts.entry(v.outcome).or_default() += 1;
    }
    let order = ["converged", "changes_pending", "blocked", "failed"];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|o| counts.get(o).map(|n| (o, n)))
        .map(|(o, n)| {
            let noun = if *n == 1 { "region" } else { "regions" };
            format!("{n} {noun} {}", o.replace('_', " "))
        })
        .collect();
    let what = if parts.is_empty() {
        "no regions".to_string()
    } else {
        parts.join(", ")
    };
    format!("commit {}: {what}", short_sha(commit))
}

/// A commit's first seven characters, as git shows it.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// What is kept per region between runs.
#[derive(Debug, Clone)]
struct RegionState {
    view: RegionView,
    commit: String,
    finished: SystemTime,
    last_success: Option<SystemTime>,
    window_closed: bool,
    /// Changes found by the last resync (out-of-band drift), when one ran.
    drift: Option<usize>,
}

/// The last error of any kind, with where it came from.
#[derive(Debug, Clone)]
struct ErrorRecord {
    at: SystemTime,
    source: &'static str,
    message: String,
}

/// The last reconcile as a whole.
#[derive(Debug, Clone)]
struct LastRun {
    commit: String,
    trigger: Trigger,
    finished: SystemTime,
    took: Duration,
    applying: bool,
    error: Option<String>,
    summary: Option<Summary>,
    refused: Option<(ErrorKind, Vec<String>)>,
}

#[derive(Debug, Clone, Default)]
struct State {
    started: Option<SystemTime>,
    ready: bool,
    stopping: bool,
    last_tick: Option<SystemTime>,
    current_commit: Option<String>,
    last_good_commit: Option<String>,
    invalid: Option<(String, Vec<String>, SystemTime)>,
    rewound: Option<(String, String, SystemTime)>,
    last_fetch: Option<SystemTime>,
    last_fetch_success: Option<SystemTime>,
    fetch_failures_in_a_row: u64,
    last_run: Option<LastRun>,
    regions: BTreeMap<String, RegionState>,
    next_wakeup: Option<(SystemTime, String)>,
    last_error: Option<ErrorRecord>,
    last_reload: Option<(SystemTime, Result<(), String>)>,
    vault: Option<(Option<Duration>, usize, Option<Duration>)>,
}

/// The [`Observer`] that keeps the status.
#[derive(Debug, Clone)]
pub struct StatusObserver {
    state: Arc<Mutex<State>>,
}

/// Reads the status kept by a [`StatusObserver`].
#[derive(Debug, Clone)]
pub struct StatusHandle {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic elsewhere while holding the lock leaves plain data behind: keep serving it.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl StatusObserver {
    /// A status for a daemon that started at `started` (the reference for `/healthz` until
    /// the first tick).
    pub fn new(started: SystemTime) -> Self {
        let state = State {
            started: Some(started),
            ..State::default()
        };
        StatusObserver {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// A handle that reads this status.
    pub fn handle(&self) -> StatusHandle {
        StatusHandle {
            state: Arc::clone(&self.state),
        }
    }
}

impl StatusHandle {
    /// Whether the first reconcile finished.
    pub fn ready(&self) -> bool {
        lock(&self.state).ready
    }

    /// Whether the loop is stopping.
    pub fn stopping(&self) -> bool {
        lock(&self.state).stopping
    }

    /// The last tick of the loop, or the start when it has not ticked yet.
    pub fn last_alive(&self) -> Option<SystemTime> {
        let s = lock(&self.state);
        s.last_tick.or(s.started)
    }

    /// The last successful fetch of the source.
    pub fn last_fetch_success(&self) -> Option<SystemTime> {
        lock(&self.state).last_fetch_success
    }

    /// The status as `/status` shows it, with staleness counted up to `now`.
    pub fn render(&self, now: SystemTime) -> StatusDoc {
        render(&lock(&self.state), now)
    }
}

fn set_error(s: &mut State, at: SystemTime, source: &'static str, message: String) {
    s.last_error = Some(ErrorRecord {
        at,
        source,
        message,
    });
}

impl Observer for StatusObserver {
    fn tick(&self, now: SystemTime) {
        lock(&self.state).last_tick = Some(now);
    }

    fn fetched(&self, now: SystemTime, fetched: &Fetched) {
        let mut s = lock(&self.state);
        s.last_fetch = Some(now);
        match fetched {
            Fetched::Commit { sha, .. } => {
                s.current_commit = Some(sha.clone());
                s.last_fetch_success = Some(now);
                s.fetch_failures_in_a_row = 0;
                s.rewound = None;
            }
            Fetched::Failed { message } => {
                s.fetch_failures_in_a_row += 1;
                set_error(&mut s, now, "fetch", redact_userinfo(message));
            }
            Fetched::Rewound { from, to } => {
                // The fetch itself worked; what it found is refused.
                s.last_fetch_success = Some(now);
                s.fetch_failures_in_a_row = 0;
                s.rewound = Some((from.clone(), to.clone(), now));
                let message = format!(
                    "the branch moved from {} to {}, which does not descend from it; refused (allow_rewind is off)",
                    short_sha(from),
                    short_sha(to)
                );
                set_error(&mut s, now, "fetch", message);
            }
        }
    }

    fn loaded(&self, now: SystemTime, loaded: &Loaded) {
        let mut s = lock(&self.state);
        match loaded {
            Loaded::Valid { sha } => {
                // A new good commit supersedes an invalid one; reloading the same good
                // commit (a resync) does not.
                if s.last_good_commit.as_ref() != Some(sha) {
                    s.invalid = None;
                }
                s.last_good_commit = Some(sha.clone());
            }
            Loaded::Invalid { sha, problems } => {
                s.invalid = Some((sha.clone(), problems.clone(), now));
                let message = format!(
                    "commit {} is invalid ({} problem(s)); not applied",
                    short_sha(sha),
                    problems.len()
                );
                set_error(&mut s, now, "load", message);
            }
        }
    }

    fn reconciled(&self, run: &Reconciled<'_>) {
        let mut s = lock(&self.state);
        s.ready = true;
        let mut last = LastRun {
            commit: run.commit.to_string(),
            trigger: run.trigger,
            finished: run.finished,
            took: run.took,
            applying: run.applying,
            error: None,
            summary: None,
            refused: None,
        };
        let outcome = match run.outcome {
            Err(message) => {
                last.error = Some(message.to_string());
                set_error(&mut s, run.finished, "reconcile", message.to_string());
                s.last_run = Some(last);
                return;
            }
            Ok(outcome) => outcome,
        };
        last.summary = Some(outcome.plan.summary.clone());
        last.refused = outcome.refused.clone();
        if let Some((_, reasons)) = &outcome.refused {
            let message = format!("apply refused: {}", reasons.join("; "));
            set_error(&mut s, run.finished, "reconcile", message);
        }
        for view in region_views(outcome) {
            if let Some(message) = &view.message {
                let message = format!("region {}: {message}", view.name);
                set_error(&mut s, run.finished, "reconcile", message);
            }
            let previous = s.regions.remove(&view.name);
            let drift = if run.trigger == Trigger::Resync {
                Some(view.pending + view.applied)
            } else {
                previous.as_ref().and_then(|p| p.drift)
            };
            let last_success = if view.success {
                Some(run.finished)
            } else {
                previous.and_then(|p| p.last_success)
            };
            let state = RegionState {
                window_closed: run.windows_closed.contains(&view.name),
                commit: run.commit.to_string(),
                finished: run.finished,
                last_success,
                drift,
                view,
            };
            s.regions.insert(state.view.name.clone(), state);
        }
        s.last_run = Some(last);
    }

    fn next_wakeup(&self, at: SystemTime, why: &str) {
        lock(&self.state).next_wakeup = Some((at, why.to_string()));
    }

    fn reloaded(&self, result: Result<(), &str>) {
        let mut s = lock(&self.state);
        // A reload carries no time of its own: the last tick is the closest.
        let at = s.last_tick.or(s.started).unwrap_or(UNIX_EPOCH);
        if let Err(message) = result {
            let message = format!("configuration reload refused: {message}");
            set_error(&mut s, at, "reload", message);
        }
        s.last_reload = Some((at, result.map_err(str::to_string)));
    }

    fn vault_ttls(&self, token_ttl: Option<Duration>, lease_ttls: &[(String, Duration)]) {
        let min_lease = lease_ttls.iter().map(|(_, d)| *d).min();
        lock(&self.state).vault = Some((token_ttl, lease_ttls.len(), min_lease));
    }

    fn stopping(&self) {
        lock(&self.state).stopping = true;
    }
}

/// `/status`: the daemon's state, as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct StatusDoc {
    /// Whether the first reconcile finished (`/readyz`).
    pub ready: bool,
    pub stopping: bool,
    pub started: Option<String>,
    pub last_tick: Option<String>,
    pub source: SourceDoc,
    /// The last reconcile as a whole.
    pub last_reconcile: Option<RunDoc>,
    /// Per region, the last reconcile's outcome.
    pub regions: BTreeMap<String, RegionDoc>,
    pub next_wakeup: Option<WakeupDoc>,
    pub last_error: Option<ErrorDoc>,
    pub last_reload: Option<ReloadDoc>,
    pub vault: Option<VaultDoc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceDoc {
    /// The branch's head as last fetched.
    pub current_commit: Option<String>,
    /// The commit being reconciled: the last one that loaded and validated.
    pub last_good_commit: Option<String>,
    /// A newer commit that failed validation and is not applied.
    pub invalid_commit: Option<InvalidDoc>,
    /// A force-push or rewrite that was refused.
    pub rewound: Option<RewoundDoc>,
    pub last_fetch: Option<String>,
    pub last_successful_fetch: Option<String>,
    /// Seconds since the last successful fetch (since the start when none succeeded).
    pub staleness_seconds: Option<u64>,
    pub fetch_failures_in_a_row: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvalidDoc {
    pub commit: String,
    pub at: String,
    pub problem_count: usize,
    /// The first problems (at most 100), as `file:line:column: message`.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RewoundDoc {
    pub from: String,
    pub to: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunDoc {
    pub commit: String,
    pub trigger: &'static str,
    pub finished: String,
    pub took_seconds: f64,
    /// Whether apply was allowed to run (`auto_apply`).
    pub applying: bool,
    /// Why the reconcile could not start, when it could not.
    pub error: Option<String>,
    /// The plan's counts.
    pub plan: Option<Summary>,
    /// Why apply was refused, when it was.
    pub refused: Option<RefusedDoc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusedDoc {
    pub kind: &'static str,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionDoc {
    /// `converged`, `changes_pending`, `blocked` or `failed`.
    pub outcome: &'static str,
    /// For a failed region: `transient`, `needs_human` or `target`.
    pub kind: Option<&'static str>,
    pub message: Option<String>,
    pub commit: String,
    pub finished: String,
    pub last_success: Option<String>,
    pub reachable: bool,
    pub pending_changes: usize,
    pub applied_changes: usize,
    pub blocked_count: usize,
    /// The first blocked findings (at most 20).
    pub blocked: Vec<String>,
    pub unmanaged_schemas: usize,
    pub scheduled_actions: usize,
    /// Whether a maintenance window kept apply from running here.
    pub window_closed: bool,
    /// Changes found by the last resync: out-of-band drift.
    pub drift_changes: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WakeupDoc {
    pub at: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorDoc {
    pub at: String,
    /// `fetch`, `load`, `reconcile` or `reload`.
    pub source: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadDoc {
    pub at: String,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VaultDoc {
    pub token_ttl_seconds: Option<u64>,
    pub leases: usize,
    pub min_lease_ttl_seconds: Option<u64>,
}

fn render(s: &State, now: SystemTime) -> StatusDoc {
    let since = s.last_fetch_success.or(s.started);
    let staleness = since.map(|t| now.duration_since(t).unwrap_or_default().as_secs());
    StatusDoc {
        ready: s.ready,
        stopping: s.stopping,
        started: s.started.map(rfc3339),
        last_tick: s.last_tick.map(rfc3339),
        source: SourceDoc {
            current_commit: s.current_commit.clone(),
            last_good_commit: s.last_good_commit.clone(),
            invalid_commit: s.invalid.as_ref().map(|(sha, problems, at)| InvalidDoc {
                commit: sha.clone(),
                at: rfc3339(*at),
                problem_count: problems.len(),
                problems: problems.iter().take(MAX_PROBLEMS_SHOWN).cloned().collect(),
            }),
            rewound: s.rewound.as_ref().map(|(from, to, at)| RewoundDoc {
                from: from.clone(),
                to: to.clone(),
                at: rfc3339(*at),
            }),
            last_fetch: s.last_fetch.map(rfc3339),
            last_successful_fetch: s.last_fetch_success.map(rfc3339),
            staleness_seconds: staleness,
            fetch_failures_in_a_row: s.fetch_failures_in_a_row,
        },
        last_reconcile: s.last_run.as_ref().map(|r| RunDoc {
            commit: r.commit.clone(),
            trigger: trigger_label(r.trigger),
            finished: rfc3339(r.finished),
            took_seconds: r.took.as_secs_f64(),
            applying: r.applying,
            error: r.error.clone(),
            plan: r.summary.clone(),
            refused: r.refused.as_ref().map(|(kind, reasons)| RefusedDoc {
                kind: kind_label(*kind),
                reasons: reasons.clone(),
            }),
        }),
        regions: s
            .regions
            .iter()
            .map(|(name, r)| (name.clone(), region_doc(r)))
            .collect(),
        next_wakeup: s.next_wakeup.as_ref().map(|(at, why)| WakeupDoc {
            at: rfc3339(*at),
            why: why.clone(),
        }),
        last_error: s.last_error.as_ref().map(|e| ErrorDoc {
            at: rfc3339(e.at),
            source: e.source,
            message: e.message.clone(),
        }),
        last_reload: s.last_reload.as_ref().map(|(at, result)| ReloadDoc {
            at: rfc3339(*at),
            ok: result.is_ok(),
            error: result.as_ref().err().cloned(),
        }),
        vault: s.vault.map(|(token, leases, min_lease)| VaultDoc {
            token_ttl_seconds: token.map(|d| d.as_secs()),
            leases,
            min_lease_ttl_seconds: min_lease.map(|d| d.as_secs()),
        }),
    }
}

fn region_doc(r: &RegionState) -> RegionDoc {
    let v = &r.view;
    RegionDoc {
        outcome: v.outcome,
        kind: v.kind.map(kind_label),
        message: v.message.clone(),
        commit: r.commit.clone(),
        finished: rfc3339(r.finished),
        last_success: r.last_success.map(rfc3339),
        reachable: v.reachable,
        pending_changes: v.pending,
        applied_changes: v.applied,
        blocked_count: v.blocked.len(),
        blocked: v.blocked.iter().take(MAX_BLOCKED_SHOWN).cloned().collect(),
        unmanaged_schemas: v.unmanaged,
        scheduled_actions: v.scheduled,
        window_closed: r.window_closed,
        drift_changes: r.drift,
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
