//! The daemon's decisions about time, as pure functions: the time is passed in, nothing here
//! reads a clock or sleeps.
//!
//! - Maintenance windows, with Argo CD's semantics: no window means apply is allowed; with
//!   allow windows, only while one is open; an open deny window wins over everything.
//! - The resync schedule's next fire, and the next time a window opens or closes.
//! - The poll interval with jitter (from a seeded generator) and the backoff after a transient
//!   failure.
//! - The next wake-up, as a function of how the last reconcile ended.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::config::{Window, WindowKind};
use crate::reconcile::{ErrorKind, RegionStatus, RunOutcome};

/// The pause before the first retry after a transient failure, doubled each time.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest pause between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The poll interval varies by up to this fraction either way.
pub const POLL_JITTER: f64 = 0.1;

/// Whether apply may run in a region now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Why not, for the log and the observers.
    Closed(String),
}

/// When `window` is open at `now`, the time it closes. A window opens at each fire of its
/// schedule (in its time zone) and stays open for its duration: it is open at `now` when it
/// fired in `(now - duration, now]`.
pub fn open_until(window: &Window, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let duration = chrono::Duration::from_std(window.duration).ok()?;
    let since = (now - duration).with_timezone(&window.timezone);
    let fired = window.schedule.after(&since).next()?.with_timezone(&Utc);
    (fired <= now).then_some(fired + duration)
}

/// Argo CD's rule for one region's windows at `now`.
pub fn verdict(windows: &[Window], now: DateTime<Utc>) -> Verdict {
    if let Some(w) = windows
        .iter()
        .find(|w| w.kind == WindowKind::Deny && open_until(w, now).is_some())
    {
        return Verdict::Closed(format!(
            "a deny window ({}, {}) is open",
            w.schedule.source(),
            w.timezone
        ));
    }
    let allows: Vec<&Window> = windows
        .iter()
        .filter(|w| w.kind == WindowKind::Allow)
        .collect();
    if allows.is_empty() || allows.iter().any(|w| open_until(w, now).is_some()) {
        Verdict::Allowed
    } else {
        Verdict::Closed("outside every allow window".to_string())
    }
}

/// Splits `regions` into those where apply may run now and those where a window forbids it
/// (with the reason).
pub fn split_by_windows(
    regions: &[String],
    windows: &BTreeMap<String, Vec<Window>>,
    now: DateTime<Utc>,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut open = Vec::new();
    let mut closed = Vec::new();
    for r in regions {
        match verdict(windows.get(r).map_or(&[][..], Vec::as_slice), now) {
            Verdict::Allowed => open.push(r.clone()),
            Verdict::Closed(why) => closed.push((r.clone(), why)),
        }
    }
    (open, closed)
}

/// The next time, strictly after `now`, that any window opens or closes.
pub fn next_window_change(
    windows: &BTreeMap<String, Vec<Window>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    windows
        .values()
        .flatten()
        .flat_map(|w| {
            let opens = w
                .schedule
                .after(&now.with_timezone(&w.timezone))
                .next()
                .map(|t| t.with_timezone(&Utc));
            [opens, open_until(w, now)]
        })
        .flatten()
        .filter(|t| *t > now)
        .min()
}

/// The resync schedule's next fire strictly after `now`.
pub fn next_resync(schedule: &cron::Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.after(&now).next()
}

/// A small seeded generator (SplitMix64) for jitter: the same seed gives the same pauses,
/// so tests are exact; the daemon seeds it from the process's random keys.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    /// The next fraction in `0.0..1.0`.
    pub fn next_fraction(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The pause before the next poll: `interval`, varied by up to [`POLL_JITTER`] either way so
/// that daemons started together do not poll together.
pub fn poll_delay(interval: Duration, jitter: f64) -> Duration {
    interval.mul_f64(1.0 + POLL_JITTER * (2.0 * jitter.clamp(0.0, 1.0) - 1.0))
}

/// The pause before retry number `attempt` (1 for the first) after a transient failure:
/// `FIRST_BACKOFF * 2^(attempt-1)`, at most [`MAX_BACKOFF`], scaled by 0.5 to 1.0 from
/// `jitter`.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let base = FIRST_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// How a reconcile ended, as far as the next wake-up is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every region converged or has changes pending (plan mode, or a closed window).
    Fine,
    /// Something may go away by itself: retry with backoff.
    Transient,
    /// A human must act (blocked findings, a failing target, an invalid commit): wait for a
    /// new commit; the resync still runs, for drift.
    NeedsHuman,
}

/// Reduces an outcome to [`Ended`]: a transient failure anywhere means a retry (the other
/// regions just converge again), else anything for a human means waiting.
pub fn ended(outcome: Result<&RunOutcome, ErrorKind>) -> Ended {
    let kinds: Vec<ErrorKind> = match outcome {
        Err(kind) => vec![kind],
        Ok(o) => o
            .regions
            .iter()
            .filter_map(|(_, s)| match s {
                RegionStatus::Failed { kind, .. } => Some(*kind),
                RegionStatus::Blocked(_) => Some(ErrorKind::NeedsHuman),
                RegionStatus::Converged | RegionStatus::ChangesPending(_) => None,
            })
            .chain(o.refused.as_ref().map(|(k, _)| *k))
            .collect(),
    };
    if kinds.contains(&ErrorKind::Transient) {
        Ended::Transient
    } else if kinds.is_empty() {
        Ended::Fine
    } else {
        Ended::NeedsHuman
    }
}

/// Why the loop wakes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Fetch the source; reconcile only when the commit is new.
    Poll,
    /// Reconcile the same commit again after a transient failure.
    Retry,
    /// The resync schedule fired: a full reconcile, for drift.
    Resync,
    /// A maintenance window opened or closed: reconcile with the new verdicts.
    Window,
}

/// The timers the loop keeps, all wall-clock times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    pub poll: DateTime<Utc>,
    pub retry: Option<DateTime<Utc>>,
    pub resync: Option<DateTime<Utc>>,
    pub window: Option<DateTime<Utc>>,
}

impl Timers {
    /// The earliest timer and its reason (on a tie, a retry or resync before a poll).
    pub fn earliest(&self) -> (DateTime<Utc>, Wake) {
        [
            self.retry.map(|t| (t, Wake::Retry)),
            self.resync.map(|t| (t, Wake::Resync)),
            self.window.map(|t| (t, Wake::Window)),
            Some((self.poll, Wake::Poll)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(t, _)| *t)
        .expect("the poll timer is always set")
    }
}

/// What the timers are after a reconcile that ended as `ended`, at `now`: the poll always
/// runs (a new commit is how a human fixes things); a transient failure adds a retry after
/// `backoff`; the resync and the windows keep their schedules whatever happened.
pub fn after_reconcile(
    ended: Ended,
    now: DateTime<Utc>,
    poll: Duration,
    backoff: Duration,
    resync: Option<DateTime<Utc>>,
    window: Option<DateTime<Utc>>,
) -> Timers {
    let at = |d: Duration| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    Timers {
        poll: at(poll),
        retry: (ended == Ended::Transient).then(|| at(backoff)),
        resync,
        window,
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
