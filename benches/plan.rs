//! Plan speed: how long `neo-reconcile plan` takes for a large fleet, and where that time goes.
//!
//! The bench starts two throwaway PostgreSQL clusters (us-east and eu-west, through the
//! integration tests' `support/pg.rs`), writes a desired-state tree of `NEO_BENCH_TENANTS`
//! tenants (default 10,000, half in each region) with the example schema sets of
//! `desired-state/schemas`, and brings the live state to `tenant_template` version
//! `NEO_BENCH_FROM` (default 3). By default (`NEO_BENCH_SETUP=sql`) a real `apply` of the tree
//! without tenants bootstraps bookkeeping, the registry and `platform_common`, and SQL then
//! writes the tenants exactly as apply would (roles, schemas, grants, bookkeeping, history and
//! registry rows); `NEO_BENCH_SETUP=apply` runs one real apply of every tenant instead, which
//! is much slower at this size (see BENCHMARKS.md). A plan at the live version must then show
//! no change at all. The bench raises the target to `NEO_BENCH_TO` (default 5), checks that
//! the plan has exactly one migrate action per tenant and nothing blocked, and measures:
//!
//! - (a) in process, with the library: `engine::load_desired` and
//!   `observed::postgres::observe` (`NEO_BENCH_RUNS` times, for reference), then the pure
//!   planner `plan::plan`, and rendering the plan as text (and its registry diff alone) and as
//!   JSON, `NEO_BENCH_ITERATIONS` calls each;
//! - (b) end to end, with the release binary: `plan --format json`, `plan --format text` and
//!   `validate`, `NEO_BENCH_RUNS` times each after one warm-up run (wall time, peak RSS and CPU
//!   time of the process), side by side with a baseline run in the same loop: psql sessions,
//!   one per region and both at once as the observer observes its regions, reading the same
//!   rows with the same queries as the observer.
//!
//! It also counts the statements one `plan --format text` sends to each region's server (in the
//! server log, with `log_statement = all` for the login role during that run). The clusters run
//! at PostgreSQL's default durability unless `NEO_BENCH_DURABILITY=off`; `NEO_BENCH_HOLD=1`
//! keeps them and the tree after the setup for a profiler (see [`hold`]).
//!
//! Nothing is asserted about speed: the bench prints a table with medians, the baseline and
//! the ratio. It fails only when the setup does not produce the expected plan.
//!
//! Run it with `cargo bench --bench plan`; see BENCHMARKS.md for the knobs and the results.

#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/it/support/pg.rs"]
mod pg;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    env_number, measure, median, mib, path_str, psql_path, random_password, wrapper, Measured,
    Proc, Table, TemplateCleanup, WRAP_FLAG,
};
use neo_reconcile::engine;
use neo_reconcile::observed::postgres::observe;
use neo_reconcile::plan::render::{self, TextOptions};
use neo_reconcile::plan::{self, Action};
use neo_reconcile::sources::credentials::Sources;
use neo_reconcile::sql;
use pg::PgCluster;

/// The release binary that `cargo bench` builds alongside this bench.
const BIN: &str = env!("CARGO_BIN_EXE_neo-reconcile");

/// The two regions: name, database, credentials prefix and residency.
const REGIONS: [(&str, &str, &str, &str); 2] = [
    ("us-east", "neo_us", "NEO_US_EAST", "US"),
    ("eu-west", "neo_eu", "NEO_EU_WEST", "EU"),
];

/// The database of the registry, in the first region.
const CONTROL_PLANE_DB: &str = "neo_admin";

/// The login role neo-reconcile (and the baseline) connects as.
const LOGIN: &str = "neo_migrator";

/// The bench's settings, from the environment.
struct Config {
    /// `NEO_BENCH_TENANTS`: tenants in all, split evenly over the two regions.
    tenants: usize,
    /// `NEO_BENCH_FROM`: the `tenant_template` version the live state is brought to.
    from: u32,
    /// `NEO_BENCH_TO`: the `tenant_template` target the measured plan moves to.
    to: u32,
    /// `NEO_BENCH_RUNS`: timed runs of each end-to-end command (after one warm-up run).
    runs: usize,
    /// `NEO_BENCH_ITERATIONS`: timed calls of the in-process planner and renderers.
    iterations: usize,
    /// `NEO_BENCH_SETUP`: how the live state is made (`sql`, the default, or `apply`).
    setup: Setup,
    /// `NEO_BENCH_DRIFT`: `off` sets `drift = "off"` on both sets (no live-schema drift
    /// detection); on by default.
    drift: bool,
}

/// How the bench brings the live state to `NEO_BENCH_FROM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// A real apply bootstraps bookkeeping, the registry and platform_common (no tenants);
    /// then SQL creates the tenants' roles and schemas (the statements of
    /// `neo_reconcile::sql::create_tenant`) and writes their bookkeeping, history and
    /// registry rows as apply writes them, and runs the tenants' migrations 1..FROM in each
    /// schema as the owner role (drift detection compares the schemas' objects).
    Sql,
    /// One real `apply --auto-approve` of every tenant (slow at 10,000 tenants; see
    /// BENCHMARKS.md).
    Apply,
}

impl Config {
    fn from_env() -> Config {
        let config = Config {
            tenants: env_number("NEO_BENCH_TENANTS", 10_000),
            from: env_number("NEO_BENCH_FROM", 3),
            to: env_number("NEO_BENCH_TO", 5),
            runs: env_number("NEO_BENCH_RUNS", 5).max(3),
            iterations: env_number("NEO_BENCH_ITERATIONS", 20).max(3),
            setup: match std::env::var("NEO_BENCH_SETUP").as_deref() {
                Err(_) | Ok("sql") => Setup::Sql,
                Ok("apply") => Setup::Apply,
                Ok(other) => panic!("NEO_BENCH_SETUP={other:?}: expected sql or apply"),
            },
            drift: std::env::var("NEO_BENCH_DRIFT").map_or(true, |v| v != "off"),
        };
        assert!(config.tenants >= 2, "NEO_BENCH_TENANTS must be at least 2");
        assert!(
            1 <= config.from && config.from < config.to && config.to <= 5,
            "need 1 <= NEO_BENCH_FROM < NEO_BENCH_TO <= 5 (V6 of the example set runs outside a transaction)"
        );
        config
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(WRAP_FLAG) {
        wrapper(&args[2], &args[3]);
        return;
    }
    let config = Config::from_env();
    let started = Instant::now();
    // Declared before the clusters, so dropped after them, also when a check panics.
    let _cleanup = TemplateCleanup;
    // The credentials go into this process's environment before any thread exists; every
    // child (neo-reconcile, psql) inherits them, and the in-process observer reads them.
    let logins: Vec<(&str, String)> = REGIONS
        .iter()
        .map(|(_, _, prefix, _)| (*prefix, random_password()))
        .collect();
    for (prefix, password) in &logins {
        std::env::set_var(format!("{prefix}_USER"), LOGIN);
        std::env::set_var(format!("{prefix}_PASSWORD"), password);
    }
    println!(
        "plan bench: {} tenants over {} regions, tenant_template {} -> {}, binary {BIN}",
        config.tenants,
        REGIONS.len(),
        config.from,
        config.to
    );

    // PostgreSQL's default durability unless NEO_BENCH_DURABILITY=off.
    let durable = std::env::var("NEO_BENCH_DURABILITY").map_or(true, |v| v != "off");
    let clusters = PgCluster::start_many_with(REGIONS.len(), durable);
    println!(
        "durability: {}",
        if durable {
            "PostgreSQL's default (fsync, synchronous_commit, full_page_writes on)"
        } else {
            "off (NEO_BENCH_DURABILITY=off: fsync, synchronous_commit, full_page_writes off)"
        }
    );
    // Like tests/it/world.rs: a least-privilege login role owning the region database.
    for ((cluster, (_, db, _, _)), (_, password)) in clusters.iter().zip(REGIONS).zip(&logins) {
        cluster.psql(
            "postgres",
            &format!("CREATE ROLE {LOGIN} LOGIN CREATEROLE CREATEDB PASSWORD '{password}'"),
        );
        cluster.psql("postgres", &format!("CREATE DATABASE {db} OWNER {LOGIN}"));
    }
    let work = tempfile::Builder::new()
        .prefix("neo-bench-plan-")
        .tempdir()
        .expect("a temporary directory");
    let tree = work.path().join("tree");
    write_tree(&tree, &clusters);
    set_target(&tree, config.from, config.drift);
    let setup_started = Instant::now();
    match config.setup {
        Setup::Apply => {
            write_tenants(&tree, &config);
            let out = neo(
                &["apply", path_str(&tree), "--auto-approve"],
                work.path(),
                "setup-apply",
            );
            assert_eq!(
                out.code,
                0,
                "setup apply failed; see {}",
                out.stderr.display()
            );
            println!(
                "setup: `neo-reconcile apply --auto-approve` created {} tenants at tenant_template V{} in {:.1?} (peak RSS {})",
                config.tenants,
                config.from,
                setup_started.elapsed(),
                mib(out.measured.max_rss_kib)
            );
        }
        Setup::Sql => {
            // Bookkeeping, the registry and platform_common by a real apply of a tree without
            // tenants; then the tenants as that apply would have written them, in bulk.
            let out = neo(
                &["apply", path_str(&tree), "--auto-approve"],
                work.path(),
                "setup-bootstrap",
            );
            assert_eq!(
                out.code,
                0,
                "bootstrap apply failed; see {}",
                out.stderr.display()
            );
            write_tenants(&tree, &config);
            setup_tenants_with_sql(&tree, &clusters, &config);
            if config.drift {
                // The expected shape of the tenants' versions, computed and kept by apply as
                // after any real migration (its only action here).
                let out = neo(
                    &["apply", path_str(&tree), "--auto-approve"],
                    work.path(),
                    "setup-shapes",
                );
                assert_eq!(
                    out.code,
                    0,
                    "expected-shape apply failed; see {}",
                    out.stderr.display()
                );
            }
            println!(
                "setup: bootstrap apply + SQL created {} tenants at tenant_template V{} in {:.1?}",
                config.tenants,
                config.from,
                setup_started.elapsed()
            );
        }
    }
    let setup_time = setup_started.elapsed();
    let converged = plan_json(&tree, work.path());
    assert!(
        is_converged(&converged["summary"]),
        "after the setup, the plan at the live version still has changes or findings: {}",
        converged["summary"]
    );

    // The measured state: every tenant one migrate action behind.
    set_target(&tree, config.to, config.drift);
    let pending = plan_json(&tree, work.path());
    check_pending_plan(&pending, &config);
    println!(
        "verified: the plan has exactly {} migrate actions ({} -> {}), 0 blocked, 0 unreachable",
        config.tenants, config.from, config.to
    );
    // A quiet, vacuumed catalog for every measurement, as a production database would have.
    for (i, (cluster, (_, db, _, _))) in clusters.iter().zip(REGIONS).enumerate() {
        cluster.psql(db, "VACUUM ANALYZE");
        if i == 0 {
            cluster.psql(CONTROL_PLANE_DB, "VACUUM ANALYZE");
        }
        cluster.psql("postgres", "CHECKPOINT");
    }

    let statements = count_statements(&tree, work.path(), &clusters);
    if std::env::var("NEO_BENCH_HOLD").is_ok_and(|v| v == "1") {
        hold(&tree, work.path(), &logins);
    }

    let mut table = Table::default();
    in_process(&tree, &config, &mut table);
    // The same tree with drift detection off, measured in the same loop when it is on.
    let tree_off = work.path().join("tree-drift-off");
    if config.drift {
        copy_dir(&tree, &tree_off);
        set_target(&tree_off, config.to, false);
    }
    end_to_end(
        &tree,
        &tree_off,
        work.path(),
        &clusters,
        &config,
        &mut table,
    );

    println!();
    println!(
        "Results ({} tenants, {} regions, tenant_template {} -> {}; wall times; RSS = peak resident set of the process):",
        config.tenants,
        REGIONS.len(),
        config.from,
        config.to
    );
    print!("{}", table.render());
    for ((name, _, _, _), n) in REGIONS.iter().zip(&statements) {
        println!(
            "statements one `plan --format text` sent to region {name} (server log, log_statement = all){}: {n}",
            if *name == REGIONS[0].0 { ", control-plane database included" } else { "" }
        );
    }
    println!(
        "setup (not part of the table): {:.1?}; whole bench: {:.1?}",
        setup_time,
        started.elapsed()
    );
}

/// (a) The library in process: load, observe, plan, render.
fn in_process(tree: &Path, config: &Config, table: &mut Table) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let mut loads = Vec::new();
    let mut desired = None;
    for _ in 0..config.runs {
        let start = Instant::now();
        let loaded = engine::load_desired(tree).expect("the generated tree is valid");
        loads.push(start.elapsed());
        desired = Some(loaded);
    }
    let desired = desired.expect("at least one load");
    table.row(
        "(a) engine::load_desired (read + validate the tree)",
        &loads,
        None,
        None,
        None,
    );

    let options = engine::plan_options(&desired, &[], &[]).expect("no selection");
    let regions = engine::regions_to_observe(&desired, &options);
    // The logins are resolved once, as a run does; observing is what is timed.
    let connectors = runtime.block_on(neo_reconcile::db::resolve(&regions, &Sources::default()));
    let mut observes = Vec::new();
    let mut observed = None;
    for _ in 0..config.runs {
        let start = Instant::now();
        let o = runtime.block_on(observe(&desired, &regions, &connectors));
        observes.push(start.elapsed());
        observed = Some(o);
    }
    let observed = observed.expect("at least one observation");
    table.row(
        "(a) observed::postgres::observe (both regions)",
        &observes,
        None,
        None,
        None,
    );

    let mut plans = Vec::new();
    let mut made = None;
    for _ in 0..config.iterations {
        let start = Instant::now();
        let p = plan::plan(&desired, &observed, &options);
        plans.push(start.elapsed());
        made = Some(p);
    }
    let made = made.expect("at least one plan");
    let migrates = made
        .regions
        .iter()
        .flat_map(|r| &r.actions)
        .filter(|a| {
            matches!(
                a,
                Action::Migrate {
                    tenant: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        migrates, config.tenants,
        "the in-process plan differs from the CLI's"
    );
    assert_eq!(made.summary.blocked, 0);
    table.row("(a) plan::plan (pure)", &plans, None, None, None);

    let mut texts = Vec::new();
    let mut text_len = 0;
    for _ in 0..config.iterations {
        let start = Instant::now();
        let text = render::text(&made, &desired, TextOptions::default());
        texts.push(start.elapsed());
        text_len = text.len();
    }
    table.row(
        &format!("(a) render::text ({})", bytes(text_len)),
        &texts,
        None,
        None,
        None,
    );

    // The registry's unified diff is part of the text; timed alone to show its share.
    let registry = made
        .regions
        .iter()
        .flat_map(|r| &r.actions)
        .find_map(|a| match a {
            Action::UpdateRegistry {
                upsert,
                delete,
                before,
                ..
            } => Some((before, upsert, delete)),
            _ => None,
        });
    if let Some((before, upsert, delete)) = registry {
        let mut diffs = Vec::new();
        for _ in 0..config.iterations {
            let start = Instant::now();
            let diff = render::registry_diff(before, upsert, delete);
            diffs.push(start.elapsed());
            assert!(!diff.is_empty());
        }
        table.row(
            &format!(
                "(a) render::registry_diff (part of text; {} rows)",
                upsert.len()
            ),
            &diffs,
            None,
            None,
            None,
        );
    }

    let mut jsons = Vec::new();
    let mut json_len = 0;
    for _ in 0..config.iterations {
        let start = Instant::now();
        let json = render::json(&made);
        jsons.push(start.elapsed());
        json_len = json.len();
    }
    table.row(
        &format!("(a) render::json ({})", bytes(json_len)),
        &jsons,
        None,
        None,
        None,
    );
}

/// (b) The binary end to end, and the psql baseline, alternating run by run.
fn end_to_end(
    tree: &Path,
    tree_off: &Path,
    work: &Path,
    clusters: &[PgCluster],
    config: &Config,
    table: &mut Table,
) {
    let scripts: Vec<(PathBuf, &PgCluster, &str)> = clusters
        .iter()
        .zip(REGIONS)
        .enumerate()
        .map(|(i, (cluster, (name, db, _, _)))| {
            let path = work.join(format!("baseline-{name}.sql"));
            fs::write(&path, baseline_script(i == 0)).expect("writing the baseline script");
            (path, cluster, db)
        })
        .collect();
    let tree = path_str(tree);
    let tree_off = path_str(tree_off);
    let mut commands: Vec<(&str, Vec<&str>)> = vec![
        (
            "(b) neo-reconcile plan --format json",
            vec!["plan", tree, "--format", "json"],
        ),
        (
            "(b) neo-reconcile plan --format text",
            vec!["plan", tree, "--format", "text"],
        ),
        ("(b) neo-reconcile validate", vec!["validate", tree]),
    ];
    if config.drift {
        commands.extend([
            (
                "(b) neo-reconcile plan --format json, drift = \"off\"",
                vec!["plan", tree_off, "--format", "json"],
            ),
            (
                "(b) neo-reconcile plan --format text, drift = \"off\"",
                vec!["plan", tree_off, "--format", "text"],
            ),
        ]);
    }
    let floor = measure(
        work,
        &[Proc {
            program: PathBuf::from("/bin/true"),
            args: Vec::new(),
            env: Vec::new(),
            stdout: PathBuf::from("/dev/null"),
            stderr: PathBuf::from("/dev/null"),
        }],
    );
    println!(
        "peak RSS floor of the measuring wrapper (measured on /bin/true): {}",
        mib(floor.max_rss_kib)
    );
    // Dirty pages of the setup are written back now, not during the measurements.
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let mut baseline = Samples::default();
    let mut neo_samples: Vec<Samples> = commands.iter().map(|_| Samples::default()).collect();
    // Run 0 is a warm-up (file cache, shared buffers) and is not recorded.
    for run in 0..=config.runs {
        let b = measure(
            work,
            &scripts
                .iter()
                .map(|(script, cluster, db)| psql_baseline(cluster, db, script, work))
                .collect::<Vec<_>>(),
        );
        assert!(
            b.codes.iter().all(|c| *c == 0),
            "a baseline psql failed: see {}",
            work.display()
        );
        let mut ran = Vec::new();
        for (i, (_, args)) in commands.iter().enumerate() {
            let out = neo(args, work, &format!("e2e-{i}"));
            assert_eq!(
                out.code,
                0,
                "`neo-reconcile {}` failed; see {}",
                args.join(" "),
                out.stderr.display()
            );
            ran.push(out);
        }
        if run > 0 {
            baseline.push(&b);
            for (samples, out) in neo_samples.iter_mut().zip(&ran) {
                samples.push(&out.measured);
            }
        }
    }
    let base = baseline.median();
    table.row(
        "(b) baseline: psql reads the same rows (2 regions at once)",
        &baseline.walls,
        Some(baseline.max_rss()),
        Some(baseline.median_cpu()),
        None,
    );
    for ((label, _), samples) in commands.iter().zip(&neo_samples) {
        table.row(
            label,
            &samples.walls,
            Some(samples.max_rss()),
            Some(samples.median_cpu()),
            Some(base),
        );
    }
    let json_median = neo_samples[0].median();
    println!(
        "target for `plan --format json`: at most 1 s wall; measured median {:.3} s: {}",
        json_median.as_secs_f64(),
        if json_median <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// The queries the observer runs in one region (and in the control-plane database for the
/// first region), verbatim, in the same read-only transactions.
fn baseline_script(control_plane: bool) -> String {
    // The observer binds the control-plane database's name (an empty string in the other
    // regions) and the region lock's key; the script states them as literals.
    let control_plane_db = if control_plane { CONTROL_PLANE_DB } else { "" };
    let lock_key = sql::REGION_LOCK_KEY;
    let mut s = format!(
        "BEGIN;\nSET TRANSACTION READ ONLY;\n\
         SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') AS today,
                extract(epoch FROM now())::bigint AS now,
                ARRAY(SELECT nspname::text FROM pg_namespace
                      WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema') AS schemas,
                ARRAY(SELECT rolname::text FROM pg_roles
                      WHERE rolname LIKE 'tenant\\_%' OR rolname LIKE '%\\_owner') AS roles,
                to_regclass('neo_reconcile._sqlx_migrations') IS NOT NULL AS has_migrations,
                to_regclass('neo_reconcile.schema_history') IS NOT NULL AS has_history,
                to_regclass('neo_reconcile.tenants') IS NOT NULL AS has_tenants,
                to_regclass('neo_reconcile.lock_holder') IS NOT NULL AS has_runs,
                EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('neo_reconcile.tenants')
                        AND attname = 'archived_at' AND NOT attisdropped) AS has_archived_at,
                ARRAY(SELECT e.extname::text || ' ' || n.nspname::text FROM pg_extension e
                      JOIN pg_namespace n ON n.oid = e.extnamespace) AS extensions,
                ARRAY(SELECT name::text FROM pg_available_extensions) AS available_extensions,
                ARRAY(SELECT DISTINCT name::text FROM pg_available_extension_versions
                      WHERE (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                         OR (trusted AND has_database_privilege(current_database(), 'CREATE')))
                      AS creatable_extensions,
                EXISTS (SELECT FROM pg_database WHERE datname = '{control_plane_db}') AS cp_exists;\n\
         SELECT max(version) FROM neo_reconcile._sqlx_migrations WHERE success;\n\
         SELECT target_schema, schema_set, version, description, checksum,
                to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS applied_at,
                applied_by, success
         FROM neo_reconcile.schema_history ORDER BY target_schema, schema_set, version, id;\n\
         SELECT slug, status, schema_name, owner_role, rw_role,
                extract(epoch FROM archived_at)::bigint AS archived_at
         FROM neo_reconcile.tenants;\n\
         SELECT (SELECT format('pid %s on host %s', h.pid, h.host) FROM neo_reconcile.lock_holder h
                 WHERE NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = h.backend_pid)) AS dead_holder,
                EXISTS (SELECT FROM neo_reconcile.lock_holder) AS any_holder,
                EXISTS (SELECT FROM pg_locks l
                        WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                          AND l.classid = (({lock_key} >> 32) & 4294967295)::oid AND l.objid = ({lock_key} & 4294967295)::oid) AS locked,
                ARRAY(SELECT id FROM neo_reconcile.runs WHERE outcome = 'running' ORDER BY id) AS running;\n\
         COMMIT;\n",
    );
    if control_plane {
        let _ = write!(
            s,
            "\\connect {CONTROL_PLANE_DB}\n\
             BEGIN;\nSET TRANSACTION READ ONLY;\n\
             SELECT to_regclass('admin._sqlx_migrations') IS NOT NULL AS has_migrations,
                    to_regclass('admin.database_connections') IS NOT NULL AS has_registry;\n\
             SELECT max(version) FROM admin._sqlx_migrations WHERE success;\n\
             SELECT tenant_slug, region, host, port, database_name, schema_name, status,
                    schema_versions::text AS schema_versions, git_commit
             FROM admin.database_connections;\n\
             COMMIT;\n"
        );
    }
    s
}

/// A psql session as the login role over TCP, like neo-reconcile's, output discarded.
fn psql_baseline(cluster: &PgCluster, db: &str, script: &Path, work: &Path) -> Proc {
    let prefix = REGIONS.iter().find(|r| r.1 == db).unwrap().2;
    let password = std::env::var(format!("{prefix}_PASSWORD")).expect("set in main");
    let args = [
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        cluster.host(),
        "-p",
        &cluster.port().to_string(),
        "-U",
        LOGIN,
        "-d",
        db,
        "-o",
        "/dev/null",
        "-f",
        path_str(script),
    ];
    Proc {
        program: psql_path(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("PGPASSWORD".into(), password)],
        stdout: PathBuf::from("/dev/null"),
        stderr: work.join(format!("baseline-{db}.err")),
    }
}

/// Writes the two region files and the example schema sets (neo.toml: [`set_target`]).
fn write_tree(tree: &Path, clusters: &[PgCluster]) {
    fs::create_dir_all(tree.join("regions")).unwrap();
    fs::create_dir_all(tree.join("tenants")).unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("desired-state/schemas"),
        &tree.join("schemas"),
    );
    for (cluster, (name, db, prefix, residency)) in clusters.iter().zip(REGIONS) {
        fs::write(
            tree.join(format!("regions/{name}.toml")),
            format!(
                "name = \"{name}\"\nresidency = \"{residency}\"\n\n[postgres]\nhost = \"{}\"\nport = {}\n\
                 database = \"{db}\"\nsslmode = \"disable\"\n\n[credentials]\nenv = \"{prefix}\"\n\n\
                 [apply]\nmax_parallel = 4\n",
                cluster.host(),
                cluster.port()
            ),
        )
        .unwrap();
    }
}

/// The tenants of region `r` (an index into [`REGIONS`]): a contiguous range of numbers.
fn region_range(config: &Config, r: usize) -> std::ops::Range<usize> {
    let per_region = config.tenants.div_ceil(REGIONS.len());
    (r * per_region).min(config.tenants)..((r + 1) * per_region).min(config.tenants)
}

/// The number of digits in tenant slugs (`t00042`).
fn slug_width(config: &Config) -> usize {
    config.tenants.to_string().len().max(5)
}

/// Writes one file per tenant: `tenants/t00042.toml`.
fn write_tenants(tree: &Path, config: &Config) {
    let width = slug_width(config);
    for (r, (region, _, _, residency)) in REGIONS.iter().enumerate() {
        for i in region_range(config, r) {
            fs::write(
                tree.join(format!("tenants/t{i:0width$}.toml")),
                format!(
                    "slug = \"t{i:0width$}\"\nregion = \"{region}\"\nresidency = \"{residency}\"\n"
                ),
            )
            .unwrap();
        }
    }
}

/// A string literal in the psql script that sets up the bench (values the bench generates
/// itself; neo-reconcile binds its values as parameters instead).
fn psql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Creates every tenant at `tenant_template` version `from` with SQL, as apply would have:
/// the roles, schema, grants and default privileges of `neo_reconcile::sql::create_tenant`
/// (run by the superuser, so the login role is named instead of `CURRENT_USER`), a
/// `neo_reconcile.tenants` row, one `schema_history` row per version with the files' real
/// checksums, and a registry row. Both regions at once, in batches of 500 tenants per
/// transaction.
fn setup_tenants_with_sql(tree: &Path, clusters: &[PgCluster], config: &Config) {
    let desired = engine::load_desired(tree).expect("the generated tree is valid");
    let set = desired
        .schema_set("tenant_template")
        .expect("the example set");
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    let width = slug_width(config);
    let versions: Vec<String> = set.migrations[..config.from as usize]
        .iter()
        .map(|m| {
            format!(
                "({}, {}, {})",
                m.version,
                psql_literal(&m.description),
                psql_literal(&m.checksum)
            )
        })
        .collect();
    std::thread::scope(|scope| {
        for (r, (cluster, (name, db, _, _))) in clusters.iter().zip(REGIONS).enumerate() {
            let tenants: Vec<_> = desired.tenants_in(name).collect();
            let range = region_range(config, r);
            assert_eq!(tenants.len(), range.len());
            let mut script = String::new();
            for chunk in tenants.chunks(500) {
                script += "BEGIN;\n";
                for t in chunk {
                    let ddl = sql::create_tenant(&t.schema(), &t.owner_role(), &t.rw_role());
                    script += &ddl.replace("TO CURRENT_USER", &format!("TO {LOGIN}"));
                    script += ";\n";
                    let _ = writeln!(
                        script,
                        "SET ROLE {};\nSET search_path TO {};",
                        sql::ident(&t.owner_role()),
                        sql::ident(&t.schema())
                    );
                    for m in &set.migrations[..config.from as usize] {
                        script += &m.sql;
                        script += "\n;\n";
                    }
                    script += "RESET ROLE;\nRESET search_path;\n";
                }
                script += "COMMIT;\n";
            }
            let slugs = format!(
                "(SELECT 't' || lpad(i::text, {width}, '0') AS slug FROM generate_series({}, {}) AS i) AS t",
                range.start,
                range.end - 1
            );
            let _ = write!(
                script,
                "INSERT INTO neo_reconcile.tenants (slug, status, schema_name, owner_role, rw_role, git_commit)
                 SELECT slug, 'active', 'tenant_' || slug, 'tenant_' || slug || '_owner', 'tenant_' || slug || '_rw', NULL
                 FROM {slugs};
                 INSERT INTO neo_reconcile.schema_history
                   (target_schema, schema_set, version, description, checksum, applied_by, git_commit, execution_ms, success, run_id)
                 SELECT 'tenant_' || slug, 'tenant_template', v.version, v.description, v.checksum, {}, NULL, 1, true,
                        (SELECT max(id) FROM neo_reconcile.runs)
                 FROM {slugs} CROSS JOIN (VALUES {}) AS v (version, description, checksum)
                 ORDER BY 1, 3;\n",
                psql_literal(&format!("{LOGIN}@{host}")),
                versions.join(", ")
            );
            scope.spawn(move || cluster.psql(db, &script));
        }
    });
    // The registry, in the control-plane database of the first region.
    let mut registry = String::new();
    for (r, (cluster, (name, db, _, _))) in clusters.iter().zip(REGIONS).enumerate() {
        let range = region_range(config, r);
        let _ = write!(
            registry,
            "INSERT INTO admin.database_connections
               (tenant_slug, region, host, port, database_name, schema_name, status, schema_versions, updated_at, git_commit)
             SELECT slug, {}, {}, {}, {}, 'tenant_' || slug, 'active', {}::jsonb, now(), NULL
             FROM (SELECT 't' || lpad(i::text, {width}, '0') AS slug FROM generate_series({}, {}) AS i) AS t;\n",
            psql_literal(name),
            psql_literal(cluster.host()),
            cluster.port(),
            psql_literal(db),
            psql_literal(&format!("{{\"tenant_template\": {}}}", config.from)),
            range.start,
            range.end - 1
        );
    }
    clusters[0].psql(CONTROL_PLANE_DB, &registry);
}

/// `NEO_BENCH_HOLD=1`: keeps the clusters and the tree while a profiler runs the binary by
/// hand. Writes the logins to `<work>/env` (readable by the owner only) and waits until
/// `<work>/go` exists.
fn hold(tree: &Path, work: &Path, logins: &[(&str, String)]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut env = String::new();
    for (prefix, password) in logins {
        let _ = writeln!(
            env,
            "export {prefix}_USER={LOGIN} {prefix}_PASSWORD={password}"
        );
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(work.join("env"))
        .expect("a new env file");
    std::io::Write::write_all(&mut file, env.as_bytes()).expect("writing the env file");
    println!(
        "holding: tree {}, logins in {}; `touch {}` to go on",
        tree.display(),
        work.join("env").display(),
        work.join("go").display()
    );
    while !work.join("go").exists() {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many statements one `plan --format text` sends to each region's server, counted in
/// the server log with `log_statement = all` set for the login role during that one run
/// (`BEGIN`, `SET TRANSACTION` and `COMMIT` included; the control-plane database counts with
/// its region).
fn count_statements(tree: &Path, work: &Path, clusters: &[PgCluster]) -> Vec<usize> {
    let offsets: Vec<u64> = clusters
        .iter()
        .map(|c| {
            c.psql(
                "postgres",
                &format!("ALTER ROLE {LOGIN} SET log_statement = 'all'"),
            );
            fs::metadata(c.log_path()).map_or(0, |m| m.len())
        })
        .collect();
    let out = neo(
        &["plan", path_str(tree), "--format", "text"],
        work,
        "count-statements",
    );
    assert_eq!(out.code, 0, "plan failed; see {}", out.stderr.display());
    clusters
        .iter()
        .zip(offsets)
        .map(|(c, offset)| {
            c.psql(
                "postgres",
                &format!("ALTER ROLE {LOGIN} RESET log_statement"),
            );
            let log = fs::read(c.log_path()).expect("the server log");
            String::from_utf8_lossy(&log[offset as usize..])
                .lines()
                .filter(|l| l.contains("LOG:  statement: ") || l.contains("LOG:  execute "))
                .count()
        })
        .collect()
}

/// Whether a plan's summary shows nothing to do: every count in it is 0 and every flag (a
/// rollback of every tenant) false, whatever a newer plan format adds.
fn is_converged(summary: &serde_json::Value) -> bool {
    summary
        .as_object()
        .is_some_and(|counts| !counts.is_empty() && counts.values().all(|n| n == 0 || *n == false))
}

/// Writes neo.toml with the given `tenant_template` target.
fn set_target(tree: &Path, target: u32, drift: bool) {
    let off = if drift { "" } else { "drift = \"off\"\n" };
    fs::write(
        tree.join("neo.toml"),
        format!(
            "format_version = 1\n\n[control_plane]\nregion = \"{}\"\ndatabase = \"{CONTROL_PLANE_DB}\"\n\n\
             [policy]\nallow_destroy = false\n\n\
             [schema_sets.platform_common]\nscope = \"region\"\ntarget = \"latest\"\n{off}\n\
             [schema_sets.tenant_template]\nscope = \"tenant\"\ndepends_on = [\"platform_common\"]\ntarget = {target}\n{off}",
            REGIONS[0].0
        ),
    )
    .unwrap();
}

/// Runs `plan --format json` and parses its output.
fn plan_json(tree: &Path, work: &Path) -> serde_json::Value {
    let out = neo(
        &["plan", path_str(tree), "--format", "json"],
        work,
        "check-plan",
    );
    assert_eq!(out.code, 0, "plan failed; see {}", out.stderr.display());
    let text = fs::read_to_string(&out.stdout).unwrap();
    serde_json::from_str(&text).expect("plan --format json prints JSON")
}

/// Checks that the plan migrates every tenant from `from` to `to`, and nothing else but the
/// registry update.
fn check_pending_plan(plan: &serde_json::Value, config: &Config) {
    let summary = &plan["summary"];
    assert_eq!(summary["migrate"], config.tenants, "summary: {summary}");
    assert_eq!(summary["blocked"], 0, "summary: {summary}");
    assert_eq!(summary["unreachable"], 0, "summary: {summary}");
    // With drift detection on, apply will also compute the shape of the new version, once
    // per region.
    let shapes = summary["compute_shape"].as_u64().unwrap_or(0) as usize;
    let regions = plan["regions"].as_array().unwrap().len();
    assert_eq!(
        shapes,
        if config.drift { regions } else { 0 },
        "summary: {summary}"
    );
    assert_eq!(
        summary["changes"],
        config.tenants + 1 + shapes,
        "summary: {summary}"
    );
    let mut migrates = 0;
    for region in plan["regions"].as_array().unwrap() {
        for action in region["actions"].as_array().unwrap() {
            match action["kind"].as_str().unwrap() {
                "migrate" => {
                    assert_eq!(action["from"], config.from, "{action}");
                    assert_eq!(action["to"], config.to, "{action}");
                    assert!(action["tenant"].is_string(), "{action}");
                    migrates += 1;
                }
                "update_registry" => {
                    assert_eq!(action["upsert"].as_array().unwrap().len(), config.tenants);
                }
                "compute_shape" => {
                    assert_eq!(
                        action["versions"],
                        format!("tenant_template V{}", config.to)
                    );
                }
                other => panic!("unexpected action {other}: {action}"),
            }
        }
    }
    assert_eq!(migrates, config.tenants);
}

/// One finished run of the binary: its exit code, its measurement, and where its standard
/// output and error went.
struct Run {
    code: i32,
    measured: Measured,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// Runs `neo-reconcile <args>` with its output in files named after `tag` under `work`.
fn neo(args: &[&str], work: &Path, tag: &str) -> Run {
    let stdout = work.join(format!("{tag}.out"));
    let stderr = work.join(format!("{tag}.err"));
    let measured = measure(
        work,
        &[Proc {
            program: PathBuf::from(BIN),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        }],
    );
    Run {
        code: measured.codes[0],
        measured,
        stdout,
        stderr,
    }
}

/// Wall times, peak RSS and CPU times of repeated runs.
#[derive(Default)]
struct Samples {
    walls: Vec<Duration>,
    rss_kib: Vec<u64>,
    cpu: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, measured: &Measured) {
        self.walls.push(measured.wall);
        self.rss_kib.push(measured.max_rss_kib);
        self.cpu.push(measured.cpu);
    }

    fn median_cpu(&self) -> Duration {
        median(&self.cpu)
    }

    fn median(&self) -> Duration {
        median(&self.walls)
    }

    fn max_rss(&self) -> u64 {
        self.rss_kib.iter().copied().max().unwrap_or(0)
    }
}

fn bytes(n: usize) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}
