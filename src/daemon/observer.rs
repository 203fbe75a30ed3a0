//! The seam between the daemon's loop and everything that reports on it.
//!
//! The loop owns its state and decides; it tells an [`Observer`] what happened, in order, and
//! nothing else. The HTTP endpoints (`/healthz`, `/readyz`, `/metrics`, `/status`), the
//! Prometheus metrics and systemd's `sd_notify` messages are observers; tests use a recording
//! one. Observers never block the loop: each call only updates in-memory state.

use std::time::{Duration, SystemTime};

use crate::reconcile::RunOutcome;

/// Why a reconcile ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The first reconcile after start (or after a reload).
    Start,
    /// The source moved to a new commit.
    NewCommit,
    /// The resync schedule fired: a full reconcile without a new commit, for drift.
    Resync,
    /// A maintenance window opened.
    WindowOpened,
    /// A retry after a transient failure.
    Retry,
}

/// The result of fetching the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The branch is at this commit (new or not).
    Commit { sha: String, new: bool },
    /// The fetch failed; the last good commit stays in use.
    Failed { message: String },
    /// The branch moved backwards or sideways and `allow_rewind` is off.
    Rewound { from: String, to: String },
}

/// The result of loading a commit's desired-state tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Valid {
        sha: String,
    },
    /// Not applied; the daemon keeps reconciling the last good commit. `problems` are the
    /// validator's diagnostics, rendered (file:line:column).
    Invalid {
        sha: String,
        problems: Vec<String>,
    },
}

/// One reconcile, as the loop saw it.
#[derive(Debug, Clone)]
pub struct Reconciled<'a> {
    pub commit: &'a str,
    pub trigger: Trigger,
    /// When it finished (wall clock) and how long it took.
    pub finished: SystemTime,
    pub took: Duration,
    /// Whether apply was allowed to run (auto_apply on), per region the windows' verdict is in
    /// `windows_closed`.
    pub applying: bool,
    /// Regions where a maintenance window kept apply from running.
    pub windows_closed: &'a [String],
    /// `Err` when the reconcile could not start (e.g. the selection is invalid); the message
    /// is safe to show (no secrets).
    pub outcome: Result<&'a RunOutcome, &'a str>,
}

/// Told by the loop what happened. Every method has an empty default, so an observer
/// implements only what it reports.
pub trait Observer: Send + Sync {
    /// The loop went round once (any event). `/healthz` and the systemd watchdog use it.
    fn tick(&self, _now: SystemTime) {}
    /// A fetch of the source finished.
    fn fetched(&self, _now: SystemTime, _fetched: &Fetched) {}
    /// A commit's tree was loaded.
    fn loaded(&self, _now: SystemTime, _loaded: &Loaded) {}
    /// A reconcile finished. The first one makes the daemon ready.
    fn reconciled(&self, _run: &Reconciled<'_>) {}
    /// When the loop will wake up next, and why.
    fn next_wakeup(&self, _at: SystemTime, _why: &str) {}
    /// The configuration was reloaded (`Ok`) or a reload was refused (`Err`, the old
    /// configuration stays).
    fn reloaded(&self, _result: Result<(), &str>) {}
    /// Vault's client token and leases: seconds left, for the TTL gauges.
    fn vault_ttls(&self, _token_ttl: Option<Duration>, _lease_ttls: &[(String, Duration)]) {}
    /// The loop is stopping (SIGTERM): nothing new starts.
    fn stopping(&self) {}
}

/// Several observers as one, called in order.
pub struct Fanout(pub Vec<Box<dyn Observer>>);

impl Observer for Fanout {
    fn tick(&self, now: SystemTime) {
        self.0.iter().for_each(|o| o.tick(now));
    }
    fn fetched(&self, now: SystemTime, fetched: &Fetched) {
        self.0.iter().for_each(|o| o.fetched(now, fetched));
    }
    fn loaded(&self, now: SystemTime, loaded: &Loaded) {
        self.0.iter().for_each(|o| o.loaded(now, loaded));
    }
    fn reconciled(&self, run: &Reconciled<'_>) {
        self.0.iter().for_each(|o| o.reconciled(run));
    }
    fn next_wakeup(&self, at: SystemTime, why: &str) {
        self.0.iter().for_each(|o| o.next_wakeup(at, why));
    }
    fn reloaded(&self, result: Result<(), &str>) {
        self.0.iter().for_each(|o| o.reloaded(result));
    }
    fn vault_ttls(&self, token_ttl: Option<Duration>, lease_ttls: &[(String, Duration)]) {
        self.0
            .iter()
            .for_each(|o| o.vault_ttls(token_ttl, lease_ttls));
    }
    fn stopping(&self) {
        self.0.iter().for_each(|o| o.stopping());
    }
}
