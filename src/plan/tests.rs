//! Table-driven tests of the pure planner. Each case builds a desired and an observed state
//! in memory and compares the rendered text plan with the expected one through [`check`].
//! `UPDATE_EXPECT=1 cargo test` rewrites the expectations; review every change by hand.

use std::collections::BTreeMap;

use expect_test::{expect, Expect};

use super::render::{self, TextOptions};
use super::*;
use crate::desired::{
    ApplySettings, ControlPlane, CredentialSource, Credentials, DriftPolicy, Endpoint, MaxPrune,
    Migration, Policy, Region, SchemaSet, Scope, SslMode, Tenant,
};
use crate::observed::{Bookkeeping, DeadRun, HistoryRow, RegistryRow, TenantRow};

const TODAY: &str = "20261123";
/// 2026-11-23T12:00:00Z, the server time of every observed region.
const NOW: i64 = 1_795_435_200;
/// 2026-10-01T00:00:00Z, when the archived tenants of these cases were archived.
const ARCHIVED_AT: i64 = 1_790_812_800;

pub(super) fn migration(set: &str, version: u32, description: &str) -> Migration {
    Migration {
        version,
        description: description.to_string(),
        file: format!("schemas/{set}/V{version}__{description}.sql"),
        sql: format!("-- {set} V{version}\nSELECT {version};\n"),
        statements: vec![format!("-- {set} V{version}\nSELECT {version}")],
        checksum: format!("{:064x}", u64::from(version) * 1000 + set.len() as u64),
        no_transaction: false,
        adds_enum_value: false,
    }
}

fn region(name: &str, port: u16) -> Region {
    Region {
        name: name.to_string(),
        residency: name.to_uppercase(),
        postgres: Endpoint {
            host: "127.0.0.1".into(),
            port,
            database: format!("db_{name}"),
            sslmode: SslMode::Disable,
        },
        credentials: Credentials::from(CredentialSource::Env(name.to_uppercase())),
        apply: ApplySettings::default(),
    }
}

/// Two regions (`us`, the control plane, and `eu`), a region-scope set `common` (2
/// migrations) and a tenant-scope set `app` (4 migrations, target 3) depending on it.
pub(super) fn desired(tenants: &[(&str, &str, TenantStatus)]) -> Desired {
    let mut app = SchemaSet {
        name: "app".into(),
        scope: Scope::Tenant,
        target: 3,
        depends_on: vec!["common".into()],
        migrations: Vec::new(),
        undo: BTreeMap::new(),
        drift: DriftPolicy::Report,
        drift_prune: false,
    };
    app.migrations = ["init", "index", "view", "column"]
        .iter()
        .enumerate()
        .map(|(i, d)| migration("app", i as u32 + 1, d))
        .collect();
    let common = SchemaSet {
        name: "common".into(),
        scope: Scope::Region,
        target: 2,
        depends_on: Vec::new(),
        migrations: vec![
            migration("common", 1, "plans"),
            migration("common", 2, "flags"),
        ],
        undo: BTreeMap::new(),
        drift: DriftPolicy::Report,
        drift_prune: false,
    };
    Desired {
        root: "/repo".into(),
        control_plane: ControlPlane {
            region: "us".into(),
            database: "neo_admin".into(),
        },
        policy: Policy::default(),
        extensions: Default::default(),
        schema_sets: vec![common, app],
        regions: [
            ("us".to_string(), region("us", 5432)),
            ("eu".to_string(), region("eu", 5433)),
        ]
        .into_iter()
        .collect(),
        tenants: tenants
            .iter()
            .map(|(slug, region, status)| {
                (
                    slug.to_string(),
                    Tenant {
                        slug: slug.to_string(),
                        region: region.to_string(),
                        status: *status,
                        pins: BTreeMap::new(),
                    },
                )
            })
            .collect(),
        digest: "d1e2s3i4r5e6d7".into(),
    }
}

pub(super) fn options() -> PlanOptions {
    PlanOptions {
        bookkeeping_latest: 1,
        registry_latest: 1,
        ..PlanOptions::default()
    }
}

/// A region database that has never seen neo-reconcile.
fn fresh() -> RegionState {
    RegionState {
        today: TODAY.into(),
        now: NOW,
        schemas: ["public".to_string()].into_iter().collect(),
        ..RegionState::default()
    }
}

/// A region database bootstrapped and with `common` at its target.
pub(super) fn managed(d: &Desired, region: &str) -> RegionState {
    let mut s = fresh();
    s.schemas.insert("neo_reconcile".into());
    s.bookkeeping = Some(Bookkeeping {
        version: 1,
        ..Bookkeeping::default()
    });
    applied(&mut s, d, "common", "common", 2);
    s.roles.insert("common_owner".into());
    if d.control_plane.region == region {
        s.control_plane = Some(ControlPlaneState::Ready {
            version: 1,
            rows: BTreeMap::new(),
        });
    }
    s
}

/// Records versions 1..=to of a set as applied to a schema (and creates the schema).
pub(super) fn applied(s: &mut RegionState, d: &Desired, set: &str, schema: &str, to: u32) {
    s.schemas.insert(schema.to_string());
    let set = d.schema_set(set).unwrap();
    let bk = s.bookkeeping.as_mut().unwrap();
    for m in &set.migrations[..to as usize] {
        bk.history.push(HistoryRow {
            target_schema: schema.to_string(),
            schema_set: set.name.clone(),
            version: m.version,
            description: m.description.clone(),
            checksum: m.checksum.clone(),
            applied_at: "2026-11-01T10:00:00Z".into(),
            applied_by: "neo@bastion-1".into(),
            success: true,
        });
    }
}

/// Adds a managed tenant at a version of `app`, with its registry row in line.
pub(super) fn with_tenant(
    s: &mut RegionState,
    d: &Desired,
    slug: &str,
    status: TenantStatus,
    app: u32,
) {
    let schema = match status {
        TenantStatus::Archived => format!("archived_{slug}_20261001"),
        _ => format!("tenant_{slug}"),
    };
    s.roles.insert(format!("tenant_{slug}_owner"));
    s.roles.insert(format!("tenant_{slug}_rw"));
    // History stays keyed by tenant_<slug>, the schema the migrations ran in.
    if app > 0 {
        applied(s, d, "app", &format!("tenant_{slug}"), app);
        s.schemas.remove(&format!("tenant_{slug}"));
    }
    s.schemas.insert(schema.clone());
    s.bookkeeping.as_mut().unwrap().tenants.insert(
        slug.to_string(),
        TenantRow {
            slug: slug.to_string(),
            status,
            schema_name: schema,
            owner_role: format!("tenant_{slug}_owner"),
            rw_role: format!("tenant_{slug}_rw"),
            archived_at: (status == TenantStatus::Archived).then_some(ARCHIVED_AT),
        },
    );
}

/// Puts a registry row for every managed tenant, as an earlier apply left it: the tenant's
/// live status, schema and versions.
pub(super) fn registry_in_line(observed: &mut Observed, d: &Desired) {
    let mut rows = BTreeMap::new();
    for (name, obs) in &observed.regions {
        let RegionObservation::Reachable(RegionState {
            bookkeeping: Some(bk),
            ..
        }) = obs
        else {
            continue;
        };
        let endpoint = &d.regions[name].postgres;
        for t in bk.tenants.values().filter(|t| t.status != Deleted) {
            let versions = bk
                .history
                .iter()
                .filter(|h| {
                    h.target_schema == format!("tenant_{}", t.slug) && h.schema_set == "app"
                })
                .map(|h| ("app".to_string(), h.version))
                .max_by_key(|(_, v)| *v)
                .into_iter()
                .collect();
            rows.insert(
                t.slug.clone(),
                RegistryRow {
                    tenant: t.slug.clone(),
                    region: name.clone(),
                    host: endpoint.host.clone(),
                    port: endpoint.port,
                    database: endpoint.database.clone(),
                    schema: t.schema_name.clone(),
                    status: t.status,
                    schema_versions: versions,
                    commit: Some("0ld".into()),
                },
            );
        }
    }
    if let Some(RegionObservation::Reachable(s)) = observed.regions.get_mut(&d.control_plane.region)
    {
        s.control_plane = Some(ControlPlaneState::Ready { version: 1, rows });
    }
}

pub(super) fn observed(regions: Vec<(&str, RegionState)>) -> Observed {
    Observed {
        regions: regions
            .into_iter()
            .map(|(n, s)| (n.to_string(), RegionObservation::Reachable(s)))
            .collect(),
    }
}

pub(super) fn check(d: &Desired, o: &Observed, opts: &PlanOptions, expect: Expect) {
    let plan = plan(d, o, opts);
    // The JSON form must round-trip: apply --plan reads it back.
    let back: Plan = serde_json::from_str(&render::json(&plan)).unwrap();
    assert_eq!(back, plan);
    expect.assert_eq(&render::text(&plan, d, TextOptions::default()));
}

use TenantStatus::{Active, Archived, Deleted, Suspended};

#[test]
fn empty_clusters_plan_a_full_bootstrap() {
    let d = desired(&[
        ("acme", "us", Active),
        ("beta", "us", Suspended),
        ("gone", "us", Archived),
        ("hooli", "eu", Active),
    ]);
    let o = observed(vec![("us", fresh()), ("eu", fresh())]);
    check(
        &d,
        &o,
        &options(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region eu (db_eu at 127.0.0.1:5433): 4 changes, 0 blocked
          + bootstrap neo_reconcile in database db_eu (version 0 -> 1)
          ~ migrate common: 0 -> 2 in schema common
              V1 plans
              V2 flags
          + create_tenant hooli (schema tenant_hooli, roles tenant_hooli_owner, tenant_hooli_rw)
          ~ migrate tenant hooli: app 0 -> 3 in schema tenant_hooli
              V1 init
              V2 index
              V3 view

        Region us (db_us at 127.0.0.1:5432): 9 changes, 0 blocked
          + bootstrap neo_reconcile in database db_us (version 0 -> 1)
          + bootstrap admin in database neo_admin (create the database) (version 0 -> 1)
          ~ migrate common: 0 -> 2 in schema common
              V1 plans
              V2 flags
          + create_tenant acme (schema tenant_acme, roles tenant_acme_owner, tenant_acme_rw)
          ~ migrate tenant acme: app 0 -> 3 in schema tenant_acme
              V1 init
              V2 index
              V3 view
          + create_tenant beta (schema tenant_beta, roles tenant_beta_owner, tenant_beta_rw)
          ~ migrate tenant beta: app 0 -> 3 in schema tenant_beta
              V1 init
              V2 index
              V3 view
          - suspend_tenant beta (revoke tenant_beta_rw's access to tenant_beta)
          ~ update_registry admin.database_connections in database neo_admin (3 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -0,0 +1,3 @@
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
              +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=suspended versions=app=3
              +hooli region=eu at=127.0.0.1:5433/db_eu schema=tenant_hooli status=active versions=app=3

        Plan: 3 to bootstrap, 3 to create, 5 to migrate, 1 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
}

#[test]
fn converged_state_plans_no_changes() {
    let d = desired(&[("acme", "us", Active), ("hooli", "eu", Active)]);
    let mut us = managed(&d, "us");
    with_tenant(&mut us, &d, "acme", Active, 3);
    let mut eu = managed(&d, "eu");
    with_tenant(&mut eu, &d, "hooli", Active, 3);
    let mut o = observed(vec![("us", us), ("eu", eu)]);
    registry_in_line(&mut o, &d);
    check(
        &d,
        &o,
        &options(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region eu (db_eu at 127.0.0.1:5433): 0 changes, 0 blocked
          (no changes)

        Region us (db_us at 127.0.0.1:5432): 0 changes, 0 blocked
          (no changes)

        No changes. The live state matches the desired state.
    "#]],
    );
}

/// One region (`us`) with `common` done and the given tenants; registry in line.
pub(super) fn us_only(d: &Desired, tenants: &[(&str, TenantStatus, u32)]) -> Observed {
    let mut us = managed(d, "us");
    for (slug, status, v) in tenants {
        with_tenant(&mut us, d, slug, *status, *v);
    }
    let mut eu = managed(d, "eu");
    eu.bookkeeping.as_mut().unwrap().tenants.clear();
    let mut o = observed(vec![("us", us), ("eu", eu)]);
    registry_in_line(&mut o, d);
    o
}

pub(super) fn us_state(o: &mut Observed) -> &mut RegionState {
    match o.regions.get_mut("us") {
        Some(RegionObservation::Reachable(s)) => s,
        _ => unreachable!(),
    }
}

pub(super) fn only_us() -> PlanOptions {
    PlanOptions {
        regions: ["us".to_string()].into_iter().collect(),
        ..options()
    }
}

/// A run that died holding the lock left its `runs` row marked running and its holder row:
/// the plan closes them (a change, so that apply takes the lock even with nothing else to do),
/// and only in the region where they are.
#[test]
fn a_dead_runs_leftovers_are_a_change_closed_in_their_region_only() {
    let d = desired(&[("acme", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 3)]);
    us_state(&mut o).bookkeeping.as_mut().unwrap().dead_run = Some(DeadRun {
        runs: vec![41, 42],
        holder: Some("pid 4242 on host bastion-1".into()),
    });
    check(
        &d,
        &o,
        &options(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region eu (db_eu at 127.0.0.1:5433): 0 changes, 0 blocked
              (no changes)

            Region us (db_us at 127.0.0.1:5432): 1 change, 0 blocked
              ~ close_dead_run: runs 41, 42 still marked running, the region lock last held by pid 4242 on host bastion-1 (its process is gone; marked interrupted)

            Plan: 0 to bootstrap, 1 dead run to close, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 0 blocked.
        "#]],
    );
}

#[test]
fn tenant_behind_the_target_migrates_the_missing_versions() {
    let d = desired(&[("acme", "us", Active)]);
    let o = us_only(&d, &[("acme", Active, 1)]);
    let mut d2 = d.clone();
    d2.digest = "changed".into();
    check(
        &d2,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state changed

        Region us (db_us at 127.0.0.1:5432): 2 changes, 0 blocked
          ~ migrate tenant acme: app 1 -> 3 in schema tenant_acme
              V2 index
              V3 view
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +1 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=1
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3

        Plan: 0 to bootstrap, 0 to create, 1 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
}

#[test]
fn canary_pinned_ahead_is_planned_first() {
    let mut d = desired(&[("acme", "us", Active), ("zeta", "us", Active)]);
    d.tenants
        .get_mut("zeta")
        .unwrap()
        .pins
        .insert("app".into(), 4);
    let o = us_only(&d, &[("acme", Active, 2), ("zeta", Active, 2)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 3 changes, 0 blocked
              ~ migrate tenant zeta: app 2 -> 4 in schema tenant_zeta
                  V3 view
                  V4 column
              ~ migrate tenant acme: app 2 -> 3 in schema tenant_acme
                  V3 view
              ~ update_registry admin.database_connections in database neo_admin (2 upserted, 0 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1,2 +1,2 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2
                  +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
                  -zeta region=us at=127.0.0.1:5432/db_us schema=tenant_zeta status=active versions=app=2
                  +zeta region=us at=127.0.0.1:5432/db_us schema=tenant_zeta status=active versions=app=4

            Plan: 0 to bootstrap, 0 to create, 2 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
        "#]],
    );
}

#[test]
fn checksum_mismatch_blocks_that_tenant_only() {
    let d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 2), ("beta", Active, 2)]);
    let bk = us_state(&mut o).bookkeeping.as_mut().unwrap();
    let row = bk
        .history
        .iter_mut()
        .find(|r| r.target_schema == "tenant_acme" && r.version == 2)
        .unwrap();
    row.checksum = "f".repeat(64);
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
          ! blocked tenant acme, app: checksum mismatch: schemas/app/V2__index.sql (version 2) was applied to tenant_acme on 2026-11-01T10:00:00Z by neo@bastion-1 with checksum ffffffffffff, but the file now has 000000000000: a migration must never change once applied; restore the file or add a new migration

        Plan: 0 to bootstrap, 0 to create, 1 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 1 blocked.
    "#]],
    );
}

#[test]
fn live_version_above_target_without_allow_rollback_or_undo_file_is_blocked() {
    let d = desired(&[("acme", "us", Active)]);
    let o = us_only(&d, &[("acme", Active, 4)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 0 changes, 2 blocked
              ! blocked tenant acme, app: app in tenant_acme is at version 4, above the target 3: going back runs the undo files U4, and [policy] allow_rollback is not true in neo.toml; allow it, or raise the target (or write a forward migration)
              ! blocked tenant acme, app: app in tenant_acme cannot go back from 4 to 3: schemas/app/U4__column.sql missing (an undo file undoes the migration of the same version); write it, or raise the target

            Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 2 blocked.
        "#]],
    );
}

#[test]
fn history_beyond_the_repository_is_a_downgrade() {
    let d = desired(&[("acme", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 4)]);
    let bk = us_state(&mut o).bookkeeping.as_mut().unwrap();
    let mut extra = bk.history.last().unwrap().clone();
    extra.version = 5;
    extra.checksum = "e".repeat(64);
    bk.history.push(extra);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 1 change, 1 blocked
              ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1 +1 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=4
                  +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=5
              ! blocked tenant acme, app: app in tenant_acme is at version 5 (the repository has only up to V4), above the target 3: versions the repository does not have cannot be undone; restore their migrations (and undo files) or raise the target

            Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 1 blocked.
        "#]],
    );
}

#[test]
fn history_gap_blocks() {
    let d = desired(&[("acme", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 3)]);
    let bk = us_state(&mut o).bookkeeping.as_mut().unwrap();
    bk.history
        .retain(|r| !(r.target_schema == "tenant_acme" && r.version == 2));
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant acme, app: history of app in tenant_acme records version 3 without version 2: repair neo_reconcile.schema_history

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn managed_schema_dropped_out_of_band_blocks() {
    let d = desired(&[("acme", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 3)]);
    us_state(&mut o).schemas.remove("tenant_acme");
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant acme: tenant_acme missing, dropped out of band: restore from backup; neo-reconcile will not recreate an empty tenant over lost data

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn region_set_dropped_out_of_band_blocks_its_dependents() {
    let d = desired(&[("acme", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 2)]);
    us_state(&mut o).schemas.remove("common");
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 2 blocked
          ! blocked common: schema common has migration history but no longer exists (dropped out of band): restore it from backup
          ! blocked tenant acme, app: app in tenant_acme depends on common, which is blocked

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 2 blocked.
    "#]],
    );
}

#[test]
fn unmanaged_tenant_like_schemas_are_reported_and_left_alone() {
    let d = desired(&[("acme", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 3)]);
    us_state(&mut o).schemas.insert("tenant_legacy".into());
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 0 blocked
          (no changes)
          ? unmanaged schema tenant_legacy: no bookkeeping row, left alone

        No changes. The live state matches the desired state.
    "#]],
    );
}

#[test]
fn new_tenant_whose_schema_already_exists_is_blocked() {
    let d = desired(&[("acme", "us", Active), ("legacy", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 3)]);
    us_state(&mut o).schemas.insert("tenant_legacy".into());
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant legacy: tenant_legacy already exists without a bookkeeping row: adopt the schema with `neo-reconcile adopt --tenant legacy --schema-set app --at-version <N>` (N = the last migration of the set it already holds; `--from-flyway` instead of `--at-version <N>` reads Flyway's history) or drop the leftovers
          ? unmanaged schema tenant_legacy: no bookkeeping row, left alone

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn suspend_and_resume() {
    let d = desired(&[("acme", "us", Suspended), ("beta", "us", Active)]);
    let o = us_only(&d, &[("acme", Active, 3), ("beta", Suspended, 2)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 4 changes, 0 blocked
              - suspend_tenant acme (revoke tenant_acme_rw's access to tenant_acme)
              ~ resume_tenant beta (give tenant_beta_rw access to tenant_beta again)
              ~ migrate tenant beta: app 2 -> 3 in schema tenant_beta
                  V3 view
              ~ update_registry admin.database_connections in database neo_admin (2 upserted, 0 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1,2 +1,2 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
                  +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=suspended versions=app=3
                  -beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=suspended versions=app=2
                  +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3

            Plan: 0 to bootstrap, 0 to create, 1 to migrate, 1 to suspend, 1 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
        "#]],
    );
}

#[test]
fn archive_renames_with_the_database_date() {
    let d = desired(&[("acme", "us", Archived)]);
    let o = us_only(&d, &[("acme", Active, 3)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 2 changes, 0 blocked
          - archive_tenant acme (rename tenant_acme to archived_acme_20261123, data kept)
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +1 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
              +acme region=us at=127.0.0.1:5432/db_us schema=archived_acme_20261123 status=archived versions=app=3

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 1 to archive, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
}

#[test]
fn archive_is_blocked_when_the_archive_name_is_taken() {
    let d = desired(&[("acme", "us", Archived)]);
    let mut o = us_only(&d, &[("acme", Active, 3)]);
    us_state(&mut o)
        .schemas
        .insert(format!("archived_acme_{TODAY}"));
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant acme: cannot archive tenant acme: schema archived_acme_20261123 already exists; rename or drop it first

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn deleting_cuts_access_at_once_and_keeps_the_data_without_allow_destroy() {
    let d = desired(&[("acme", "us", Deleted)]);
    let o = us_only(&d, &[("acme", Active, 3)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 2 changes, 0 blocked
              - archive_tenant acme (rename tenant_acme to archived_acme_20261123, data kept)
              ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1 +1 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
                  +acme region=us at=127.0.0.1:5432/db_us schema=archived_acme_20261123 status=archived versions=app=3

            Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 1 to archive, 0 to destroy, 1 registry update; 0 blocked.
        "#]],
    );
}

#[test]
fn destroy_waits_for_destroy_after_since_the_archive() {
    let mut d = desired(&[("acme", "us", Deleted), ("old", "us", Deleted)]);
    d.policy.allow_destroy = true;
    // Both tenants of the region go: allowed here, the guard has cases of its own.
    d.policy.max_prune = MaxPrune::Count(2);
    let o = us_only(&d, &[("acme", Active, 3), ("old", Archived, 3)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 3 changes, 0 blocked
              - archive_tenant acme (rename tenant_acme to archived_acme_20261123, data kept)
              - destroy_tenant old (DROP schema archived_old_20261001 and its data, roles tenant_old_owner, tenant_old_rw)
              ~ update_registry admin.database_connections in database neo_admin (1 upserted, 1 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1,2 +1 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
                  +acme region=us at=127.0.0.1:5432/db_us schema=archived_acme_20261123 status=archived versions=app=3
                  -old region=us at=127.0.0.1:5432/db_us schema=archived_old_20261001 status=archived versions=app=3
              @ destroy_tenant acme scheduled: schema archived_acme_20261123 is dropped by the first apply after 2026-12-23T12:00:00Z ([policy] destroy_after)

            Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 1 to archive, 1 to destroy, 1 registry update; 0 blocked.
        "#]],
    );
}

#[test]
fn deleted_tenant_never_created_plans_nothing() {
    let d = desired(&[("ghost", "us", Deleted), ("old", "us", Archived)]);
    let o = us_only(&d, &[]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 0 blocked
          (no changes)

        No changes. The live state matches the desired state.
    "#]],
    );
}

#[test]
fn unarchiving_restores_and_reusing_a_destroyed_slug_is_blocked() {
    let d = desired(&[("acme", "us", Active), ("dead", "us", Active)]);
    let o = us_only(&d, &[("acme", Archived, 3), ("dead", Deleted, 0)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 2 changes, 1 blocked
              ~ restore_tenant acme (rename archived_acme_20261001 back to tenant_acme, give tenant_acme_rw access again)
              ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1 +1 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=archived_acme_20261001 status=archived versions=app=3
                  +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
              ! blocked tenant dead: tenant dead was destroyed; a destroyed slug is not reused: give the tenant a new slug

            Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 1 to restore, 0 to destroy, 1 registry update; 1 blocked.
        "#]],
    );
}

#[test]
fn managed_tenant_missing_from_the_desired_state_is_orphaned() {
    let d = desired(&[("acme", "us", Active)]);
    let mut d_with = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    d_with.digest = d.digest.clone();
    let o = us_only(&d_with, &[("acme", Active, 3), ("beta", Active, 3)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant beta: tenant beta is managed in region us but tenants/beta.toml is gone: restore the file with status = "archived" or "deleted" instead of removing it

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn tenant_moved_to_another_region_is_blocked_not_moved() {
    let d = desired(&[("acme", "eu", Active)]);
    let d_before = desired(&[("acme", "us", Active)]);
    let o = us_only(&d_before, &[("acme", Active, 3)]);
    let reasons: Vec<BlockReason> = plan(&d, &o, &options())
        .regions
        .iter()
        .flat_map(|r| r.blocked.iter().map(|b| b.reason))
        .collect();
    assert_eq!(reasons, [BlockReason::RegionMove, BlockReason::RegionMove]);
    check(
        &d,
        &o,
        &options(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region eu (db_eu at 127.0.0.1:5433): 0 changes, 1 blocked
              ! blocked tenant acme: tenant acme still lives in region us: neo-reconcile does not move data between regions, so it is not created here

            Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
              ! blocked tenant acme: tenant acme lives in region us but tenants/acme.toml now says region "eu": neo-reconcile does not move data between regions (nor create a second copy in eu); put the region back, or move the data yourself and give the tenant in eu a new slug

            Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 2 blocked.
        "#]],
    );
}

#[test]
fn unreachable_region_is_reported_and_the_other_still_plans() {
    let d = desired(&[("acme", "us", Active), ("hooli", "eu", Active)]);
    let mut o = observed(vec![("us", fresh())]);
    o.regions.insert(
        "eu".into(),
        RegionObservation::Unreachable {
            reason: "cannot connect to 127.0.0.1:5433/db_eu: connection refused".into(),
        },
    );
    check(
        &d,
        &o,
        &options(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region eu (db_eu at 127.0.0.1:5433): UNREACHABLE: cannot connect to 127.0.0.1:5433/db_eu: connection refused

        Region us (db_us at 127.0.0.1:5432): 6 changes, 0 blocked
          + bootstrap neo_reconcile in database db_us (version 0 -> 1)
          + bootstrap admin in database neo_admin (create the database) (version 0 -> 1)
          ~ migrate common: 0 -> 2 in schema common
              V1 plans
              V2 flags
          + create_tenant acme (schema tenant_acme, roles tenant_acme_owner, tenant_acme_rw)
          ~ migrate tenant acme: app 0 -> 3 in schema tenant_acme
              V1 init
              V2 index
              V3 view
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -0,0 +1 @@
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3

        Plan: 2 to bootstrap, 1 to create, 2 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked, 1 region unreachable.
    "#]],
    );
}

#[test]
fn bookkeeping_newer_than_this_build_blocks_the_region() {
    let d = desired(&[("acme", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 1)]);
    us_state(&mut o).bookkeeping.as_mut().unwrap().version = 7;
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked us: schema neo_reconcile is at bookkeeping version 7 but this neo-reconcile knows only 1: upgrade neo-reconcile

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn bookkeeping_upgrade_is_a_bootstrap_from_the_live_version() {
    let d = desired(&[("acme", "us", Active)]);
    let o = us_only(&d, &[("acme", Active, 3)]);
    let opts = PlanOptions {
        bookkeeping_latest: 2,
        ..only_us()
    };
    check(
        &d,
        &o,
        &opts,
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 1 change, 0 blocked
          + bootstrap neo_reconcile in database db_us (version 1 -> 2)

        Plan: 1 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 0 blocked.
    "#]],
    );
}

#[test]
fn registry_drift_is_shown_as_a_diff() {
    let d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 3), ("beta", Active, 3)]);
    if let Some(ControlPlaneState::Ready { rows, .. }) = &mut us_state(&mut o).control_plane {
        rows.get_mut("acme").unwrap().status = Suspended;
        rows.remove("beta");
        let mut stale = rows["acme"].clone();
        stale.tenant = "stale".into();
        rows.insert("stale".into(), stale);
    }
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
            neo-reconcile plan: desired state d1e2s3i4r5e6

            Region us (db_us at 127.0.0.1:5432): 1 change, 0 blocked
              ~ update_registry admin.database_connections in database neo_admin (2 upserted, 1 deleted)
                  --- admin.database_connections (live)
                  +++ admin.database_connections (planned)
                  @@ -1,2 +1,2 @@
                  -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=suspended versions=app=3
                  +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
                  +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3
                  -stale region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=suspended versions=app=3

            Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
        "#]],
    );
}

#[test]
fn tenant_selection_plans_only_that_tenant_and_its_region_sets() {
    let d = desired(&[("acme", "us", Active), ("beta", "us", Active)]);
    let o = observed(vec![("us", fresh()), ("eu", fresh())]);
    let opts = PlanOptions {
        tenants: ["beta".to_string()].into_iter().collect(),
        ..options()
    };
    check(
        &d,
        &o,
        &opts,
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 6 changes, 0 blocked
          + bootstrap neo_reconcile in database db_us (version 0 -> 1)
          + bootstrap admin in database neo_admin (create the database) (version 0 -> 1)
          ~ migrate common: 0 -> 2 in schema common
              V1 plans
              V2 flags
          + create_tenant beta (schema tenant_beta, roles tenant_beta_owner, tenant_beta_rw)
          ~ migrate tenant beta: app 0 -> 3 in schema tenant_beta
              V1 init
              V2 index
              V3 view
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -0,0 +1 @@
              +beta region=us at=127.0.0.1:5432/db_us schema=tenant_beta status=active versions=app=3

        Plan: 2 to bootstrap, 1 to create, 2 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
}

#[test]
fn registry_after_apply_records_what_happened_not_what_was_planned() {
    let mut d = desired(&[("acme", "us", Deleted), ("beta", "us", Active)]);
    d.policy.allow_destroy = true;
    d.policy.destroy_after = std::time::Duration::ZERO;
    let mut o = us_only(&d, &[("acme", Active, 3), ("beta", Active, 2)]);
    // The plan would delete acme's row and move beta to 3...
    let planned = plan(&d, &o, &only_us());
    assert!(planned.regions[0].actions.iter().any(
        |a| matches!(a, Action::UpdateRegistry { delete, .. } if delete == &["acme".to_string()])
    ));
    // ...but if nothing succeeded, the registry as observed needs no change at all.
    assert_eq!(observed_registry(&d, &o, &only_us()), None);
    // Only beta's migration succeeded: only beta's row changes.
    let mut v3 = us_state(&mut o)
        .bookkeeping
        .as_ref()
        .unwrap()
        .history
        .iter()
        .find(|h| h.target_schema == "tenant_beta")
        .unwrap()
        .clone();
    v3.version = 3;
    us_state(&mut o)
        .bookkeeping
        .as_mut()
        .unwrap()
        .history
        .push(v3);
    match observed_registry(&d, &o, &only_us()) {
        Some(Action::UpdateRegistry { upsert, delete, .. }) => {
            assert!(delete.is_empty());
            assert_eq!(upsert.len(), 1);
            assert_eq!(
                (upsert[0].tenant.as_str(), upsert[0].schema_versions["app"]),
                ("beta", 3)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deleted_and_archived_without_allow_destroy_stays_blocked_with_its_data() {
    let d = desired(&[("old", "us", Deleted)]);
    let o = us_only(&d, &[("old", Archived, 3)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant old: tenant old is deleted: its access is cut and its data kept in schema archived_old_20261001; neo.toml has [policy] allow_destroy = false, so it is never dropped: set allow_destroy = true in a reviewed change to drop it

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn destroy_after_not_yet_passed_is_scheduled_not_planned() {
    let mut d = desired(&[("old", "us", Deleted)]);
    d.policy.allow_destroy = true;
    // Archived 2026-10-01; 60 days of retention end on 2026-11-30, after NOW.
    d.policy.destroy_after = std::time::Duration::from_secs(60 * 86_400);
    let o = us_only(&d, &[("old", Archived, 3)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 0 blocked
          (no changes)
          @ destroy_tenant old scheduled: schema archived_old_20261001 is dropped by the first apply after 2026-11-30T00:00:00Z ([policy] destroy_after)

        No changes. The live state matches the desired state.
    "#]],
    );
    let p = plan(&d, &o, &only_us());
    assert!(!p.has_changes() && !p.is_blocked());
    assert_eq!(p.regions[0].scheduled[0].due, "2026-11-30T00:00:00Z");
}

#[test]
fn zero_destroy_after_archives_and_destroys_in_one_plan() {
    let mut d = desired(&[("acme", "us", Deleted)]);
    d.policy.allow_destroy = true;
    d.policy.destroy_after = std::time::Duration::ZERO;
    let o = us_only(&d, &[("acme", Active, 3)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 3 changes, 0 blocked
          - archive_tenant acme (rename tenant_acme to archived_acme_20261123, data kept)
          - destroy_tenant acme (DROP schema archived_acme_20261123 and its data, roles tenant_acme_owner, tenant_acme_rw)
          ~ update_registry admin.database_connections in database neo_admin (0 upserted, 1 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +0,0 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 1 to archive, 1 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
}

#[test]
fn restore_is_blocked_when_the_tenant_schema_name_is_taken() {
    let d = desired(&[("acme", "us", Suspended)]);
    let mut o = us_only(&d, &[("acme", Archived, 3)]);
    us_state(&mut o).schemas.insert("tenant_acme".into());
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant acme: cannot restore archived tenant acme from schema archived_acme_20261001: schema tenant_acme already exists; rename or drop it first
          ? unmanaged schema tenant_acme: no bookkeeping row, left alone

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn restore_to_suspended_renames_back_then_cuts_access() {
    let d = desired(&[("acme", "us", Suspended)]);
    let o = us_only(&d, &[("acme", Archived, 2)]);
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 4 changes, 0 blocked
          ~ restore_tenant acme (rename archived_acme_20261001 back to tenant_acme, give tenant_acme_rw access again)
          ~ migrate tenant acme: app 2 -> 3 in schema tenant_acme
              V3 view
          - suspend_tenant acme (revoke tenant_acme_rw's access to tenant_acme)
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +1 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=archived_acme_20261001 status=archived versions=app=2
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=suspended versions=app=3

        Plan: 0 to bootstrap, 0 to create, 1 to migrate, 1 to suspend, 0 to resume, 0 to archive, 1 to restore, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
}

#[test]
fn utc_timestamps_from_epoch_seconds() {
    assert_eq!(super::utc_timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(super::utc_timestamp(NOW), "2026-11-23T12:00:00Z");
    assert_eq!(super::utc_timestamp(ARCHIVED_AT), "2026-10-01T00:00:00Z");
    assert_eq!(super::utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(super::utc_timestamp(-1), "1969-12-31T23:59:59Z");
}

#[test]
fn extensions_are_created_when_the_login_may_and_block_the_region_otherwise() {
    let mut d = desired(&[("acme", "us", Active)]);
    d.extensions.schema = "extensions".into();
    d.extensions.names = vec![
        "pg_trgm".into(),
        "citext".into(),
        "postgis".into(),
        "hstore".into(),
    ];
    let mut o = us_only(&d, &[("acme", Active, 3)]);
    let s = us_state(&mut o);
    s.available_extensions = ["pg_trgm", "citext", "hstore"].map(String::from).into();
    s.creatable_extensions = ["pg_trgm", "citext"].map(String::from).into();
    s.extensions.insert("citext".into(), "public".into());
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 1 change, 3 blocked
          + create_extension pg_trgm in schema extensions (create the schema)
          ! blocked us: extension citext is installed in schema public, but [extensions] schema is extensions: a DBA runs ALTER EXTENSION "citext" SET SCHEMA "extensions"; (or set schema = "public" in neo.toml)
          ! blocked us: extension postgis is not available on this server: install its package (for contrib extensions, PostgreSQL's contrib), then a DBA or the next apply runs CREATE EXTENSION IF NOT EXISTS "postgis" SCHEMA "extensions";
          ! blocked us: extension hstore is missing and the login role may not create it (it is not trusted, or the role lacks CREATE on database db_us): a DBA runs CREATE EXTENSION IF NOT EXISTS "hstore" SCHEMA "extensions";

        Plan: 0 to bootstrap, 1 extension to create, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 3 blocked.
    "#]],
    );

    // Once every extension is there (or creatable), the region plans on.
    d.extensions.names = vec!["pg_trgm".into()];
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 1 change, 0 blocked
          + create_extension pg_trgm in schema extensions (create the schema)

        Plan: 0 to bootstrap, 1 extension to create, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 0 blocked.
    "#]],
    );
}

#[path = "drift_tests.rs"]
mod drift_tests;
