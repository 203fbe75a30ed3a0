//! Tests of the systemd notifier against a real Unix datagram socket in a temp dir (and an
//! abstract one), standing in for systemd.

use std::time::Duration;

use super::*;
use crate::daemon::observer::Trigger;
use crate::daemon::testing::{at, outcome, region_plan};
use crate::reconcile::RegionStatus;

/// Every datagram waiting on `socket`, as text.
fn received(socket: &UnixDatagram) -> Vec<String> {
    socket.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    out
}

fn systemd_in(dir: &tempfile::TempDir) -> (UnixDatagram, String) {
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    (socket, path.to_str().unwrap().to_string())
}

#[test]
fn ready_once_status_lines_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (systemd, path) = systemd_in(&dir);
    let notifier = Notifier::new(&path, None).unwrap();

    notifier.fetched(
        at(1),
        &Fetched::Commit {
            sha: "abc1234def".into(),
            new: true,
        },
    );
    notifier.loaded(
        at(2),
        &Loaded::Valid {
            sha: "abc1234def".into(),
        },
    );
    let run = outcome(vec![
        (region_plan("eu", 0, 0, true), RegionStatus::Converged),
        (region_plan("us", 0, 0, true), RegionStatus::Converged),
    ]);
    notifier.reconciled(&Reconciled {
        commit: "abc1234def",
        trigger: Trigger::Start,
        finished: at(3),
        took: Duration::from_secs(1),
        applying: true,
        windows_closed: &[],
        outcome: Ok(&run),
    });
    notifier.fetched(
        at(4),
        &Fetched::Failed {
            message: "timed out\nafter 30s".into(),
        },
    );
    notifier.reloaded(Err("config.toml:2:1: unknown key `x`"));
    notifier.stopping();

    assert_eq!(
        received(&systemd),
        [
            "READY=1\nSTATUS=commit abc1234 loaded",
            "STATUS=commit abc1234: 2 regions converged",
            "STATUS=fetch failed: timed out after 30s",
            "STATUS=configuration reload refused: config.toml:2:1: unknown key `x`",
            "STOPPING=1\nSTATUS=stopping",
        ]
    );
}

#[test]
fn an_invalid_first_commit_still_makes_the_service_ready() {
    let dir = tempfile::tempdir().unwrap();
    let (systemd, path) = systemd_in(&dir);
    let notifier = Notifier::new(&path, None).unwrap();
    let problems = vec!["a".to_string(), "b".to_string()];
    notifier.loaded(
        at(1),
        &Loaded::Invalid {
            sha: "bad0000000".into(),
            problems,
        },
    );
    notifier.loaded(
        at(2),
        &Loaded::Valid {
            sha: "good000000".into(),
        },
    );
    assert_eq!(
        received(&systemd),
        [
            "READY=1\nSTATUS=commit bad0000 invalid (2 problem(s)), not applied",
            "STATUS=commit good000 loaded",
        ]
    );
}

#[test]
fn watchdog_pings_at_most_every_half_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (systemd, path) = systemd_in(&dir);
    let notifier = Notifier::new(&path, Some(Duration::from_secs(10))).unwrap();
    for t in [100, 101, 104, 105, 106, 110, 109] {
        notifier.tick(at(t));
    }
    // Pings at 100, 105 and 110; 109 is a clock stepped back, which pings again.
    assert_eq!(received(&systemd), ["WATCHDOG=1"; 4]);

    let quiet = Notifier::new(&path, None).unwrap();
    quiet.tick(at(1));
    assert!(received(&systemd).is_empty(), "no watchdog, no ping");
}

#[test]
fn abstract_socket() {
    let name = format!("neo-reconcile-test-{}-{:?}", std::process::id(), at(0));
    let addr = abstract_address(name.as_bytes()).unwrap();
    let systemd = UnixDatagram::bind_addr(&addr).unwrap();
    let notifier = Notifier::new(&format!("@{name}"), None).unwrap();
    notifier.stopping();
    assert_eq!(received(&systemd), ["STOPPING=1\nSTATUS=stopping"]);
}

#[test]
fn environment() {
    let none = Notifier::from_vars(None, Some("1000000".into()), None, 7).unwrap();
    assert!(none.is_none());
    let empty = Notifier::from_vars(Some("".into()), None, None, 7).unwrap();
    assert!(empty.is_none());

    let dir = tempfile::tempdir().unwrap();
    let (_systemd, path) = systemd_in(&dir);
    let on = Notifier::from_vars(Some(path.clone().into()), Some("30000000".into()), None, 7)
        .unwrap()
        .unwrap();
    assert_eq!(on.ping_every, Some(Duration::from_secs(15)));
    let other_pid = Some("8".to_string());
    let off = Notifier::from_vars(
        Some(path.clone().into()),
        Some("30000000".into()),
        other_pid,
        7,
    )
    .unwrap()
    .unwrap();
    assert_eq!(off.ping_every, None);
    let bad = Notifier::from_vars(Some(path.into()), Some("soon".into()), None, 7);
    assert!(matches!(bad, Err(NotifyError::Watchdog(_))));
    let relative = Notifier::from_vars(Some("run/notify".into()), None, None, 7);
    assert!(matches!(relative, Err(NotifyError::Address { .. })));
}

#[test]
fn a_missing_socket_is_logged_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.sock");
    let notifier = Notifier::new(path.to_str().unwrap(), Some(Duration::from_secs(2))).unwrap();
    assert!(matches!(
        notifier.send("READY=1"),
        Err(NotifyError::Send(_))
    ));
    // The observer calls swallow the error.
    notifier.tick(at(1));
    notifier.stopping();
}

#[test]
fn status_text_is_one_short_line() {
    assert_eq!(status_text("a\nb\tc"), "a b c");
    let long = "x".repeat(500);
    assert_eq!(status_text(&long).chars().count(), MAX_STATUS);
}
