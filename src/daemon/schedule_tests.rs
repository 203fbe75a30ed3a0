//! Table-driven tests of the daemon's time decisions, through one `check` whose expectation
//! is the decision rendered as text.

use super::*;
use crate::daemon::config::parse_cron;

/// One question asked of the decisions.
enum Case<'a> {
    /// Windows (`kind schedule duration timezone`, `;`-separated) at a UTC time: the verdict
    /// and the next change.
    Windows(&'a str, &'a str),
    /// The resync schedule's next fire after a UTC time.
    Resync(&'a str, &'a str),
    /// The backoff before an attempt, with a jitter fraction.
    Backoff(u32, f64),
    /// The poll delay for an interval in seconds, with a jitter fraction.
    Poll(u64, f64),
    /// The next wake-up after a reconcile that ended so, at a time, with a resync and a window
    /// change at given times (or none).
    Wake(Ended, &'a str, Option<&'a str>, Option<&'a str>),
    /// How an outcome with these region statuses (and a refusal of this kind) ended.
    Ended(Vec<RegionStatus>, Option<ErrorKind>),
}

fn outcome(regions: &[RegionStatus], refused: Option<ErrorKind>) -> RunOutcome {
    RunOutcome {
        plan: crate::plan::Plan {
            format_version: 1,
            desired: crate::plan::DesiredRef {
                digest: String::new(),
                commit: None,
            },
            selection: Default::default(),
            regions: Vec::new(),
            summary: Default::default(),
        },
        plan_text: None,
        refused: refused.map(|k| (k, vec!["why".to_string()])),
        report: None,
        regions: regions
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("r{i}"), s.clone()))
            .collect(),
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn windows(spec: &str) -> Vec<Window> {
    spec.split(';')
        .filter(|w| !w.trim().is_empty())
        .map(|w| {
            let f: Vec<&str> = w.split('|').map(str::trim).collect();
            Window {
                kind: if f[0] == "allow" {
                    WindowKind::Allow
                } else {
                    WindowKind::Deny
                },
                schedule: parse_cron(f[1]).unwrap(),
                duration: crate::desired::parse_duration(f[2]).unwrap(),
                timezone: f[3].parse().unwrap(),
            }
        })
        .collect()
}

fn render(case: &Case<'_>) -> String {
    let t = |d: Option<DateTime<Utc>>| d.map_or("never".to_string(), |d| d.to_rfc3339());
    match case {
        Case::Windows(spec, now) => {
            let map = BTreeMap::from([("eu".to_string(), windows(spec))]);
            let v = verdict(&map["eu"], utc(now));
            format!(
                "{}; next change {}",
                match v {
                    Verdict::Allowed => "allowed".to_string(),
                    Verdict::Closed(why) => format!("closed: {why}"),
                },
                t(next_window_change(&map, utc(now)))
            )
        }
        Case::Resync(expr, now) => t(next_resync(&parse_cron(expr).unwrap(), utc(now))),
        Case::Backoff(attempt, j) => format!("{:?}", backoff(*attempt, *j)),
        Case::Poll(secs, j) => format!("{:?}", poll_delay(Duration::from_secs(*secs), *j)),
        Case::Wake(ended, now, resync, window) => {
            let timers = after_reconcile(
                *ended,
                utc(now),
                Duration::from_secs(60),
                Duration::from_secs(5),
                resync.map(utc),
                window.map(utc),
            );
            let (at, why) = timers.earliest();
            format!("{why:?} at {}; retry {}", at.to_rfc3339(), t(timers.retry))
        }
        Case::Ended(regions, refused) => format!("{:?}", ended(Ok(&outcome(regions, *refused)))),
    }
}

fn check(case: Case<'_>, expect: &str) {
    assert_eq!(render(&case), expect);
}

#[test]
fn maintenance_windows_follow_argo_cd() {
    use Case::Windows as W;
    let nights = "allow | 0 22 * * * | 4h | UTC";
    // No window: always allowed, nothing ever changes.
    check(W("", "2026-12-03T10:00:00Z"), "allowed; next change never");
    // An allow window: only inside it; the window's end is exclusive.
    check(
        W(nights, "2026-12-03T10:00:00Z"),
        "closed: outside every allow window; next change 2026-12-03T22:00:00+00:00",
    );
    check(
        W(nights, "2026-12-03T22:00:00Z"),
        "allowed; next change 2026-12-04T02:00:00+00:00",
    );
    check(
        W(nights, "2026-12-04T01:59:59Z"),
        "allowed; next change 2026-12-04T02:00:00+00:00",
    );
    check(
        W(nights, "2026-12-04T02:00:00Z"),
        "closed: outside every allow window; next change 2026-12-04T22:00:00+00:00",
    );
    // A deny window wins over an open allow window.
    let both = "allow | 0 22 * * * | 4h | UTC; deny | 0 23 * * * | 30min | UTC";
    check(
        W(both, "2026-12-03T23:10:00Z"),
        "closed: a deny window (0 0 23 * * *, UTC) is open; next change 2026-12-03T23:30:00+00:00",
    );
    check(
        W(both, "2026-12-03T23:30:00Z"),
        "allowed; next change 2026-12-04T02:00:00+00:00",
    );
    // Only deny windows: allowed outside them.
    check(
        W("deny | 0 9 * * Mon-Fri | 8h | UTC", "2026-12-05T10:00:00Z"),
        "allowed; next change 2026-12-07T09:00:00+00:00",
    );
    // Time zones: 22:00 in Paris is 21:00 UTC in winter.
    check(
        W(
            "allow | 0 22 * * * | 1h | Europe/Paris",
            "2026-12-03T21:30:00Z",
        ),
        "allowed; next change 2026-12-03T22:00:00+00:00",
    );
}

#[test]
fn resync_backoff_poll_and_wakeups() {
    check(
        Case::Resync("*/15 * * * *", "2026-12-03T10:07:12Z"),
        "2026-12-03T10:15:00+00:00",
    );
    check(
        Case::Resync("0 3 * * Sun", "2026-12-03T10:00:00Z"),
        "2026-12-06T03:00:00+00:00",
    );
    check(Case::Backoff(1, 0.0), "2.5s");
    check(Case::Backoff(1, 1.0), "5s");
    check(Case::Backoff(3, 1.0), "20s");
    check(Case::Backoff(30, 1.0), "300s");
    check(Case::Poll(60, 0.5), "60s");
    check(Case::Poll(60, 0.0), "54s");
    check(Case::Poll(60, 1.0), "66s");
    let now = "2026-12-03T10:00:00Z";
    // Fine: the next poll, unless the resync or a window comes first.
    check(
        Case::Wake(Ended::Fine, now, None, None),
        "Poll at 2026-12-03T10:01:00+00:00; retry never",
    );
    check(
        Case::Wake(Ended::Fine, now, Some("2026-12-03T10:00:30Z"), None),
        "Resync at 2026-12-03T10:00:30+00:00; retry never",
    );
    check(
        Case::Wake(Ended::Fine, now, None, Some("2026-12-03T10:00:10Z")),
        "Window at 2026-12-03T10:00:10+00:00; retry never",
    );
    // Transient: a retry after the backoff.
    check(
        Case::Wake(Ended::Transient, now, Some("2026-12-03T11:00:00Z"), None),
        "Retry at 2026-12-03T10:00:05+00:00; retry 2026-12-03T10:00:05+00:00",
    );
    // Needs a human: no retry; the poll (for a new commit) and the resync (for drift) go on.
    check(
        Case::Wake(Ended::NeedsHuman, now, Some("2026-12-03T10:00:40Z"), None),
        "Resync at 2026-12-03T10:00:40+00:00; retry never",
    );
    check(
        Case::Wake(Ended::NeedsHuman, now, None, None),
        "Poll at 2026-12-03T10:01:00+00:00; retry never",
    );
}

#[test]
fn outcomes_reduce_to_how_the_next_wakeup_is_chosen() {
    use RegionStatus::*;
    let failed = |kind| Failed {
        kind,
        message: "x".into(),
    };
    check(
        Case::Ended(vec![Converged, ChangesPending(3)], None),
        "Fine",
    );
    check(
        Case::Ended(vec![Converged, Blocked(vec!["b".into()])], None),
        "NeedsHuman",
    );
    check(
        Case::Ended(vec![failed(ErrorKind::Target)], None),
        "NeedsHuman",
    );
    check(
        Case::Ended(
            vec![failed(ErrorKind::Target), failed(ErrorKind::Transient)],
            None,
        ),
        "Transient",
    );
    check(
        Case::Ended(vec![Converged], Some(ErrorKind::Transient)),
        "Transient",
    );
    check(
        Case::Ended(vec![Converged], Some(ErrorKind::NeedsHuman)),
        "NeedsHuman",
    );
    check(Case::Ended(vec![], None), "Fine");
}

#[test]
fn jitter_is_seeded_and_in_range() {
    let mut a = Jitter::new(7);
    let mut b = Jitter::new(7);
    for _ in 0..1000 {
        let x = a.next_fraction();
        assert_eq!(x, b.next_fraction());
        assert!((0.0..1.0).contains(&x));
    }
}
