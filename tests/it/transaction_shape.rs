//! `[apply] transaction`: with `"per_tenant"` (the default) a target's creation, its pending
//! migrations and their history rows commit together, and a failure rolls the whole target
//! back to where it was; with `"per_migration"` each migration commits on its own. A
//! `-- neo:no-transaction` migration (the example's V6) splits the group where it stands.

use crate::world::World;

/// How many transactions wrote tenant `slug`'s bookkeeping row and successful history rows in
/// us-east (`xmin` is the id of the transaction that wrote a row).
fn transactions_of(w: &World, slug: &str) -> String {
    w.us.psql(
        "neo_us",
        &format!(
            "SELECT count(DISTINCT x) FROM ( \
               SELECT xmin::text AS x FROM neo_reconcile.schema_history \
                WHERE target_schema = 'tenant_{slug}' AND success \
               UNION ALL SELECT xmin::text FROM neo_reconcile.tenants WHERE slug = '{slug}') t"
        ),
    )
    .trim()
    .to_string()
}

fn history_count(w: &World, slug: &str) -> String {
    w.us.psql(
        "neo_us",
        &format!(
            "SELECT count(*) FROM neo_reconcile.schema_history \
             WHERE target_schema = 'tenant_{slug}' AND success"
        ),
    )
    .trim()
    .to_string()
}

fn per_migration(w: &World) {
    w.edit("regions/us-east.toml", |s| {
        s.replace(
            "transaction = \"per_tenant\"",
            "transaction = \"per_migration\"",
        )
    });
}

#[test]
fn per_tenant_commits_a_new_tenant_and_its_migrations_together_split_only_by_no_transaction_files()
{
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // globex: create_tenant and V1..V5 in one transaction.
    assert_eq!(transactions_of(&w, "globex"), "1");
    // acme (pinned at 6): create_tenant and V1..V5, then the no-transaction V6 alone.
    assert_eq!(transactions_of(&w, "acme"), "2");
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn per_migration_commits_each_migration_on_its_own() {
    let w = World::new();
    per_migration(&w);
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // create_tenant, then V1..V5 each in a transaction of its own.
    assert_eq!(transactions_of(&w, "globex"), "6");
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

/// V7 creates a table; V8 fails in tenant_globex only. The fleet goes to 8 (acme, pinned, too).
fn add_v7_and_failing_v8(w: &World) {
    w.write(
        "schemas/tenant_template/V7__audit_log.sql",
        "CREATE TABLE audit_log (id bigint PRIMARY KEY);\n",
    );
    w.write(
        "schemas/tenant_template/V8__check.sql",
        "DO $$ BEGIN IF current_schema() = 'tenant_globex' THEN RAISE EXCEPTION 'boom in %', current_schema(); END IF; END $$;\n",
    );
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 8 "));
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6", "tenant_template = 8")
    });
    w.edit("regions/us-east.toml", |s| {
        s.replace("max_failures = 1", "max_failures = 10")
    });
}

fn audit_log_exists(w: &World) -> String {
    w.us.psql(
        "neo_us",
        "SELECT to_regclass('tenant_globex.audit_log') IS NOT NULL",
    )
    .trim()
    .to_string()
}

#[test]
fn per_tenant_failure_rolls_the_tenant_back_to_where_it_was_and_names_the_failing_file() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7_and_failing_v8(&w);

    // --show-sql: globex's V7 and V8 in one transaction (V6 runs alone before them).
    let shown = w.neo("plan", &["--show-sql", "--tenant", "globex"]);
    shown.expect_code(0);
    let begins = shown
        .stdout
        .lines()
        .skip_while(|l| !l.contains("~ migrate tenant globex"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter(|l| l.trim() == "| BEGIN")
        .count();
    assert_eq!(begins, 1, "{}", shown.stdout);
    assert!(
        shown
            .stdout
            .contains("-- on failure: ROLLBACK of the target's whole transaction"),
        "{}",
        shown.stdout
    );

    let run = w.neo("apply", &["--auto-approve"]);
    run.expect_code(3);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("tenant globex FAILED"))
        .unwrap_or_else(|| panic!("no failure line:\n{}", run.stdout));
    assert!(
        line.contains("V8__check.sql")
            && line.contains("boom in tenant_globex")
            && line.contains(
                "(rolled back, with the 1 other change(s) of this target since its BEGIN)"
            ),
        "{line}"
    );
    // globex is back at 6 (the no-transaction V6 committed on its own): V7 was rolled back
    // with V8, whose failed attempt is recorded with the server's error as it was.
    assert_eq!(history_count(&w, "globex"), "6");
    assert_eq!(audit_log_exists(&w), "f");
    assert_eq!(
        w.us.psql(
            "neo_us",
            "SELECT version || ' ' || error FROM neo_reconcile.schema_history \
             WHERE target_schema = 'tenant_globex' AND NOT success",
        )
        .trim(),
        "8 error returned from database: boom in tenant_globex"
    );
    assert_eq!(history_count(&w, "initech"), "8");
    assert_eq!(history_count(&w, "acme"), "8");
}

#[test]
fn per_migration_failure_keeps_the_migrations_before_it() {
    let w = World::new();
    per_migration(&w);
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7_and_failing_v8(&w);
    let run = w.neo("apply", &["--auto-approve"]);
    run.expect_code(3);
    assert!(
        run.stdout.contains("(the migration was rolled back)"),
        "{}",
        run.stdout
    );
    assert_eq!(history_count(&w, "globex"), "7");
    assert_eq!(audit_log_exists(&w), "t");
}

#[test]
fn per_tenant_commits_after_a_migration_that_adds_an_enum_value_so_the_next_may_use_it() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.write(
        "schemas/tenant_template/V7__status.sql",
        "CREATE TYPE status AS ENUM ('new');\nALTER TYPE status ADD VALUE 'done';\n",
    );
    w.write(
        "schemas/tenant_template/V8__use_status.sql",
        "CREATE TABLE job (s status NOT NULL DEFAULT 'done');\n",
    );
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 8 "));
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6", "tenant_template = 8")
    });
    // Without the split PostgreSQL refuses V8: unsafe use of new value "done".
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    assert_eq!(history_count(&w, "globex"), "8");
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}
