//! `neo-reconcile adopt`: taking over tenant and region-scope schemas migrated by Flyway or
//! by hand. The helpers that migrate a schema by hand are shared with `remedies`.

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

/// The history a schema migrated by hand keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// None: the migrations ran and nothing recorded them.
    None,
    /// Flyway's `flyway_schema_history`, every migration successful.
    Flyway,
    /// Flyway's history with the last migration marked failed.
    FlywayLastFailed,
}

/// The region database of one of a world's clusters, and its login's password.
pub fn login(w: &World, cluster: &PgCluster) -> (&'static str, String) {
    let (db, prefix) = if std::ptr::eq(cluster, &w.us) {
        ("neo_us", "NEO_US_EAST")
    } else {
        ("neo_eu", "NEO_EU_WEST")
    };
    let password = w
        .logins
        .iter()
        .find(|(p, _)| *p == prefix)
        .unwrap()
        .1
        .clone();
    (db, password)
}

/// Migrates `schema` by hand to `version` of the set in `schemas/<set>/`, as the login role
/// (which so owns every object), the way the old Flyway loop did, with the given history.
pub fn migrate_by_hand(
    w: &World,
    cluster: &PgCluster,
    set: &str,
    schema: &str,
    version: u32,
    history: History,
) {
    let (db, password) = login(w, cluster);
    cluster.psql(
        db,
        &format!("CREATE SCHEMA {schema} AUTHORIZATION neo_migrator"),
    );
    let mut sql = format!("SET search_path TO {schema};\n");
    if history != History::None {
        sql += &format!("{FLYWAY_DDL};\n");
    }
    let dir = w.path(&format!("schemas/{set}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        // The migrations only: undo files (`U<n>__`) are not part of a forward migration.
        .filter(|f| f.starts_with('V'))
        .collect();
    files.sort_by_key(|f| f[1..f.find("__").unwrap()].parse::<u32>().unwrap());
    for (i, file) in files.iter().take(version as usize).enumerate() {
        let v = i + 1;
        let body = std::fs::read_to_string(dir.join(file)).unwrap();
        if !body.starts_with("-- neo:no-transaction") {
            sql += &body;
            sql += "\n;\n";
        }
        if history != History::None {
            let success = !(history == History::FlywayLastFailed && v == version as usize);
            sql += &format!(
                "INSERT INTO flyway_schema_history VALUES ({v}, '{v}', 'migration {v}', 'SQL', '{file}', {}, 'neo_migrator', now(), 12, {success});\n",
                1000 + v
            );
        }
    }
    cluster
        .try_psql_as(db, "neo_migrator", &password, &sql)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn adopt_from_a_real_flyway_history_then_converge() {
    let w = World::new();
    migrate_by_hand(
        &w,
        &w.us,
        "tenant_template",
        "tenant_globex",
        5,
        History::Flyway,
    );
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
    migrate_by_hand(
        &w,
        &w.us,
        "tenant_template",
        "tenant_globex",
        3,
        History::FlywayLastFailed,
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
    migrate_by_hand(
        &w,
        &w.eu,
        "tenant_template",
        "tenant_stark",
        3,
        History::Flyway,
    );
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

/// The owners of a schema and of everything in it (relations, routines, types), distinct.
/// Left out are what PostgreSQL makes part of another object: a range type's constructor
/// functions (given to the bootstrap superuser, whoever makes the type) and its multirange
/// type (PostgreSQL 15 keeps its owner when the range's changes, and refuses to alter it on
/// its own).
fn owners_in(cluster: &PgCluster, db: &str, schema: &str) -> String {
    cluster
        .psql(
            db,
            &format!(
                "SELECT string_agg(DISTINCT o, ',') FROM (
                   SELECT pg_get_userbyid(nspowner)::text AS o FROM pg_namespace WHERE nspname = '{schema}'
                   UNION ALL SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relnamespace = '{schema}'::regnamespace
                   UNION ALL SELECT pg_get_userbyid(proowner)::text FROM pg_proc p WHERE pronamespace = '{schema}'::regnamespace
                     AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i')
                   UNION ALL SELECT pg_get_userbyid(typowner)::text FROM pg_type t WHERE typnamespace = '{schema}'::regnamespace
                     AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'i')
                 ) x"
            ),
        )
        .trim()
        .to_string()
}

#[test]
fn adopt_region_schema_from_flyway_then_a_new_migration_runs_as_its_owner() {
    let w = World::new();
    migrate_by_hand(
        &w,
        &w.eu,
        "platform_common",
        "platform_common",
        3,
        History::Flyway,
    );
    // Objects of kinds the migrations do not make, which adoption must hand over too.
    let (db, password) = login(&w, &w.eu);
    w.eu.try_psql_as(
        db,
        "neo_migrator",
        &password,
        "SET search_path TO platform_common;
         CREATE TYPE plan_status AS ENUM ('offered', 'retired');
         CREATE DOMAIN cents AS integer CHECK (VALUE >= 0);
         CREATE TYPE price_band AS (low cents, high cents);
         CREATE TYPE price_range AS RANGE (subtype = integer);
         CREATE SEQUENCE invoice_numbers;
         CREATE TABLE invoices (id serial PRIMARY KEY, n bigint GENERATED ALWAYS AS IDENTITY, status plan_status);
         CREATE MATERIALIZED VIEW plan_codes AS SELECT code FROM plans;
         CREATE AGGREGATE total_cents(integer) (sfunc = int4pl, stype = integer);
         CREATE PROCEDURE touch_plans() LANGUAGE sql AS $$UPDATE plans SET tier = tier$$;",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // These objects are not in the migrations: live-schema drift would report them (and block
    // the set); this test is about adoption, so drift detection is off for the set.
    w.edit("neo.toml", |s| {
        s.replace(
            "scope = \"region\"          #",
            "drift = \"off\"\nscope = \"region\"          #",
        )
    });

    let run = w.neo(
        "adopt",
        &[
            "--schema-set",
            "platform_common",
            "--region",
            "eu-west",
            "--from-flyway",
        ],
    );
    run.expect_code(0);
    assert_eq!(
        run.stdout.trim(),
        "adopted region eu-west: platform_common versions 1 to 3 recorded"
    );
    let rows = w.eu.psql(
        "neo_eu",
        "SELECT string_agg(version || ':' || adopted_from || ':' || schema_set, ',' ORDER BY version) FROM neo_reconcile.schema_history WHERE target_schema = 'platform_common'",
    );
    assert_eq!(
        rows.trim(),
        "1:flyway:platform_common,2:flyway:platform_common,3:flyway:platform_common"
    );
    assert_eq!(
        owners_in(&w.eu, "neo_eu", "platform_common"),
        "platform_common_owner"
    );
    // The login role is a member of the owner role, as after apply creates the schema.
    let member = w.eu.psql(
        "neo_eu",
        "SELECT pg_has_role('neo_migrator', 'platform_common_owner', 'MEMBER')",
    );
    assert_eq!(member.trim(), "t");
    // us-east was not named: nothing was recorded there.
    let us = w.us.psql(
        "neo_us",
        "SELECT to_regclass('neo_reconcile.schema_history') IS NULL",
    );
    assert_eq!(us.trim(), "t");

    // A V4 runs under the owner role against the adopted tables, and everything converges.
    w.write(
        "schemas/platform_common/V4__retire_plans.sql",
        "ALTER TABLE plans ADD COLUMN retired boolean NOT NULL DEFAULT false;\n\
         CREATE INDEX feature_flags_enabled_idx ON feature_flags (enabled_by_default);\n",
    );
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    let v4 = w.eu.psql(
        "neo_eu",
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'platform_common' AND table_name = 'plans' AND column_name = 'retired'",
    );
    assert_eq!(v4.trim(), "1");
    assert_eq!(
        w.eu.psql("neo_eu", "SELECT count(*) FROM platform_common.plans")
            .trim(),
        "4"
    );
}

#[test]
fn adopt_region_schema_that_does_not_exist_is_refused() {
    let w = World::new();
    // No --region: every region of the desired state.
    let run = w.neo(
        "adopt",
        &["--schema-set", "platform_common", "--at-version", "3"],
    );
    run.expect_code(1);
    for region in ["eu-west", "us-east"] {
        assert!(
            run.stdout.contains(&format!(
                "REFUSED region {region}: schema platform_common does not exist: there is nothing to adopt (apply creates a region's schema)"
            )),
            "{}",
            run.stdout
        );
    }
    for (cluster, db) in [(&w.us, "neo_us"), (&w.eu, "neo_eu")] {
        let recorded = cluster.psql(db, "SELECT count(*) FROM neo_reconcile.schema_history");
        assert_eq!(recorded.trim(), "0");
        let role = cluster.psql(
            db,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'platform_common_owner'",
        );
        assert_eq!(role.trim(), "0");
    }
}

#[test]
fn adopt_region_schema_with_history_is_refused_and_changes_nothing() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let before = w.snapshot();
    let run = w.neo(
        "adopt",
        &[
            "--schema-set",
            "platform_common",
            "--region",
            "us-east",
            "--at-version",
            "3",
        ],
    );
    run.expect_code(1);
    assert_eq!(
        run.stdout.trim(),
        "REFUSED region us-east: platform_common already has 3 recorded version(s) of platform_common: it is managed already"
    );
    assert_eq!(w.snapshot(), before);

    // The set's scope decides the form: a region-scope set is not adopted per tenant, a
    // tenant-scope set not per region, and unknown regions are named.
    let per_tenant = w.neo(
        "adopt",
        &[
            "--schema-set",
            "platform_common",
            "--tenant",
            "acme",
            "--at-version",
            "3",
        ],
    );
    per_tenant.expect_code(1);
    assert!(
        per_tenant
            .stderr
            .contains("platform_common is a region-scope set: its schema is adopted per region"),
        "{}",
        per_tenant.stderr
    );
    let per_region = w.neo(
        "adopt",
        &[
            "--schema-set",
            "tenant_template",
            "--region",
            "us-east",
            "--at-version",
            "3",
        ],
    );
    per_region.expect_code(1);
    assert!(
        per_region.stderr.contains(
            "tenant_template is a tenant-scope set: name its tenants with --tenant or --all"
        ),
        "{}",
        per_region.stderr
    );
    let unknown = w.neo(
        "adopt",
        &[
            "--schema-set",
            "platform_common",
            "--region",
            "mars",
            "--at-version",
            "3",
        ],
    );
    unknown.expect_code(1);
    assert!(
        unknown.stderr.contains("unknown region \"mars\""),
        "{}",
        unknown.stderr
    );
    assert_eq!(w.snapshot(), before);
}
