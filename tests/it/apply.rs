//! `neo-reconcile apply` against real throwaway clusters: convergence, idempotence, crash
//! safety, one writer per region, failure containment, stale plans and tenant lifecycle.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::world::World;

/// A tenant_template V7 that waits, inside its transaction, while the table
/// `public.neo_test_pause` exists, so a test can catch apply in the middle of a migration.
/// Its checksum does not depend on the pause.
const PAUSING_V7: &str = "CREATE TABLE audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());\n\
DO $$ BEGIN\n\
  WHILE EXISTS (SELECT FROM pg_catalog.pg_class WHERE relname = 'neo_test_pause') LOOP PERFORM pg_sleep(0.05); END LOOP;\n\
END $$;\n\
CREATE INDEX audit_log_at_idx ON audit_log (at);\n";

/// Adds V7, moves the fleet to `fleet` and pins the canary acme at 7.
fn add_v7_with_fleet_at(w: &World, sql: &str, fleet: u32) {
    w.write("schemas/tenant_template/V7__audit_log.sql", sql);
    w.edit("neo.toml", |s| {
        s.replace("target = 5 ", &format!("target = {fleet} "))
    });
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6", "tenant_template = 7")
    });
}

/// Adds V7 and moves everyone to it.
fn add_v7(w: &World, sql: &str) {
    add_v7_with_fleet_at(w, sql, 7);
}

fn history_count(w: &World, schema: &str) -> String {
    w.us.psql(
        "neo_us",
        &format!("SELECT count(*) FROM neo_reconcile.schema_history WHERE target_schema = '{schema}' AND success"),
    )
    .trim()
    .to_string()
}

fn advisory_locks(w: &World) -> String {
    w.us.psql(
        "postgres",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
    )
    .trim()
    .to_string()
}

/// Waits until a query on the us-east cluster returns `want`.
fn wait_for(w: &World, db: &str, sql: &str, want: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        if w.us.psql(db, sql).trim() == want {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for `{sql}` to return {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `apply --region us-east` with `public.neo_test_pause` present (see [`PAUSING_V7`])
/// and returns once one of its migrations is sleeping inside its transaction. Its standard
/// output and error are `piped()` or `null()`.
fn start_paused_apply(w: &World, output: fn() -> Stdio) -> std::process::Child {
    w.us.psql("neo_us", "CREATE TABLE public.neo_test_pause ()");
    let tree = w.tree.path().to_str().unwrap().to_string();
    let child = w
        .command(&["apply", &tree, "--auto-approve", "--region", "us-east"])
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap();
    wait_for(
        w,
        "postgres",
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%neo_test_pause%' AND state = 'active' AND application_name = 'neo-reconcile'",
        "t",
        Duration::from_secs(60),
    );
    child
}

#[test]
fn full_bootstrap_then_second_run_changes_nothing() {
    let w = World::new();
    let first = w.neo("apply", &["--auto-approve"]);
    first.expect_code(0);
    assert!(first.stdout.contains("Apply complete."), "{}", first.stdout);
    // The plan is logged before any change, one event per action.
    assert!(
        first.stderr.contains("Planned: create_tenant acme"),
        "{}",
        first.stderr
    );
    let plan = w.neo("plan", &["--detailed-exitcode"]);
    plan.expect_code(0);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    let snapshot = w.snapshot();
    let second = w.neo("apply", &["--auto-approve"]);
    second.expect_code(0);
    assert!(second.stdout.contains("No changes."), "{}", second.stdout);
    assert_eq!(snapshot, w.snapshot());

    // Objects belong to the tenant's owner role, never to the login role.
    let owners = w.us.psql(
        "neo_us",
        "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner)::text, ',') FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tenant_acme'",
    );
    assert_eq!(owners.trim(), "tenant_acme_owner");
    // Audit: one run per region with the plan text, every migration with checksum and run id.
    let runs = w.us.psql("neo_us", "SELECT outcome || ':' || (plan_text LIKE '%create_tenant acme%')::text FROM neo_reconcile.runs");
    assert_eq!(runs.trim(), "succeeded:true");
    let missing = w.us.psql(
        "neo_us",
        "SELECT count(*) FROM neo_reconcile.schema_history WHERE run_id IS NULL OR length(checksum) <> 64",
    );
    assert_eq!(missing.trim(), "0");
    // The registry lists every live tenant, never a password.
    let registry = w.us.psql("neo_admin", "SELECT string_agg(tenant_slug || '=' || status, ',' ORDER BY tenant_slug) FROM admin.database_connections");
    assert_eq!(
        registry.trim(),
        "acme=active,globex=active,hooli=active,initech=suspended,stark=active"
    );
    assert_eq!(advisory_locks(&w), "0");
}

#[test]
fn sigkill_mid_migration_leaves_no_partial_migration_and_no_lock() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7(&w, PAUSING_V7);
    // Wait until a migration is sleeping inside its transaction, then kill -9.
    let mut child = start_paused_apply(&w, Stdio::null);
    child.kill().unwrap();
    child.wait().unwrap();
    // The server notices the lost sessions: their transactions roll back, their locks go.
    wait_for(
        &w,
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'neo-reconcile'",
        "0",
        Duration::from_secs(30),
    );
    assert_eq!(advisory_locks(&w), "0");
    let partial = w.us.psql(
        "neo_us",
        "SELECT count(*) FROM pg_tables WHERE tablename = 'audit_log'",
    );
    assert_eq!(
        partial.trim(),
        "0",
        "a killed migration left its table behind"
    );
    let v7 = w.us.psql(
        "neo_us",
        "SELECT count(*) FROM neo_reconcile.schema_history WHERE version = 7",
    );
    assert_eq!(v7.trim(), "0");
    // The next apply finishes the job and marks the killed run as interrupted.
    w.us.psql("neo_us", "DROP TABLE public.neo_test_pause");
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    assert_eq!(history_count(&w, "tenant_acme"), "7");
    assert_eq!(history_count(&w, "tenant_globex"), "7");
    let outcomes = w.us.psql(
        "neo_us",
        "SELECT string_agg(outcome, ',' ORDER BY id) FROM neo_reconcile.runs",
    );
    assert_eq!(outcomes.trim(), "succeeded,interrupted,succeeded");
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn two_applies_at_once_one_applies_the_other_finds_nothing_to_do() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7(&w, PAUSING_V7);
    let first = start_paused_apply(&w, Stdio::piped);
    let tree = w.tree.path().to_str().unwrap().to_string();
    let second = w
        .command(&["apply", &tree, "--auto-approve", "--region", "us-east"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The second one waits for the lock, and says who holds it.
    std::thread::sleep(Duration::from_secs(2));
    w.us.psql("neo_us", "DROP TABLE public.neo_test_pause");
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    let (out1, out2) = (
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&second.stdout),
    );
    let err2 = String::from_utf8_lossy(&second.stderr);
    assert_eq!(first.status.code(), Some(0), "{out1}");
    assert_eq!(second.status.code(), Some(0), "{out2}\n{err2}");
    assert!(
        out1.contains("Region us-east: 4 action(s) applied"),
        "{out1}"
    );
    assert!(out2.contains("Region us-east: no changes"), "{out2}");
    assert!(
        err2.contains("Waiting for the region lock") && err2.contains("running `"),
        "{err2}"
    );
    // No migration ran twice.
    let dups = w.us.psql(
        "neo_us",
        "SELECT count(*) FROM (SELECT 1 FROM neo_reconcile.schema_history WHERE success GROUP BY target_schema, schema_set, version HAVING count(*) > 1) d",
    );
    assert_eq!(dups.trim(), "0");
    assert_eq!(history_count(&w, "tenant_globex"), "7");
}

#[test]
fn lock_wait_timeout_names_the_holder_and_changes_nothing() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7(&w, PAUSING_V7);
    w.edit("regions/us-east.toml", |s| {
        s.replace("lock_wait = \"60s\"", "lock_wait = \"1s\"")
    });
    let mut first = start_paused_apply(&w, Stdio::null);
    let second = w.neo("apply", &["--auto-approve", "--region", "us-east"]);
    second.expect_code(1);
    assert!(
        second
            .stdout
            .contains("NOT APPLIED, region us-east is locked by"),
        "{}",
        second.stdout
    );
    assert!(
        second
            .stdout
            .contains(&format!("(pid {}, running `", first.id())),
        "{}",
        second.stdout
    );
    w.us.psql("neo_us", "DROP TABLE public.neo_test_pause");
    assert!(first.wait().unwrap().success());
    assert_eq!(history_count(&w, "tenant_globex"), "7");
    assert_eq!(advisory_locks(&w), "0");
}

/// V7 fails only in the schemas listed.
fn failing_v7(schemas: &[&str]) -> String {
    let list = schemas
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE TABLE audit_log (id bigint PRIMARY KEY);\n\
         DO $$ BEGIN IF current_schema() IN ({list}) THEN RAISE EXCEPTION 'boom in %', current_schema(); END IF; END $$;\n"
    )
}

#[test]
fn failing_tenant_rolls_back_and_others_complete_with_high_max_failures() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7(&w, &failing_v7(&["tenant_globex"]));
    w.edit("regions/us-east.toml", |s| {
        s.replace("max_failures = 1", "max_failures = 10")
    });
    let run = w.neo("apply", &["--auto-approve"]);
    run.expect_code(3);
    assert!(
        run.stdout.contains("tenant globex FAILED: ")
            && run.stdout.contains("(the migration was rolled back)")
            && run.stdout.contains("boom in tenant_globex"),
        "{}",
        run.stdout
    );
    // V6 succeeded, V7 failed and was rolled back.
    assert_eq!(history_count(&w, "tenant_globex"), "6");
    let partial = w.us.psql(
        "neo_us",
        "SELECT to_regclass('tenant_globex.audit_log') IS NULL",
    );
    assert_eq!(
        partial.trim(),
        "t",
        "the failed migration was not rolled back"
    );
    assert_eq!(history_count(&w, "tenant_acme"), "7");
    assert_eq!(history_count(&w, "tenant_initech"), "7");
    let failed_row = w.us.psql(
        "neo_us",
        "SELECT count(*) FROM neo_reconcile.schema_history WHERE target_schema = 'tenant_globex' AND NOT success AND error LIKE '%boom%'",
    );
    assert_eq!(failed_row.trim(), "1");
    let outcome = w.us.psql(
        "neo_us",
        "SELECT outcome FROM neo_reconcile.runs ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(outcome.trim(), "failed");
}

#[test]
fn with_default_max_failures_no_new_tenant_starts_after_a_failure() {
    let w = World::new();
    // Three fleet tenants in eu-west run one at a time: the first (alpha) fails.
    w.edit("regions/eu-west.toml", |s| {
        s.replace("max_parallel = 2", "max_parallel = 1")
    });
    w.write(
        "tenants/alpha.toml",
        "slug = \"alpha\"\nregion = \"eu-west\"\nresidency = \"EU\"\nstatus = \"active\"\n",
    );
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7(&w, &failing_v7(&["tenant_alpha"]));
    let run = w.neo("apply", &["--auto-approve", "--region", "eu-west"]);
    run.expect_code(3);
    assert!(run.stdout.contains("tenant alpha FAILED"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("tenant hooli not started: max_failures = 1 reached in region eu-west"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("tenant stark not started"),
        "{}",
        run.stdout
    );
    let v7 = w.eu.psql(
        "neo_eu",
        "SELECT count(*) FROM neo_reconcile.schema_history WHERE version = 7 AND success",
    );
    assert_eq!(v7.trim(), "0");
}

#[test]
fn failing_canary_stops_the_rest_of_its_region() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // acme is pinned ahead at V7 (the canary) and its V7 fails; the fleet moves to V6.
    add_v7_with_fleet_at(&w, &failing_v7(&["tenant_acme"]), 6);
    w.edit("regions/us-east.toml", |s| {
        s.replace("max_failures = 1", "max_failures = 10")
    });
    let run = w.neo("apply", &["--auto-approve", "--region", "us-east"]);
    run.expect_code(3);
    assert!(run.stdout.contains("tenant acme FAILED"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("tenant globex not started: canary acme failed"),
        "{}",
        run.stdout
    );
    assert_eq!(history_count(&w, "tenant_globex"), "5");
}

#[test]
fn stale_saved_plan_is_refused_and_nothing_changes() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7(&w, PAUSING_V7);
    let file = w.path("plan.json");
    w.neo("plan", &["--out", file.to_str().unwrap()])
        .expect_code(0);
    // Meanwhile someone applies globex alone.
    w.neo("apply", &["--auto-approve", "--tenant", "globex"])
        .expect_code(0);
    let before = w.snapshot();
    let run = w.neo("apply", &["--plan", file.to_str().unwrap()]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("stale plan: region us-east: tenant globex"),
        "{}",
        run.stderr
    );
    assert_eq!(before, w.snapshot(), "a stale plan changed something");

    // A saved plan of a desired state that changed since is refused too.
    let file2 = w.path("plan2.json");
    w.neo("plan", &["--out", file2.to_str().unwrap()])
        .expect_code(0);
    w.write(
        "tenants/newco.toml",
        "slug = \"newco\"\nregion = \"us-east\"\nresidency = \"US\"\n",
    );
    let run = w.neo("apply", &["--plan", file2.to_str().unwrap()]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("the desired state changed since the plan was saved"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(w.path("tenants/newco.toml")).unwrap();
    // A fresh saved plan applies.
    w.neo("apply", &["--plan", file2.to_str().unwrap()])
        .expect_code(0);
    let stark = w.eu.psql("neo_eu", "SELECT count(*) FROM neo_reconcile.schema_history WHERE target_schema = 'tenant_stark' AND success");
    assert_eq!(stark.trim(), "7");
}

#[test]
fn suspend_cuts_a_member_login_role_off_and_resume_restores_it() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.us.psql(
        "postgres",
        "CREATE ROLE app_globex LOGIN PASSWORD 'app-pw' IN ROLE tenant_globex_rw",
    );
    w.us.psql(
        "neo_us",
        "INSERT INTO tenant_globex.users (email, display_name) VALUES ('a@globex.test', 'A')",
    );
    let as_app = |w: &World| {
        w.us.try_psql_as(
            "neo_us",
            "app_globex",
            "app-pw",
            "SELECT count(*) FROM tenant_globex.users",
        )
    };
    assert_eq!(as_app(&w).unwrap().trim(), "1");

    w.edit("tenants/globex.toml", |s| {
        s.replace("status = \"active\"", "status = \"suspended\"")
    });
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let err = as_app(&w).unwrap_err();
    assert!(
        err.contains("permission denied for schema tenant_globex"),
        "{err}"
    );

    w.edit("tenants/globex.toml", |s| {
        s.replace("status = \"suspended\"", "status = \"active\"")
    });
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    assert_eq!(as_app(&w).unwrap().trim(), "1");
}

#[test]
fn archive_keeps_the_data_and_destroy_needs_allow_destroy_and_the_retention_period() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.us.psql(
        "neo_us",
        "INSERT INTO tenant_globex.users (email, display_name) VALUES ('a@globex.test', 'A')",
    );
    w.edit("tenants/globex.toml", |s| {
        s.replace("status = \"active\"", "status = \"archived\"")
    });
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let today = w.us.psql(
        "neo_us",
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')",
    );
    let archived = format!("archived_globex_{}", today.trim());
    assert_eq!(
        w.us.psql("neo_us", &format!("SELECT count(*) FROM {archived}.users"))
            .trim(),
        "1"
    );

    w.edit("tenants/globex.toml", |s| {
        s.replace("status = \"archived\"", "status = \"deleted\"")
    });
    // Deleted without allow_destroy: nothing left to run, the data stays, and the blocked
    // finding says so (exit 4: only blocked items remain).
    let refused = w.neo("apply", &["--auto-approve"]);
    refused.expect_code(4);
    assert!(
        refused.stdout.contains("allow_destroy = false"),
        "{}",
        refused.stdout
    );
    assert_eq!(
        w.us.psql("neo_us", &format!("SELECT count(*) FROM {archived}.users"))
            .trim(),
        "1"
    );

    // allow_destroy = true alone: the default retention (30 days since the archive) has not
    // passed, so the plan only schedules the drop.
    w.edit("neo.toml", |s| {
        s.replace("allow_destroy = false", "allow_destroy = true")
    });
    let waiting = w.neo("apply", &["--auto-approve"]);
    waiting.expect_code(0);
    assert!(
        waiting.stdout.contains(&format!(
            "@ destroy_tenant globex scheduled: schema {archived} is dropped by the first apply after"
        )),
        "{}",
        waiting.stdout
    );
    assert_eq!(
        w.us.psql("neo_us", &format!("SELECT count(*) FROM {archived}.users"))
            .trim(),
        "1"
    );

    // With the retention period over (here: none), the archived schema is dropped.
    w.edit("neo.toml", |s| {
        s.replace("destroy_after = \"30d\"", "destroy_after = \"0s\"")
    });
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let gone = w.us.psql(
        "neo_us",
        &format!("SELECT to_regnamespace('{archived}') IS NULL"),
    );
    assert_eq!(gone.trim(), "t");
    let roles = w.us.psql(
        "postgres",
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tenant_globex%'",
    );
    assert_eq!(roles.trim(), "0");
    let registry = w.us.psql(
        "neo_admin",
        "SELECT count(*) FROM admin.database_connections WHERE tenant_slug = 'globex'",
    );
    assert_eq!(registry.trim(), "0");
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn apply_without_a_terminal_or_auto_approve_refuses() {
    let w = World::new();
    let before = w.snapshot();
    let tree = w.tree.path().to_str().unwrap().to_string();
    let out = w
        .command(&["apply", &tree])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to apply without a terminal"));
    assert_eq!(before, w.snapshot());
}

/// Sessions ever opened to `db` on the us-east cluster, once the server's statistics have
/// caught up with sessions that just ended: no server process is left on `db`, and then two
/// reads 300 ms apart agree (a process flushes its counts as it exits, just after it leaves
/// `pg_stat_activity`).
fn sessions(w: &World, db: &str) -> i64 {
    wait_for(
        w,
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"),
        "0",
        Duration::from_secs(30),
    );
    let sql = format!("SELECT sessions FROM pg_stat_database WHERE datname = '{db}'");
    let mut last = w.us.psql("postgres", &sql).trim().parse::<i64>().unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = w.us.psql("postgres", &sql).trim().parse::<i64>().unwrap();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Guards the fix measured in BENCHMARKS.md: a worker replaces its connection after 25
/// tenants, because a backend that has migrated hundreds of tenant schemas makes every
/// transaction slower. Two applies with the same fixed work (observe, lock, bookkeeping) are
/// compared: one migrating over 50 tenants on one worker must open exactly two more sessions
/// than one migrating a single tenant.
#[test]
fn worker_connections_are_renewed_every_25_tenants() {
    let w = World::new();
    w.edit("regions/us-east.toml", |s| {
        s.replace("max_parallel = 4", "max_parallel = 1")
    });
    for i in 1..=55 {
        w.write(
            &format!("tenants/t{i:02}.toml"),
            &format!("slug = \"t{i:02}\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n"),
        );
    }
    w.neo("apply", &["--auto-approve", "--region", "us-east"])
        .expect_code(0);

    // The fleet (55 new tenants, globex and the suspended initech) moves from 5 to 6.
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 6 "));
    let before = sessions(&w, "neo_us");
    let run = w.neo("apply", &["--auto-approve", "--region", "us-east"]);
    run.expect_code(0);
    let many = sessions(&w, "neo_us") - before;
    let migrated = run.stdout.matches("~ migrate tenant").count();
    assert!(
        (51..=75).contains(&migrated),
        "{migrated} migrated:\n{}",
        run.stdout
    );

    // One tenant, t01, pinned ahead to a new V7.
    w.write(
        "schemas/tenant_template/V7__notes.sql",
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);\n",
    );
    w.edit("tenants/t01.toml", |s| {
        format!("{s}[schema_sets]\ntenant_template = 7\n")
    });
    let before = sessions(&w, "neo_us");
    let run = w.neo("apply", &["--auto-approve", "--region", "us-east"]);
    run.expect_code(0);
    let one = sessions(&w, "neo_us") - before;
    assert_eq!(
        run.stdout.matches("~ migrate tenant").count(),
        1,
        "{}",
        run.stdout
    );

    // ceil(migrated / 25) = 3 worker connections against 1.
    assert_eq!(
        many - one,
        2,
        "sessions: {many} for {migrated} tenants, {one} for one"
    );
}

#[test]
fn deleting_a_tenant_cuts_access_at_once_and_a_revert_brings_it_back_with_its_data() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.us.psql(
        "postgres",
        "CREATE ROLE app_globex LOGIN PASSWORD 'app-pw' IN ROLE tenant_globex_rw",
    );
    w.us.psql(
        "neo_us",
        "INSERT INTO tenant_globex.users (email, display_name) VALUES ('a@globex.test', 'A')",
    );
    let as_app = |w: &World| {
        w.us.try_psql_as(
            "neo_us",
            "app_globex",
            "app-pw",
            "SELECT count(*) FROM tenant_globex.users",
        )
    };
    assert_eq!(as_app(&w).unwrap().trim(), "1");

    // Friday: a mistaken deletion merges (allow_destroy = false in the example).
    w.edit("tenants/globex.toml", |s| {
        s.replace("status = \"active\"", "status = \"deleted\"")
    });
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let err = as_app(&w).unwrap_err();
    assert!(err.contains("tenant_globex"), "{err}");
    let archived_at = w.us.psql(
        "neo_us",
        "SELECT status || ' ' || (archived_at IS NOT NULL) FROM neo_reconcile.tenants WHERE slug = 'globex'",
    );
    assert_eq!(archived_at.trim(), "archived true");

    // Monday: the revert restores the schema under its name, access and data included.
    w.edit("tenants/globex.toml", |s| {
        s.replace("status = \"deleted\"", "status = \"active\"")
    });
    let restored = w.neo("apply", &["--auto-approve"]);
    restored.expect_code(0);
    assert!(
        restored.stdout.contains("~ restore_tenant globex"),
        "{}",
        restored.stdout
    );
    assert_eq!(as_app(&w).unwrap().trim(), "1");
    let row = w.us.psql(
        "neo_us",
        "SELECT status || ' ' || schema_name || ' ' || (archived_at IS NULL) FROM neo_reconcile.tenants WHERE slug = 'globex'",
    );
    assert_eq!(row.trim(), "active tenant_globex true");
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn apply_help_documents_the_exit_codes() {
    let out = std::process::Command::new(crate::world::BIN)
        .args(["apply", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "Exit codes:",
        "  0  converged",
        "  1  could not start, nothing changed",
        "  2  usage error",
        "  3  some targets failed",
        "  4  everything that could run succeeded, but blocked findings remain",
    ] {
        assert!(help.contains(line), "{line:?} missing from:\n{help}");
    }
}

#[test]
fn sigterm_finishes_the_running_migration_starts_nothing_new_and_releases_the_lock() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // The canary acme (pinned to 7, the fleet to 6) is sleeping inside its V7 transaction;
    // the fleet waits for the canary.
    add_v7_with_fleet_at(&w, PAUSING_V7, 6);
    let child = start_paused_apply(&w, Stdio::piped);
    let pid = child.id() as libc::pid_t;
    // SAFETY: sending a signal to the child this test spawned.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(500));
    w.us.psql("neo_us", "DROP TABLE public.neo_test_pause");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("not started: neo-reconcile was asked to stop"),
        "{stdout}"
    );
    // The running migration finished and committed with its history row.
    assert_eq!(history_count(&w, "tenant_acme"), "7");
    assert_eq!(history_count(&w, "tenant_globex"), "5");
    assert_eq!(advisory_locks(&w), "0");
    let runs = w.us.psql(
        "neo_us",
        "SELECT string_agg(outcome, ',' ORDER BY id) FROM neo_reconcile.runs WHERE outcome = 'running'",
    );
    assert_eq!(runs.trim(), "");
    // The next apply takes up the rest.
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    assert_eq!(history_count(&w, "tenant_globex"), "6");
}

/// A daemon configuration on the host whose deny window for us-east is always open.
fn daemon_config_denying_us_east(w: &World, dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[source]\nurl = \"{}\"\n\n[reconcile]\nauto_apply = true\n\n\
             [reconcile.windows.us-east]\nkind = \"deny\"\nschedule = \"* * * * *\"\nduration = \"1h\"\n",
            w.tree.path().display()
        ),
    )
    .unwrap();
    file
}

#[test]
fn a_manual_apply_respects_the_daemons_maintenance_windows_unless_overridden_and_recorded() {
    let w = World::new();
    let dir = tempfile::TempDir::new().unwrap();
    let config = daemon_config_denying_us_east(&w, dir.path());
    let config = config.to_str().unwrap();
    let before = w.snapshot();
    let refused = w.neo("apply", &["--auto-approve", "--daemon-config", config]);
    refused.expect_code(1);
    assert!(
        refused
            .stderr
            .contains("region us-east is outside its maintenance window")
            && refused.stderr.contains("--override-window"),
        "{}",
        refused.stderr
    );
    assert_eq!(w.snapshot(), before, "a refused apply changed something");

    let run = w.neo(
        "apply",
        &[
            "--auto-approve",
            "--daemon-config",
            config,
            "--override-window",
        ],
    );
    run.expect_code(0);
    let command = w.us.psql(
        "neo_us",
        "SELECT command FROM neo_reconcile.runs ORDER BY id DESC LIMIT 1",
    );
    assert!(command.contains("--override-window"), "{command}");
}
