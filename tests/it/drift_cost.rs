//! What live-schema drift detection costs a plan, counted on the server: after an apply, a
//! plan describes no schema at all (the change signatures match the fingerprints apply
//! recorded); after an out-of-band change, it describes exactly the changed schema.

use crate::world::World;

/// The schema lists the description query received from neo-reconcile during one `plan` of
/// us-east, one entry per execution (`$1` as the server logged it).
fn described_during_plan(w: &World) -> Vec<String> {
    let (plan, text) = w.plan_us_with_server_log();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("neo-reconcile")
            && line.contains("execute ")
            && line.contains("The normalized description of the schemas")
        {
            let detail = lines[i + 1..]
                .iter()
                .find(|l| l.contains("DETAIL:  parameters: $1 = "))
                .unwrap_or_else(|| panic!("no parameters logged after {line}"));
            out.push(detail.split("$1 = ").nth(1).unwrap().to_string());
        }
    }
    assert!(
        plan.stdout.contains("Region us-east"),
        "the plan did not run: {}",
        plan.stdout
    );
    out
}

#[test]
fn after_an_apply_a_plan_describes_only_the_schemas_changed_since() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let recorded = w.us.psql(
        "neo_us",
        "SELECT string_agg(target_schema, ',' ORDER BY target_schema) FROM neo_reconcile.live_fingerprints",
    );
    assert_eq!(
        recorded.trim(),
        "platform_common,tenant_acme,tenant_globex",
        "the apply records the fingerprint of every checked schema of us-east (initech is suspended)"
    );
    assert_eq!(described_during_plan(&w), Vec::<String>::new());

    // An index dropped out of band: globex alone is described, for its fingerprint and then
    // for its lines (it differs from its expected shape).
    w.us.psql("neo_us", "DROP INDEX tenant_globex.projects_owner_id_idx");
    let described = described_during_plan(&w);
    assert_eq!(described.len(), 2, "{described:?}");
    assert!(
        described.iter().all(|p| p.starts_with("'{tenant_globex}'")),
        "{described:?}"
    );
}
