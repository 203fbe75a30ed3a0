//! `neo-reconcile plan` against two real throwaway clusters: the dry run observes, plans,
//! prints, and never changes anything.

use crate::world::World;

#[test]
fn empty_clusters_plan_a_full_bootstrap() {
    let w = World::new();
    let run = w.neo("plan", &["--format", "json", "--detailed-exitcode"]);
    run.expect_code(2);
    let plan = run.json();
    assert_eq!(plan["format_version"], 1);
    assert_eq!(plan["desired"]["digest"].as_str().unwrap().len(), 64);
    let kinds = |region: &str| -> Vec<String> {
        plan["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == region)
            .unwrap()["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        kinds("eu-west"),
        [
            "bootstrap",
            "migrate",
            "create_tenant",
            "migrate",
            "create_tenant",
            "migrate",
            "compute_shape", // platform_common V3, then tenant_template V5
            "compute_shape"
        ]
    );
    assert_eq!(
        kinds("us-east"),
        [
            "bootstrap",
            "bootstrap",
            "migrate", // bookkeeping, registry, platform_common
            "create_tenant",
            "migrate", // acme, the canary, first
            "create_tenant",
            "migrate",
            "create_tenant",
            "migrate",
            "suspend_tenant", // globex, initech
            "compute_shape",  // platform_common V3, tenant_template V5 and V6 (acme's pin)
            "compute_shape",
            "compute_shape",
            "update_registry"
        ]
    );
    // Every tenant action names its tenant.
    for r in plan["regions"].as_array().unwrap() {
        for a in r["actions"].as_array().unwrap() {
            let k = a["kind"].as_str().unwrap();
            if k.ends_with("_tenant") {
                assert!(a["tenant"].is_string(), "{a}");
            }
        }
    }
    assert_eq!(plan["summary"]["changes"], 22);
    assert_eq!(plan["summary"]["compute_shape"], 5);
    assert_eq!(plan["summary"]["create_tenant"], 5);
    assert_eq!(plan["summary"]["blocked"], 0);
}

#[test]
fn plan_twice_changes_nothing_in_the_database() {
    let w = World::new();
    let before = w.snapshot();
    w.neo("plan", &[]).expect_code(0);
    w.neo("plan", &["--format", "markdown"]).expect_code(0);
    assert_eq!(before, w.snapshot(), "plan changed an empty cluster");

    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let applied = w.snapshot();
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    w.neo("plan", &["--show-sql"]).expect_code(0);
    assert_eq!(applied, w.snapshot(), "plan changed a converged cluster");
}

#[test]
fn checksum_mismatch_blocks_that_tenant_only() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // Tampering: the history of globex says V2 had other content. Raise the fleet target so
    // that every tenant has work to do.
    w.us.psql(
        "neo_us",
        "UPDATE neo_reconcile.schema_history SET checksum = repeat('0', 64), applied_by = 'mallory@laptop'
         WHERE target_schema = 'tenant_globex' AND version = 2",
    );
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 6 "));
    let run = w.neo("plan", &["--format", "json"]);
    run.expect_code(1);
    let plan = run.json();
    let us = plan["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "us-east")
        .unwrap();
    let blocked = us["blocked"].as_array().unwrap();
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0]["reason"], "checksum_mismatch");
    assert_eq!(blocked[0]["tenant"], "globex");
    let msg = blocked[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("schemas/tenant_template/V2__add_lookup_indexes.sql"),
        "{msg}"
    );
    assert!(msg.contains("mallory@laptop"), "{msg}");
    // initech (suspended) and the eu-west tenants still migrate to V6.
    let migrated: Vec<&str> = plan["regions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["actions"].as_array().unwrap())
        .filter(|a| a["kind"] == "migrate")
        .filter_map(|a| a["tenant"].as_str())
        .collect();
    let mut migrated = migrated;
    migrated.sort_unstable();
    assert_eq!(migrated, ["hooli", "initech", "stark"]);
    let text = w.neo("plan", &[]);
    text.expect_code(1);
    assert!(
        text.stdout
            .contains("! blocked tenant globex, tenant_template: checksum mismatch"),
        "{}",
        text.stdout
    );
}

#[test]
fn unreachable_region_is_reported_while_the_other_plans() {
    let mut w = World::new();
    w.eu.stop();
    let run = w.neo("plan", &[]);
    run.expect_code(1);
    assert!(run.stdout.contains("Region eu-west"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("UNREACHABLE: cannot connect to 127.0.0.1:"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("+ create_tenant acme"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("1 region unreachable"),
        "{}",
        run.stdout
    );
    let json = w.neo("plan", &["--format", "json"]).json();
    let eu = json["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "eu-west")
        .unwrap()
        .clone();
    assert_eq!(eu["reachable"], false);
    assert!(eu["reason"].as_str().unwrap().contains("cannot connect"));
}

#[test]
fn missing_credentials_make_the_region_unreachable_with_the_variable_named() {
    let w = World::new();
    let tree = w.tree.path().to_str().unwrap().to_string();
    let out = w
        .command(&["plan", &tree])
        .env_remove("NEO_EU_WEST_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("environment variable NEO_EU_WEST_PASSWORD is not set"),
        "{stdout}"
    );
}

#[test]
fn unmanaged_tenant_schemas_are_reported_and_never_touched() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.us.psql(
        "neo_us",
        "CREATE SCHEMA tenant_legacy; CREATE TABLE tenant_legacy.t (id int)",
    );
    let run = w.neo("plan", &["--detailed-exitcode"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("? unmanaged schema tenant_legacy"),
        "{}",
        run.stdout
    );
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    assert_eq!(
        w.us.psql("neo_us", "SELECT count(*) FROM tenant_legacy.t")
            .trim(),
        "0"
    );
}

/// The statements one `neo-reconcile plan --region us-east` sends to us-east, as the server
/// logs them (`log_statement = 'all'`), one line each.
fn plan_statements(w: &World) -> Vec<String> {
    let (_, text) = w.plan_us_with_server_log();
    text.lines()
        .filter(|l| {
            l.contains("neo-reconcile") && (l.contains("statement: ") || l.contains("execute "))
        })
        .map(String::from)
        .collect()
}

#[test]
fn observation_runs_a_bounded_number_of_queries() {
    // Count the statements neo-reconcile sends, on the server, for 5 and then 40 tenants.
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let few = plan_statements(&w).len();
    for i in 0..35 {
        w.write(
            &format!("tenants/extra{i:02}.toml"),
            &format!("slug = \"extra{i:02}\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n"),
        );
    }
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let many = plan_statements(&w).len();
    assert!(
        few > 0,
        "no statements counted: is log_line_prefix showing application_name?"
    );
    assert_eq!(
        few, many,
        "observation queries grew with the number of tenants"
    );
}

/// Writes `n` active us-east tenants `{prefix}0000`... into `w`'s tree.
fn add_us_tenants(w: &World, prefix: &str, n: usize) {
    for i in 0..n {
        w.write(
            &format!("tenants/{prefix}{i:04}.toml"),
            &format!("slug = \"{prefix}{i:04}\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n"),
        );
    }
}

/// The statements of [`plan_statements`] without their time stamp and process id, e.g.
/// `execute sqlx_s_4: SELECT target_schema, ...` (first line only).
fn statement_texts(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l.split_once(" LOG:  ").map_or(l.as_str(), |(_, s)| s))
        .collect()
}

#[test]
fn drift_observation_runs_the_same_number_of_queries_at_10_and_1000_tenants() {
    // Drift detection is on (drift = "report", the default) and one tenant drifts in both
    // counts, so each includes the signature query and the description of one schema. Each
    // count follows an apply, which records the fingerprints of the schemas that changed
    // (globex's drifted one included), as in a fleet that a daemon keeps applying.
    let w = World::new();
    // The 990 extra tenants are applied at once, 16 at a time (about 25 s in a debug build).
    w.edit("regions/us-east.toml", |s| {
        s.replace("max_parallel = 4 ", "max_parallel = 16 ")
    });
    add_us_tenants(&w, "ten", 6);
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.us.psql("neo_us", "DROP INDEX tenant_globex.projects_owner_id_idx;");
    // globex is blocked by its drift (exit 4); the apply that creates a tenth tenant records
    // its live fingerprint, as the apply of the 990 below does.
    add_us_tenants(&w, "late", 1);
    w.neo("apply", &["--auto-approve"]).expect_code(4);
    let drifted = |w: &World| -> Vec<String> {
        let run = w.neo("plan", &["--region", "us-east"]);
        run.stdout
            .lines()
            .filter(|l| l.starts_with("  ! drift "))
            .map(String::from)
            .collect()
    };
    let globex = "  ! drift tenant globex: tenant_template V5 (schema tenant_globex, blocked)";
    assert_eq!(drifted(&w), [globex]);
    let few = plan_statements(&w);
    add_us_tenants(&w, "k", 990);
    // globex stays blocked by its drift; everything else is applied (exit 4).
    w.neo("apply", &["--auto-approve"]).expect_code(4);
    assert_eq!(
        w.us.psql(
            "neo_us",
            "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, 'tenant_')"
        )
        .trim(),
        "1000"
    );
    assert_eq!(drifted(&w), [globex]);
    let many = plan_statements(&w);
    let describes = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("-- The normalized description of the schemas"))
            .count()
    };
    // The signatures of every checked schema (with the recorded fingerprints), then the
    // description of globex's lines, the one schema that differs from its expected shape.
    let signatures = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("SELECT sig.schema, sig.signature"))
            .count()
    };
    assert_eq!((signatures(&few), describes(&few)), (1, 1), "{few:#?}");
    assert_eq!((signatures(&many), describes(&many)), (1, 1), "{many:#?}");
    assert_eq!(
        statement_texts(&few),
        statement_texts(&many),
        "observation queries changed with the number of tenants"
    );
    // The 990 new tenants are checked too: a change in the last of them is seen.
    w.us.psql("neo_us", "DROP INDEX tenant_k0989.projects_owner_id_idx;");
    assert_eq!(
        drifted(&w),
        [
            globex,
            "  ! drift tenant k0989: tenant_template V5 (schema tenant_k0989, blocked)"
        ]
    );
}

#[test]
fn plan_output_formats_and_saved_plan() {
    let w = World::new();
    let md = w.neo("plan", &["--format", "markdown"]);
    md.expect_code(0);
    assert!(
        md.stdout.contains("| region | reachable |"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("<details><summary>Region us-east"),
        "{}",
        md.stdout
    );
    let sql = w.neo("plan", &["--show-sql", "--tenant", "globex"]);
    sql.expect_code(0);
    assert!(
        sql.stdout
            .contains("| CREATE SCHEMA \"tenant_globex\" AUTHORIZATION \"tenant_globex_owner\""),
        "{}",
        sql.stdout
    );
    // Values are bound parameters, shown under their statement. The tenant's bookkeeping row
    // and its first migration's session settings go in one statement (one round trip), the
    // settings' parameters numbered after the row's.
    assert!(
        sql.stdout.contains(
            ") SELECT set_config('search_path', $6, true), set_config('lock_timeout', $7, true)"
        ),
        "{}",
        sql.stdout
    );
    assert!(
        sql.stdout
            .contains("$6 = \"\\\"tenant_globex\\\"\", $7 = \"5000ms\""),
        "{}",
        sql.stdout
    );
    assert!(
        !sql.stdout.contains("tenant_acme"),
        "tenant selection leaked: {}",
        sql.stdout
    );
    let out = w.path("plan.json");
    let saved = w.neo("plan", &["--out", out.to_str().unwrap()]);
    saved.expect_code(0);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(file["format_version"], 1);
    assert_eq!(file["summary"]["changes"], 22);
    let unknown = w.neo("plan", &["--tenant", "nobody"]);
    unknown.expect_code(1);
    assert!(
        unknown.stderr.contains("unknown tenant \"nobody\""),
        "{}",
        unknown.stderr
    );
}

#[test]
fn secrets_never_reach_output_or_logs() {
    let w = World::new();
    for args in [
        &["-vv"][..],
        &["--format", "json", "-vv", "--log-format", "json"],
        &["--show-sql", "-vv"],
    ] {
        let run = w.neo("plan", args);
        for (_, password) in &w.logins {
            assert!(
                !run.stdout.contains(password.as_str()) && !run.stderr.contains(password.as_str()),
                "password leaked with {args:?}"
            );
        }
    }
    let run = w.neo("apply", &["--auto-approve", "-vv"]);
    run.expect_code(0);
    for (_, password) in &w.logins {
        assert!(
            !run.stdout.contains(password.as_str()) && !run.stderr.contains(password.as_str()),
            "password leaked by apply"
        );
    }
}

#[test]
fn invalid_tree_is_refused_before_any_connection() {
    let w = World::new();
    w.write("tenants/bad.toml", "slug = \"bad\"\nregion = \"mars\"\n");
    let run = w.neo("plan", &[]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("tenants/bad.toml:2:10: error: region: unknown region \"mars\""),
        "{}",
        run.stderr
    );
}

/// Guards `connect` asking a full server again: a region whose login role is at its
/// `CONNECTION LIMIT` for a moment (apply closes and opens connections as it goes) is waited
/// for, not reported unreachable.
#[test]
fn a_server_full_for_a_moment_is_waited_for_not_reported_unreachable() {
    let w = World::new();
    let password = w
        .logins
        .iter()
        .find(|(prefix, _)| *prefix == "NEO_US_EAST")
        .map(|(_, p)| p.clone())
        .unwrap();
    w.us.psql("postgres", "ALTER ROLE neo_migrator CONNECTION LIMIT 2");
    // Two sessions of the login role take the whole limit for two seconds.
    std::thread::scope(|scope| {
        let sleepers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    w.us.try_psql_as("neo_us", "neo_migrator", &password, "SELECT pg_sleep(2)")
                })
            })
            .collect();
        let start = std::time::Instant::now();
        while w
            .us
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'neo_migrator'",
            )
            .trim()
            != "2"
        {
            assert!(
                start.elapsed().as_secs() < 10,
                "the sleepers did not connect"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }

        let run = w.neo("plan", &["--detailed-exitcode", "--region", "us-east"]);
        run.expect_code(2);
        assert!(!run.stdout.contains("unreachable"), "{}", run.stdout);
        for sleeper in sleepers {
            sleeper.join().unwrap().unwrap();
        }
    });
}
