//! `[extensions]`: created once per region when the login role may, otherwise the region is
//! blocked with the statement a DBA must run; migrations find the extensions' types and
//! operators through the search path.

use crate::world::World;

/// A V7 for every tenant that needs pg_trgm's operator class and citext's type.
const V7_USES_EXTENSIONS: &str = "\
ALTER TABLE users ADD COLUMN handle citext;
CREATE INDEX users_display_name_trgm ON users USING gin (display_name gin_trgm_ops);
";

fn add_v7(w: &World) {
    w.write(
        "schemas/tenant_template/V7__search_by_similarity.sql",
        V7_USES_EXTENSIONS,
    );
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 7 "));
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6", "tenant_template = 7")
    });
}

#[test]
fn trusted_extensions_are_created_once_per_region_and_migrations_use_them() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    add_v7(&w);
    w.edit("neo.toml", |s| {
        format!("{s}\n[extensions]\nschema = \"extensions\"\nnames = [\"pg_trgm\", \"citext\"]\n")
    });

    let plan = w.neo("plan", &["--show-sql", "--tenant", "acme"]);
    plan.expect_code(0);
    assert!(
        plan.stdout
            .contains("+ create_extension pg_trgm in schema extensions (create the schema)"),
        "{}",
        plan.stdout
    );
    // The extension schema follows the target schema on every migration's search path.
    assert!(
        plan.stdout
            .contains("$1 = \"\\\"tenant_acme\\\", \\\"extensions\\\"\""),
        "{}",
        plan.stdout
    );

    w.neo("apply", &["--auto-approve"]).expect_code(0);
    for (cluster, db) in [(&w.us, "neo_us"), (&w.eu, "neo_eu")] {
        let installed = cluster.psql(
            db,
            "SELECT string_agg(e.extname || '@' || n.nspname, ',' ORDER BY e.extname) \
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql'",
        );
        assert_eq!(installed.trim(), "citext@extensions,pg_trgm@extensions");
    }
    let column = w.us.psql(
        "neo_us",
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'tenant_acme.users'::regclass AND attname = 'handle'",
    );
    assert_eq!(column.trim(), "extensions.citext");
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn an_extension_the_login_may_not_create_blocks_the_region_with_the_dba_statement() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // postgres_fdw is not trusted: only a superuser may create it.
    w.edit("neo.toml", |s| {
        format!("{s}\n[extensions]\nnames = [\"postgres_fdw\"]\n")
    });
    let before = w.snapshot();
    let plan = w.neo("plan", &["--format", "json"]);
    plan.expect_code(1);
    let json = plan.json();
    let blocked: Vec<&serde_json::Value> = json["regions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["blocked"].as_array().unwrap())
        .collect();
    assert_eq!(blocked.len(), 2, "{json:#}");
    assert!(blocked.iter().all(|b| b["reason"] == "extension_missing"));
    let message = blocked[0]["message"].as_str().unwrap();
    let statement = message
        .split("a DBA runs ")
        .nth(1)
        .unwrap_or_else(|| panic!("no statement in {message}"));
    assert_eq!(
        statement,
        "CREATE EXTENSION IF NOT EXISTS \"postgres_fdw\" SCHEMA \"public\";"
    );
    // Apply changes nothing in a blocked region (exit 4: only blocked findings remain).
    w.neo("apply", &["--auto-approve"]).expect_code(4);
    assert_eq!(before, w.snapshot());

    // The DBA runs exactly that statement; the block is gone.
    w.us.psql("neo_us", statement);
    w.eu.psql("neo_eu", statement);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}
