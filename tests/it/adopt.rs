//! `neo-reconcile adopt`: taking over tenant schemas migrated by Flyway or by hand.

use crate::support::pg::PgCluster;
use crate::world::World;

/// Flyway's own history table (Flyway 9/10 DDL for PostgreSQL).
const FLYWAY_DDL: &str = "CREATE TABLE flyway_schema_history (
    installed_rank integer NOT NULL PRIMARY KEY,
    version varchar(50),
    description varchar(200) NOT NULL,
    type varchar(20) NOT NULL,
    script varchar(1000) NOT NULL,
    checksum integer,
    installed_by varchar(100) NOT NULL,
    installed_on timestamp NOT NULL DEFAULT now(),
    execution_time integer NOT NULL,
    success boolean NOT NULL
)";

/// Migrates `schema` by hand to `version` of tenant_template as the login role, the way the
/// old Flyway loop did, recording Flyway history rows (`failed` marks the last one failed).
fn migrate_like_flyway(
    w: &World,
    cluster: &PgCluster,
    db: &str,
    password: &str,
    schema: &str,
    version: u32,
    failed: bool,
) {
    cluster.psql(
        db,
        &format!("CREATE SCHEMA {schema} AUTHORIZATION neo_migrator"),
    );
    let mut sql = format!("SET search_path TO {schema};\n{FLYWAY_DDL};\n");
    let dir = w.path("schemas/tenant_template");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort_by_key(|f| f[1..f.find("__").unwrap()].parse::<u32>().unwrap());
    for (i, file) in files.iter().take(version as usize).enumerate() {
        let v = i + 1;
        let body = std::fs::read_to_string(dir.join(file)).unwrap();
        if !body.starts_with("-- neo:no-transaction") {
            sql += &body;
            sql += "\n;\n";
        }
        let success = !(failed && v == version as usize);
        sql += &format!(
            "INSERT INTO flyway_schema_history VALUES ({v}, '{v}', 'migration {v}', 'SQL', '{file}', {}, 'neo_migrator', now(), 12, {success});\n",
            1000 + v
        );
    }
    cluster
        .try_psql_as(db, "neo_migrator", password, &sql)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn password(w: &World, prefix: &str) -> String {
    w.logins
        .iter()
        .find(|(p, _)| *p == prefix)
        .unwrap()
        .1
        .clone()
}

#[test]
fn adopt_from_a_real_flyway_history_then_converge() {
    let w = World::new();
    let us_pw = password(&w, "NEO_US_EAST");
    migrate_like_flyway(&w, &w.us, "neo_us", &us_pw, "tenant_globex", 5, false);
    w.us.psql(
        "neo_us",
        "INSERT INTO tenant_globex.users (email, display_name) VALUES ('kept@globex.test', 'Kept')",
    );

    // Before adoption the existing schema blocks the tenant: neo-reconcile never creates over it.
    let before = w.neo("plan", &["--tenant", "globex"]);
    before.expect_code(1);
    assert!(
        before
            .stdout
            .contains("tenant_globex already exists without a bookkeeping row"),
        "{}",
        before.stdout
    );

    let run = w.neo(
        "adopt",
        &[
            "--tenant",
            "globex",
            "--schema-set",
            "tenant_template",
            "--from-flyway",
        ],
    );
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("adopted globex: tenant_template versions 1 to 5 recorded"),
        "{}",
        run.stdout
    );
    let rows = w.us.psql(
        "neo_us",
        "SELECT string_agg(version || ':' || adopted_from, ',' ORDER BY version) FROM neo_reconcile.schema_history WHERE target_schema = 'tenant_globex'",
    );
    assert_eq!(rows.trim(), "1:flyway,2:flyway,3:flyway,4:flyway,5:flyway");

    // Now managed: nothing to create or migrate for globex, and apply converges the rest.
    let plan = w.neo("plan", &["--tenant", "globex", "--format", "json"]);
    plan.expect_code(0);
    let json = plan.json();
    let globex: Vec<&serde_json::Value> = json["regions"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["tenant"] == "globex")
        .collect();
    assert!(
        globex.is_empty(),
        "adopted globex still has actions: {globex:?}"
    );
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    // The data is still there, and the objects now belong to the tenant's owner role.
    assert_eq!(
        w.us.psql("neo_us", "SELECT count(*) FROM tenant_globex.users")
            .trim(),
        "1"
    );
    let owners = w.us.psql(
        "neo_us",
        "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner)::text, ',') FROM pg_class c
         WHERE c.relnamespace = 'tenant_globex'::regnamespace AND c.relname <> 'flyway_schema_history'",
    );
    assert_eq!(owners.trim(), "tenant_globex_owner");
    // A V6 later runs under the owner role against the adopted tables.
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 6 "));
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let v6 = w.us.psql("neo_us", "SELECT count(*) FROM pg_indexes WHERE schemaname = 'tenant_globex' AND indexname = 'projects_active_created_at_idx'");
    assert_eq!(v6.trim(), "1");
}

#[test]
fn adopt_refuses_a_failed_flyway_migration_and_records_nothing() {
    let w = World::new();
    let us_pw = password(&w, "NEO_US_EAST");
    migrate_like_flyway(&w, &w.us, "neo_us", &us_pw, "tenant_globex", 3, true);
    let run = w.neo(
        "adopt",
        &[
            "--tenant",
            "globex",
            "--schema-set",
            "tenant_template",
            "--from-flyway",
        ],
    );
    run.expect_code(1);
    assert!(
        run.stdout.contains(
            "REFUSED globex: tenant_globex: Flyway recorded a failed migration (version 3"
        ),
        "{}",
        run.stdout
    );
    let recorded = w.us.psql(
        "neo_us",
        "SELECT count(*) FROM neo_reconcile.schema_history",
    );
    assert_eq!(recorded.trim(), "0");
    let tenants =
        w.us.psql("neo_us", "SELECT count(*) FROM neo_reconcile.tenants");
    assert_eq!(tenants.trim(), "0");
}

#[test]
fn adopt_at_a_version_then_apply_migrates_the_rest() {
    let w = World::new();
    let eu_pw = password(&w, "NEO_EU_WEST");
    migrate_like_flyway(&w, &w.eu, "neo_eu", &eu_pw, "tenant_stark", 3, false);
    let missing = w.neo(
        "adopt",
        &[
            "--tenant",
            "hooli",
            "--tenant",
            "stark",
            "--schema-set",
            "tenant_template",
            "--at-version",
            "3",
        ],
    );
    missing.expect_code(1);
    assert!(
        missing
            .stdout
            .contains("REFUSED hooli: schema tenant_hooli does not exist"),
        "{}",
        missing.stdout
    );
    assert!(
        missing
            .stdout
            .contains("adopted stark: tenant_template versions 1 to 3 recorded"),
        "{}",
        missing.stdout
    );
    let plan = w.neo("plan", &["--tenant", "stark"]);
    assert!(
        plan.stdout
            .contains("~ migrate tenant stark: tenant_template 3 -> 5"),
        "{}",
        plan.stdout
    );
    // Adopting twice is refused: the schema is managed already.
    let again = w.neo(
        "adopt",
        &[
            "--tenant",
            "stark",
            "--schema-set",
            "tenant_template",
            "--at-version",
            "3",
        ],
    );
    again.expect_code(1);
    assert!(
        again.stdout.contains("already has 3 recorded version(s)"),
        "{}",
        again.stdout
    );
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let v = w.eu.psql("neo_eu", "SELECT max(version) FROM neo_reconcile.schema_history WHERE target_schema = 'tenant_stark' AND success");
    assert_eq!(v.trim(), "5");
}
