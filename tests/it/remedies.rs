//! Every remedy the plan suggests must work: these tests make the situation a blocked finding
//! describes on real clusters, take the command out of the finding's message exactly as a user
//! would copy it, run it, and check that the block is gone.

use crate::adopt::{migrate_by_hand, History};
use crate::world::{Run, World};

/// The blocked findings of a JSON plan, in every region.
fn blocked(plan: &serde_json::Value) -> Vec<serde_json::Value> {
    plan["regions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["blocked"].as_array().unwrap().clone())
        .collect()
}

/// The finding of one region about one schema.
fn finding(plan: &serde_json::Value, region: &str, schema: &str) -> serde_json::Value {
    plan["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == region)
        .unwrap_or_else(|| panic!("no region {region} in {plan:#}"))["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["schema"] == schema)
        .unwrap_or_else(|| panic!("no finding about {schema} in {region}: {plan:#}"))
        .clone()
}

/// The `neo-reconcile adopt` commands a message quotes between backticks, in order.
fn adopt_commands(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| quoted.starts_with("neo-reconcile adopt "))
        .map(str::to_string)
        .collect()
}

/// Runs a command copied from a message, as a user in the root of the desired-state tree
/// would: the placeholder `<N>` replaced, nothing else changed.
fn run_copied(w: &World, command: &str, n: u32) -> Run {
    let command = command.replace("<N>", &n.to_string());
    assert!(
        !command.contains(['<', '>']),
        "placeholder left in {command:?}"
    );
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "neo-reconcile", "{command:?}");
    let out = w
        .command(&words[1..])
        .current_dir(w.tree.path())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn plan_remedy_adopt_region_schema_clears_the_block() {
    let w = World::new();
    // platform_common made by hand in us-east with the objects of V1..V3, and no history.
    migrate_by_hand(
        &w,
        &w.us,
        "platform_common",
        "platform_common",
        3,
        History::None,
    );

    let before = w.neo("plan", &["--format", "json"]);
    before.expect_code(1);
    let plan = before.json();
    let block = finding(&plan, "us-east", "platform_common");
    assert_eq!(block["reason"], "unmanaged", "{block:#}");
    assert_eq!(block["schema_set"], "platform_common", "{block:#}");
    let message = block["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("schema platform_common exists but neo-reconcile has no history for it: "),
        "{message}"
    );
    let commands = adopt_commands(message);
    assert_eq!(
        commands,
        ["neo-reconcile adopt --schema-set platform_common --region us-east --at-version <N>"],
        "{message}"
    );

    let run = run_copied(&w, &commands[0], 3);
    run.expect_code(0);
    assert_eq!(
        run.stdout.trim(),
        "adopted region us-east: platform_common versions 1 to 3 recorded"
    );

    // The block is gone, and nothing else is blocked in its place.
    let after = w.neo("plan", &["--format", "json"]);
    after.expect_code(0);
    let after = after.json();
    assert!(blocked(&after).is_empty(), "{after:#}");
    let us_actions = after["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "us-east")
        .unwrap()["actions"]
        .as_array()
        .unwrap();
    assert!(
        us_actions.iter().all(|a| a["schema"] != "platform_common"),
        "the adopted platform_common still has actions in us-east: {us_actions:#?}"
    );

    // Apply converges; a second plan has no changes; the hand-made data is still there.
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    assert_eq!(
        w.us.psql(
            "neo_us",
            "SELECT count(*) FROM platform_common.feature_flags"
        )
        .trim(),
        "4"
    );
    let owners = w.us.psql(
        "neo_us",
        "SELECT string_agg(DISTINCT pg_get_userbyid(relowner)::text, ',') FROM pg_class WHERE relnamespace = 'platform_common'::regnamespace",
    );
    assert_eq!(owners.trim(), "platform_common_owner");
}

#[test]
fn plan_remedy_adopt_tenant_schema_clears_the_block() {
    let w = World::new();
    // globex's schema made by hand in us-east with the objects of tenant_template V1..V3, and
    // no history; and in eu-west a role left over from hooli, without its schema.
    migrate_by_hand(
        &w,
        &w.us,
        "tenant_template",
        "tenant_globex",
        3,
        History::None,
    );
    w.eu.psql("neo_eu", "CREATE ROLE tenant_hooli_rw NOLOGIN");

    let before = w.neo("plan", &["--format", "json"]);
    before.expect_code(1);
    let plan = before.json();
    let block = finding(&plan, "us-east", "tenant_globex");
    assert_eq!(block["reason"], "unmanaged", "{block:#}");
    assert_eq!(block["tenant"], "globex", "{block:#}");
    let message = block["message"].as_str().unwrap();
    assert!(
        message.starts_with("tenant_globex already exists without a bookkeeping row: "),
        "{message}"
    );
    assert!(message.ends_with(" or drop the leftovers"), "{message}");
    let commands = adopt_commands(message);
    assert_eq!(
        commands,
        ["neo-reconcile adopt --tenant globex --schema-set tenant_template --at-version <N>"],
        "{message}"
    );
    // Without the schema there is nothing to adopt, and the message does not suggest it.
    let leftover = finding(&plan, "eu-west", "tenant_hooli");
    let leftover = leftover["message"].as_str().unwrap();
    assert_eq!(
        leftover,
        "tenant_hooli_rw already exists without a bookkeeping row, and schema tenant_hooli does not, so there is nothing to adopt: drop the leftovers"
    );
    assert!(adopt_commands(leftover).is_empty(), "{leftover}");

    for command in &commands {
        let run = run_copied(&w, command, 3);
        run.expect_code(0);
        assert_eq!(
            run.stdout.trim(),
            "adopted globex: tenant_template versions 1 to 3 recorded"
        );
    }
    // The other remedy, dropping the leftovers, is done by hand.
    w.eu.psql("neo_eu", "DROP ROLE tenant_hooli_rw");

    let after = w.neo("plan", &["--format", "json"]);
    after.expect_code(0);
    let after = after.json();
    assert!(blocked(&after).is_empty(), "{after:#}");
    let globex: Vec<&serde_json::Value> = after["regions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["actions"].as_array().unwrap())
        .filter(|a| a["tenant"] == "globex")
        .collect();
    assert_eq!(globex.len(), 1, "{globex:#?}");
    assert_eq!(globex[0]["kind"], "migrate");
    assert_eq!(globex[0]["from"], 3);
    assert_eq!(globex[0]["to"], 5);

    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}
