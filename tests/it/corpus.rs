//! The corpus: real migration sets of public open-source projects, applied by neo-reconcile
//! and, for comparison, by psql.
//!
//! Nothing of these projects is committed: `tests/corpus/manifest.toml` names each set's
//! registry package, exact version and sha256, and `scripts/corpus.sh` fetches it at test
//! time into `target/corpus/<set>/`, renamed `V<n>__<description>.sql` (the only conversion).
//!
//! Each test puts one set into a desired tree as the tenant-scope set `corpus_<set>` of one
//! tenant `<set>` (the example tree's sets and tenants removed, so that the tenant's schema
//! holds nothing else), runs `apply --auto-approve`, then applies the same files with
//! `psql -v ON_ERROR_STOP=1` (`SET search_path TO ref_<set>`, then `\i` each file) into a fresh
//! schema `ref_<set>` of the same cluster, and checks that:
//! - the catalogs of `tenant_<set>` and `ref_<set>` are equal once the schema name is replaced by
//!   a placeholder: relations, columns, constraints, indexes, views, functions, triggers,
//!   types, policies and comments (ownership and privileges differ by design);
//! - a second `plan --detailed-exitcode` has nothing to do;
//! - for a set whose every file is wrapped in `BEGIN; ... COMMIT;` (the golang-migrate, dbmate
//!   and Sqitch convention), `plan --show-sql` showed the files without the pair, which psql
//!   ran as it is;
//! - nothing appeared outside the schemas neo-reconcile manages.
//!
//! The reference schema lives in its own database, [`REF_DB`]: real migrations may look
//! objects up database-wide (litellm's guards ask `pg_constraint` for a constraint by name
//! alone), and a reference applied beside the tenant's schema would then skip what the tenant
//! already has.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::support::catalog::{catalog, render};
use crate::world::World;

/// One corpus set and what its database needs.
struct Case {
    /// The set's name in the manifest; also the tenant's slug.
    set: &'static str,
    /// Extensions the test creates beforehand, as superuser, in the database's `public`
    /// schema (a migration's `CREATE EXTENSION IF NOT EXISTS` is then a no-op).
    created_beforehand: &'static [&'static str],
    /// Extensions the region declares, for neo-reconcile to create (issue 16 part 3).
    declared: &'static [&'static str],
    /// The kinds of catalog objects ([`crate::support::catalog::CATALOG`]) the set must leave
    /// in the schema, so that an apply that did next to nothing cannot pass as "equal".
    populated: &'static [&'static str],
    /// Every file is wrapped in one `BEGIN; ... COMMIT;` pair: `plan --show-sql` must show
    /// the files without it (psql runs them as they are).
    wrapped: bool,
}

/// PL/pgSQL-heavy: enum types, functions replaced across versions, trigger functions and
/// triggers (PyPI `procrastinate`).
#[test]
fn procrastinate_plpgsql_functions_and_triggers() {
    check(&Case {
        set: "procrastinate",
        created_beforehand: &[],
        declared: &[],
        populated: &["relations"],
        wrapped: false,
    });
}

/// sqlx style, trigger functions replaced over time (crates.io `atuin-server-postgres`).
#[test]
fn atuin_sqlx_migrations_with_triggers() {
    check(&Case {
        set: "atuin",
        created_beforehand: &[],
        declared: &[],
        populated: &["relations"],
        wrapped: false,
    });
}

/// Prisma Migrate, 220 migrations, seven of them `CREATE INDEX CONCURRENTLY` marked
/// `-- neo:no-transaction` (PyPI `litellm-proxy-extras`).
///
/// Its `DO` blocks guard `ADD CONSTRAINT` and `DROP CONSTRAINT` with a lookup of
/// `pg_constraint` by name alone, database-wide: a second tenant in the same database skips
/// the foreign keys the first one has, then fails at V25 ("constraint
/// \"LiteLLM_TeamMembership_budget_id_fkey\" ... does not exist"). One tenant per database
/// here, and the reference in its own database ([`REF_DB`]).
#[test]
fn litellm_prisma_history_with_concurrent_indexes() {
    check(&Case {
        set: "litellm",
        created_beforehand: &[],
        declared: &[],
        populated: &["relations"],
        wrapped: false,
    });
}

/// Prisma Migrate whose first migration runs `CREATE EXTENSION IF NOT EXISTS "pgcrypto"`
/// (npm `umami`): with the extension created beforehand by a superuser, the statement is a
/// no-op for the tenant's owner role.
#[test]
fn umami_prisma_with_pgcrypto_created_beforehand() {
    check(&Case {
        set: "umami",
        created_beforehand: &["pgcrypto"],
        declared: &[],
        populated: &["relations"],
        wrapped: false,
    });
}

/// sqlx reversible migrations, PL/pgSQL-heavy, whose column defaults call `uuid_nil()` and
/// `uuid_generate_v4()` from uuid-ossp (crates.io `sqlxmq`). Today, without the region's
/// `extensions`, V1 fails with "permission denied to create extension \"uuid-ossp\"" (the
/// owner role may not create extensions); with uuid-ossp created beforehand in `public`, it
/// fails with "function uuid_nil() does not exist" (`public` is not on the search path).
#[test]
fn sqlxmq_uuid_ossp_from_region_extensions() {
    check(&Case {
        set: "sqlxmq",
        created_beforehand: &[],
        declared: &["uuid-ossp"],
        populated: &["relations"],
        wrapped: false,
    });
}

/// Diesel: `<dir>/up.sql`, Diesel's generated PL/pgSQL helpers, and a column default
/// calling `uuid_generate_v4()` from uuid-ossp (crates.io `fang`). Today, without the
/// region's `extensions`, V2 fails with "permission denied to create extension
/// \"uuid-ossp\""; with uuid-ossp created beforehand in `public`, with "function
/// uuid_generate_v4() does not exist".
#[test]
fn fang_diesel_uuid_ossp_from_region_extensions() {
    check(&Case {
        set: "fang",
        created_beforehand: &[],
        declared: &["uuid-ossp"],
        populated: &["relations"],
        wrapped: false,
    });
}

/// Sqitch-style deploy scripts, every file wrapped in `BEGIN; ... COMMIT;` (npm
/// `@pgpm/verify`): neo-reconcile accepts the one wrapping pair around a whole file and
/// removes it, psql runs the files as they are, and the functions come out the same.
#[test]
fn pgpm_verify_files_wrapped_in_begin_commit() {
    check(&Case {
        set: "pgpm_verify",
        created_beforehand: &[],
        declared: &[],
        populated: &["functions"],
        wrapped: true,
    });
}

/// Sqitch-style deploy scripts wrapped in `BEGIN; ... COMMIT;`, one domain per file, one of
/// them over citext (npm `@pgpm/types`), with citext declared by the region.
#[test]
fn pgpm_types_wrapped_domains_over_citext() {
    check(&Case {
        set: "pgpm_types",
        created_beforehand: &[],
        declared: &["citext"],
        populated: &["types"],
        wrapped: true,
    });
}

/// The region database the tenant lives in.
const DB: &str = "neo_us";

/// The database, in the same cluster, of the reference schema applied by psql.
const REF_DB: &str = "corpus_ref";

fn check(case: &Case) {
    let set = case.set;
    let files = corpus(set);
    let w = corpus_world(set, &files);
    if !case.declared.is_empty() {
        declare_region_extensions(&w, case.declared);
    }
    w.us.create_database(REF_DB);
    for extension in case.created_beforehand {
        for db in [DB, REF_DB] {
            w.us.psql(
                db,
                &format!("CREATE EXTENSION IF NOT EXISTS \"{extension}\" SCHEMA public"),
            );
        }
    }
    let before = objects_outside(&w);

    if case.wrapped {
        check_unwrapped(&w, set, &files);
    }
    w.neo("apply", &["--auto-approve"]).expect_code(0);

    let tenant = format!("tenant_{set}");
    let reference = format!("ref_{set}");
    // Where the declared extensions live: on the reference's search path, as on the tenant's.
    let extension_schemas: Vec<String> = case
        .declared
        .iter()
        .map(|extension| {
            let schema = w.us.psql(
                DB,
                &format!("SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = '{extension}'"),
            );
            let schema = schema.trim().to_string();
            assert!(!schema.is_empty(), "apply did not create the declared extension {extension}");
            schema
        })
        .collect();
    // The same extensions, in schemas of the same names, in the reference's database.
    let mut script = String::new();
    for (extension, schema) in case.declared.iter().zip(&extension_schemas) {
        script += &format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};\nCREATE EXTENSION \"{extension}\" SCHEMA {schema};\n"
        );
    }
    let mut search_path = vec![reference.clone()];
    search_path.extend(extension_schemas.iter().cloned());
    script += &format!(
        "CREATE SCHEMA {reference};\nSET search_path TO {};\n",
        search_path.join(", ")
    );
    for file in &files {
        script += &format!("\\i '{}'\n", file.display());
    }
    if let Err(error) = w.us.try_psql(REF_DB, &script) {
        panic!("psql could not apply the {set} corpus into {reference}:\n{error}");
    }

    let ours = catalog(&w.us, DB, &tenant);
    let theirs = catalog(&w.us, REF_DB, &reference);
    let objects: usize = ours.iter().map(|(_, lines)| lines.len()).sum();
    let empty: Vec<&str> = ours
        .iter()
        .filter(|(kind, lines)| case.populated.contains(kind) && lines.is_empty())
        .map(|(kind, _)| *kind)
        .collect();
    assert!(
        empty.is_empty() && objects >= 5,
        "{tenant} holds almost nothing after {} migrations ({objects} objects, empty: {empty:?}):\n{}",
        files.len(),
        render(&ours)
    );
    if ours != theirs {
        let (a, b) = (render(&ours), render(&theirs));
        let diff = similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(2)
            .header(&tenant, &reference)
            .to_string();
        panic!(
            "the {set} corpus: neo-reconcile's {tenant} differs from psql's {reference}:\n{diff}"
        );
    }

    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);

    let mut managed = vec!["neo_reconcile".to_string(), tenant];
    managed.extend(extension_schemas);
    let outside = |objects: &[(String, Option<String>, String)]| -> Vec<String> {
        objects
            .iter()
            .filter(|(_, schema, text)| {
                !schema.as_ref().is_some_and(|s| managed.contains(s))
                    && !case.declared.iter().any(|e| {
                        *text == format!("extension {e}")
                            || text.ends_with(&format!(" (extension {e})"))
                    })
            })
            .map(|(db, _, text)| format!("{db}: {text}"))
            .collect()
    };
    let (before, after) = (outside(&before), outside(&objects_outside(&w)));
    if before != after {
        let (a, b) = (before.join("\n") + "\n", after.join("\n") + "\n");
        let diff = similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .header("before apply", "after apply")
            .to_string();
        panic!(
            "the {set} corpus: objects appeared or vanished outside the managed schemas:\n{diff}"
        );
    }
}

/// For a set whose every file is wrapped in `BEGIN; ... COMMIT;`: each file does hold the
/// pair (as its own lines), and `plan --show-sql` shows the scripts without it (apply's own
/// transaction shows as `BEGIN` and `COMMIT`, without a semicolon).
fn check_unwrapped(w: &World, set: &str, files: &[PathBuf]) {
    let is_pair = |l: &str| {
        let l = l.trim().to_ascii_uppercase();
        l == "BEGIN;" || l == "COMMIT;"
    };
    for file in files {
        let text = fs::read_to_string(file).unwrap();
        let pair = text.lines().filter(|l| is_pair(l)).count();
        assert_eq!(
            pair,
            2,
            "{} is not wrapped in one BEGIN; ... COMMIT; pair",
            file.display()
        );
    }
    let run = w.neo("plan", &["--show-sql", "--tenant", set]);
    run.expect_code(0);
    // The SQL lines of the output, without their `        | ` margin.
    let shown: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('|'))
        .map(str::trim)
        .collect();
    // The scripts are there: each file's first statement inside the pair is shown.
    for file in files {
        let text = fs::read_to_string(file).unwrap();
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("--") && !is_pair(l))
            .unwrap();
        assert!(
            shown.contains(&first),
            "plan --show-sql does not show {}'s {first:?}:\n{}",
            file.display(),
            run.stdout
        );
    }
    let left: Vec<&str> = shown.iter().copied().filter(|l| is_pair(l)).collect();
    assert!(
        left.is_empty(),
        "plan --show-sql still shows the files' BEGIN;/COMMIT; lines ({left:?}):\n{}",
        run.stdout
    );
}

/// Runs `scripts/corpus.sh <set>` once per set and process (the script itself is idempotent
/// and locks against other processes) and returns the set's files in version order.
fn corpus(set: &str) -> Vec<PathBuf> {
    static FETCHED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var_os("NEO_CORPUS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root.join("target").join("corpus"),
    };
    {
        let mut fetched = FETCHED.lock().unwrap_or_else(|e| e.into_inner());
        if !fetched.iter().any(|s| s == set) {
            let out = Command::new(root.join("scripts/corpus.sh"))
                .arg(set)
                .env("NEO_CORPUS_DIR", &dir)
                .output()
                .expect("running scripts/corpus.sh");
            assert!(
                out.status.success(),
                "scripts/corpus.sh {set} failed ({}): the corpus is fetched from package registries at test time\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            fetched.push(set.to_string());
        }
    }
    let mut files: Vec<(u32, PathBuf)> = fs::read_dir(dir.join(set))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(set).display()))
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let version = name.strip_prefix('V')?.split_once("__")?.0.parse().ok()?;
            Some((version, path))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no migrations in {}",
        dir.join(set).display()
    );
    files.into_iter().map(|(_, path)| path).collect()
}

/// The test world with a tree reduced to one tenant-scope set, `corpus_<set>` (the corpus's
/// files), and one tenant `<set>` in us-east. The example's sets and tenants are removed, so
/// that the tenant's schema holds the corpus and nothing else.
fn corpus_world(set: &str, files: &[PathBuf]) -> World {
    let w = World::new();
    fs::remove_dir_all(w.path("schemas")).unwrap();
    fs::remove_dir_all(w.path("tenants")).unwrap();
    w.write(
        "neo.toml",
        &format!(
            "format_version = 1\n\n\
             [control_plane]\nregion = \"us-east\"\ndatabase = \"neo_admin\"\n\n\
             [schema_sets.corpus_{set}]\nscope = \"tenant\"\ntarget = \"latest\"\n"
        ),
    );
    w.write(
        &format!("tenants/{set}.toml"),
        &format!(
            "slug = \"{set}\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n"
        ),
    );
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap();
        w.write(
            &format!("schemas/corpus_{set}/{name}"),
            &fs::read_to_string(file).unwrap(),
        );
    }
    w
}

/// Declares extensions in `neo.toml`'s `[extensions]` (schema `public`, the default): the
/// plan creates them in every region's database, and every migration's search path has
/// `public` after the tenant schema.
fn declare_region_extensions(w: &World, extensions: &[&str]) {
    let list: Vec<String> = extensions.iter().map(|e| format!("\"{e}\"")).collect();
    w.edit("neo.toml", |s| {
        format!("{s}\n[extensions]\nnames = [{}]\n", list.join(", "))
    });
}

/// Every object of both region databases that lives outside the system schemas, or outside
/// any schema (extensions, languages, event triggers, casts): `(database, schema, text)`. A
/// cast that belongs to an extension says so (`... (extension citext)`): a declared
/// extension's casts are expected.
fn objects_outside(w: &World) -> Vec<(String, Option<String>, String)> {
    const QUERY: &str = "
        WITH ns AS (SELECT oid, nspname FROM pg_namespace
                     WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                       AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%')
        SELECT coalesce(json_agg(json_build_array(s, t) ORDER BY s, t), '[]') FROM (
            SELECT nspname, 'schema ' || nspname FROM ns
            UNION ALL SELECT ns.nspname, 'relation ' || ns.nspname || '.' || c.relname || ' kind=' || c.relkind::text
                FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
            UNION ALL SELECT ns.nspname, 'function ' || ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
                FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
            UNION ALL SELECT ns.nspname, 'type ' || ns.nspname || '.' || t.typname
                FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
            UNION ALL SELECT NULL, 'extension ' || extname FROM pg_extension
            UNION ALL SELECT NULL, 'language ' || lanname FROM pg_language
            UNION ALL SELECT NULL, 'event trigger ' || evtname FROM pg_event_trigger
            UNION ALL SELECT NULL, 'cast ' || c.castsource::regtype || ' as ' || c.casttarget::regtype
                    || coalesce(' (extension ' || (SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                                                    WHERE d.classid = 'pg_cast'::regclass AND d.objid = c.oid
                                                      AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') || ')', '')
                FROM pg_cast c WHERE c.oid >= 16384
        ) o(s, t)";
    let mut all = Vec::new();
    for (cluster, db) in [(&w.us, "neo_us"), (&w.eu, "neo_eu")] {
        let out = cluster.psql(db, QUERY);
        let rows: Vec<(Option<String>, String)> = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("objects query: {e}: {out}"));
        all.extend(rows.into_iter().map(|(s, t)| (db.to_string(), s, t)));
    }
    all
}
