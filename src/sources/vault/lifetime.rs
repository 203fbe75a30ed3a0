//! When to renew a lease (or a Vault token) and when to replace it: a pure function of data.
//!
//! [`next`] looks at what is known of one lifetime (when the current grant began, how long it
//! is, whether it can be renewed, whether Vault granted less than asked: the max TTL is near),
//! the time now, a jitter fraction and the last error, and says what to do and when. It reads
//! no clock and draws no random number: times are offsets from any fixed origin, chosen by
//! the caller (the lease keeper uses its own start), and the jitter is passed in.
//!
//! The timing follows Vault's own `LifetimeWatcher`, which works in practice:
//! - renew after about two thirds of the remaining lease (60-70%, by the jitter);
//! - the last 10-20% of the lease (by the jitter, at least 2 s) is a grace period: once in it, or when the
//!   lease cannot be extended (not renewable, renewal refused, max TTL near), new credentials
//!   are fetched and swapped in before the old ones expire;
//! - a renewal (or replacement) that failed for a transient reason is tried again after a
//!   backoff from 2 seconds doubling up to 3 minutes, never later than the grace period.

use std::fmt;
use std::time::Duration;

/// The shortest pause before trying again after a transient error.
pub const BACKOFF_MIN: Duration = Duration::from_secs(2);
/// The longest pause before trying again after a transient error.
pub const BACKOFF_MAX: Duration = Duration::from_secs(180);

/// What is known of one lease or token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// When the current grant began (issued or last renewed).
    pub granted_at: Duration,
    /// How long the current grant is.
    pub granted: Duration,
    /// The first grant's duration: renewals ask for this much, and the grace period is a
    /// fraction of it.
    pub basis: Duration,
    /// Whether Vault lets it be renewed.
    pub renewable: bool,
}

impl Lifetime {
    /// A fresh grant of `duration` at `now`.
    pub fn new(now: Duration, duration: Duration, renewable: bool) -> Lifetime {
        Lifetime {
            granted_at: now,
            granted: duration,
            basis: duration,
            renewable,
        }
    }

    /// After a renewal at `now` that granted `duration` (keeps the basis).
    pub fn renewed(self, now: Duration, duration: Duration, renewable: bool) -> Lifetime {
        Lifetime {
            granted_at: now,
            granted: duration,
            renewable,
            ..self
        }
    }

    /// When the current grant ends.
    pub fn expires_at(&self) -> Duration {
        self.granted_at + self.granted
    }

    /// Vault granted less than a renewal asks for: the max TTL is near, so renewing cannot
    /// carry it much further.
    pub fn capped(&self) -> bool {
        self.granted < self.basis
    }
}

/// How the last attempt (renewal or replacement) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastError {
    /// No error since the last grant.
    None,
    /// Vault refused the renewal (4xx): it will not be renewed; replace it.
    Refused,
    /// A transient error (unreachable, 5xx, 429), `n` times in a row.
    Transient(u32),
}

/// What to do next, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Ask Vault to extend it at `at`.
    Renew { at: Duration },
    /// Fetch new credentials (or log in again) at `at`, and swap them in.
    Replace { at: Duration, why: Why },
}

/// Why a lifetime must be replaced rather than renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    NotRenewable,
    Refused,
    MaxTtl,
    Grace,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Why::NotRenewable => "it is not renewable",
            Why::Refused => "Vault refused to renew it",
            Why::MaxTtl => "its max TTL is near",
            Why::Grace => "it is in its last grace period",
        })
    }
}

impl Next {
    /// When the action is due.
    pub fn at(&self) -> Duration {
        match self {
            Next::Renew { at } | Next::Replace { at, .. } => *at,
        }
    }
}

/// The shortest grace period (for leases shorter than 20 s, at most half of them): the time
/// connections on the old login have to finish their transaction once the new one is out.
pub const GRACE_MIN: Duration = Duration::from_secs(2);

/// The grace period at the end of a lifetime: 10% to 20% of its basis, by `jitter` (0..=1),
/// at least [`GRACE_MIN`] or half the basis, never more than the current grant.
pub fn grace(l: &Lifetime, jitter: f64) -> Duration {
    l.basis
        .mul_f64(0.10 + 0.10 * jitter.clamp(0.0, 1.0))
        .max(GRACE_MIN.min(l.basis / 2))
        .min(l.granted)
}

/// The pause after `n` transient errors in a row: 2 s doubling, at most 3 minutes, less up
/// to a quarter by `jitter` so that many processes do not retry in step.
pub fn backoff(n: u32, jitter: f64) -> Duration {
    let doubled = BACKOFF_MIN.saturating_mul(1u32 << n.saturating_sub(1).min(16));
    doubled
        .min(BACKOFF_MAX)
        .mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

/// What to do next with `l`, given the time `now`, a jitter fraction (0..=1, drawn once per
/// grant by the caller) and how the last attempt went.
pub fn next(l: &Lifetime, now: Duration, jitter: f64, last: LastError) -> Next {
    let expires = l.expires_at();
    let grace_start = expires.saturating_sub(grace(l, jitter));
    let replace_from = |why| Next::Replace {
        at: grace_start.max(now),
        why,
    };
    let must_replace = if !l.renewable {
        Some(Why::NotRenewable)
    } else if last == LastError::Refused {
        Some(Why::Refused)
    } else if l.capped() {
        Some(Why::MaxTtl)
    } else if now >= grace_start {
        Some(Why::Grace)
    } else {
        None
    };
    match (must_replace, last) {
        // A replacement that failed transiently is tried again after a backoff.
        (Some(why), LastError::Transient(n)) if now >= grace_start => Next::Replace {
            at: now + backoff(n, jitter),
            why,
        },
        (Some(Why::Refused), _) => Next::Replace {
            at: now,
            why: Why::Refused,
        },
        (Some(why), _) => replace_from(why),
        (None, LastError::Transient(n)) => {
            let at = now + backoff(n, jitter);
            if at >= grace_start {
                replace_from(Why::Grace)
            } else {
                Next::Renew { at }
            }
        }
        (None, _) => {
            let remaining = expires - now;
            let at = now + remaining.mul_f64(0.60 + 0.10 * jitter.clamp(0.0, 1.0));
            // Late (after errors, or a long pause): renew before the grace period begins.
            let at = if at >= grace_start {
                now + (grace_start - now) / 2
            } else {
                at
            };
            Next::Renew { at }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    /// Renders `next` for each `(now, jitter, last)` against `l`, one line each.
    fn check(l: Lifetime, cases: &[(f64, f64, LastError)], expected: Expect) {
        let mut out = format!(
            "granted {}s at {}s (basis {}s, renewable {}), expires at {}s\n",
            l.granted.as_secs_f64(),
            l.granted_at.as_secs_f64(),
            l.basis.as_secs_f64(),
            l.renewable,
            l.expires_at().as_secs_f64()
        );
        for &(now, jitter, last) in cases {
            let line = match next(&l, s(now), jitter, last) {
                Next::Renew { at } => format!("renew at {:.1}s", at.as_secs_f64()),
                Next::Replace { at, why } => {
                    format!("replace at {:.1}s: {why}", at.as_secs_f64())
                }
            };
            out += &format!("now {now}s jitter {jitter} {last:?}: {line}\n");
        }
        expected.assert_eq(&out);
    }

    #[test]
    fn a_fresh_lease_is_renewed_at_about_two_thirds() {
        check(
            Lifetime::new(s(0.0), s(300.0), true),
            &[
                (0.0, 0.0, LastError::None),
                (0.0, 0.5, LastError::None),
                (0.0, 1.0, LastError::None),
                (100.0, 0.0, LastError::None),
            ],
            expect![[r#"
                granted 300s at 0s (basis 300s, renewable true), expires at 300s
                now 0s jitter 0 None: renew at 180.0s
                now 0s jitter 0.5 None: renew at 195.0s
                now 0s jitter 1 None: renew at 210.0s
                now 100s jitter 0 None: renew at 220.0s
            "#]],
        );
    }

    #[test]
    fn in_the_grace_period_or_when_it_cannot_be_renewed_it_is_replaced() {
        check(
            Lifetime::new(s(0.0), s(300.0), true),
            &[
                (275.0, 0.0, LastError::None),
                (260.0, 0.0, LastError::None),
                (250.0, 1.0, LastError::None),
                (230.0, 1.0, LastError::None),
                (10.0, 0.0, LastError::Refused),
                (299.0, 0.0, LastError::Refused),
            ],
            expect![[r#"
                granted 300s at 0s (basis 300s, renewable true), expires at 300s
                now 275s jitter 0 None: replace at 275.0s: it is in its last grace period
                now 260s jitter 0 None: renew at 265.0s
                now 250s jitter 1 None: replace at 250.0s: it is in its last grace period
                now 230s jitter 1 None: renew at 235.0s
                now 10s jitter 0 Refused: replace at 10.0s: Vault refused to renew it
                now 299s jitter 0 Refused: replace at 299.0s: Vault refused to renew it
            "#]],
        );
        check(
            Lifetime::new(s(0.0), s(60.0), false),
            &[(0.0, 0.0, LastError::None), (0.0, 1.0, LastError::None)],
            expect![[r#"
                granted 60s at 0s (basis 60s, renewable false), expires at 60s
                now 0s jitter 0 None: replace at 54.0s: it is not renewable
                now 0s jitter 1 None: replace at 48.0s: it is not renewable
            "#]],
        );
    }

    #[test]
    fn a_renewal_capped_by_the_max_ttl_leads_to_a_replacement_before_it_ends() {
        let l = Lifetime::new(s(0.0), s(300.0), true).renewed(s(200.0), s(120.0), true);
        check(
            l,
            &[(200.0, 0.0, LastError::None), (200.0, 1.0, LastError::None)],
            expect![[r#"
                granted 120s at 200s (basis 300s, renewable true), expires at 320s
                now 200s jitter 0 None: replace at 290.0s: its max TTL is near
                now 200s jitter 1 None: replace at 260.0s: its max TTL is near
            "#]],
        );
        // A grant shorter than the grace period: replace at once.
        let l = Lifetime::new(s(0.0), s(300.0), true).renewed(s(200.0), s(5.0), true);
        check(
            l,
            &[(200.0, 0.0, LastError::None)],
            expect![[r#"
                granted 5s at 200s (basis 300s, renewable true), expires at 205s
                now 200s jitter 0 None: replace at 200.0s: its max TTL is near
            "#]],
        );
        // The same renewal, granted in full: renewed again.
        let l = Lifetime::new(s(0.0), s(300.0), true).renewed(s(200.0), s(300.0), true);
        check(
            l,
            &[(200.0, 0.0, LastError::None)],
            expect![[r#"
                granted 300s at 200s (basis 300s, renewable true), expires at 500s
                now 200s jitter 0 None: renew at 380.0s
            "#]],
        );
    }

    #[test]
    fn a_short_lease_keeps_a_grace_period_of_two_seconds_or_half_of_it() {
        check(
            Lifetime::new(s(0.0), s(4.0), true).renewed(s(2.6), s(3.8), true),
            &[(2.6, 0.0, LastError::None)],
            expect![[r#"
                granted 3.8s at 2.6s (basis 4s, renewable true), expires at 6.4s
                now 2.6s jitter 0 None: replace at 4.4s: its max TTL is near
            "#]],
        );
        check(
            Lifetime::new(s(0.0), s(2.0), false),
            &[(0.0, 0.0, LastError::None)],
            expect![[r#"
                granted 2s at 0s (basis 2s, renewable false), expires at 2s
                now 0s jitter 0 None: replace at 1.0s: it is not renewable
            "#]],
        );
    }

    #[test]
    fn transient_errors_back_off_from_seconds_to_minutes_but_not_past_the_grace_period() {
        check(
            Lifetime::new(s(0.0), s(3600.0), true),
            &[
                (2400.0, 0.0, LastError::Transient(1)),
                (2400.0, 0.0, LastError::Transient(2)),
                (2400.0, 1.0, LastError::Transient(2)),
                (2400.0, 0.0, LastError::Transient(5)),
                (2400.0, 0.0, LastError::Transient(8)),
                (2400.0, 0.0, LastError::Transient(40)),
                (3200.0, 0.0, LastError::Transient(8)),
                (3300.0, 0.0, LastError::Transient(1)),
            ],
            expect![[r#"
                granted 3600s at 0s (basis 3600s, renewable true), expires at 3600s
                now 2400s jitter 0 Transient(1): renew at 2402.0s
                now 2400s jitter 0 Transient(2): renew at 2404.0s
                now 2400s jitter 1 Transient(2): renew at 2403.0s
                now 2400s jitter 0 Transient(5): renew at 2432.0s
                now 2400s jitter 0 Transient(8): renew at 2580.0s
                now 2400s jitter 0 Transient(40): renew at 2580.0s
                now 3200s jitter 0 Transient(8): replace at 3240.0s: it is in its last grace period
                now 3300s jitter 0 Transient(1): replace at 3302.0s: it is in its last grace period
            "#]],
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let steps: Vec<u64> = (1..=10).map(|n| backoff(n, 0.0).as_secs()).collect();
        assert_eq!(steps, [2, 4, 8, 16, 32, 64, 128, 180, 180, 180]);
        assert_eq!(backoff(0, 0.0), BACKOFF_MIN);
    }
}
