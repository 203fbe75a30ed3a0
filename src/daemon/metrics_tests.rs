//! Tests of the metrics observer: the loop's calls, fed by hand, and the encoded text parsed
//! back with a Prometheus text parser.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};

use super::*;
use crate::daemon::testing::{at, outcome, region_plan};
use crate::reconcile::{ErrorKind, RegionStatus};

fn scrape(handle: &MetricsHandle) -> Scrape {
    let text = handle.prometheus_text();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text parses")
}

fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn number(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels).map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

fn observer_at(now: u64) -> (MetricsObserver, MetricsHandle) {
    MetricsObserver::new(at(0), Arc::new(move || at(now)))
}

#[test]
fn reconciles_count_per_region_and_outcome() {
    let (metrics, handle) = observer_at(100);
    let run = outcome(vec![
        (region_plan("eu", 0, 0, true), RegionStatus::Converged),
        (
            region_plan("us", 2, 1, true),
            RegionStatus::Blocked(vec!["b0".into()]),
        ),
        (
            region_plan("ap", 1, 0, false),
            RegionStatus::Failed {
                kind: ErrorKind::Transient,
                message: "connection refused".into(),
            },
        ),
    ]);
    let reconciled = Reconciled {
        commit: "abc1234def",
        trigger: Trigger::Resync,
        finished: at(50),
        took: Duration::from_millis(750),
        applying: true,
        windows_closed: &[],
        outcome: Ok(&run),
    };
    metrics.reconciled(&reconciled);
    metrics.reconciled(&reconciled);
    let s = scrape(&handle);
    let eu = [("region", "eu"), ("outcome", "converged")];
    assert_eq!(number(&s, "neo_reconcile_reconcile_runs_total", &eu), 2.0);
    let us = [("region", "us"), ("outcome", "blocked")];
    assert_eq!(number(&s, "neo_reconcile_reconcile_runs_total", &us), 2.0);
    let ap = [("region", "ap"), ("kind", "transient")];
    assert_eq!(
        number(&s, "neo_reconcile_reconcile_failures_total", &ap),
        2.0
    );
    let eu_only = [("region", "eu")];
    let last = "neo_reconcile_reconcile_last_success_timestamp_seconds";
    assert_eq!(number(&s, last, &eu_only), 50.0);
    assert!(find(&s, last, &[("region", "us")]).is_none());
    assert_eq!(
        number(&s, "neo_reconcile_pending_changes", &[("region", "us")]),
        2.0
    );
    assert_eq!(
        number(&s, "neo_reconcile_blocked_targets", &[("region", "us")]),
        1.0
    );
    assert_eq!(
        number(&s, "neo_reconcile_drift_changes", &[("region", "us")]),
        2.0
    );
    assert_eq!(number(&s, "neo_reconcile_ready", &[]), 1.0);

    let histogram = find(&s, "neo_reconcile_reconcile_duration_seconds", &eu).unwrap();
    let Value::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {histogram:?}");
    };
    let le_1 = buckets.iter().find(|b| b.less_than == 1.0).unwrap();
    let le_05 = buckets.iter().find(|b| b.less_than == 0.5).unwrap();
    assert_eq!((le_05.count, le_1.count), (0.0, 2.0));
    let count = find(&s, "neo_reconcile_reconcile_duration_seconds_count", &eu);
    // The parser folds _count and _sum into the histogram; either way there are two runs.
    if let Some(count) = count {
        assert!(matches!(count.value, Value::Untyped(c) | Value::Counter(c) if c == 2.0));
    }
}

#[test]
fn no_commit_or_tenant_label_on_counters() {
    let (metrics, handle) = observer_at(0);
    let run = outcome(vec![(
        region_plan("eu", 1, 0, true),
        RegionStatus::ChangesPending(1),
    )]);
    metrics.loaded(
        at(1),
        &Loaded::Valid {
            sha: "abc1234def".into(),
        },
    );
    metrics.reconciled(&Reconciled {
        commit: "abc1234def",
        trigger: Trigger::Start,
        finished: at(2),
        took: Duration::from_secs(1),
        applying: false,
        windows_closed: &[],
        outcome: Ok(&run),
    });
    metrics.reloaded(Ok(()));
    metrics.fetched(
        at(3),
        &Fetched::Failed {
            message: "x".into(),
        },
    );
    let s = scrape(&handle);
    let allowed = ["region", "outcome", "kind", "result", "le"];
    for sample in &s.samples {
        for (label, _) in sample.labels.iter() {
            if sample.metric.ends_with("_info") {
                continue;
            }
            assert!(
                allowed.contains(&label.as_str()),
                "{} has label {label}",
                sample.metric
            );
        }
    }
    let commit = [("commit", "abc1234def")];
    assert_eq!(number(&s, "neo_reconcile_commit_info", &commit), 1.0);
}

#[test]
fn source_commits_and_staleness() {
    let (metrics, handle) = observer_at(1_000);
    let s = scrape(&handle);
    assert_eq!(
        number(&s, "neo_reconcile_source_staleness_seconds", &[]),
        1_000.0
    );

    metrics.fetched(
        at(900),
        &Fetched::Commit {
            sha: "aaa".into(),
            new: true,
        },
    );
    metrics.loaded(at(900), &Loaded::Valid { sha: "aaa".into() });
    metrics.fetched(
        at(950),
        &Fetched::Failed {
            message: "timeout".into(),
        },
    );
    metrics.fetched(
        at(960),
        &Fetched::Rewound {
            from: "aaa".into(),
            to: "zzz".into(),
        },
    );
    metrics.fetched(
        at(970),
        &Fetched::Commit {
            sha: "bbb".into(),
            new: true,
        },
    );
    metrics.loaded(
        at(970),
        &Loaded::Invalid {
            sha: "bbb".into(),
            problems: vec!["p".into()],
        },
    );
    let s = scrape(&handle);
    assert_eq!(
        number(&s, "neo_reconcile_source_staleness_seconds", &[]),
        30.0
    );
    let ts = "neo_reconcile_source_last_fetch_success_timestamp_seconds";
    assert_eq!(number(&s, ts, &[]), 970.0);
    assert_eq!(
        number(&s, "neo_reconcile_source_fetch_failures_total", &[]),
        1.0
    );
    assert_eq!(number(&s, "neo_reconcile_source_rewinds_total", &[]), 1.0);
    assert_eq!(number(&s, "neo_reconcile_invalid_commits_total", &[]), 1.0);
    assert_eq!(
        number(&s, "neo_reconcile_commit_info", &[("commit", "aaa")]),
        1.0
    );
    assert_eq!(
        number(
            &s,
            "neo_reconcile_invalid_commit_info",
            &[("commit", "bbb")]
        ),
        1.0
    );

    // A new good commit replaces both series.
    metrics.loaded(at(980), &Loaded::Valid { sha: "ccc".into() });
    let s = scrape(&handle);
    assert!(find(&s, "neo_reconcile_commit_info", &[("commit", "aaa")]).is_none());
    assert!(find(&s, "neo_reconcile_invalid_commit_info", &[]).is_none());
    assert_eq!(
        number(&s, "neo_reconcile_commit_info", &[("commit", "ccc")]),
        1.0
    );
}

#[test]
fn vault_reloads_ticks_and_start_failures() {
    let (metrics, handle) = observer_at(0);
    metrics.tick(at(42));
    metrics.vault_ttls(
        Some(Duration::from_secs(3600)),
        &[
            ("eu".into(), Duration::from_secs(90)),
            ("us".into(), Duration::from_secs(30)),
        ],
    );
    metrics.reloaded(Ok(()));
    metrics.reloaded(Err("bad"));
    metrics.reconciled(&Reconciled {
        commit: "abc",
        trigger: Trigger::Start,
        finished: at(43),
        took: Duration::ZERO,
        applying: false,
        windows_closed: &[],
        outcome: Err("unknown region"),
    });
    let s = scrape(&handle);
    let values: HashMap<&str, f64> = [
        "neo_reconcile_loop_last_tick_timestamp_seconds",
        "neo_reconcile_vault_token_ttl_seconds",
        "neo_reconcile_vault_lease_min_ttl_seconds",
        "neo_reconcile_vault_leases",
        "neo_reconcile_config_last_reload_successful",
        "neo_reconcile_reconcile_start_failures_total",
    ]
    .into_iter()
    .map(|n| (n, number(&s, n, &[])))
    .collect();
    assert_eq!(
        values["neo_reconcile_loop_last_tick_timestamp_seconds"],
        42.0
    );
    assert_eq!(values["neo_reconcile_vault_token_ttl_seconds"], 3600.0);
    assert_eq!(values["neo_reconcile_vault_lease_min_ttl_seconds"], 30.0);
    assert_eq!(values["neo_reconcile_vault_leases"], 2.0);
    assert_eq!(values["neo_reconcile_config_last_reload_successful"], 0.0);
    assert_eq!(values["neo_reconcile_reconcile_start_failures_total"], 1.0);
    let ok = [("result", "success")];
    assert_eq!(number(&s, "neo_reconcile_config_reloads_total", &ok), 1.0);
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(number(&s, "neo_reconcile_build_info", &version), 1.0);
}

#[test]
fn openmetrics_text_ends_with_eof() {
    let (_, handle) = observer_at(0);
    assert!(handle.openmetrics_text().ends_with("# EOF\n"));
    assert!(handle
        .prometheus_text()
        .contains("# TYPE neo_reconcile_ready gauge"));
}
