//! Apply speed: `neo-reconcile apply` migrating many tenants, against plain psql doing the
//! same SQL at the same parallelism.
//!
//! Every round starts one fresh throwaway PostgreSQL cluster (through the integration tests'
//! `support/pg.rs`) and prepares two databases in it to the same starting point,
//! `NEO_BENCH_TENANTS` (default 1,000) tenant schemas each (the sides run one after the other,
//! never at once, so they share the server, its WAL and its storage, but not a moment):
//!
//! - neo-reconcile's region database by a real `apply --auto-approve` of a tree whose tenant-scope
//!   set `tenant_app` has target 1, where V1 is trivial (`SELECT 1`): that creates the tenants'
//!   schemas, roles and bookkeeping;
//! - the baseline's database by plain SQL: `CREATE SCHEMA tenant_<slug>` for every tenant, owned
//!   by the same login role.
//!
//! Then it measures, in alternating order from round to round:
//!
//! - neo-reconcile: the target raised to 13 and `apply --auto-approve`, which applies V2..V13,
//!   the twelve realistic migrations below (tables, indexes, constraints, seed data, added
//!   columns with defaults, a backfill, a view, functions and a trigger, an enum conversion,
//!   a generated column), each in its own transaction with its history row, tenants
//!   `max_parallel` (`NEO_BENCH_PARALLEL`, default 4) at a time;
//! - the baseline: the same twelve files run by `max_parallel` psql processes at once, the
//!   tenants divided between them, each process handling its share one tenant after the
//!   other, each tenant in one transaction:
//!   `BEGIN; SET LOCAL search_path TO tenant_<slug>; <the twelve files>; COMMIT;`.
//!
//! Both connect over TCP as the same least-privilege login role. Before each measurement both
//! servers are vacuumed, analyzed and checkpointed, and dirty pages are synced, so that
//! neither side pays for the other's writeback. The bench reports the median, min and max wall
//! time of `NEO_BENCH_ROUNDS` (default 3) rounds, the peak RSS and CPU time of the client
//! processes, the ratio, the server's CPU time, the transactions each side committed, and
//! where neo-reconcile's time goes (from the timestamps of its own log).
//!
//! `NEO_BENCH_PROFILE=1` adds, after the timed rounds: one round with
//! `log_min_duration_statement = 0` on both servers (the statements each side sent, and the
//! server time they took, by first word); and the baseline's SQL in other shapes on fresh
//! clusters (one transaction per migration as neo-reconcile does, with and without
//! reconnecting every 25 tenants), which shows what the shape of the work costs PostgreSQL.
//! `NEO_BENCH_AUTOVACUUM=off` turns autovacuum off on every server.
//!
//! Nothing is asserted about speed; the bench fails only when a side does not reach the
//! expected state (both must end with the same objects and rows). Run it with
//! `cargo bench --bench apply`; see BENCHMARKS.md.

#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/it/support/pg.rs"]
mod pg;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    env_number, measure, median, mib, path_str, psql_path, random_password, wrapper, Measured,
    Proc, Table, TemplateCleanup, WRAP_FLAG,
};
use pg::PgCluster;

/// The release binary that `cargo bench` builds alongside this bench.
const BIN: &str = env!("CARGO_BIN_EXE_neo-reconcile");

/// The one region, its database and the prefix of its credentials' environment variables.
const REGION: &str = "us-east";
const DB: &str = "neo_us";
const CREDENTIALS: &str = "NEO_US_EAST";

/// The registry's database, in the same cluster.
const CONTROL_PLANE_DB: &str = "neo_admin";
/// The baseline's database, in the same cluster as neo-reconcile's.
const BASE_DB: &str = "baseline_us";

/// The login role both sides connect as.
const LOGIN: &str = "neo_migrator";

/// The tenant-scope schema set.
const SET: &str = "tenant_app";

/// V1: trivial, so that one apply can create the tenants before the measured run.
const V1: (&str, &str) = (
    "V1__baseline.sql",
    "-- tenant_app V1: nothing yet; the tenant's schema and roles exist.\nSELECT 1;\n",
);

/// V2..V13: the twelve migrations both sides apply, all transactional.
const MIGRATIONS: [(&str, &str); 12] = [
    (
        "V2__create_customers.sql",
        r#"-- tenant_app V2: customers, with a case-insensitive unique e-mail address.
CREATE TABLE customers (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text        NOT NULL,
    full_name  text        NOT NULL,
    country    text        NOT NULL DEFAULT 'US',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX customers_email_lower_key ON customers (lower(email));
COMMENT ON TABLE customers IS 'People who buy from this tenant.';
"#,
    ),
    (
        "V3__create_products_and_orders.sql",
        r#"-- tenant_app V3: products, orders and order lines, with their foreign keys.
CREATE TABLE products (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku         text    NOT NULL UNIQUE,
    name        text    NOT NULL,
    price_cents integer NOT NULL CHECK (price_cents >= 0)
);
CREATE TABLE orders (
    id          bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint        NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    status      text          NOT NULL DEFAULT 'pending',
    total       numeric(12,2) NOT NULL DEFAULT 0,
    created_at  timestamptz   NOT NULL DEFAULT now()
);
CREATE TABLE order_lines (
    order_id         bigint  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          integer NOT NULL,
    product_id       bigint  NOT NULL REFERENCES products (id),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents integer NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
"#,
    ),
    (
        "V4__add_lookup_indexes.sql",
        r#"-- tenant_app V4: indexes for the common lookups (foreign keys, recent orders).
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_created_at_idx ON orders (created_at DESC);
CREATE INDEX order_lines_product_id_idx ON order_lines (product_id);
"#,
    ),
    (
        "V5__seed_starter_data.sql",
        r#"-- tenant_app V5: the small starter catalogue and demo data every new tenant gets.
INSERT INTO products (sku, name, price_cents)
SELECT 'SKU-' || lpad(i::text, 4, '0'), 'Product ' || i, 100 + (i * 37) % 9900
  FROM generate_series(1, 20) AS i;
INSERT INTO customers (email, full_name, country)
SELECT 'user' || i || '@example.com', 'User ' || i, (ARRAY['US', 'DE', 'FR', 'GB'])[1 + i % 4]
  FROM generate_series(1, 50) AS i;
INSERT INTO orders (customer_id, status, created_at)
SELECT 1 + i % 50, (ARRAY['pending', 'paid', 'shipped'])[1 + i % 3], now() - i * interval '1 hour'
  FROM generate_series(1, 100) AS i;
INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents)
SELECT o.id, l, 1 + (o.id * l) % 20, l, p.price_cents
  FROM orders o
 CROSS JOIN generate_series(1, 2) AS l
  JOIN products p ON p.id = 1 + (o.id * l) % 20;
"#,
    ),
    (
        "V6__add_integrity_constraints.sql",
        r#"-- tenant_app V6: integrity rules, checked against the existing rows.
ALTER TABLE orders
    ADD CONSTRAINT orders_status_check CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled'));
ALTER TABLE customers
    ADD CONSTRAINT customers_email_format_check CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$');
ALTER TABLE order_lines
    ADD CONSTRAINT order_lines_unit_price_check CHECK (unit_price_cents >= 0);
"#,
    ),
    (
        "V7__add_currency_and_opt_in.sql",
        r#"-- tenant_app V7: added columns with constant defaults (no table rewrite since PostgreSQL 11).
ALTER TABLE orders ADD COLUMN currency char(3) NOT NULL DEFAULT 'EUR';
ALTER TABLE customers ADD COLUMN marketing_opt_in boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN orders.currency IS 'ISO 4217 currency code.';
"#,
    ),
    (
        "V8__backfill_order_totals.sql",
        r#"-- tenant_app V8: order totals in cents, backfilled from the order lines.
ALTER TABLE orders ADD COLUMN total_cents bigint;
UPDATE orders o
   SET total_cents = t.cents
  FROM (SELECT order_id, sum(quantity * unit_price_cents) AS cents
          FROM order_lines GROUP BY order_id) AS t
 WHERE t.order_id = o.id;
UPDATE orders SET total_cents = 0 WHERE total_cents IS NULL;
ALTER TABLE orders
    ALTER COLUMN total_cents SET DEFAULT 0,
    ALTER COLUMN total_cents SET NOT NULL;
"#,
    ),
    (
        "V9__create_customer_order_summary.sql",
        r#"-- tenant_app V9: the view the dashboard reads.
CREATE VIEW customer_order_summary AS
SELECT c.id                            AS customer_id,
       c.email,
       count(o.id)                     AS orders,
       coalesce(sum(o.total_cents), 0) AS total_cents,
       max(o.created_at)               AS last_order_at
  FROM customers c
  LEFT JOIN orders o ON o.customer_id = c.id
 GROUP BY c.id, c.email;
"#,
    ),
    (
        "V10__add_total_function_and_updated_at_trigger.sql",
        r#"-- tenant_app V10: a SQL function for an order's total, and updated_at kept by a trigger.
CREATE FUNCTION order_lines_total(p_order_id bigint)
    RETURNS bigint
    LANGUAGE sql
    STABLE
RETURN (SELECT coalesce(sum(quantity * unit_price_cents), 0)
          FROM order_lines WHERE order_id = p_order_id);

CREATE FUNCTION touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

ALTER TABLE orders ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE TRIGGER orders_touch_updated_at
    BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
"#,
    ),
    (
        "V11__create_order_events.sql",
        r#"-- tenant_app V11: an event log per order, seeded with each existing order's creation.
CREATE TABLE order_events (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   bigint      NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    kind       text        NOT NULL CHECK (kind IN ('created', 'paid', 'shipped', 'cancelled')),
    payload    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_order_id_created_at_idx ON order_events (order_id, created_at);
INSERT INTO order_events (order_id, kind, created_at)
SELECT id, 'created', created_at FROM orders;
"#,
    ),
    (
        "V12__order_status_enum.sql",
        r#"-- tenant_app V12: order status becomes an enum (rewrites orders), with a partial index of open orders.
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'cancelled');
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders
    ALTER COLUMN status DROP DEFAULT,
    ALTER COLUMN status TYPE order_status USING status::order_status,
    ALTER COLUMN status SET DEFAULT 'pending';
CREATE INDEX orders_open_idx ON orders (customer_id) WHERE status IN ('pending', 'paid');
UPDATE orders SET status = 'cancelled' WHERE id % 10 = 0;
"#,
    ),
    (
        "V13__customer_search.sql",
        r#"-- tenant_app V13: customer search (a stored generated column and a GIN index) and documentation.
ALTER TABLE customers
    ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', full_name || ' ' || email)) STORED;
CREATE INDEX customers_search_idx ON customers USING gin (search);
COMMENT ON TABLE orders IS 'Orders, one per checkout.';
COMMENT ON VIEW customer_order_summary IS 'Orders and spending per customer.';
"#,
    ),
];

/// The bench's settings, from the environment.
struct Config {
    /// `NEO_BENCH_TENANTS`: tenant schemas in the region.
    tenants: usize,
    /// `NEO_BENCH_PARALLEL`: the region's `[apply] max_parallel`, and the baseline's psql
    /// processes.
    parallel: usize,
    /// `NEO_BENCH_ROUNDS`: timed rounds, each on fresh clusters.
    rounds: usize,
    /// `NEO_BENCH_PROFILE=1`: one more round with statement logging, for where the time goes.
    profile: bool,
    /// `NEO_BENCH_AUTOVACUUM`: `on` (the default) or `off` on both servers.
    autovacuum: bool,
    /// `NEO_BENCH_DURABILITY`: `on` (the default: PostgreSQL's `fsync`,
    /// `synchronous_commit` and `full_page_writes`) or `off` on both servers.
    durable: bool,
}

impl Config {
    fn from_env() -> Config {
        let config = Config {
            tenants: env_number("NEO_BENCH_TENANTS", 1_000),
            parallel: env_number("NEO_BENCH_PARALLEL", 4),
            rounds: env_number("NEO_BENCH_ROUNDS", 3),
            profile: std::env::var("NEO_BENCH_PROFILE").is_ok_and(|v| v == "1"),
            autovacuum: std::env::var("NEO_BENCH_AUTOVACUUM").map_or(true, |v| v != "off"),
            durable: std::env::var("NEO_BENCH_DURABILITY").map_or(true, |v| v != "off"),
        };
        assert!(config.tenants >= 1 && config.parallel >= 1 && config.rounds >= 1);
        if config.rounds < 3 {
            println!(
                "note: NEO_BENCH_ROUNDS={} is below 3; medians are not meaningful",
                config.rounds
            );
        }
        config
    }
}

/// Which side a measurement is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Neo,
    Baseline,
}

/// One timed run of one side.
struct Sample {
    wall: Duration,
    max_rss_kib: u64,
    /// CPU time (user + system) of the client processes: neo-reconcile, or all the psqls.
    cpu: Duration,
    /// Transactions committed in the region database during the run (pg_stat_database).
    commits: i64,
    /// CPU time of the server's processes during the run (backends, and their background
    /// work such as autovacuum and the checkpointer).
    server_cpu: Duration,
    /// neo-reconcile only: seconds spent before taking the region lock, with the lock until
    /// the last tenant converged, and after that until the process exited.
    phases: Option<[f64; 3]>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(WRAP_FLAG) {
        wrapper(&args[2], &args[3]);
        return;
    }
    let config = Config::from_env();
    let started = Instant::now();
    // Declared before any cluster, so dropped after them, also when a check panics.
    let _cleanup = TemplateCleanup;
    // The credentials go into this process's environment before any thread exists, and
    // every neo-reconcile inherits them; psql gets the password as PGPASSWORD.
    let password = random_password();
    std::env::set_var(format!("{CREDENTIALS}_USER"), LOGIN);
    std::env::set_var(format!("{CREDENTIALS}_PASSWORD"), &password);
    println!(
        "apply bench: {} migrations x {} tenants, max_parallel {}, {} rounds, durability {}, binary {BIN}",
        MIGRATIONS.len(),
        config.tenants,
        config.parallel,
        config.rounds,
        if config.durable {
            "on (PostgreSQL's defaults: fsync, synchronous_commit, full_page_writes)"
        } else {
            "off (NEO_BENCH_DURABILITY=off: fsync, synchronous_commit, full_page_writes off)"
        }
    );
    let work = tempfile::Builder::new()
        .prefix("neo-bench-apply-")
        .tempdir()
        .expect("a temporary directory");
    let work = work.path();
    let tree = work.join("tree");
    write_tree(&tree, &config);
    let scripts = write_baseline_scripts(work, &config, "baseline", BASELINE);

    let mut neo_samples = Vec::new();
    let mut base_samples = Vec::new();
    let mut preps = Vec::new();
    for round in 0..config.rounds {
        let order = if round % 2 == 0 {
            [Side::Neo, Side::Baseline]
        } else {
            [Side::Baseline, Side::Neo]
        };
        let (prep, samples) = run_round(&tree, work, &scripts, &password, &config, order, false);
        preps.push(prep);
        for (side, sample) in order.iter().zip(samples) {
            println!(
                "round {}: {:?} {:.2} s, peak RSS {}, client CPU {:.2} s, server CPU {:.2} s, {} transactions",
                round + 1,
                side,
                sample.wall.as_secs_f64(),
                mib(sample.max_rss_kib),
                sample.cpu.as_secs_f64(),
                sample.server_cpu.as_secs_f64(),
                sample.commits
            );
            match side {
                Side::Neo => neo_samples.push(sample),
                Side::Baseline => base_samples.push(sample),
            }
        }
    }

    let walls = |s: &[Sample]| s.iter().map(|s| s.wall).collect::<Vec<_>>();
    let max_rss = |s: &[Sample]| s.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
    let cpu = |s: &[Sample]| median(&s.iter().map(|s| s.cpu).collect::<Vec<_>>());
    let base = median(&walls(&base_samples));
    let mut table = Table::default();
    table.row(
        &format!(
            "baseline: {} psql sessions, one transaction per tenant",
            config.parallel
        ),
        &walls(&base_samples),
        Some(max_rss(&base_samples)),
        Some(cpu(&base_samples)),
        None,
    );
    table.row(
        &format!("neo-reconcile apply, max_parallel {}", config.parallel),
        &walls(&neo_samples),
        Some(max_rss(&neo_samples)),
        Some(cpu(&neo_samples)),
        Some(base),
    );
    table.row(
        "(setup, not compared) neo-reconcile apply of V1 creating the tenants",
        &preps.iter().map(|p| p.wall).collect::<Vec<_>>(),
        preps.iter().map(|p| p.max_rss_kib).max(),
        Some(median(&preps.iter().map(|p| p.cpu).collect::<Vec<_>>())),
        None,
    );
    println!();
    println!(
        "Results ({} migrations x {} tenants = {} migrations per run; wall times; RSS = peak resident set; for the baseline the largest psql):",
        MIGRATIONS.len(),
        config.tenants,
        MIGRATIONS.len() * config.tenants
    );
    print!("{}", table.render());

    let phase = |i: usize| {
        let mut v: Vec<f64> = neo_samples
            .iter()
            .filter_map(|s| s.phases.map(|p| p[i]))
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!(
        "neo-reconcile's time (medians, from its log): {:.2} s before the region lock (load, observe, plan, log the plan), \
         {:.2} s from the lock to the last tenant (re-observe, re-plan, the migrations), {:.2} s after it (run record, registry, exit)",
        phase(0),
        phase(1),
        phase(2)
    );
    let commits = |s: &[Sample]| {
        let mut v: Vec<i64> = s.iter().map(|s| s.commits).collect();
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "transactions committed per run (median, pg_stat_database.xact_commit): neo-reconcile in {DB} {} ({:.2} per tenant), baseline in {BASE_DB} {} ({:.2} per tenant)",
        commits(&neo_samples),
        commits(&neo_samples) as f64 / config.tenants as f64,
        commits(&base_samples),
        commits(&base_samples) as f64 / config.tenants as f64
    );
    let ratio = median(&walls(&neo_samples)).as_secs_f64() / base.as_secs_f64();
    let rss_bytes = max_rss(&neo_samples) * 1024;
    println!(
        "targets: within 1.1x of the baseline: {:.2}x, {}; peak RSS at most 50 MB: {:.1} MB, {}",
        ratio,
        if ratio <= 1.1 { "met" } else { "NOT met" },
        rss_bytes as f64 / 1e6,
        if rss_bytes <= 50_000_000 {
            "met"
        } else {
            "NOT met"
        }
    );

    if config.profile {
        let order = [Side::Neo, Side::Baseline];
        let (_, samples) = run_round(&tree, work, &scripts, &password, &config, order, true);
        for (side, sample) in order.iter().zip(samples) {
            println!(
                "profile round (statement logging on, not timed for the table): {side:?} {:.2} s",
                sample.wall.as_secs_f64()
            );
        }
        baseline_shapes(work, &password, &config);
    }
    println!("whole bench: {:.1?}", started.elapsed());
}

/// One round on a fresh cluster: prepares both sides (neo-reconcile's region database and the
/// baseline's database, side by side in the one cluster), then measures them in `order`.
/// Returns the measurement of neo-reconcile's preparing apply, and the samples in `order`.
fn run_round(
    tree: &Path,
    work: &Path,
    scripts: &[PathBuf],
    password: &str,
    config: &Config,
    order: [Side; 2],
    profile: bool,
) -> (Measured, Vec<Sample>) {
    let clusters = PgCluster::start_many_with(1, config.durable);
    let (neo_cluster, base_cluster) = (&clusters[0], &clusters[0]);
    prepare_cluster(neo_cluster, password, config);
    write_region(tree, neo_cluster, config);

    // neo-reconcile's starting point: every tenant created and at V1.
    set_target(tree, 1);
    let (code, prep) = neo_apply(tree, work, "prep");
    assert_eq!(
        code,
        0,
        "the preparing apply failed; see {}",
        work.join("prep.err").display()
    );
    let at_v1 = neo_cluster.psql(
        DB,
        &format!("SELECT count(*) FROM neo_reconcile.schema_history WHERE success AND schema_set = '{SET}'"),
    );
    assert_eq!(at_v1.trim(), config.tenants.to_string(), "tenants at V1");
    prepare_baseline(base_cluster, config);

    // Both servers quiet before a measurement.
    quiesce(neo_cluster, &[DB, CONTROL_PLANE_DB, BASE_DB]);
    if profile {
        for cluster in &clusters {
            cluster.psql(
                "postgres",
                "ALTER SYSTEM SET log_min_duration_statement = 0",
            );
            cluster.psql("postgres", "SELECT pg_reload_conf()");
        }
    }
    set_target(tree, 1 + MIGRATIONS.len() as u32);

    let mut samples = Vec::new();
    for side in order {
        let (cluster, db) = match side {
            Side::Neo => (neo_cluster, DB),
            Side::Baseline => (base_cluster, BASE_DB),
        };
        // Dirty pages of the preparation (or of the other side's run) are written back now,
        // not during the measurement.
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        let commits_before = commits(cluster, db);
        let server_cpu_before = server_cpu(cluster);
        let log_start = fs::metadata(cluster.log_path()).map_or(0, |m| m.len());
        let started_at = SystemTime::now();
        let mut sample = match side {
            Side::Neo => {
                let (code, measured) = neo_apply(tree, work, "apply");
                assert_eq!(
                    code,
                    0,
                    "the measured apply failed; see {}",
                    work.join("apply.err").display()
                );
                let log = fs::read_to_string(work.join("apply.err")).unwrap_or_default();
                Sample {
                    wall: measured.wall,
                    max_rss_kib: measured.max_rss_kib,
                    cpu: measured.cpu,
                    commits: 0,
                    server_cpu: Duration::ZERO,
                    phases: phases(&log, started_at, measured.wall),
                }
            }
            Side::Baseline => {
                let procs: Vec<Proc> = scripts
                    .iter()
                    .enumerate()
                    .map(|(i, script)| psql_baseline(base_cluster, script, password, work, i))
                    .collect();
                let measured = measure(work, &procs);
                assert!(
                    measured.codes.iter().all(|c| *c == 0),
                    "a baseline psql failed ({:?}); see {}/baseline-*.err",
                    measured.codes,
                    work.display()
                );
                Sample {
                    wall: measured.wall,
                    max_rss_kib: measured.max_rss_kib,
                    cpu: measured.cpu,
                    commits: 0,
                    server_cpu: Duration::ZERO,
                    phases: None,
                }
            }
        };
        sample.commits = commits(cluster, db) - commits_before;
        sample.server_cpu = server_cpu(cluster).saturating_sub(server_cpu_before);
        if profile {
            report_statement_log(side, &cluster.log_path(), log_start);
        }
        samples.push(sample);
    }

    // Both sides must have reached the same state.
    let applied = neo_cluster.psql(
        DB,
        &format!("SELECT count(*) FROM neo_reconcile.schema_history WHERE success AND schema_set = '{SET}'"),
    );
    assert_eq!(
        applied.trim(),
        ((1 + MIGRATIONS.len()) * config.tenants).to_string(),
        "history rows after the measured apply"
    );
    let (neo_state, base_state) = (
        fingerprint(neo_cluster, DB),
        fingerprint(base_cluster, BASE_DB),
    );
    assert_eq!(
        neo_state, base_state,
        "neo-reconcile and the baseline left different schemas"
    );
    (prep, samples)
}

/// Runs `neo-reconcile apply <tree> --auto-approve`; returns its exit code and measurement.
fn neo_apply(tree: &Path, work: &Path, tag: &str) -> (i32, Measured) {
    let measured = measure(
        work,
        &[Proc {
            program: PathBuf::from(BIN),
            args: vec![
                "apply".into(),
                path_str(tree).into(),
                "--auto-approve".into(),
            ],
            env: Vec::new(),
            stdout: work.join(format!("{tag}.out")),
            stderr: work.join(format!("{tag}.err")),
        }],
    );
    (measured.codes[0], measured)
}

/// One baseline psql process: as the login role over TCP, stopping at the first error.
fn psql_baseline(
    cluster: &PgCluster,
    script: &Path,
    password: &str,
    work: &Path,
    i: usize,
) -> Proc {
    let port = cluster.port().to_string();
    let args = [
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        cluster.host(),
        "-p",
        &port,
        "-U",
        LOGIN,
        "-d",
        BASE_DB,
        "-o",
        "/dev/null",
        "-f",
        path_str(script),
    ];
    Proc {
        program: psql_path(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("PGPASSWORD".into(), password.into())],
        stdout: PathBuf::from("/dev/null"),
        stderr: work.join(format!("baseline-{i}.err")),
    }
}

/// Transactions committed so far in database `db`. Statistics reach the shared view
/// when a backend exits or at most a second later, so this waits for them to settle.
fn commits(cluster: &PgCluster, db: &str) -> i64 {
    let read = || {
        cluster
            .psql(
                "postgres",
                &format!("SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"),
            )
            .trim()
            .parse::<i64>()
            .expect("a number")
    };
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The CPU time (user + system) of a cluster's postmaster, of its children that exited (the
/// kernel adds them to the postmaster's `cutime`/`cstime`) and of its running children.
fn server_cpu(cluster: &PgCluster) -> Duration {
    let ticks = |pid: &str, with_children: bool| -> u64 {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0;
        };
        // The fields after the command name: utime, stime, cutime, cstime are 14..17 (1-based).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let take = if with_children { 4 } else { 2 };
        fields
            .iter()
            .skip(11)
            .take(take)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum()
    };
    let pid_file =
        fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap_or_default();
    let Some(postmaster) = pid_file.lines().next() else {
        return Duration::ZERO;
    };
    let mut total = ticks(postmaster, true);
    let children = fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children"))
        .unwrap_or_default();
    for child in children.split_whitespace() {
        total += ticks(child, false);
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(total * 1000 / hz)
}

/// What each schema holds, summed over all tenant schemas: relations by kind, columns,
/// constraints, functions, triggers and types, and the rows of every table.
fn fingerprint(cluster: &PgCluster, db: &str) -> String {
    cluster.psql(
        db,
        "SELECT (SELECT string_agg(relkind::text || '=' || n, ',' ORDER BY relkind)
                   FROM (SELECT c.relkind, count(*) AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
                          WHERE s.nspname LIKE 'tenant\\_%' GROUP BY c.relkind) k),
                (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                   JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname LIKE 'tenant\\_%' AND a.attnum > 0),
                (SELECT count(*) FROM pg_constraint k JOIN pg_namespace s ON s.oid = k.connamespace WHERE s.nspname LIKE 'tenant\\_%'),
                (SELECT count(*) FROM pg_proc p JOIN pg_namespace s ON s.oid = p.pronamespace WHERE s.nspname LIKE 'tenant\\_%'),
                (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                   JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname LIKE 'tenant\\_%'),
                (SELECT count(*) FROM pg_type t JOIN pg_namespace s ON s.oid = t.typnamespace WHERE s.nspname LIKE 'tenant\\_%'),
                (SELECT sum(n_live_tup) FROM pg_stat_user_tables WHERE schemaname LIKE 'tenant\\_%')",
    )
}

/// With statement logging on, counts the protocol messages the server logged since `from`
/// (one per simple query, which for neo-reconcile is a whole migration batch; parse, bind and
/// execute separately for prepared statements) and the time it spent on them, in total and
/// by the first word of the statement.
fn report_statement_log(side: Side, log: &Path, from: u64) {
    let text = fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
    let (mut messages, mut server_ms) = (0u64, 0f64);
    let mut by_word: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once("duration: ") else {
            continue;
        };
        let Some((number, tail)) = rest.split_once(" ms") else {
            continue;
        };
        let ms: f64 = number.parse().unwrap_or(0.0);
        server_ms += ms;
        messages += 1;
        let tail = tail.trim_start();
        let word = match tail.strip_prefix("statement: ") {
            Some(statement) => statement
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_uppercase(),
            None => tail.split([' ', ':']).next().unwrap_or("").to_string(),
        };
        let entry = by_word.entry(word).or_default();
        entry.0 += 1;
        entry.1 += ms;
    }
    let mut words: Vec<_> = by_word.into_iter().collect();
    words.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    println!(
        "profile {side:?}: {messages} logged messages, server time {:.1} s summed over sessions; by first word: {}",
        server_ms / 1000.0,
        words
            .iter()
            .take(8)
            .map(|(w, (n, ms))| format!("{w} {n}x {:.1} s", ms / 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// neo-reconcile's phases from the timestamps of its log lines: until "Took the region
/// lock.", until the last "Tenant converged.", and until the process ended.
fn phases(log: &str, started_at: SystemTime, wall: Duration) -> Option<[f64; 3]> {
    let start = started_at.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    let at = |needle: &str, last: bool| {
        let mut lines = log.lines().filter(|l| l.contains(needle));
        let line = if last {
            lines.next_back()
        } else {
            lines.next()
        }?;
        log_time(line)
    };
    let locked = at("Took the region lock.", false)?;
    let converged = at("Tenant converged.", true)?;
    let end = start + wall.as_secs_f64();
    Some([locked - start, converged - locked, end - converged])
}

/// The time of a log line that starts with an RFC 3339 UTC timestamp
/// (`2026-01-31T12:34:56.789012Z`), in seconds since the Unix epoch.
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let ss = t.next()?.parse::<f64>().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

/// The SQL expression of tenant number `i`'s slug, as [`slug`] writes it.
fn slug_sql(config: &Config) -> String {
    format!("'t' || lpad(i::text, {}, '0')", slug_width(config))
}

fn slug(config: &Config, i: usize) -> String {
    format!("t{i:0width$}", width = slug_width(config))
}

fn slug_width(config: &Config) -> usize {
    config.tenants.to_string().len().max(4)
}

/// Writes neo.toml (see [`set_target`]), the schema set and one file per tenant.
fn write_tree(tree: &Path, config: &Config) {
    let set = tree.join("schemas").join(SET);
    fs::create_dir_all(&set).unwrap();
    fs::create_dir_all(tree.join("regions")).unwrap();
    fs::create_dir_all(tree.join("tenants")).unwrap();
    for (file, sql) in std::iter::once(V1).chain(MIGRATIONS) {
        fs::write(set.join(file), sql).unwrap();
    }
    for i in 0..config.tenants {
        let slug = slug(config, i);
        fs::write(
            tree.join(format!("tenants/{slug}.toml")),
            format!("slug = \"{slug}\"\nregion = \"{REGION}\"\nresidency = \"US\"\n"),
        )
        .unwrap();
    }
}

/// Points the region at this round's neo-reconcile cluster.
fn write_region(tree: &Path, cluster: &PgCluster, config: &Config) {
    fs::write(
        tree.join(format!("regions/{REGION}.toml")),
        format!(
            "name = \"{REGION}\"\nresidency = \"US\"\n\n[postgres]\nhost = \"{}\"\nport = {}\ndatabase = \"{DB}\"\n\
             sslmode = \"disable\"\n\n[credentials]\nenv = \"{CREDENTIALS}\"\n\n[apply]\nmax_parallel = {}\nmax_failures = 1\n",
            cluster.host(),
            cluster.port(),
            config.parallel
        ),
    )
    .unwrap();
}

/// Writes neo.toml with the given target of the tenant-scope set.
fn set_target(tree: &Path, target: u32) {
    fs::write(
        tree.join("neo.toml"),
        format!(
            "format_version = 1\n\n[control_plane]\nregion = \"{REGION}\"\ndatabase = \"{CONTROL_PLANE_DB}\"\n\n\
             [policy]\nallow_destroy = false\n\n[schema_sets.{SET}]\nscope = \"tenant\"\ntarget = {target}\n"
        ),
    )
    .unwrap();
}

/// The shape of the baseline's SQL.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// One transaction per migration (as neo-reconcile does) instead of one per tenant.
    per_migration: bool,
    /// Reconnect (`\connect`, a fresh server backend) every this many tenants; 0: never.
    reconnect_every: usize,
}

/// The baseline of the comparison: one transaction per tenant, one session per process.
const BASELINE: Shape = Shape {
    per_migration: false,
    reconnect_every: 0,
};

/// One script per baseline psql process: its share of the tenants (a contiguous range), each
/// tenant's twelve migrations in one transaction (or one transaction each, per `shape`).
fn write_baseline_scripts(work: &Path, config: &Config, name: &str, shape: Shape) -> Vec<PathBuf> {
    let share = config.tenants.div_ceil(config.parallel);
    (0..config.parallel)
        .map(|k| {
            let mut script = String::new();
            for (n, i) in ((k * share)..((k + 1) * share).min(config.tenants)).enumerate() {
                if shape.reconnect_every > 0 && n > 0 && n % shape.reconnect_every == 0 {
                    script.push_str("\\connect\n");
                }
                let begin = format!(
                    "BEGIN;\nSET LOCAL search_path TO \"tenant_{}\";\n",
                    slug(config, i)
                );
                if !shape.per_migration {
                    script.push_str(&begin);
                }
                for (_, sql) in MIGRATIONS {
                    if shape.per_migration {
                        script.push_str(&begin);
                    }
                    script.push_str(sql);
                    script.push('\n');
                    if shape.per_migration {
                        script.push_str("COMMIT;\n");
                    }
                }
                if !shape.per_migration {
                    script.push_str("COMMIT;\n");
                }
            }
            let path = work.join(format!("{name}-{k}.sql"));
            fs::write(&path, script).unwrap();
            path
        })
        .collect()
}

/// Profile: the baseline's SQL in other shapes, each on a fresh cluster prepared like the
/// baseline's, to show what the shape of neo-reconcile's work costs PostgreSQL.
fn baseline_shapes(work: &Path, password: &str, config: &Config) {
    let shapes = [
        (
            "psql, one transaction per migration (neo-reconcile's shape)",
            Shape {
                per_migration: true,
                reconnect_every: 0,
            },
        ),
        (
            "psql, one transaction per migration, reconnecting every 25 tenants",
            Shape {
                per_migration: true,
                reconnect_every: 25,
            },
        ),
        (
            "psql, one transaction per tenant, reconnecting every 25 tenants",
            Shape {
                per_migration: false,
                reconnect_every: 25,
            },
        ),
    ];
    for (i, (label, shape)) in shapes.into_iter().enumerate() {
        let scripts = write_baseline_scripts(work, config, &format!("shape{i}"), shape);
        let cluster = PgCluster::start();
        prepare_cluster(&cluster, password, config);
        prepare_baseline(&cluster, config);
        quiesce(&cluster, &[DB, BASE_DB]);
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        let cpu_before = server_cpu(&cluster);
        let procs: Vec<Proc> = scripts
            .iter()
            .enumerate()
            .map(|(k, script)| psql_baseline(&cluster, script, password, work, k))
            .collect();
        let measured = measure(work, &procs);
        assert!(
            measured.codes.iter().all(|c| *c == 0),
            "a psql of shape {i} failed; see {}",
            work.display()
        );
        println!(
            "profile: {label}: {:.2} s, server CPU {:.2} s",
            measured.wall.as_secs_f64(),
            server_cpu(&cluster)
                .saturating_sub(cpu_before)
                .as_secs_f64()
        );
    }
}

/// Creates the login role and the region database it owns, as tests/it/world.rs does.
fn prepare_cluster(cluster: &PgCluster, password: &str, config: &Config) {
    cluster.psql(
        "postgres",
        &format!("CREATE ROLE {LOGIN} LOGIN CREATEROLE CREATEDB PASSWORD '{password}'"),
    );
    cluster.psql("postgres", &format!("CREATE DATABASE {DB} OWNER {LOGIN}"));
    if !config.autovacuum {
        cluster.psql("postgres", "ALTER SYSTEM SET autovacuum = off");
        cluster.psql("postgres", "SELECT pg_reload_conf()");
    }
}

/// The baseline's starting point: its database, and the tenants' schemas in it, owned by
/// the login role.
fn prepare_baseline(cluster: &PgCluster, config: &Config) {
    cluster.psql(
        "postgres",
        &format!("CREATE DATABASE {BASE_DB} OWNER {LOGIN}"),
    );
    cluster.psql(
        BASE_DB,
        &format!(
            "DO $$BEGIN FOR i IN 0..{} LOOP EXECUTE format('CREATE SCHEMA %I AUTHORIZATION {LOGIN}', 'tenant_' || {}); END LOOP; END$$",
            config.tenants - 1,
            slug_sql(config)
        ),
    );
}

/// A quiet server before a measurement: its databases vacuumed and analyzed, checkpointed.
fn quiesce(cluster: &PgCluster, databases: &[&str]) {
    for db in databases {
        cluster.psql(db, "VACUUM ANALYZE");
    }
    cluster.psql("postgres", "CHECKPOINT");
}
