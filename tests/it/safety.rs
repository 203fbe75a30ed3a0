//! Safety of what apply sends (issue 9): recorded values reach the server only as bound
//! parameters, even where a database or role turns `standard_conforming_strings` off.

use crate::support::pg::PgCluster;
use crate::world::World;

// ---------------------------------------------------------------------------------------------
// Helpers

/// The rows of a one-column query, byte for byte: the server hex-encodes each value, so that
/// neither psql's output format nor quoting can change a quote, a backslash or a newline.
fn exact_texts(c: &PgCluster, db: &str, query: &str) -> Vec<String> {
    c.psql(
        db,
        &format!("SELECT encode(convert_to(v::text, 'UTF8'), 'hex') FROM ({query}) AS q(v)"),
    )
    .lines()
    .map(|hex| {
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from encode()"))
            .collect();
        String::from_utf8(bytes).expect("UTF-8 from convert_to()")
    })
    .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Values are bound, never spliced into SQL text.

/// The error message of tenant_template V7 in us-east (dollar-quoted in the migration, so
/// these are its exact bytes). Spliced into a string literal with quotes doubled, under
/// `standard_conforming_strings = off`, `\'` ends the literal and `CREATE ROLE pwned` runs.
const US_ERROR: &str = r#"\'); CREATE ROLE pwned; -- it''s \\ "x""#;

/// The error message of V7 in eu-west, written as an `E''` literal in the migration: a
/// newline, then the same attack as [`US_ERROR`].
const EU_ERROR: &str = "line one\nx\\'); CREATE ROLE pwned3; --";

/// `$USER` of the run, recorded as `runs.run_by`.
const USER_PAYLOAD: &str = r"x\'); CREATE ROLE pwned2; --";

/// The name of the directory the tree is applied from, recorded in `runs.command`.
const TREE_DIR: &str = r#"it's \'); CREATE ROLE pwned4; -- \\ "tree""#;

/// A V7 that creates a table, then fails with [`US_ERROR`] in neo_us and [`EU_ERROR`]
/// elsewhere.
fn injecting_v7() -> String {
    r#"CREATE TABLE audit_log (id bigint PRIMARY KEY);
DO $$ BEGIN
  IF current_database() = 'neo_us' THEN
    RAISE EXCEPTION '%', $p$US_ERROR$p$;
  ELSE
    RAISE EXCEPTION '%', E'line one\nx\\''); CREATE ROLE pwned3; --';
  END IF;
END $$;
"#
    .replace("US_ERROR", US_ERROR)
}

/// Roles, databases, relations and functions of both clusters: what an injected statement
/// would add to.
fn catalog(w: &World) -> String {
    let mut out = String::new();
    for (c, dbs) in [
        (&w.us, &["neo_us", "neo_admin"][..]),
        (&w.eu, &["neo_eu"][..]),
    ] {
        out += &c.psql(
            "postgres",
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles",
        );
        out += &c.psql(
            "postgres",
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
        );
        for db in dbs {
            out += &c.psql(
                db,
                "SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text, ',' ORDER BY n.nspname, c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema'",
            );
            out += &c.psql(
                db,
                "SELECT string_agg(n.nspname || '.' || p.proname, ',' ORDER BY n.nspname, p.proname)
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema'",
            );
        }
    }
    out
}

#[test]
fn recorded_values_are_bound_even_with_standard_conforming_strings_off() {
    let w = World::new();
    for (c, db) in [(&w.us, "neo_us"), (&w.eu, "neo_eu")] {
        c.psql(
            "postgres",
            &format!("ALTER DATABASE {db} SET standard_conforming_strings = off"),
        );
        c.psql(
            "postgres",
            "ALTER ROLE neo_migrator SET standard_conforming_strings = off",
        );
        assert_eq!(c.psql(db, "SHOW standard_conforming_strings").trim(), "off");
    }
    // Everyone at V6 first, so that the failing apply runs nothing but V7.
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 6 "));
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.us.psql(
        "postgres",
        "ALTER DATABASE neo_admin SET standard_conforming_strings = off",
    );

    // V7 fails everywhere with an error text that is an attack on a spliced literal.
    w.write(
        "schemas/tenant_template/V7__fail_with_quotes.sql",
        &injecting_v7(),
    );
    w.edit("neo.toml", |s| s.replace("target = 6 ", "target = 7 "));
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6", "tenant_template = 7")
    });
    let before = catalog(&w);
    let outer = tempfile::TempDir::new().unwrap();
    let tree = outer.path().join(TREE_DIR);
    w.copy_tree(&tree);
    let run = w.neo_at(
        &tree,
        "apply",
        &["--auto-approve"],
        &[("USER", USER_PAYLOAD), ("LOGNAME", USER_PAYLOAD)],
    );
    run.expect_code(3);
    assert!(run.stdout.contains("tenant acme FAILED"), "{}", run.stdout);

    // Nothing was injected: no role, and no other change to either cluster's catalogs (V7's
    // table was rolled back).
    for c in [&w.us, &w.eu] {
        let pwned = c.psql(
            "postgres",
            "SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolname LIKE 'pwned%'",
        );
        assert_eq!(pwned.trim(), "", "injected roles exist");
    }
    assert_eq!(before, catalog(&w), "the failed apply changed a catalog");

    // The failed attempts are recorded with the database's error text, byte for byte.
    let history = |c: &PgCluster, db: &str, condition: &str| {
        exact_texts(
            c,
            db,
            &format!(
                "SELECT coalesce(error, '') FROM neo_reconcile.schema_history
                 WHERE schema_set = 'tenant_template' AND version = 7 AND {condition} ORDER BY id"
            ),
        )
    };
    let acme = history(
        &w.us,
        "neo_us",
        "NOT success AND target_schema = 'tenant_acme'",
    );
    assert_eq!(acme.len(), 1, "{acme:?}");
    for (c, db, error) in [(&w.us, "neo_us", US_ERROR), (&w.eu, "neo_eu", EU_ERROR)] {
        let failed = history(c, db, "NOT success");
        assert!(!failed.is_empty());
        for recorded in &failed {
            assert!(recorded.contains(error), "{recorded:?} lacks {error:?}");
        }
        assert_eq!(history(c, db, "success"), Vec::<String>::new());
    }

    // The run rows record who ran it and the command line exactly.
    let tree = tree.to_str().unwrap();
    for (c, db, error) in [(&w.us, "neo_us", US_ERROR), (&w.eu, "neo_eu", EU_ERROR)] {
        let last = "FROM neo_reconcile.runs ORDER BY id DESC LIMIT 1";
        assert_eq!(
            exact_texts(c, db, &format!("SELECT run_by {last}")),
            [USER_PAYLOAD]
        );
        let command = exact_texts(c, db, &format!("SELECT command {last}"));
        assert!(command[0].contains(tree), "{command:?} lacks {tree:?}");
        let outcome = exact_texts(c, db, &format!("SELECT outcome || ':' || error {last}"));
        assert!(
            outcome[0].starts_with("failed:") && outcome[0].contains(error),
            "{outcome:?}"
        );
    }
}
