//! The daemon's loop, driven in-process: a real git repository made with git2 in the test
//! world's tree (read over `file://`), two throwaway clusters, a recording observer, and a
//! manual clock, so schedules and windows are tested by moving time, not by sleeping.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use neo_reconcile::daemon::clock::Clock;
use neo_reconcile::daemon::config::{self, Config};
use neo_reconcile::daemon::observer::{Fetched, Loaded, Observer, Reconciled, Trigger};
use neo_reconcile::daemon::run::{run_with, Inputs};
use neo_reconcile::reconcile::RegionStatus;
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};

use crate::support::logins::Logins;
use crate::world::World;

/// What the observer was told, in order.
#[derive(Debug, Clone)]
pub(crate) enum Rec {
    Fetched(Fetched),
    Loaded(Loaded),
    Reconciled {
        commit: String,
        trigger: Trigger,
        applying: bool,
        closed: Vec<String>,
        applied: usize,
        regions: Vec<(String, RegionStatus)>,
    },
    Reloaded(Result<(), String>),
    /// The time left on the Vault token and on each region's lease.
    VaultTtls {
        token: Option<Duration>,
        leases: Vec<(String, Duration)>,
    },
    Stopping,
}

#[derive(Default)]
pub(crate) struct Recorder(Mutex<Vec<Rec>>);

impl Observer for Recorder {
    fn fetched(&self, _: std::time::SystemTime, f: &Fetched) {
        self.0.lock().unwrap().push(Rec::Fetched(f.clone()));
    }
    fn loaded(&self, _: std::time::SystemTime, l: &Loaded) {
        self.0.lock().unwrap().push(Rec::Loaded(l.clone()));
    }
    fn reconciled(&self, run: &Reconciled<'_>) {
        let (applied, regions) = match run.outcome {
            Ok(o) => (
                o.report
                    .as_ref()
                    .map_or(0, |r| r.regions.iter().map(|x| x.applied).sum()),
                o.regions.clone(),
            ),
            Err(e) => panic!("the reconcile could not start: {e}"),
        };
        self.0.lock().unwrap().push(Rec::Reconciled {
            commit: run.commit.to_string(),
            trigger: run.trigger,
            applying: run.applying,
            closed: run.windows_closed.to_vec(),
            applied,
            regions,
        });
    }
    fn reloaded(&self, result: Result<(), &str>) {
        let r = result.map_err(str::to_string);
        self.0.lock().unwrap().push(Rec::Reloaded(r));
    }
    fn vault_ttls(&self, token: Option<Duration>, leases: &[(String, Duration)]) {
        self.0.lock().unwrap().push(Rec::VaultTtls {
            token,
            leases: leases.to_vec(),
        });
    }
    fn stopping(&self) {
        self.0.lock().unwrap().push(Rec::Stopping);
    }
}

impl Recorder {
    pub(crate) fn all(&self) -> Vec<Rec> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (real time, at most two minutes) until `pred` holds for some record.
    pub(crate) async fn wait(&self, what: &str, pred: impl Fn(&Rec) -> bool) -> Rec {
        for _ in 0..1200 {
            if let Some(r) = self.all().into_iter().find(|r| pred(r)) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}; records: {:#?}", self.all());
    }

    fn reconciles_of(&self, sha: &str) -> Vec<Rec> {
        self.all()
            .into_iter()
            .filter(|r| matches!(r, Rec::Reconciled { commit, .. } if commit == sha))
            .collect()
    }
}

/// Commits everything in the tree to `main` and returns the commit's SHA.
pub(crate) fn commit_all(dir: &Path, message: &str) -> String {
    let repo = git2::Repository::open(dir)
        .or_else(|_| git2::Repository::init(dir))
        .unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"], None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("test", "test@example.com").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let oid = repo
        .commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            message,
            &tree,
            &parents,
        )
        .unwrap();
    if parent.is_none() {
        repo.set_head("refs/heads/main").unwrap();
    }
    oid.to_string()
}

/// A daemon configuration over the world's tree, read over `file://`.
fn daemon_config(w: &World, cache: &Path, reconcile: &str) -> Config {
    let text = format!(
        "[source]\nurl = \"file://{}\"\nbranch = \"main\"\ncache_dir = \"{}\"\npoll_interval = \"60s\"\n{reconcile}",
        w.tree.path().display(),
        cache.display()
    );
    config::parse(Path::new("/test/config.toml"), text, None).unwrap_or_else(|e| panic!("{e}"))
}

/// A running daemon: its observer, its clock, and how to stop it.
struct Running {
    rec: Arc<Recorder>,
    clock: Clock,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    reload: mpsc::UnboundedSender<Result<Config, String>>,
}

impl Running {
    fn start(w: &World, config: Config, start: DateTime<Utc>) -> Running {
        let rec = Arc::new(Recorder::default());
        let clock = Clock::manual(start);
        let (stop, stopped) = oneshot::channel::<()>();
        let (reload_tx, reload) = mpsc::unbounded_channel();
        let inputs = Inputs {
            clock: clock.clone(),
            credentials: Arc::new(Logins::new(&w.logins)),
            vault: None,
            vault_token: None,
            reload,
            seed: 1,
        };
        let observer: Arc<dyn Observer> = rec.clone();
        let task = tokio::spawn(async move {
            run_with(
                config,
                observer,
                async move {
                    let _ = stopped.await;
                },
                inputs,
            )
            .await
            .unwrap();
        });
        Running {
            rec,
            clock,
            stop: Some(stop),
            task,
            reload: reload_tx,
        }
    }

    async fn stop(mut self) -> Arc<Recorder> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("the daemon stops")
            .unwrap();
        self.rec
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn applied_of(r: &Rec) -> usize {
    match r {
        Rec::Reconciled { applied, .. } => *applied,
        _ => 0,
    }
}

#[test]
fn a_running_daemon_applies_new_commits_refuses_invalid_ones_and_force_pushes() {
    let w = World::new();
    let cache = TempDir::new().unwrap();
    let first = commit_all(w.tree.path(), "the example");
    let config = daemon_config(&w, cache.path(), "[reconcile]\nauto_apply = true\n");
    runtime().block_on(async {
        let d = Running::start(&w, config, at("2026-12-03T10:00:00Z"));
        let r = d
            .rec
            .wait("the first reconcile", |r| matches!(r, Rec::Reconciled { .. }))
            .await;
        assert!(
            matches!(&r, Rec::Reconciled { commit, trigger: Trigger::Start, applying: true, .. } if *commit == first),
            "{r:?}"
        );
        assert!(applied_of(&r) > 0, "{r:?}");

        // A configuration that does not load (SIGHUP with a bad file) is refused; the loop
        // goes on with the old one.
        let bad = config::parse(Path::new("/test/bad.toml"), "[source]\nurl = 1\n".into(), None)
            .unwrap_err()
            .to_string();
        d.reload.send(Err(bad)).unwrap();
        let r = d
            .rec
            .wait("the refused reload", |r| matches!(r, Rec::Reloaded(_)))
            .await;
        assert!(
            matches!(&r, Rec::Reloaded(Err(e)) if e.contains("/test/bad.toml:2:7")),
            "{r:?}"
        );

        // A commit adding a tenant: picked up by the watcher, with no other action.
        w.write(
            "tenants/wonka.toml",
            "slug = \"wonka\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n",
        );
        let second = commit_all(w.tree.path(), "add wonka");
        let r = d
            .rec
            .wait("the new commit's reconcile", |r| {
                matches!(r, Rec::Reconciled { commit, .. } if *commit == second)
            })
            .await;
        assert!(matches!(r, Rec::Reconciled { trigger: Trigger::NewCommit, .. }), "{r:?}");
        assert_eq!(
            w.us.psql("neo_us", "SELECT count(*) FROM neo_reconcile.schema_history WHERE target_schema = 'tenant_wonka' AND success AND version = 5").trim(),
            "1"
        );

        // A later commit raising the target version migrates the tenant; found by the poll.
        w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 6 "));
        let third = commit_all(w.tree.path(), "fleet to V6");
        d.clock.advance(Duration::from_secs(70));
        d.rec
            .wait("the migration's reconcile", |r| {
                matches!(r, Rec::Reconciled { commit, .. } if *commit == third)
            })
            .await;
        assert_eq!(
            w.us.psql("neo_us", "SELECT count(*) FROM neo_reconcile.schema_history WHERE target_schema = 'tenant_wonka' AND success AND version = 6").trim(),
            "1"
        );
        // The run rows carry the commit they applied.
        let commits = w.us.psql(
            "neo_us",
            "SELECT string_agg(DISTINCT git_commit, ',' ORDER BY git_commit) FROM neo_reconcile.runs",
        );
        for sha in [&first, &second, &third] {
            assert!(commits.contains(sha.as_str()), "{sha} not in {commits}");
        }

        // An invalid commit is reported and not applied; the last good one stays.
        w.write("tenants/broken.toml", "slug = \"broken\"\nregion = \"nowhere\"\n");
        let invalid = commit_all(w.tree.path(), "broken");
        d.clock.advance(Duration::from_secs(70));
        let r = d
            .rec
            .wait("the invalid commit", |r| {
                matches!(r, Rec::Loaded(Loaded::Invalid { sha, .. }) if *sha == invalid)
            })
            .await;
        let Rec::Loaded(Loaded::Invalid { problems, .. }) = r else {
            unreachable!()
        };
        assert!(problems.iter().any(|p| p.contains("tenants/broken.toml")), "{problems:?}");
        assert!(d.rec.reconciles_of(&invalid).is_empty());

        // A force-push back to the first commit is refused.
        let repo = git2::Repository::open(w.tree.path()).unwrap();
        repo.reference("refs/heads/main", git2::Oid::from_str(&first).unwrap(), true, "force-push")
            .unwrap();
        d.clock.advance(Duration::from_secs(70));
        d.rec
            .wait("the refused rewind", |r| {
                matches!(r, Rec::Fetched(Fetched::Rewound { from, to }) if *from == invalid && *to == first)
            })
            .await;
        assert!(d.rec.reconciles_of(&first).len() == 1, "the first commit came back");

        let rec = d.stop().await;
        assert!(matches!(rec.all().last(), Some(Rec::Stopping)));
    });
}

#[test]
fn detect_only_changes_nothing_and_windows_gate_apply() {
    let w = World::new();
    let first = commit_all(w.tree.path(), "the example");
    let before = w.snapshot();
    runtime().block_on(async {
        // Detect-only: plans and reports, changes nothing.
        let cache = TempDir::new().unwrap();
        let config = daemon_config(&w, cache.path(), "[reconcile]\nauto_apply = false\n");
        let d = Running::start(&w, config, at("2026-12-03T10:00:00Z"));
        let r = d
            .rec
            .wait("the detect-only reconcile", |r| matches!(r, Rec::Reconciled { .. }))
            .await;
        let Rec::Reconciled { applying, regions, commit, .. } = &r else {
            unreachable!()
        };
        assert!(!applying && *commit == first, "{r:?}");
        assert!(
            regions.iter().all(|(_, s)| matches!(s, RegionStatus::ChangesPending(n) if *n > 0)),
            "{regions:?}"
        );
        d.stop().await;
        assert_eq!(before, w.snapshot(), "detect-only changed something");

        // An allow window at 22:00 UTC for an hour: at 10:00 nothing is applied.
        let cache = TempDir::new().unwrap();
        let windows = "[reconcile]\nauto_apply = true\n\
            [reconcile.windows.us-east]\nkind = \"allow\"\nschedule = \"0 22 * * *\"\nduration = \"1h\"\n\
            [reconcile.windows.eu-west]\nkind = \"allow\"\nschedule = \"0 22 * * *\"\nduration = \"1h\"\n";
        let config = daemon_config(&w, cache.path(), windows);
        let d = Running::start(&w, config, at("2026-12-03T10:00:00Z"));
        let r = d
            .rec
            .wait("the reconcile outside the window", |r| matches!(r, Rec::Reconciled { .. }))
            .await;
        assert!(
            matches!(&r, Rec::Reconciled { applying: false, closed, .. } if closed.len() == 2),
            "{r:?}"
        );
        assert_eq!(before, w.snapshot(), "applied outside the window");
        // The clock reaches 22:00: the window opens and apply runs.
        d.clock.advance(Duration::from_secs(12 * 3600));
        let r = d
            .rec
            .wait("the reconcile inside the window", |r| {
                matches!(r, Rec::Reconciled { applying: true, .. })
            })
            .await;
        assert!(
            matches!(&r, Rec::Reconciled { trigger: Trigger::WindowOpened, .. }) && applied_of(&r) > 0,
            "{r:?}"
        );
        d.stop().await;
    });
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn two_daemons_never_apply_twice_and_a_stop_mid_run_leaves_no_lock() {
    let w = World::new();
    commit_all(w.tree.path(), "the example");
    runtime().block_on(async {
        let (c1, c2) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let auto = "[reconcile]\nauto_apply = true\n";
        let start = at("2026-12-03T10:00:00Z");
        let a = Running::start(&w, daemon_config(&w, c1.path(), auto), start);
        let b = Running::start(&w, daemon_config(&w, c2.path(), auto), start);
        for d in [&a, &b] {
            d.rec
                .wait("a reconcile", |r| matches!(r, Rec::Reconciled { .. }))
                .await;
        }
        a.stop().await;
        b.stop().await;

        // A stop right after start: the running reconcile stops at a safe point.
        let c3 = TempDir::new().unwrap();
        w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 6 "));
        commit_all(w.tree.path(), "fleet to V6");
        let d = Running::start(&w, daemon_config(&w, c3.path(), auto), start);
        // The tree is loaded and the reconcile starts at once: stop it while it runs.
        d.rec
            .wait("the commit loaded", |r| {
                matches!(r, Rec::Loaded(Loaded::Valid { .. }))
            })
            .await;
        let rec = d.stop().await;
        assert!(matches!(rec.all().last(), Some(Rec::Stopping)));
    });
    for (cluster, db) in [(&w.us, "neo_us"), (&w.eu, "neo_eu")] {
        assert_eq!(
            cluster.psql(db, "SELECT count(*) FROM (SELECT 1 FROM neo_reconcile.schema_history WHERE success GROUP BY target_schema, schema_set, version HAVING count(*) > 1) d").trim(),
            "0",
            "a migration applied twice"
        );
        assert_eq!(
            cluster
                .psql(
                    db,
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                )
                .trim(),
            "0",
            "a lock left behind"
        );
    }
    // No partial migration: whatever was stopped is finished by the next run.
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn check_config_exits_non_zero_with_every_problem() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::world::BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/config.toml");
    assert_eq!(run(&["daemon", "--check-config", example]).0, 0);
    assert_eq!(run(&["daemon", "--config", example, "--check-config"]).0, 0);
    let dir = TempDir::new().unwrap();
    let bad = dir.path().join("config.toml");
    std::fs::write(&bad, "[source]\nurl = \"ftp://x\"\npoll = 1\n").unwrap();
    let (code, stderr) = run(&["daemon", "--check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("config.toml:2:7: error: source.url"),
        "{stderr}"
    );
    assert!(
        stderr.contains("config.toml:3:1: error: source.poll: unknown field"),
        "{stderr}"
    );
}

/// How many registry rows name tenant acme (the control plane is us-east's `neo_admin`).
fn acme_registry_rows(w: &World) -> String {
    w.us.psql(
        "neo_admin",
        "SELECT count(*) FROM admin.database_connections WHERE tenant_slug = 'acme'",
    )
    .trim()
    .to_string()
}

#[test]
fn out_of_band_drift_is_only_reported_in_detect_only_mode_and_put_back_at_the_next_resync() {
    let w = World::new();
    commit_all(w.tree.path(), "the example");
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    assert_eq!(acme_registry_rows(&w), "1");
    let resync = "resync = \"0 * * * *\"\n";
    runtime().block_on(async {
        // Detect-only: the drift (a registry row deleted by hand) is reported at the resync,
        // and left.
        let cache = TempDir::new().unwrap();
        let config = daemon_config(
            &w,
            cache.path(),
            &format!("[reconcile]\nauto_apply = false\n{resync}"),
        );
        let d = Running::start(&w, config, at("2026-12-03T10:00:30Z"));
        d.rec
            .wait("the first reconcile", |r| matches!(r, Rec::Reconciled { .. }))
            .await;
        w.us.psql(
            "neo_admin",
            "DELETE FROM admin.database_connections WHERE tenant_slug = 'acme'",
        );
        d.clock.advance(Duration::from_secs(3600));
        let r = d
            .rec
            .wait("the detect-only resync", |r| {
                matches!(r, Rec::Reconciled { trigger: Trigger::Resync, .. })
            })
            .await;
        assert!(
            matches!(&r, Rec::Reconciled { applying: false, regions, .. }
                if regions.iter().any(|(n, s)| n == "us-east" && matches!(s, RegionStatus::ChangesPending(_)))),
            "{r:?}"
        );
        d.stop().await;
        assert_eq!(acme_registry_rows(&w), "0", "detect-only put the row back");

        // With auto_apply: the first reconcile puts it back; so does the next resync after
        // the row is deleted again.
        let cache = TempDir::new().unwrap();
        let config = daemon_config(
            &w,
            cache.path(),
            &format!("[reconcile]\nauto_apply = true\n{resync}"),
        );
        let d = Running::start(&w, config, at("2026-12-03T10:00:30Z"));
        d.rec
            .wait("the first reconcile", |r| matches!(r, Rec::Reconciled { .. }))
            .await;
        assert_eq!(acme_registry_rows(&w), "1");
        w.us.psql(
            "neo_admin",
            "DELETE FROM admin.database_connections WHERE tenant_slug = 'acme'",
        );
        d.clock.advance(Duration::from_secs(3600));
        let r = d
            .rec
            .wait("the resync that applies", |r| {
                matches!(r, Rec::Reconciled { trigger: Trigger::Resync, applying: true, .. })
            })
            .await;
        // The registry is written after the regions, from a fresh observation: the resync's
        // outcome is converged and the row is back.
        assert!(
            matches!(&r, Rec::Reconciled { regions, .. }
                if regions.iter().all(|(_, s)| matches!(s, RegionStatus::Converged))),
            "{r:?}"
        );
        d.stop().await;
        assert_eq!(acme_registry_rows(&w), "1", "the resync did not put the row back");
    });
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

/// `GET path` on 127.0.0.1:`port` over HTTP/1.0: the body, or `None` when the daemon does not
/// answer (yet) or answers with another status than 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// Waits (real time, at most a minute) until `f` gives something.
fn eventually<T>(what: &str, f: impl Fn() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(t) = f() {
            return t;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn the_daemon_binary_shows_an_invalid_commit_in_status_and_metrics_and_stops_on_sigterm() {
    let w = World::new();
    commit_all(w.tree.path(), "the example");
    let dir = TempDir::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[source]\nurl = \"file://{}\"\nbranch = \"main\"\npoll_interval = \"1s\"\ncache_dir = \"{}\"\n\n\
             [reconcile]\nauto_apply = true\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            w.tree.path().display(),
            dir.path().join("cache").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = w
        .command(&["daemon", "--config", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    eventually("/readyz", || http_get(port, "/readyz"));

    // A commit that fails validation: not applied, and shown with its problem.
    w.write(
        "tenants/globex.toml",
        "slug = \"globex\"\nregion = \"nowhere\"\n",
    );
    let bad = commit_all(w.tree.path(), "a tenant in an unknown region");
    let mut last = String::new();
    let mut status = None;
    for _ in 0..600 {
        if let Some(body) = http_get(port, "/status") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if v["source"]["invalid_commit"]["commit"] == bad.as_str() {
                status = Some(v);
                break;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.unwrap_or_else(|| {
        panic!(
            "the invalid commit {bad} is not in /status:\n{last}\n--- log:\n{}",
            std::fs::read_to_string(dir.path().join("daemon.log")).unwrap()
        )
    });
    let problems = status["source"]["invalid_commit"]["problems"].to_string();
    assert!(problems.contains("tenants/globex.toml:2:"), "{status:#}");
    let metrics = http_get(port, "/metrics").unwrap();
    let parsed = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses as Prometheus text");
    let invalid = parsed
        .samples
        .iter()
        .find(|s| s.metric == "neo_reconcile_invalid_commits_total")
        .unwrap_or_else(|| panic!("no invalid-commit counter in:\n{metrics}"));
    assert!(
        matches!(invalid.value, prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n) if n >= 1.0),
        "{invalid:?}"
    );

    // SIGTERM: a clean stop, exit 0.
    // SAFETY: kill has no preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let code = child.wait().unwrap();
    assert!(
        code.success(),
        "{code:?}\n{}",
        std::fs::read_to_string(dir.path().join("daemon.log")).unwrap()
    );
}
