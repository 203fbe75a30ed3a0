//! Migration files as PostgreSQL's parser reads them, end to end against real clusters: a
//! file wrapped in one `BEGIN; ... COMMIT;` pair runs in neo-reconcile's own transaction
//! (the pair is left out, as `plan --show-sql` shows), and a `-- neo:no-transaction` file
//! runs statement by statement as the parser delimits them (a `BEGIN ATOMIC` function body
//! is one statement). The offline checks of the same rules are in `validate.rs`.

use sha2::{Digest, Sha256};

use crate::world::World;

/// A tenant_template V7 in the golang-migrate/dbmate style: one pair around the whole file.
const WRAPPED_V7: &str = "-- tenant_template V7: an audit log, written for a tool that does not wrap migrations.\n\
BEGIN;\n\
\n\
CREATE TABLE audit_log (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    at timestamptz NOT NULL DEFAULT now()\n);\n\
CREATE INDEX audit_log_at_idx ON audit_log (at);\n\
\n\
COMMIT;\n";

/// A `-- neo:no-transaction` V7: an index built concurrently, then a function whose
/// SQL-standard body holds semicolons of its own.
const NO_TRANSACTION_V7: &str = "-- neo:no-transaction\n\
-- tenant_template V7: an index built without blocking writes, and a function using it.\n\
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_created_at_idx ON users (created_at);\n\
CREATE OR REPLACE FUNCTION recent_user_count(since timestamptz) RETURNS bigint\n\
    LANGUAGE sql STABLE\n\
BEGIN ATOMIC\n\
    SELECT count(*) FROM users WHERE created_at >= since;\n\
END;\n";

/// Adds V7 and moves the whole fleet (and the canary acme) to it.
fn add_v7(w: &World, sql: &str) {
    w.write("schemas/tenant_template/V7__audit_log.sql", sql);
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 7 "));
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6", "tenant_template = 7")
    });
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_migration_wrapped_in_begin_commit_runs_in_neo_reconciles_transaction_without_the_pair() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7(&w, WRAPPED_V7);
    w.neo("validate", &[]).expect_code(0);

    // --show-sql: the file's text without its pair, inside the transaction apply opens.
    let run = w.neo("plan", &["--show-sql", "--tenant", "globex"]);
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().map(|l| l.trim_start()).collect();
    let header = lines
        .iter()
        .position(|l| l.contains("-- schemas/tenant_template/V7__audit_log.sql"))
        .unwrap_or_else(|| panic!("no V7 script in:\n{}", run.stdout));
    let end = header
        + lines[header..]
            .iter()
            .position(|l| l.contains("RESET ROLE"))
            .expect("RESET ROLE after the script");
    let script = lines[header + 1..end].join("\n");
    assert!(
        script.contains("CREATE TABLE audit_log (")
            && script.contains("CREATE INDEX audit_log_at_idx"),
        "{script}"
    );
    assert!(
        !script.contains("BEGIN") && !script.contains("COMMIT"),
        "the wrapping pair is still in the script:\n{script}"
    );
    let opened = lines[..header]
        .iter()
        .rposition(|l| l.ends_with("BEGIN"))
        .expect("apply's own BEGIN before the script");
    assert!(
        lines[opened + 1].contains("set_config('search_path'"),
        "{}",
        run.stdout
    );
    assert!(
        lines[end..].iter().any(|l| l.ends_with("COMMIT")),
        "apply's own COMMIT after the script:\n{}",
        run.stdout
    );

    w.neo("apply", &["--auto-approve"]).expect_code(0);
    for tenant in ["acme", "globex", "initech"] {
        let schema = format!("tenant_{tenant}");
        assert_eq!(
            w.us.psql(
                "neo_us",
                &format!(
                    "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class \
                     WHERE relnamespace = '{schema}'::regnamespace AND relname LIKE 'audit_log%'"
                ),
            )
            .trim(),
            "audit_log,audit_log_at_idx,audit_log_id_seq,audit_log_pkey",
            "{schema}"
        );
        assert_eq!(
            w.us.psql(
                "neo_us",
                &format!(
                    "SELECT checksum FROM neo_reconcile.schema_history \
                     WHERE target_schema = '{schema}' AND version = 7 AND success"
                ),
            )
            .trim(),
            sha256_hex(WRAPPED_V7.as_bytes()),
            "the history of {schema} records the file's checksum"
        );
    }
    // Nothing landed anywhere else, and the audit log is empty (no stray transaction).
    assert_eq!(
        w.us.psql(
            "neo_us",
            "SELECT count(*) FROM pg_class WHERE relname = 'audit_log' \
             AND relnamespace::regnamespace::text NOT LIKE 'tenant\\_%'",
        )
        .trim(),
        "0"
    );
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn a_no_transaction_migration_runs_a_begin_atomic_function_as_one_statement() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7(&w, NO_TRANSACTION_V7);
    w.neo("validate", &[]).expect_code(0);

    let run = w.neo("plan", &["--show-sql", "--tenant", "globex"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("V7__audit_log.sql (statement 1 of 2, no transaction)")
            && run
                .stdout
                .contains("V7__audit_log.sql (statement 2 of 2, no transaction)"),
        "{}",
        run.stdout
    );

    w.neo("apply", &["--auto-approve"]).expect_code(0);
    for tenant in ["acme", "globex", "initech"] {
        let schema = format!("tenant_{tenant}");
        assert_eq!(
            w.us.psql(
                "neo_us",
                &format!(
                    "SELECT indisvalid FROM pg_index \
                     WHERE indexrelid = to_regclass('{schema}.users_created_at_idx')"
                ),
            )
            .trim(),
            "t",
            "{schema}: a valid index"
        );
        assert_eq!(
            w.us.psql(
                "neo_us",
                &format!("SELECT {schema}.recent_user_count('-infinity')"),
            )
            .trim(),
            "0",
            "{schema}: the function exists and runs"
        );
        assert_eq!(
            w.us.psql(
                "neo_us",
                &format!(
                    "SELECT count(*) FROM neo_reconcile.schema_history \
                     WHERE target_schema = '{schema}' AND version = 7 AND success"
                ),
            )
            .trim(),
            "1"
        );
    }
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn a_no_transaction_migration_that_fails_halfway_says_which_statements_ran_and_continues_after_them(
) {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.edit("regions/us-east.toml", |s| {
        s.replace("max_failures = 1", "max_failures = 10")
    });
    // Statement 1 completes everywhere; statement 2 fails where a marker table exists, which
    // only globex has.
    w.us.psql("neo_us", "CREATE TABLE tenant_globex.fail_marker ()");
    let failing = "-- neo:no-transaction\n\
CREATE TABLE audit_log (id bigint PRIMARY KEY);\n\
DO $$ BEGIN IF to_regclass('fail_marker') IS NOT NULL THEN RAISE EXCEPTION 'boom in %', current_schema(); END IF; END $$;\n";
    add_v7(&w, failing);
    let run = w.neo("apply", &["--auto-approve"]);
    run.expect_code(3);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("tenant globex FAILED"))
        .unwrap_or_else(|| panic!("no failure line:\n{}", run.stdout));
    assert!(
        line.contains("statement 2 of 2 failed; 1 completed before it and stay committed (the next apply continues with statement 2)")
            && line.contains("boom in tenant_globex")
            && !line.contains("rolled back"),
        "{line}"
    );
    assert!(!run.stderr.contains("rolled back"), "{}", run.stderr);
    // The history row says the same; the first statement's table stays.
    let recorded = w.us.psql(
        "neo_us",
        "SELECT statements_completed || ' ' || error FROM neo_reconcile.schema_history \
         WHERE target_schema = 'tenant_globex' AND version = 7 AND NOT success",
    );
    assert!(
        recorded.starts_with("1 statement 2 of 2 failed; 1 completed before it")
            && !recorded.contains("rolled back"),
        "{recorded}"
    );
    assert_eq!(
        w.us.psql(
            "neo_us",
            "SELECT to_regclass('tenant_globex.audit_log') IS NOT NULL"
        )
        .trim(),
        "t"
    );

    // Once the cause is gone, the next apply continues with statement 2 (statement 1, a plain
    // CREATE TABLE, would fail if it ran again) and the fleet converges.
    w.us.psql("neo_us", "DROP TABLE tenant_globex.fail_marker");
    let run = w.neo("apply", &["--auto-approve"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("Continuing a no-transaction migration")
            && run.stderr.contains("statements_skipped=1"),
        "{}",
        run.stderr
    );
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}
