//! Tests of the status observer: the loop's calls, fed by hand, and the `/status` JSON.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::daemon::testing::{at, outcome, region_plan};

fn reconciled<'a>(
    commit: &'a str,
    trigger: Trigger,
    finished: u64,
    outcome: Result<&'a RunOutcome, &'a str>,
    windows_closed: &'a [String],
) -> Reconciled<'a> {
    Reconciled {
        commit,
        trigger,
        finished: at(finished),
        took: Duration::from_millis(1500),
        applying: true,
        windows_closed,
        outcome,
    }
}

#[test]
fn not_ready_until_the_first_reconcile() {
    let status = StatusObserver::new(at(1_000));
    let handle = status.handle();
    assert!(!handle.ready());
    assert_eq!(handle.last_alive(), Some(at(1_000)));
    status.tick(at(1_010));
    assert_eq!(handle.last_alive(), Some(at(1_010)));
    assert!(!handle.ready());
    let run = outcome(vec![(
        region_plan("eu", 0, 0, true),
        RegionStatus::Converged,
    )]);
    status.reconciled(&reconciled(
        "abc1234def",
        Trigger::Start,
        1_020,
        Ok(&run),
        &[],
    ));
    assert!(handle.ready());
}

#[test]
fn regions_carry_outcome_kind_pending_and_last_success() {
    let status = StatusObserver::new(at(1_000));
    let run = outcome(vec![
        (region_plan("eu", 0, 0, true), RegionStatus::Converged),
        (
            region_plan("us", 3, 0, true),
            RegionStatus::ChangesPending(3),
        ),
        (
            region_plan("ap", 1, 2, true),
            RegionStatus::Blocked(vec!["b0".into(), "b1".into()]),
        ),
        (
            region_plan("sa", 2, 0, false),
            RegionStatus::Failed {
                kind: ErrorKind::Transient,
                message: "connection refused".into(),
            },
        ),
    ]);
    let closed = vec!["us".to_string()];
    status.reconciled(&reconciled(
        "abc1234def",
        Trigger::Start,
        2_000,
        Ok(&run),
        &closed,
    ));
    let doc = serde_json::to_value(status.handle().render(at(2_005))).unwrap();
    let regions = &doc["regions"];
    assert_eq!(regions["eu"]["outcome"], "converged");
    assert_eq!(regions["eu"]["last_success"], "1970-01-01T00:33:20Z");
    assert_eq!(regions["us"]["outcome"], "changes_pending");
    assert_eq!(regions["us"]["pending_changes"], 3);
    assert_eq!(regions["us"]["window_closed"], true);
    assert_eq!(regions["ap"]["outcome"], "blocked");
    assert_eq!(regions["ap"]["blocked_count"], 2);
    assert_eq!(regions["ap"]["pending_changes"], 1);
    assert_eq!(regions["ap"]["last_success"], json!(null));
    assert_eq!(regions["sa"]["outcome"], "failed");
    assert_eq!(regions["sa"]["kind"], "transient");
    assert_eq!(regions["sa"]["reachable"], false);
    assert_eq!(doc["last_reconcile"]["trigger"], "start");
    assert_eq!(doc["last_reconcile"]["took_seconds"], 1.5);
    assert_eq!(doc["last_reconcile"]["plan"]["changes"], 6);
    assert_eq!(doc["last_error"]["source"], "reconcile");
    assert_eq!(
        doc["last_error"]["message"],
        "region sa: connection refused"
    );

    // A later failure keeps the region's last success.
    let failed = outcome(vec![(
        region_plan("eu", 1, 0, true),
        RegionStatus::Failed {
            kind: ErrorKind::Target,
            message: "tenant t0: migration 4 failed".into(),
        },
    )]);
    status.reconciled(&reconciled(
        "abc1234def",
        Trigger::Retry,
        3_000,
        Ok(&failed),
        &[],
    ));
    let doc = serde_json::to_value(status.handle().render(at(3_001))).unwrap();
    assert_eq!(doc["regions"]["eu"]["outcome"], "failed");
    assert_eq!(doc["regions"]["eu"]["kind"], "target");
    assert_eq!(doc["regions"]["eu"]["last_success"], "1970-01-01T00:33:20Z");
}

#[test]
fn invalid_commit_stays_until_a_new_good_commit() {
    let status = StatusObserver::new(at(0));
    status.fetched(
        at(10),
        &Fetched::Commit {
            sha: "aaaaaaaa1".into(),
            new: true,
        },
    );
    status.loaded(
        at(11),
        &Loaded::Valid {
            sha: "aaaaaaaa1".into(),
        },
    );
    status.fetched(
        at(20),
        &Fetched::Commit {
            sha: "bbbbbbbb2".into(),
            new: true,
        },
    );
    status.loaded(
        at(21),
        &Loaded::Invalid {
            sha: "bbbbbbbb2".into(),
            problems: vec!["tenants/acme.toml:3:1: unknown key `regon`".into()],
        },
    );
    // A resync reloads the last good commit: the invalid one is still reported.
    status.loaded(
        at(30),
        &Loaded::Valid {
            sha: "aaaaaaaa1".into(),
        },
    );
    let doc = serde_json::to_value(status.handle().render(at(31))).unwrap();
    assert_eq!(doc["source"]["current_commit"], "bbbbbbbb2");
    assert_eq!(doc["source"]["last_good_commit"], "aaaaaaaa1");
    assert_eq!(doc["source"]["invalid_commit"]["commit"], "bbbbbbbb2");
    assert_eq!(
        doc["source"]["invalid_commit"]["problems"][0],
        "tenants/acme.toml:3:1: unknown key `regon`"
    );
    assert_eq!(doc["last_error"]["source"], "load");

    status.loaded(
        at(40),
        &Loaded::Valid {
            sha: "cccccccc3".into(),
        },
    );
    let doc = serde_json::to_value(status.handle().render(at(41))).unwrap();
    assert_eq!(doc["source"]["invalid_commit"], json!(null));
    assert_eq!(doc["source"]["last_good_commit"], "cccccccc3");
}

#[test]
fn staleness_counts_from_the_last_successful_fetch() {
    let status = StatusObserver::new(at(100));
    let handle = status.handle();
    let doc = handle.render(at(130));
    assert_eq!(doc.source.staleness_seconds, Some(30));
    status.fetched(
        at(200),
        &Fetched::Commit {
            sha: "a".repeat(40),
            new: true,
        },
    );
    status.fetched(
        at(260),
        &Fetched::Failed {
            message: "network unreachable".into(),
        },
    );
    status.fetched(
        at(320),
        &Fetched::Failed {
            message: "network unreachable".into(),
        },
    );
    let doc = handle.render(at(500));
    assert_eq!(doc.source.staleness_seconds, Some(300));
    assert_eq!(doc.source.fetch_failures_in_a_row, 2);
    assert_eq!(handle.last_fetch_success(), Some(at(200)));
    let error = doc.last_error.unwrap();
    assert_eq!(
        (error.source, error.message.as_str()),
        ("fetch", "network unreachable")
    );

    status.fetched(
        at(600),
        &Fetched::Rewound {
            from: "a".repeat(40),
            to: "b".repeat(40),
        },
    );
    let doc = handle.render(at(600));
    assert_eq!(doc.source.fetch_failures_in_a_row, 0);
    assert_eq!(doc.source.rewound.unwrap().to, "b".repeat(40));
    assert!(doc.last_error.unwrap().message.contains("refused"));
}

#[test]
fn wakeup_reload_vault_stopping_and_start_errors() {
    let status = StatusObserver::new(at(0));
    status.tick(at(5));
    status.next_wakeup(at(65), "poll");
    status.reloaded(Err("config.toml:4:1: unknown key `listn`"));
    status.vault_ttls(
        Some(Duration::from_secs(3600)),
        &[
            ("eu".into(), Duration::from_secs(600)),
            ("us".into(), Duration::from_secs(120)),
        ],
    );
    status.reconciled(&reconciled(
        "abc",
        Trigger::Start,
        7,
        Err("unknown region `mars`"),
        &[],
    ));
    status.stopping();
    let doc = serde_json::to_value(status.handle().render(at(10))).unwrap();
    assert_eq!(
        doc["next_wakeup"],
        json!({"at": "1970-01-01T00:01:05Z", "why": "poll"})
    );
    assert_eq!(doc["last_reload"]["ok"], false);
    assert_eq!(doc["vault"]["token_ttl_seconds"], 3600);
    assert_eq!(doc["vault"]["leases"], 2);
    assert_eq!(doc["vault"]["min_lease_ttl_seconds"], 120);
    assert_eq!(doc["last_reconcile"]["error"], "unknown region `mars`");
    assert_eq!(doc["last_error"]["message"], "unknown region `mars`");
    assert_eq!(doc["ready"], true);
    assert_eq!(doc["stopping"], true);
}

#[test]
fn drift_is_what_a_resync_found() {
    let status = StatusObserver::new(at(0));
    let drifted = outcome(vec![(
        region_plan("eu", 2, 0, true),
        RegionStatus::ChangesPending(2),
    )]);
    status.reconciled(&reconciled("abc", Trigger::Resync, 10, Ok(&drifted), &[]));
    let clean = outcome(vec![(
        region_plan("eu", 0, 0, true),
        RegionStatus::Converged,
    )]);
    status.reconciled(&reconciled("abc", Trigger::NewCommit, 20, Ok(&clean), &[]));
    let doc = status.handle().render(at(21));
    assert_eq!(doc.regions["eu"].drift_changes, Some(2));
    status.reconciled(&reconciled("abc", Trigger::Resync, 30, Ok(&clean), &[]));
    assert_eq!(
        status.handle().render(at(31)).regions["eu"].drift_changes,
        Some(0)
    );
}

#[test]
fn summary_line_counts_regions_by_outcome() {
    let run = outcome(vec![
        (region_plan("eu", 0, 0, true), RegionStatus::Converged),
        (region_plan("us", 0, 0, true), RegionStatus::Converged),
        (
            region_plan("ap", 1, 0, true),
            RegionStatus::ChangesPending(1),
        ),
    ]);
    assert_eq!(
        summary_line("abc1234def", &region_views(&run)),
        "commit abc1234: 2 regions converged, 1 region changes pending"
    );
    assert_eq!(summary_line("abc", &[]), "commit abc: no regions");
}

#[test]
fn fetch_errors_lose_url_credentials() {
    assert_eq!(
        redact_userinfo("failed to fetch https://bot:ghp_s3cret@git.example.com/a/b.git: 401"),
        "failed to fetch https://***@git.example.com/a/b.git: 401"
    );
    assert_eq!(
        redact_userinfo("ssh://git@host/x and https://host/y"),
        "ssh://***@host/x and https://host/y"
    );
    assert_eq!(redact_userinfo("no url here"), "no url here");
    let status = StatusObserver::new(at(0));
    status.fetched(
        at(1),
        &Fetched::Failed {
            message: "https://u:p@h/r: refused".into(),
        },
    );
    let doc = status.handle().render(at(2));
    assert_eq!(doc.last_error.unwrap().message, "https://***@h/r: refused");
}

#[test]
fn many_problems_are_counted_and_cut() {
    let status = StatusObserver::new(at(0));
    let problems: Vec<String> = (0..250).map(|i| format!("f.toml:{i}:1: bad")).collect();
    status.loaded(
        at(1),
        &Loaded::Invalid {
            sha: "bad".into(),
            problems,
        },
    );
    let invalid = status.handle().render(at(2)).source.invalid_commit.unwrap();
    assert_eq!((invalid.problem_count, invalid.problems.len()), (250, 100));
}
