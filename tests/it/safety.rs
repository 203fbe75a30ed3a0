//! Safety of what apply sends (issue 9): recorded values reach the server only as bound
//! parameters, even where a database or role turns `standard_conforming_strings` off;
//! `plan --show-sql` prints exactly the statements and values the server receives; and a
//! transient failure (a lock held past `lock_timeout`, a deadlock) is tried again while a
//! permanent one (division by zero) is tried once.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use neo_reconcile::plan::Plan;
use neo_reconcile::sql::{self, Step, Value};
use sqlx::{Connection, Executor};

use crate::support::pg::PgCluster;
use crate::world::{Run, World};

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

/// Replaces the line setting `key` in a TOML file with `key = value`.
fn set_key(toml: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    for line in toml.lines() {
        let t = line.trim_start();
        if t.starts_with(&format!("{key} ")) || t.starts_with(&format!("{key}=")) {
            out += &format!("{key} = {value}\n");
        } else {
            out += line;
            out.push('\n');
        }
    }
    out
}

/// Waits until `query` on `db` returns `want`, for at most `timeout`.
#[track_caller]
fn wait_for(c: &PgCluster, db: &str, query: &str, want: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        if c.psql(db, query).trim() == want {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for `{query}` to return {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a spawned `neo-reconcile` (stdout and stderr piped) for at most `timeout`,
/// killing it if it takes longer.
fn finish(mut child: Child, timeout: Duration) -> Run {
    let drain = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            stream.read_to_string(&mut text).ok();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "neo-reconcile did not finish in {timeout:?}:\n{}",
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
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

// ---------------------------------------------------------------------------------------------
// 2. `plan --show-sql` is what the server receives.

/// The start of every line of the server log (`log_line_prefix`), then `|<pid>|<app>| `.
const LOG_TAG: &str = "neo-log";

/// Makes a cluster log every statement with the process id and application name, and waits
/// until new sessions do.
fn log_every_statement(c: &PgCluster) {
    let prefix = format!("{LOG_TAG}|%p|%a| ");
    c.psql("postgres", "ALTER SYSTEM SET log_statement = 'all'");
    c.psql(
        "postgres",
        &format!("ALTER SYSTEM SET log_line_prefix = '{prefix}'"),
    );
    c.psql("postgres", "SELECT pg_reload_conf()");
    wait_for(
        c,
        "postgres",
        "SHOW log_line_prefix",
        prefix.trim_end(),
        Duration::from_secs(10),
    );
    wait_for(
        c,
        "postgres",
        "SHOW log_statement",
        "all",
        Duration::from_secs(10),
    );
}

/// One statement neo-reconcile sent, as the server logged it.
#[derive(Debug)]
struct Received {
    text: String,
    /// `None` for a simple query; the bound values (`None`: NULL) for an extended one.
    params: Option<Vec<Option<String>>>,
}

/// The statements that sessions of neo-reconcile sent, from the server log written with
/// [`log_every_statement`]'s prefix. Multi-line messages continue on lines starting with a
/// tab (which PostgreSQL adds); `execute` is followed by its `DETAIL:  parameters:` line.
fn received(log: &str) -> Vec<Received> {
    // (pid, application, message)
    let mut entries: Vec<(String, String, String)> = Vec::new();
    let mut open = false;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{LOG_TAG}|")) {
            let mut parts = rest.splitn(3, '|');
            let (pid, app, message) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let message = message.strip_prefix(' ').unwrap_or(message);
            entries.push((pid.into(), app.into(), message.into()));
            open = true;
        } else if let (true, Some(more)) = (open, line.strip_prefix('\t')) {
            let message = &mut entries.last_mut().expect("open entry").2;
            message.push('\n');
            message.push_str(more);
        } else {
            open = false;
        }
    }
    let mut out = Vec::new();
    for (i, (pid, app, message)) in entries.iter().enumerate() {
        if app != "neo-reconcile" {
            continue;
        }
        if let Some(text) = message.strip_prefix("LOG:  statement: ") {
            out.push(Received {
                text: text.into(),
                params: None,
            });
        } else if let Some(rest) = message.strip_prefix("LOG:  execute ") {
            let (_, text) = rest.split_once(": ").expect("execute <name>: <text>");
            let params = entries
                .get(i + 1)
                .filter(|(p, _, _)| p == pid)
                .and_then(|(_, _, m)| m.strip_prefix("DETAIL:  parameters: "))
                .map(parse_params)
                .unwrap_or_default();
            out.push(Received {
                text: text.into(),
                params: Some(params),
            });
        }
    }
    out
}

/// `$1 = 'a''b', $2 = NULL` as PostgreSQL logs bound values.
fn parse_params(s: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let eq = rest
            .strip_prefix('$')
            .and_then(|r| r.find(" = ").map(|i| &r[i + 3..]))
            .unwrap_or_else(|| panic!("not a parameter list: {s:?}"));
        if let Some(r) = eq.strip_prefix("NULL") {
            out.push(None);
            rest = r;
        } else {
            let body = eq
                .strip_prefix('\'')
                .unwrap_or_else(|| panic!("not a quoted value: {eq:?}"));
            let mut value = String::new();
            let mut chars = body.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c != '\'' {
                    value.push(c);
                } else if chars.next_if(|&(_, c)| c == '\'').is_some() {
                    value.push('\'');
                } else {
                    end = Some(i + 1);
                    break;
                }
            }
            out.push(Some(value));
            rest = &body[end.unwrap_or_else(|| panic!("unterminated value: {eq:?}"))..];
        }
        match rest.strip_prefix(", ") {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

/// A PostgreSQL array's text form (`array_out`): elements double-quoted where needed.
fn array_text<'a>(items: impl Iterator<Item = Option<&'a str>>) -> String {
    let elements: Vec<String> = items
        .map(|item| match item {
            None => "NULL".to_string(),
            Some(s)
                if s.is_empty()
                    || s.eq_ignore_ascii_case("NULL")
                    || s.chars().any(|c| {
                        matches!(c, '"' | '\\' | '{' | '}' | ',' | '\x0b')
                            || c.is_ascii_whitespace()
                    }) =>
            {
                format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
            }
            Some(s) => s.to_string(),
        })
        .collect();
    format!("{{{}}}", elements.join(","))
}

/// A bound value as the server logs it (`None`: NULL), or `None` for a value known only when
/// apply runs (run id, host, commit, elapsed time, error text).
fn logged_value(v: &Value) -> Option<Option<String>> {
    Some(match v {
        Value::Text(s) => Some(s.clone()),
        Value::OptText(s) => s.clone(),
        Value::Int(i) => Some(i.to_string()),
        Value::TextArray(a) => Some(array_text(a.iter().map(|s| Some(s.as_str())))),
        Value::OptTextArray(a) => Some(array_text(a.iter().map(|s| s.as_deref()))),
        Value::IntArray(a) => {
            let ints: Vec<String> = a.iter().map(i32::to_string).collect();
            Some(array_text(ints.iter().map(|s| Some(s.as_str()))))
        }
        Value::Run(_) => return None,
    })
}

/// Asserts the server received `sql`: as a simple query when it has no parameters, else
/// through the extended protocol with the expected values bound.
#[track_caller]
fn assert_received(log: &[Received], region: &str, sql: &str, params: &[Value]) {
    let same_text: Vec<&Received> = log.iter().filter(|r| r.text == sql).collect();
    if params.is_empty() {
        assert!(
            same_text.iter().any(|r| r.params.is_none()),
            "region {region}: the server never received this simple query:\n{sql}\n\
             (received with the extended protocol {} time(s))",
            same_text.len()
        );
        return;
    }
    let expected: Vec<Option<Option<String>>> = params.iter().map(logged_value).collect();
    let matches = |got: &Vec<Option<String>>| {
        got.len() == expected.len()
            && got
                .iter()
                .zip(&expected)
                .all(|(got, want)| want.as_ref().map_or(true, |want| want == got))
    };
    assert!(
        same_text
            .iter()
            .any(|r| r.params.as_ref().is_some_and(matches)),
        "region {region}: the server never received\n{sql}\nwith {expected:?} (None: set at run time)\n\
         received with: {:?}",
        same_text.iter().map(|r| &r.params).collect::<Vec<_>>()
    );
}

/// Everything the server log holds after `offset` bytes.
fn log_since(c: &PgCluster, offset: u64) -> String {
    let bytes = std::fs::read(c.log_path()).unwrap();
    String::from_utf8_lossy(&bytes[offset as usize..]).into_owned()
}

fn log_len(c: &PgCluster) -> u64 {
    std::fs::metadata(c.log_path()).unwrap().len()
}

/// Plans with `--show-sql --out`, applies exactly that plan, and checks, for every action of
/// every region, that its program's rendering is in the shown plan and that the region's
/// server received every statement of it with its values. Returns the action kinds and what
/// each region's server received during the apply.
fn plan_apply_and_compare(
    w: &World,
    name: &str,
) -> (BTreeSet<&'static str>, Vec<(String, Vec<Received>)>) {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join(name);
    let file = file.to_str().unwrap();
    let shown = w.neo("plan", &["--show-sql", "--out", file]);
    shown.expect_code(0);
    let plan: Plan = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let desired = neo_reconcile::engine::load_desired(w.tree.path()).unwrap();

    let offsets = [log_len(&w.us), log_len(&w.eu)];
    w.neo("apply", &["--plan", file]).expect_code(0);

    let mut kinds = BTreeSet::new();
    let mut logs = Vec::new();
    for r in &plan.regions {
        let (cluster, offset) = match r.name.as_str() {
            "us-east" => (&w.us, offsets[0]),
            "eu-west" => (&w.eu, offsets[1]),
            other => panic!("unexpected region {other}"),
        };
        let log = received(&log_since(cluster, offset));
        let region = &desired.regions[&r.name];
        // The programs as apply runs them: a target's transactions joined per
        // `[apply] transaction`.
        let programs = sql::programs(&r.actions, &desired, region);
        for (action, program) in r.actions.iter().zip(programs) {
            kinds.insert(action.kind());
            let program = program.unwrap();
            // (a) The plan showed this program, line for line.
            let block: String = program
                .render()
                .iter()
                .flat_map(|s| s.lines())
                .map(|line| format!("        | {line}\n"))
                .collect();
            assert!(
                shown.stdout.contains(&block),
                "plan --show-sql does not show the program of {}:\n{block}\n--- shown:\n{}",
                action.kind(),
                shown.stdout
            );
            // (b) The server received every statement, with its values.
            for step in program.steps() {
                match step {
                    Step::Exec(s) => assert_received(&log, &r.name, &s.sql, &s.params),
                    Step::Script { sql, .. } => assert_received(&log, &r.name, sql, &[]),
                    Step::Begin | Step::Commit | Step::Note(_) => {}
                }
            }
        }
        logs.push((r.name.clone(), log));
    }
    (kinds, logs)
}

#[test]
fn show_sql_equals_the_statements_the_server_received() {
    let w = World::new();
    for region in ["regions/us-east.toml", "regions/eu-west.toml"] {
        w.edit(region, |s| {
            set_key(
                &set_key(s, "lock_timeout", "\"7s\""),
                "statement_timeout",
                "\"11min\"",
            )
        });
    }
    log_every_statement(&w.us);
    log_every_statement(&w.eu);

    // Round 1, from empty clusters: bootstrap (one creating neo_admin), platform_common,
    // create_tenant, tenant_template incl. the no-transaction V6 (acme), suspend_tenant
    // (initech) and the registry.
    let (mut kinds, logs) = plan_apply_and_compare(&w, "plan1.json");

    // (c) Migrations of the region-scope set and of tenants ran under the regions' timeouts.
    for (region, log) in &logs {
        // A migration's settings come alone, or chained after the bookkeeping row before it
        // (`WITH done AS (INSERT ...) SELECT set_config('search_path', $9, ...`): their values
        // start at the parameter the search path names.
        let settings: Vec<Vec<Option<String>>> = log
            .iter()
            .filter_map(|r| {
                let at = r.text.find("SELECT set_config('search_path', $")?;
                let rest = &r.text[at + "SELECT set_config('search_path', $".len()..];
                let n: usize = rest[..rest.find(',')?].parse().ok()?;
                Some(r.params.as_ref()?[n - 1..].to_vec())
            })
            .collect();
        for schema in ["\"platform_common\"", "\"tenant_"] {
            assert!(
                settings
                    .iter()
                    .any(|p| p[0].as_deref().is_some_and(|s| s.starts_with(schema))),
                "region {region}: no migration in {schema}: {settings:?}"
            );
        }
        for p in &settings {
            assert_eq!(
                (p[1].as_deref(), p[2].as_deref()),
                (Some("7000ms"), Some("660000ms")),
                "region {region}: {p:?}"
            );
        }
    }

    // Round 2: resume initech, archive globex, destroy stark, and the fleet to V6 (the
    // no-transaction migration in eu-west too).
    w.edit("tenants/initech.toml", |s| {
        s.replace("status = \"suspended\"", "status = \"active\"")
    });
    w.edit("tenants/globex.toml", |s| {
        s.replace("status = \"active\"", "status = \"archived\"")
    });
    w.edit("tenants/stark.toml", |s| {
        s.replace("status = \"active\"", "status = \"deleted\"")
    });
    w.edit("neo.toml", |s| {
        // Two of five tenants go in one plan: more than the default max_prune ("10%").
        s.replace("allow_destroy = false", "allow_destroy = true")
            .replace("destroy_after = \"30d\"", "destroy_after = \"0s\"")
            .replace("max_prune = \"10%\"", "max_prune = 2")
            .replace("target = 5 ", "target = 6 ")
    });
    let (more, _) = plan_apply_and_compare(&w, "plan2.json");
    kinds.extend(more);

    // Round 3: a revert to V4, through the undo files U6 (no transaction) and U5, each in a
    // transaction of its own (acme's pin goes too).
    w.edit("neo.toml", |s| {
        s.replace("allow_rollback = false", "allow_rollback = true")
            .replace("target = 6 ", "target = 4 ")
    });
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6\n", "")
    });
    let (more, _) = plan_apply_and_compare(&w, "plan3.json");
    kinds.extend(more);
    assert_eq!(
        kinds,
        BTreeSet::from([
            "archive_tenant",
            "bootstrap",
            "compute_shape",
            "create_tenant",
            "destroy_tenant",
            "migrate",
            "resume_tenant",
            "rollback",
            "suspend_tenant",
            "update_registry",
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Transient failures are retried, permanent ones are not.

/// The example applied, us-east's `lock_timeout` set, and tenant_template V7 (`sql`) the
/// target of the fleet and of the canary acme (in us-east).
fn example_with_v7(lock_timeout: &str, sql: &str) -> World {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.edit("regions/us-east.toml", |s| {
        set_key(s, "lock_timeout", &format!("\"{lock_timeout}\""))
    });
    w.write("schemas/tenant_template/V7__alter_tenant_tables.sql", sql);
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 7 "));
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6", "tenant_template = 7")
    });
    w
}

/// The errors of acme's failed V7 attempts, in order, and its number of successful ones.
fn acme_v7_history(w: &World) -> (Vec<String>, usize) {
    let rows = "FROM neo_reconcile.schema_history \
                WHERE target_schema = 'tenant_acme' AND schema_set = 'tenant_template' AND version = 7";
    let failed = exact_texts(
        &w.us,
        "neo_us",
        &format!("SELECT coalesce(error, '') {rows} AND NOT success ORDER BY id"),
    );
    let succeeded =
        w.us.psql("neo_us", &format!("SELECT count(*) {rows} AND success"));
    (failed, succeeded.trim().parse().unwrap())
}

const RETRY_LOG: &str = "Transient failure; trying again.";

#[test]
fn a_lock_held_past_lock_timeout_is_retried_until_it_succeeds() {
    let w = example_with_v7("1s", "ALTER TABLE users ADD COLUMN nickname text;\n");
    // A session holds tenant_acme.users until apply has recorded a failed attempt (at most
    // 20 s), then commits; it reports whether it saw the failure.
    let hold = "BEGIN;
        LOCK TABLE tenant_acme.users IN ACCESS EXCLUSIVE MODE;
        DO $$ BEGIN
          WHILE NOT EXISTS (SELECT FROM neo_reconcile.schema_history WHERE target_schema = 'tenant_acme' AND version = 7 AND NOT success)
                AND clock_timestamp() < statement_timestamp() + interval '20 seconds' LOOP
            PERFORM pg_sleep(0.05);
          END LOOP;
        END $$;
        SELECT EXISTS (SELECT FROM neo_reconcile.schema_history WHERE target_schema = 'tenant_acme' AND version = 7 AND NOT success);
        COMMIT;";
    let (run, saw_failure) = std::thread::scope(|s| {
        let holder = s.spawn(|| w.us.psql("neo_us", hold));
        wait_for(
            &w.us,
            "neo_us",
            "SELECT count(*) FROM pg_locks
             WHERE relation = 'tenant_acme.users'::regclass AND mode = 'AccessExclusiveLock' AND granted",
            "1",
            Duration::from_secs(20),
        );
        let run = w.neo("apply", &["--auto-approve", "--tenant", "acme"]);
        (run, holder.join().unwrap())
    });
    assert_eq!(saw_failure.trim(), "t", "apply never failed on the lock");
    run.expect_code(0);
    let (failed, succeeded) = acme_v7_history(&w);
    assert!(!failed.is_empty());
    for error in &failed {
        assert!(error.contains("lock timeout"), "{error:?}");
    }
    assert_eq!(succeeded, 1, "failed attempts: {failed:?}");
    assert!(
        run.stderr.contains(RETRY_LOG) && run.stderr.contains("lock timeout"),
        "{}",
        run.stderr
    );
    assert_eq!(
        w.us.psql("neo_us", "SELECT to_regclass('tenant_acme.users') IS NOT NULL AND EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'tenant_acme.users'::regclass AND attname = 'nickname')").trim(),
        "t"
    );
}

#[test]
fn a_deadlock_with_a_concurrent_session_is_retried() {
    // V7 takes users, then waits for projects, which session A holds; A then asks for users.
    let w = example_with_v7(
        "10s",
        "ALTER TABLE users ADD COLUMN nickname text;\nALTER TABLE projects ADD COLUMN summary text;\n",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = w.us.connect_options("neo_us");
    let mut a = rt
        .block_on(sqlx::PgConnection::connect_with(&options))
        .unwrap();
    let mut monitor = rt
        .block_on(sqlx::PgConnection::connect_with(&options))
        .unwrap();
    // A never detects the deadlock itself: the migration's backend does, after the default
    // deadlock_timeout (1 s), and is the one aborted.
    rt.block_on(a.execute(sqlx::raw_sql(
        "BEGIN; SET LOCAL deadlock_timeout = '60s';
         LOCK TABLE tenant_acme.projects IN ACCESS EXCLUSIVE MODE",
    )))
    .unwrap();
    let tree = w.tree.path().to_str().unwrap().to_string();
    let child = w
        .command(&["apply", &tree, "--auto-approve", "--tenant", "acme"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Some(child);

    // The migration's backend holds users and waits for projects.
    let waiting = "SELECT count(*) FROM pg_locks w JOIN pg_stat_activity a ON a.pid = w.pid
         WHERE NOT w.granted AND w.relation = 'tenant_acme.projects'::regclass
           AND a.application_name = 'neo-reconcile'
           AND EXISTS (SELECT FROM pg_locks h WHERE h.pid = w.pid AND h.granted
                         AND h.relation = 'tenant_acme.users'::regclass AND h.mode = 'AccessExclusiveLock')";
    let start = Instant::now();
    loop {
        let n: i64 = rt
            .block_on(sqlx::query_scalar(waiting).fetch_one(&mut monitor))
            .unwrap();
        if n > 0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let run = finish(child.take().unwrap(), Duration::from_secs(1));
            panic!(
                "the migration never waited for projects:\n{}\n{}",
                run.stdout, run.stderr
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Close the cycle: A waits for users until the migration is aborted as the deadlock victim.
    let locked = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            a.execute(sqlx::raw_sql(
                "LOCK TABLE tenant_acme.users IN ACCESS EXCLUSIVE MODE",
            )),
        )
        .await
    });
    assert!(matches!(locked, Ok(Ok(_))), "{locked:?}");
    rt.block_on(a.execute(sqlx::raw_sql("COMMIT"))).unwrap();
    rt.block_on(async {
        a.close().await.ok();
        monitor.close().await.ok();
    });
    let run = finish(child.take().unwrap(), Duration::from_secs(60));

    run.expect_code(0);
    let (failed, succeeded) = acme_v7_history(&w);
    assert!(
        failed.iter().any(|e| e.contains("deadlock detected")),
        "{failed:?}"
    );
    assert_eq!(succeeded, 1, "failed attempts: {failed:?}");
    assert!(run.stderr.contains(RETRY_LOG), "{}", run.stderr);
}

#[test]
fn an_error_that_is_not_transient_is_tried_once() {
    // Syntax errors no longer reach the server (validate parses every file), so the permanent
    // error here is one only the server finds.
    let w = example_with_v7("1s", "SELECT 1 / 0;\n");
    let run = w.neo("apply", &["--auto-approve", "--tenant", "acme"]);
    run.expect_code(3);
    let (failed, succeeded) = acme_v7_history(&w);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("division by zero"), "{failed:?}");
    assert_eq!(succeeded, 0);
    assert!(!run.stderr.contains(RETRY_LOG), "{}", run.stderr);
    assert!(!run.stderr.contains("trying again"), "{}", run.stderr);
}
