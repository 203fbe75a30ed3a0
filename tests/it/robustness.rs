//! Crash and race safety of `neo-reconcile apply`, against two throwaway clusters.
//!
//! The kill test adds tenants round after round and starts `apply --auto-approve` as a child
//! process, then kills it with SIGKILL at a random moment: during bootstrap on clusters reset
//! to their fresh state, while a tenant's transactional migration is running, while a
//! `-- neo:no-transaction` migration is running, while a migration's history row is being
//! written (held there by a trigger), and at a plainly random delay. Two slow probe
//! migrations (a `pg_sleep` inside a transaction, and one outside a transaction that is safe to
//! run again from its first statement) widen the windows. The servers abort a dead client's
//! statement at once (`client_connection_check_interval`), as a crash of the apply's host
//! would. One apply must then converge, and [`assert_converged`] checks what issue 13 asks
//! for: the next plan shows no changes, no migration is recorded twice, every tenant schema at
//! the same version has the same catalog (with the schema name normalized away), and no
//! advisory lock, `lock_holder` row or `running` run row is left behind for a dead process.
//!
//! The race test starts three applies of the same tree at once, on fresh clusters and again
//! after more tenants were added; all three exit 0 and the same checks hold.
//!
//! Two regression tests guard gaps the kill test found, each reproduced deterministically:
//! a kill between a region-scope set's schema creation and its first migration, and a run
//! killed after its region's last change (its `running` and `lock_holder` rows are closed by
//! the next apply even when nothing else is left to do there).
//!
//! The random choices come from a seeded generator. The seed is printed; set `NEO_KILL_SEED`
//! to replay a run's choices (the kill moments still depend on the machine's speed).

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::catalog::catalogs_of;
use crate::support::pg::PgCluster;
use crate::world::World;

/// A transactional tenant migration that sleeps inside its transaction. The marker in its
/// text lets the test see it running in `pg_stat_activity`.
const SLOW_TRANSACTION_V7: &str =
    "-- A slow transactional migration: the kill test's window inside a tenant's transaction.
CREATE TABLE kill_probe (id bigint PRIMARY KEY, note text NOT NULL DEFAULT '');
DO $$ BEGIN PERFORM pg_sleep(0.1); /* neo_kill_tx_probe */ END $$;
CREATE INDEX kill_probe_note_idx ON kill_probe (note);
";

/// A `-- neo:no-transaction` tenant migration that sleeps between its statements. Every
/// statement can run again after an interruption, as such a migration must be written: an
/// apply killed halfway records nothing, so the next one starts again at the first statement.
const SLOW_NO_TRANSACTION_V8: &str = "-- neo:no-transaction
-- A slow migration outside a transaction, safe to run again from its first statement.
CREATE TABLE IF NOT EXISTS kill_probe_notx (id bigint, at timestamptz);
DO $$ BEGIN PERFORM pg_sleep(0.1); /* neo_kill_notx_probe */ END $$;
DROP INDEX CONCURRENTLY IF EXISTS kill_probe_notx_at_idx;
CREATE INDEX CONCURRENTLY kill_probe_notx_at_idx ON kill_probe_notx (at);
";

/// The newest version of `tenant_template` once the probes are added.
const TENANT_LATEST: u32 = 8;

/// The newest version of `platform_common` in the example tree.
const PLATFORM_LATEST: u32 = 3;

/// The kills the test makes at least, in total.
const MIN_KILLS: usize = 20;

/// The kills the test makes at least in each targeted phase.
const MIN_KILLS_PER_PHASE: usize = 4;

/// At most this many rounds, so that a machine on which the windows are never hit fails
/// with a clear message instead of looping.
const MAX_ROUNDS: usize = 60;

// ---------------------------------------------------------------------------------------------
// A small seeded random number generator (SplitMix64), so that no dependency is needed.
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    /// The generator seeded from `NEO_KILL_SEED`, else from the clock; the seed is printed.
    fn from_env(test: &str) -> Rng {
        let seed = std::env::var("NEO_KILL_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: NEO_KILL_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}

// ---------------------------------------------------------------------------------------------
// The tree and the clusters.
// ---------------------------------------------------------------------------------------------

/// Adds the two slow probe migrations, moves the fleet to their version and removes acme's
/// canary pin, so that every tenant runs both probes.
fn add_probes(w: &World) {
    w.write(
        "schemas/tenant_template/V7__kill_probe_slow_transaction.sql",
        SLOW_TRANSACTION_V7,
    );
    w.write(
        "schemas/tenant_template/V8__kill_probe_slow_no_transaction.sql",
        SLOW_NO_TRANSACTION_V8,
    );
    w.edit("neo.toml", |s| {
        s.replace("target = 5 ", &format!("target = {TENANT_LATEST} "))
    });
    w.edit("tenants/acme.toml", |s| {
        s.replace("[schema_sets]\ntenant_template = 6\n", "")
    });
}

/// The two regions of the example tree: name, residency, cluster and database.
fn regions(w: &World) -> [(&'static str, &'static str, &PgCluster, &'static str); 2] {
    [
        ("us-east", "US", &w.us, "neo_us"),
        ("eu-west", "EU", &w.eu, "neo_eu"),
    ]
}

/// Writes `tenants/<slug>.toml`: an active tenant in the region at index `region` of
/// [`regions`].
fn add_tenant(w: &World, slug: &str, region: usize) {
    let (name, residency, _, _) = regions(w)[region];
    w.write(
        &format!("tenants/{slug}.toml"),
        &format!(
            "slug = \"{slug}\"\nregion = \"{name}\"\nresidency = \"{residency}\"\nstatus = \"active\"\n"
        ),
    );
}

/// Puts both clusters back in the state `World::new` leaves them in: the region databases
/// empty and owned by `neo_migrator`, no control-plane database and no tenant roles. The next
/// apply bootstraps everything again.
fn reset_to_fresh(w: &World) {
    for (_, _, cluster, db) in regions(w) {
        cluster.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        );
        cluster.psql("postgres", "DROP DATABASE IF EXISTS neo_admin WITH (FORCE)");
        let drops = cluster.psql(
            "postgres",
            "SELECT format('DROP ROLE %I;', rolname) FROM pg_roles WHERE rolname LIKE 'tenant\\_%'",
        );
        if !drops.trim().is_empty() {
            cluster.psql("postgres", &drops);
        }
        cluster.psql(
            "postgres",
            &format!("CREATE DATABASE {db} OWNER neo_migrator"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Applies running as child processes.
// ---------------------------------------------------------------------------------------------

/// `neo-reconcile apply <tree> --auto-approve` running as a child process, its standard
/// error collected by a thread.
struct RunningApply {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

/// How a child apply ended.
struct Ended {
    /// The exit code, or `None` when the test killed it.
    code: Option<i32>,
    stdout: String,
    /// Everything it wrote to standard error before it ended.
    stderr: String,
}

impl RunningApply {
    fn start(w: &World) -> RunningApply {
        let tree = w.tree.path().to_str().unwrap().to_string();
        let mut child = w
            .command(&["apply", &tree, "--auto-approve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Both streams are drained by threads, so that a long plan never fills a pipe and
        // blocks the child.
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        RunningApply {
            child,
            stdout,
            stderr,
            readers,
            started: Instant::now(),
        }
    }

    fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Polls `ready` every 10 ms until it holds (true) or the child exits (false). Panics
    /// after `timeout`.
    fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut(&Self) -> bool) -> bool {
        loop {
            if self.exited() {
                return false;
            }
            if ready(self) {
                return true;
            }
            assert!(
                self.started.elapsed() < timeout,
                "apply neither reached the awaited point nor exited within {timeout:?}:\n{}",
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGKILL unless the child already exited, and collects its output.
    fn kill(mut self) -> Ended {
        let killed = !self.exited() && self.child.kill().is_ok();
        self.finish(killed)
    }

    fn wait(self) -> Ended {
        self.finish(false)
    }

    fn finish(mut self, killed: bool) -> Ended {
        let status = self.child.wait().unwrap();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let text = |bytes: &Arc<Mutex<Vec<u8>>>| {
            String::from_utf8_lossy(&bytes.lock().unwrap()).into_owned()
        };
        let (stdout, stderr) = (text(&self.stdout), text(&self.stderr));
        Ended {
            code: if killed { None } else { status.code() },
            stdout,
            stderr,
        }
    }
}

/// The last `n` lines of `text`, after every line that reports something blocked or failed,
/// for failure messages.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("! blocked") || l.contains("FAILED"))
        .copied()
        .collect();
    out.push("...");
    out.extend_from_slice(&lines[lines.len().saturating_sub(n)..]);
    out.join("\n")
}

/// Reads `from` to its end into `into`, on a thread.
fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// Whether a statement whose text contains `marker` is running on `cluster`, sent by
/// neo-reconcile. The marker is split in the query so that this query never matches itself.
fn statement_running(cluster: &PgCluster, marker: &str) -> bool {
    statement_matching(cluster, marker, "")
}

/// Like [`statement_running`], with `condition` (SQL on `pg_stat_activity`) added.
fn statement_matching(cluster: &PgCluster, marker: &str, condition: &str) -> bool {
    let (head, tail) = marker.split_at(marker.len() / 2);
    cluster
        .psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()
                   AND application_name = 'neo-reconcile' AND query LIKE '%' || '{head}' || '{tail}' || '%' {condition}"
            ),
        )
        .trim()
        != "0"
}

/// Adds a trigger (as the superuser) to `neo_reconcile.schema_history`, in every region whose
/// bookkeeping exists, that holds the history row of `tenant_template` V7 (the transactional
/// probe) while the table `public.neo_test_hold_history` exists. That lets the kill test kill
/// apply exactly while a migration's history row is being written: the row must be written in
/// the migration's own transaction, so that a kill there leaves neither or both.
fn hold_history_inserts(w: &World) {
    for (_, _, cluster, db) in regions(w) {
        cluster.psql(
            db,
            "DO $do$ BEGIN
               IF to_regclass('neo_reconcile.schema_history') IS NOT NULL
                  AND NOT EXISTS (SELECT FROM pg_trigger WHERE tgname = 'neo_test_slow_history') THEN
                 CREATE OR REPLACE FUNCTION public.neo_test_slow_history() RETURNS trigger LANGUAGE plpgsql AS $f$
                   BEGIN
                     WHILE EXISTS (SELECT FROM pg_catalog.pg_class WHERE relname = 'neo_test_hold_history') LOOP
                       PERFORM pg_sleep(0.01);
                     END LOOP;
                     RETURN NEW;
                   END $f$;
                 CREATE TRIGGER neo_test_slow_history BEFORE INSERT ON neo_reconcile.schema_history
                   FOR EACH ROW WHEN (NEW.schema_set = 'tenant_template' AND NEW.version = 7)
                   EXECUTE FUNCTION public.neo_test_slow_history();
               END IF;
             END $do$",
        );
    }
}

/// Whether the log says that region `region` took its lock and has not finished bootstrapping:
/// the kill came during its bootstrap.
fn killed_during_bootstrap(stderr: &str) -> bool {
    let has = |event: &str, region: &str| {
        stderr
            .lines()
            .any(|l| l.contains(event) && l.contains(region))
    };
    ["us-east", "eu-west"]
        .iter()
        .any(|r| has("Took the region lock.", r) && !has("Bootstrapped.", r))
}

// ---------------------------------------------------------------------------------------------
// The checks after convergence.
// ---------------------------------------------------------------------------------------------

/// Polls `sql` on `cluster` until it returns `want`; panics after 15 s with the last answer.
fn eventually(cluster: &PgCluster, db: &str, sql: &str, want: &str, what: &str) {
    let start = Instant::now();
    loop {
        let got = cluster.psql(db, sql);
        if got.trim() == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: `{sql}` returned {got:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Has both servers check every 10 ms whether a running statement's client is still there,
/// and abort the statement when it is not (`client_connection_check_interval`). Without it, a
/// statement in flight when apply is killed runs to its end and, outside a transaction,
/// commits; with it, a kill ends what was in flight as a crash of the apply's host would, so a
/// step that apply wrongly sends in a transaction of its own (a history row after its
/// migration's commit) is left undone, and the test sees it.
fn abort_statements_of_dead_clients(w: &World) {
    for (_, _, cluster, _) in regions(w) {
        cluster.psql(
            "postgres",
            "ALTER SYSTEM SET client_connection_check_interval = '10ms'",
        );
        cluster.psql("postgres", "SELECT pg_reload_conf()");
    }
}

/// Waits until the server has ended every session of a killed apply. A statement that does
/// not run in a transaction (`CREATE DATABASE`, a no-transaction migration's statement) still
/// completes and commits after its client died; an apply planned before it ends sees the live
/// state change under the lock and refuses its plan as stale (exit 3, nothing changed), as it
/// is meant to. The test waits, as an operator would see the dead run's sessions end.
fn sessions_end(w: &World) {
    for (region, _, cluster, _) in regions(w) {
        eventually(
            cluster,
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'neo-reconcile'",
            "0",
            &format!("{region}: the killed apply's sessions did not end"),
        );
    }
}

/// Everything issue 13 asks of a converged fleet after kills or races. `tenants` are the
/// slugs the test added; each of them must be at [`TENANT_LATEST`].
fn assert_converged(w: &World, tenants: &[String]) {
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    let mut versions_by_schema = Vec::new();
    for (region, _, cluster, db) in regions(w) {
        // No migration recorded twice: per schema and set, the successful rows are versions
        // 1..N, each once (the unique index allows no duplicate; this also catches gaps).
        let bad = cluster.psql(
            db,
            "SELECT string_agg(format('%s/%s: %s rows, %s versions, max %s', target_schema, schema_set, n, d, m), '; ')
               FROM (SELECT target_schema, schema_set, count(*) n, count(DISTINCT version) d, max(version) m
                       FROM neo_reconcile.schema_history WHERE success GROUP BY 1, 2) h
              WHERE n <> d OR n <> m",
        );
        assert_eq!(
            bad.trim(),
            "",
            "{region}: history rows are not versions 1..N once each"
        );
        let platform = cluster.psql(
            db,
            "SELECT max(version) FROM neo_reconcile.schema_history WHERE success AND schema_set = 'platform_common'",
        );
        assert_eq!(platform.trim(), PLATFORM_LATEST.to_string(), "{region}");
        // Every live tenant schema with the version history records for it.
        let rows = cluster.psql(
            db,
            "SELECT n.nspname || ' ' || coalesce(max(h.version), 0)
               FROM pg_namespace n
               LEFT JOIN neo_reconcile.schema_history h
                 ON h.target_schema = n.nspname AND h.schema_set = 'tenant_template' AND h.success
              WHERE n.nspname LIKE 'tenant\\_%' GROUP BY n.nspname ORDER BY 1",
        );
        for row in rows.lines().filter(|l| !l.trim().is_empty()) {
            let (schema, version) = row.trim().split_once(' ').unwrap();
            versions_by_schema.push((region, schema.to_string(), version.parse::<u32>().unwrap()));
        }
        // Nothing is left behind for a dead process. The server ends a dead client's
        // sessions by itself, so their locks may take a moment to go.
        eventually(
            cluster,
            "postgres",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            "0",
            &format!("{region}: an advisory lock outlived its apply"),
        );
        let holders = cluster.psql(
            db,
            "SELECT coalesce(string_agg(format('pid %s, backend %s, %s', pid, backend_pid, command), '; '), '')
               FROM neo_reconcile.lock_holder",
        );
        assert_eq!(
            holders.trim(),
            "",
            "{region}: a lock_holder row was left behind"
        );
        let running = cluster.psql(
            db,
            "SELECT coalesce(string_agg(format('run %s by pid %s', id, pid), '; '), '')
               FROM neo_reconcile.runs WHERE outcome = 'running'",
        );
        assert_eq!(
            running.trim(),
            "",
            "{region}: a run is still marked running"
        );
        let invalid = cluster.psql(
            db,
            "SELECT coalesce(string_agg(indexrelid::regclass::text, ', '), '') FROM pg_index WHERE NOT indisvalid",
        );
        assert_eq!(
            invalid.trim(),
            "",
            "{region}: an interrupted index build was left invalid"
        );
    }
    for slug in tenants {
        let schema = format!("tenant_{slug}");
        let found = versions_by_schema.iter().find(|(_, s, _)| *s == schema);
        assert!(
            matches!(found, Some((_, _, v)) if *v == TENANT_LATEST),
            "{schema} is not at version {TENANT_LATEST}: {found:?}"
        );
    }
    assert_same_catalog_per_version(w, &versions_by_schema);
}

/// Every tenant schema at the same `tenant_template` version, in either region, has the same
/// catalog once its name is replaced by `<schema>`.
fn assert_same_catalog_per_version(w: &World, schemas: &[(&str, String, u32)]) {
    let mut catalogs: Vec<(u32, String, String)> = Vec::new();
    for (region, _, cluster, db) in regions(w) {
        let mine: Vec<&String> = schemas
            .iter()
            .filter(|(r, _, _)| *r == region)
            .map(|(_, s, _)| s)
            .collect();
        for (schema, text) in catalogs_of(cluster, db, &mine) {
            let version = schemas.iter().find(|(_, s, _)| *s == schema).unwrap().2;
            catalogs.push((version, format!("{region}/{schema}"), text));
        }
    }
    let mut versions: Vec<u32> = catalogs.iter().map(|(v, _, _)| *v).collect();
    versions.sort();
    versions.dedup();
    for version in versions {
        let group: Vec<&(u32, String, String)> =
            catalogs.iter().filter(|(v, _, _)| *v == version).collect();
        let (_, first_name, first) = group[0];
        for (_, name, text) in &group[1..] {
            assert_eq!(
                text, first,
                "catalogs of {name} and {first_name} differ at tenant_template version {version}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

/// Where a kill landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A region had taken its lock and had not finished bootstrapping.
    Bootstrap,
    /// A tenant's transactional probe migration was running.
    TenantTransaction,
    /// A tenant's `-- neo:no-transaction` probe migration was running.
    NoTransaction,
    /// A migration's history row was being written (held by [`hold_history_inserts`]).
    HistoryInsert,
    /// At a random delay after the start, wherever apply was.
    Anywhere,
}

#[test]
fn sigkill_at_random_moments_then_one_apply_converges_with_nothing_twice_or_left_behind() {
    let started = Instant::now();
    let mut rng = Rng::from_env("kill test");
    let w = World::new();
    add_probes(&w);
    abort_statements_of_dead_clients(&w);
    let mut kills: Vec<(Phase, Duration)> = Vec::new();
    let mut added: Vec<String> = Vec::new();
    let count = |kills: &[(Phase, Duration)], phase: Phase| {
        kills.iter().filter(|(p, _)| *p == phase).count()
    };
    let mut bootstrapped = false;
    for round in 0..MAX_ROUNDS {
        let need_bootstrap = count(&kills, Phase::Bootstrap) < MIN_KILLS_PER_PHASE;
        let targeted = [
            Phase::TenantTransaction,
            Phase::NoTransaction,
            Phase::HistoryInsert,
        ];
        let wanted: Vec<Phase> = targeted
            .into_iter()
            .filter(|p| count(&kills, *p) < MIN_KILLS_PER_PHASE)
            .collect();
        if !need_bootstrap && wanted.is_empty() && kills.len() >= MIN_KILLS {
            break;
        }
        // Bootstrap rounds first, each on clusters reset to their fresh state once an earlier
        // round got through bootstrap.
        if need_bootstrap {
            if bootstrapped {
                reset_to_fresh(&w);
            }
            let mut apply = RunningApply::start(&w);
            let reached = apply.wait_until(Duration::from_secs(60), |a| {
                a.stderr_so_far().contains("Took the region lock.")
            });
            if reached {
                std::thread::sleep(rng.millis(120));
            }
            let at = apply.started.elapsed();
            let ended = apply.kill();
            sessions_end(&w);
            if let Some(code) = ended.code {
                assert_eq!(
                    code,
                    0,
                    "an apply after kills failed:\n--- stdout (end)\n{}\n--- stderr (end)\n{}",
                    tail(&ended.stdout, 15),
                    tail(&ended.stderr, 30)
                );
                bootstrapped = true;
                continue;
            }
            if killed_during_bootstrap(&ended.stderr) {
                kills.push((Phase::Bootstrap, at));
            } else {
                bootstrapped = true;
                kills.push((Phase::Anywhere, at));
            }
            continue;
        }
        // Then tenant rounds: one or two new tenants, in one region or both.
        let region = round % 2;
        for i in 0..=rng.below(2) as usize {
            let slug = format!("kill_{round:02}_{i}");
            add_tenant(&w, &slug, (region + i) % 2);
            added.push(slug);
        }
        let cluster = regions(&w)[region].2;
        hold_history_inserts(&w);
        let phase = if wanted.is_empty() {
            Phase::Anywhere
        } else {
            *wanted.get(rng.below(wanted.len() as u64) as usize).unwrap()
        };
        let db = regions(&w)[region].3;
        if phase == Phase::HistoryInsert {
            cluster.psql(db, "CREATE TABLE public.neo_test_hold_history ()");
        }
        let mut apply = RunningApply::start(&w);
        // The history row being written is the one the trigger holds.
        let marker = match phase {
            Phase::TenantTransaction => Some(("neo_kill_tx_probe", "")),
            Phase::NoTransaction => Some(("neo_kill_notx_probe", "")),
            Phase::HistoryInsert => Some((
                "INSERT INTO neo_reconcile.schema_history",
                "AND wait_event = 'PgSleep'",
            )),
            _ => None,
        };
        let reached = match marker {
            Some((marker, condition)) => apply.wait_until(Duration::from_secs(60), |_| {
                statement_matching(cluster, marker, condition)
            }),
            None => {
                let delay = rng.millis(1500);
                apply.wait_until(Duration::from_secs(60), |a| a.started.elapsed() >= delay)
            }
        };
        // A moment later the probe is still running (it sleeps 100 ms) or the next
        // statement of the same migration is.
        if reached && phase != Phase::Anywhere {
            std::thread::sleep(rng.millis(if phase == Phase::HistoryInsert {
                20
            } else {
                60
            }));
        }
        let at = apply.started.elapsed();
        let ended = apply.kill();
        // The held history row's session ends with its client (see
        // `abort_statements_of_dead_clients`), so the hold is lifted only afterwards.
        sessions_end(&w);
        if phase == Phase::HistoryInsert {
            cluster.psql(db, "DROP TABLE public.neo_test_hold_history");
        }
        match ended.code {
            None => kills.push((phase, at)),
            Some(code) => assert!(
                code == 0,
                "an apply after kills failed:\n--- stdout (end)\n{}\n--- stderr (end)\n{}",
                tail(&ended.stdout, 15),
                tail(&ended.stderr, 30)
            ),
        }
    }
    let summary = format!(
        "{} kills in {:?}: bootstrap {}, tenant transaction {}, no-transaction {}, history insert {}, anywhere {}; at {:?}",
        kills.len(),
        started.elapsed(),
        count(&kills, Phase::Bootstrap),
        count(&kills, Phase::TenantTransaction),
        count(&kills, Phase::NoTransaction),
        count(&kills, Phase::HistoryInsert),
        count(&kills, Phase::Anywhere),
        kills.iter().map(|(_, at)| at.as_millis()).collect::<Vec<_>>(),
    );
    eprintln!("kill test: {summary}");
    assert!(kills.len() >= MIN_KILLS, "too few kills: {summary}");
    for phase in [
        Phase::Bootstrap,
        Phase::TenantTransaction,
        Phase::NoTransaction,
        Phase::HistoryInsert,
    ] {
        assert!(
            count(&kills, phase) >= MIN_KILLS_PER_PHASE,
            "too few kills during {phase:?}: {summary}"
        );
    }

    // One new tenant per region, so that the converging apply has work in every region: a
    // region with nothing to do is not locked, and its leftovers of a killed run would not be
    // cleaned up (see `a_run_killed_after_its_last_change_is_still_marked_running_after_the_next_apply`).
    for region in 0..2 {
        let slug = format!("converge_{region}");
        add_tenant(&w, &slug, region);
        added.push(slug);
    }
    let converge = w.neo("apply", &["--auto-approve"]);
    converge.expect_code(0);
    assert_converged(&w, &added);
    eprintln!("kill test: done in {:?}", started.elapsed());
}

#[test]
fn three_applies_started_at_once_all_succeed_and_apply_everything_once() {
    let started = Instant::now();
    let w = World::new();
    add_probes(&w);
    let mut added = Vec::new();
    for (i, slug) in ["race_a", "race_b", "race_c", "race_d"].iter().enumerate() {
        add_tenant(&w, slug, i % 2);
        added.push(slug.to_string());
    }
    // On fresh clusters: all three race for bootstrap, then for the tenants.
    race_three(&w);
    assert_converged(&w, &added);
    // Again with new tenants in both regions, on bootstrapped clusters.
    for (i, slug) in ["race_e", "race_f", "race_g"].iter().enumerate() {
        add_tenant(&w, slug, i % 2);
        added.push(slug.to_string());
    }
    race_three(&w);
    assert_converged(&w, &added);
    eprintln!("race test: done in {:?}", started.elapsed());
}

/// Starts three applies of the tree at once and asserts that each exits 0.
fn race_three(w: &World) {
    let applies: Vec<RunningApply> = (0..3).map(|_| RunningApply::start(w)).collect();
    for (i, apply) in applies.into_iter().enumerate() {
        let ended = apply.wait();
        assert_eq!(
            ended.code,
            Some(0),
            "apply {i} of three\n--- stdout\n{}\n--- stderr\n{}",
            ended.stdout,
            ended.stderr
        );
    }
}

/// A run killed after its region's last change, before it recorded its outcome, leaves its
/// `runs` row marked `running` and its `lock_holder` row. The next plan shows them as a dead
/// run to close, so the converging apply takes the region's lock although nothing else is left
/// to do there, and closes them; the plan after it has no changes.
#[test]
fn a_run_killed_after_its_last_change_is_closed_by_the_next_apply_with_nothing_else_to_do() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_tenant(&w, "late_kill", 0);
    // Hold apply inside its last bookkeeping statement, the update of its run's outcome,
    // which comes after every change in the region.
    w.us.psql(
        "neo_us",
        "CREATE TABLE public.neo_test_pause ();
         CREATE FUNCTION public.neo_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           WHILE EXISTS (SELECT FROM pg_catalog.pg_class WHERE relname = 'neo_test_pause') LOOP
             PERFORM pg_sleep(0.05);
           END LOOP;
           RETURN NEW;
         END $$;
         CREATE TRIGGER neo_test_hold BEFORE UPDATE ON neo_reconcile.runs
           FOR EACH ROW WHEN (NEW.outcome <> 'running') EXECUTE FUNCTION public.neo_test_hold();",
    );
    let mut apply = RunningApply::start(&w);
    let held = apply.wait_until(Duration::from_secs(60), |_| {
        statement_running(&w.us, "UPDATE neo_reconcile.runs SET outcome")
    });
    assert!(held, "apply was never held in the update of its run");
    assert!(apply.kill().code.is_none());
    // The killed client's session is still inside the held statement and would finish it
    // once released. Ending it stands for a kill a moment earlier, before the statement was
    // sent: the outcome is never recorded.
    w.us.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'neo-reconcile'",
    );
    eventually(
        &w.us,
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'neo-reconcile'",
        "0",
        "the killed apply's sessions did not end",
    );
    w.us.psql(
        "neo_us",
        "DROP TRIGGER neo_test_hold ON neo_reconcile.runs; DROP FUNCTION public.neo_test_hold(); DROP TABLE public.neo_test_pause;",
    );
    let schema = w.us.psql(
        "neo_us",
        "SELECT count(*) FROM neo_reconcile.schema_history WHERE target_schema = 'tenant_late_kill' AND success",
    );
    assert_eq!(schema.trim(), "5", "the killed run had applied everything");
    // The plan shows the dead run; the converging apply closes it and exits 0.
    let plan = w.neo("plan", &["--detailed-exitcode"]);
    plan.expect_code(2);
    assert!(
        plan.stdout.contains("~ close_dead_run: run ")
            && plan.stdout.contains("1 dead run to close"),
        "{}",
        plan.stdout
    );
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    let running = w.us.psql(
        "neo_us",
        "SELECT coalesce(string_agg(format('run %s by pid %s', id, pid), '; '), '') FROM neo_reconcile.runs WHERE outcome = 'running'",
    );
    let holders = w.us.psql(
        "neo_us",
        "SELECT coalesce(string_agg(format('pid %s, backend %s', pid, backend_pid), '; '), '') FROM neo_reconcile.lock_holder",
    );
    assert_eq!(
        (running.trim(), holders.trim()),
        ("", ""),
        "a dead run is still marked running, or its lock_holder row is still there"
    );
}

/// A region-scope set's schema and its first migration commit together: an apply killed
/// while `platform_common`'s V1 runs leaves no schema without history behind, which every
/// later plan would block as `unmanaged` ("exists but neo-reconcile has no history for it:
/// ... adopt") with every tenant behind it. Found by the kill test before apply ran the schema's
/// creation in V1's transaction (`[apply] transaction = "per_tenant"`); this test hits the
/// window every time by holding V1 inside its transaction.
#[test]
fn a_kill_after_a_region_set_schema_is_created_and_before_its_first_migration_commits_converges() {
    kill_during_region_set_v1("per_tenant");
}

/// The same with `[apply] transaction = "per_migration"`: the schema's creation commits with
/// V1 (`sql::join_setup`), so the kill cannot leave `platform_common` without history and the
/// region blocked until a human runs `adopt` (which it did while the creation committed alone).
#[test]
fn a_kill_during_a_region_set_first_migration_converges_with_per_migration_transactions() {
    kill_during_region_set_v1("per_migration");
}

/// Kills apply while `platform_common`'s V1 runs in us-east, with the transaction shape
/// `shape`, then checks that one apply converges.
fn kill_during_region_set_v1(shape: &str) {
    let w = World::new();
    if shape != "per_tenant" {
        w.edit("regions/us-east.toml", |s| {
            s.replace(
                "transaction = \"per_tenant\"",
                &format!("transaction = \"{shape}\""),
            )
        });
    }
    // The pause comes first, so that it is within the text pg_stat_activity shows.
    w.edit("schemas/platform_common/V1__create_plans.sql", |s| {
        format!(
            "DO $$ BEGIN\n  WHILE EXISTS (SELECT FROM pg_catalog.pg_class WHERE relname = 'neo_test_pause') LOOP PERFORM pg_sleep(0.05); END LOOP;\nEND $$;\n{s}"
        )
    });
    w.us.psql("neo_us", "CREATE TABLE public.neo_test_pause ()");
    let mut apply = RunningApply::start(&w);
    let held = apply.wait_until(Duration::from_secs(60), |_| {
        statement_running(&w.us, "neo_test_pause")
    });
    assert!(held, "platform_common's V1 was never held");
    assert!(apply.kill().code.is_none());
    // The killed client's session is still inside V1; ending it rolls V1 back.
    w.us.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'neo-reconcile'",
    );
    eventually(
        &w.us,
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'neo-reconcile'",
        "0",
        "the killed apply's sessions did not end",
    );
    w.us.psql("neo_us", "DROP TABLE public.neo_test_pause");
    let leftover = w.us.psql(
        "neo_us",
        "SELECT (to_regnamespace('platform_common') IS NOT NULL)::text || ' ' ||
                (SELECT count(*) FROM neo_reconcile.schema_history WHERE schema_set = 'platform_common')",
    );
    assert_ne!(
        leftover.trim(),
        "true 0",
        "the kill left the schema platform_common without history"
    );
    // One apply must converge: exit 0, and nothing left to plan.
    let converge = w.neo("apply", &["--auto-approve"]);
    converge.expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

/// The catalog comparison of [`assert_converged`] is not blind: a column added to one tenant
/// schema by hand, or an index left invalid, makes it fail.
#[test]
fn the_catalog_comparison_notices_one_tenant_schema_that_differs() {
    let w = World::new();
    add_probes(&w);
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    assert_converged(&w, &["acme".to_string(), "globex".to_string()]);
    // The plan's own drift detection would report the column first (see drift.rs): turned
    // off here, so that the test's catalog comparison is what must notice it.
    w.edit("neo.toml", |s| {
        s.replace(
            "depends_on = [\"platform_common\"]",
            "depends_on = [\"platform_common\"]\ndrift = \"off\"",
        )
    });
    w.us.psql(
        "neo_us",
        "ALTER TABLE tenant_globex.projects ADD COLUMN extra int",
    );
    let differs = std::panic::catch_unwind(|| assert_converged(&w, &[]));
    let message = differs
        .err()
        .and_then(|e| e.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(
        message.contains("catalogs of") && message.contains("differ at tenant_template version 8"),
        "the extra column went unnoticed: {message:?}"
    );
}
