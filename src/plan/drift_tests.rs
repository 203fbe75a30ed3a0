//! Table-driven cases of live-schema drift in the planner, through the one `check(...)` of
//! `tests.rs`: a target's observed shape against its expected one, under each policy.

use expect_test::expect;

use super::*;
use crate::observed::shape::{shape_id, Expected, Shape, ShapeEntry, ShapeKey, Target};

fn entry(object: &str, line: &str, create: Option<&str>, drop: Option<&str>) -> ShapeEntry {
    ShapeEntry {
        object: object.into(),
        line: line.into(),
        create: create.map(str::to_string),
        drop: drop.map(str::to_string),
    }
}

/// What `app` V2 creates: a column, an index, a grant.
fn expected_entries() -> Vec<ShapeEntry> {
    vec![
        entry("column t.a", "column t.a integer NULL", None, None),
        entry(
            "grant SELECT on table t to @rw",
            "grant SELECT on table t to @rw",
            Some("GRANT SELECT ON TABLE t TO \"@rw\""),
            Some("REVOKE SELECT ON TABLE t FROM \"@rw\""),
        ),
        entry(
            "index t_a_idx",
            "index t_a_idx ON t USING btree (a)",
            Some("CREATE INDEX t_a_idx ON t USING btree (a)"),
            Some("DROP INDEX t_a_idx"),
        ),
    ]
}

/// Two tenants at `app` V2 in region us, acme's schema described as `live` (`None`: as
/// expected), under `policy`.
fn drifted(
    d: &mut Desired,
    live: Option<Vec<ShapeEntry>>,
    policy: DriftPolicy,
    prune: bool,
) -> Observed {
    for set in &mut d.schema_sets {
        set.drift = policy;
        set.drift_prune = prune;
    }
    let mut o = us_only(d, &[("acme", Active, 2), ("beta", Active, 2)]);
    let key = ShapeKey(vec![("app".into(), 2)]);
    let shapes = &mut us_state(&mut o).shapes;
    shapes.expected.insert(
        key.clone(),
        Expected::Known(Shape {
            fingerprint: "expected".into(),
            entries: expected_entries(),
        }),
    );
    for slug in ["acme", "beta"] {
        let schema = format!("tenant_{slug}");
        shapes.targets.insert(
            schema.clone(),
            Target {
                key: key.clone(),
                tenant: Some(slug.into()),
                policy,
                prune,
            },
        );
        shapes.fingerprints.insert(schema, "expected".into());
    }
    if let Some(entries) = live {
        shapes
            .fingerprints
            .insert("tenant_acme".into(), "live".into());
        shapes.live.insert(
            "tenant_acme".into(),
            Shape {
                fingerprint: "live".into(),
                entries,
            },
        );
    }
    o
}

/// The expected entries without the index, with an extra grant and an extra index.
fn index_dropped_grant_added() -> Vec<ShapeEntry> {
    let mut live = expected_entries();
    live.retain(|e| !e.object.starts_with("index "));
    live.push(entry(
        "grant SELECT on table t to intruder",
        "grant SELECT on table t to intruder",
        Some("GRANT SELECT ON TABLE t TO intruder"),
        Some("REVOKE SELECT ON TABLE t FROM intruder"),
    ));
    live.sort_by(|a, b| a.line.cmp(&b.line));
    live
}

fn with_extra_index_and_column(mut live: Vec<ShapeEntry>, column: bool) -> Vec<ShapeEntry> {
    live.push(entry(
        "index t_b_idx",
        "index t_b_idx ON t USING btree (b)",
        Some("CREATE INDEX t_b_idx ON t USING btree (b)"),
        Some("DROP INDEX t_b_idx"),
    ));
    if column {
        live.push(entry("column t.b", "column t.b text NULL", None, None));
    }
    live.sort_by(|a, b| a.line.cmp(&b.line));
    live
}

#[test]
fn drift_under_report_blocks_the_drifted_tenant_only() {
    let mut d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    let o = drifted(
        &mut d,
        Some(index_dropped_grant_added()),
        DriftPolicy::Report,
        false,
    );
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 2 changes, 1 blocked
          ~ migrate tenant beta: app 2 -> 3 in schema tenant_beta
              V3 view
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +1 @@
              -beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=2
              +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3
          ! blocked tenant acme: the live schema tenant_acme differs from what app V2 creates (see the diff); nothing else is done in it until a human acts: drift = "report": put the schema back by hand, set drift = "repair" on the set, or accept the live shape with `neo-reconcile adopt --accept-drift`
          ! drift tenant acme: app V2 (schema tenant_acme, blocked)
              --- expected (app V2)
              +++ live tenant_acme
              -index t_a_idx ON t USING btree (a)
              +grant SELECT on table t to intruder

        Plan: 0 to bootstrap, 0 to create, 1 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 1 blocked.
    "#]],
    );
}

#[test]
fn drift_under_repair_puts_back_the_index_and_the_grant_before_migrating() {
    let mut d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    let o = drifted(
        &mut d,
        Some(index_dropped_grant_added()),
        DriftPolicy::Repair,
        false,
    );
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 4 changes, 0 blocked
              ~ repair_drift tenant acme: put back definitions of app V2 in schema tenant_acme (2 statements)
              ~ migrate tenant acme: app 2 -> 3 in schema tenant_acme
                  V3 view
              ~ migrate tenant beta: app 2 -> 3 in schema tenant_beta
                  V3 view
              ~ update_registry admin.database_connections in database neo_admin (2 upserted, 0 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1,2 +1,2 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2
                  +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
                  -beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=2
                  +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3
              ~ drift tenant acme: app V2 (schema tenant_acme, repaired)
                  --- expected (app V2)
                  +++ live tenant_acme
                  -index t_a_idx ON t USING btree (a)
                  +grant SELECT on table t to intruder

            Plan: 0 to bootstrap, 0 to create, 2 to migrate, 1 drifted schema to repair, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
        "#]],
    );
    let plan = plan(&d, &o, &only_us());
    let Action::RepairDrift { statements, .. } = &plan.regions[0].actions[0] else {
        panic!("not a repair first: {:?}", plan.regions[0].actions);
    };
    assert_eq!(
        statements,
        &[
            "CREATE INDEX t_a_idx ON t USING btree (a)",
            "REVOKE SELECT ON TABLE t FROM intruder"
        ]
    );
}

#[test]
fn an_added_column_stays_blocked_under_repair() {
    let mut d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    let live = with_extra_index_and_column(expected_entries(), true);
    let o = drifted(&mut d, Some(live), DriftPolicy::Repair, true);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 2 changes, 1 blocked
          ~ migrate tenant beta: app 2 -> 3 in schema tenant_beta
              V3 view
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +1 @@
              -beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=2
              +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3
          ! blocked tenant acme: the live schema tenant_acme differs from what app V2 creates (see the diff); nothing else is done in it until a human acts: these changes cannot be put back automatically (tables, columns, owners, or extra objects without drift_prune = true): restore them by hand, or accept the live shape with `neo-reconcile adopt --accept-drift`
          ! drift tenant acme: app V2 (schema tenant_acme, blocked)
              --- expected (app V2)
              +++ live tenant_acme
              +column t.b text NULL
              +index t_b_idx ON t USING btree (b)

        Plan: 0 to bootstrap, 0 to create, 1 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 1 blocked.
    "#]],
    );
}

#[test]
fn an_extra_index_is_dropped_only_with_prune() {
    let mut d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    let live = with_extra_index_and_column(expected_entries(), false);
    let o = drifted(&mut d, Some(live.clone()), DriftPolicy::Repair, false);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 2 changes, 1 blocked
          ~ migrate tenant beta: app 2 -> 3 in schema tenant_beta
              V3 view
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +1 @@
              -beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=2
              +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3
          ! blocked tenant acme: the live schema tenant_acme differs from what app V2 creates (see the diff); nothing else is done in it until a human acts: these changes cannot be put back automatically (tables, columns, owners, or extra objects without drift_prune = true): restore them by hand, or accept the live shape with `neo-reconcile adopt --accept-drift`
          ! drift tenant acme: app V2 (schema tenant_acme, blocked)
              --- expected (app V2)
              +++ live tenant_acme
              +index t_b_idx ON t USING btree (b)

        Plan: 0 to bootstrap, 0 to create, 1 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 1 blocked.
    "#]],
    );
    let o = drifted(&mut d, Some(live), DriftPolicy::Repair, true);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 4 changes, 0 blocked
              ~ repair_drift tenant acme: put back definitions of app V2 in schema tenant_acme (1 statement)
              ~ migrate tenant acme: app 2 -> 3 in schema tenant_acme
                  V3 view
              ~ migrate tenant beta: app 2 -> 3 in schema tenant_beta
                  V3 view
              ~ update_registry admin.database_connections in database neo_admin (2 upserted, 0 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1,2 +1,2 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2
                  +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
                  -beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=2
                  +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3
              ~ drift tenant acme: app V2 (schema tenant_acme, repaired)
                  --- expected (app V2)
                  +++ live tenant_acme
                  +index t_b_idx ON t USING btree (b)

            Plan: 0 to bootstrap, 0 to create, 2 to migrate, 1 drifted schema to repair, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
        "#]],
    );
}

#[test]
fn same_fingerprint_or_unknown_expected_shape_is_no_drift() {
    let mut d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    let o = drifted(&mut d, None, DriftPolicy::Report, false);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 3 changes, 0 blocked
          ~ migrate tenant acme: app 2 -> 3 in schema tenant_acme
              V3 view
          ~ migrate tenant beta: app 2 -> 3 in schema tenant_beta
              V3 view
          ~ update_registry admin.database_connections in database neo_admin (2 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1,2 +1,2 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
              -beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=2
              +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3

        Plan: 0 to bootstrap, 0 to create, 2 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
    let mut o = drifted(&mut d, Some(Vec::new()), DriftPolicy::Report, false);
    let shapes = &mut us_state(&mut o).shapes;
    let key = ShapeKey(vec![("app".into(), 2)]);
    shapes.expected.insert(
        key,
        Expected::Failed {
            reason: "schemas/app/V2__x.sql: permission denied".into(),
        },
    );
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 3 changes, 0 blocked
          ~ migrate tenant acme: app 2 -> 3 in schema tenant_acme
              V3 view
          ~ migrate tenant beta: app 2 -> 3 in schema tenant_beta
              V3 view
          ~ update_registry admin.database_connections in database neo_admin (2 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1,2 +1,2 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
              -beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=2
              +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3

        Plan: 0 to bootstrap, 0 to create, 2 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
}

/// Two tenants at `app` V2 (target V3) with the expected-shape cache read; `cached` are the
/// versions whose shape is in it.
fn with_cache(d: &Desired, cached: &[u32]) -> Observed {
    let mut o = us_only(d, &[("acme", Active, 2), ("beta", Active, 2)]);
    let shapes = &mut us_state(&mut o).shapes;
    shapes.cache_read = true;
    for v in cached {
        let key = ShapeKey(vec![("app".into(), *v)]);
        shapes
            .computed
            .insert(shape_id(&d.schema_sets, &key).unwrap());
    }
    o
}

#[test]
fn an_expected_shape_not_cached_is_computed_for_the_versions_targets_have_after_the_plan() {
    let d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    // V2 is cached, the targets move to V3: V3's shape is computed, once for both.
    check(
        &d,
        &with_cache(&d, &[2]),
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 4 changes, 0 blocked
              ~ migrate tenant acme: app 2 -> 3 in schema tenant_acme
                  V3 view
              ~ migrate tenant beta: app 2 -> 3 in schema tenant_beta
                  V3 view
              + compute_shape app V3: run its migrations in a scratch schema that is never committed, keep the shape for drift checks
              ~ update_registry admin.database_connections in database neo_admin (2 upserted, 0 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1,2 +1,2 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2
                  +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
                  -beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=2
                  +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3

            Plan: 0 to bootstrap, 0 to create, 2 to migrate, 1 expected shape to compute, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
        "#]],
    );
    // V3 is cached already: nothing more.
    let plan = plan(&d, &with_cache(&d, &[2, 3]), &only_us());
    assert_eq!(plan.summary.compute_shape, 0);
    // The cache could not be read (a lock timeout, say): nothing is computed blindly.
    let plan = plan_of(
        &d,
        &us_only(&d, &[("acme", Active, 2), ("beta", Active, 2)]),
    );
    assert_eq!(plan.summary.compute_shape, 0);
}

#[test]
fn a_tenant_pinned_behind_gets_the_shape_of_its_own_versions_and_drift_off_gets_none() {
    let mut d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    d.tenants
        .get_mut("beta")
        .unwrap()
        .pins
        .insert("app".into(), 2);
    check(
        &d,
        &with_cache(&d, &[]),
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 4 changes, 0 blocked
              ~ migrate tenant acme: app 2 -> 3 in schema tenant_acme
                  V3 view
              + compute_shape app V2: run its migrations in a scratch schema that is never committed, keep the shape for drift checks
              + compute_shape app V3: run its migrations in a scratch schema that is never committed, keep the shape for drift checks
              ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1 +1 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2
                  +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3

            Plan: 0 to bootstrap, 0 to create, 1 to migrate, 2 expected shapes to compute, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
        "#]],
    );
    for set in &mut d.schema_sets {
        set.drift = DriftPolicy::Off;
    }
    let plan = plan(&d, &with_cache(&d, &[]), &only_us());
    assert_eq!(plan.summary.compute_shape, 0);
}

/// The plan of the us region.
fn plan_of(d: &Desired, o: &Observed) -> Plan {
    plan(d, o, &only_us())
}
