//! Table-driven tests of the planner's rollback and mass-prune decisions, through the same
//! [`check`] as `tests.rs` (the expectation is the rendered text plan). `UPDATE_EXPECT=1 cargo
//! test` rewrites the expectations; review every change by hand.

use expect_test::{expect, Expect};

use super::tests::{check, desired, managed, migration, only_us, registry_in_line, us_only};
use super::*;
use crate::desired::{MaxPrune, Migration, TenantStatus};
use crate::observed::{Observed, RegionObservation};

use TenantStatus::{Active, Archived};

/// The undo file of a version of a set of [`desired`]'s trees (the migration's description).
fn undo(set: &str, version: u32, description: &str) -> Migration {
    let m = migration(set, version, description);
    Migration {
        file: format!("schemas/{set}/U{version}__{description}.sql"),
        checksum: format!("{:064x}", u64::from(version) * 7 + 1),
        ..m
    }
}

/// [`desired`] with `app`'s target at `target`, undo files for the given versions of `app`,
/// and `[policy] allow_rollback`.
fn with_undo(
    tenants: &[(&str, &str, TenantStatus)],
    target: u32,
    undo_versions: &[u32],
    allow: bool,
) -> Desired {
    let mut d = desired(tenants);
    d.policy.allow_rollback = allow;
    let app = d.schema_sets.iter_mut().find(|s| s.name == "app").unwrap();
    app.target = target;
    for &v in undo_versions {
        let description = app.migrations[v as usize - 1].description.clone();
        app.undo.insert(v, undo("app", v, &description));
    }
    d
}

/// Plans `d` against the `us` region holding `tenants` (slug, version of `app`).
fn check_us(d: &Desired, tenants: &[(&str, u32)], expect: Expect) {
    let live: Vec<(&str, TenantStatus, u32)> =
        tenants.iter().map(|(t, v)| (*t, Active, *v)).collect();
    check(d, &us_only(d, &live), &only_us(), expect);
}

#[test]
fn rollback_runs_the_undo_files_newest_first() {
    let d = with_undo(&[("acme", "us", Active)], 2, &[3, 4], true);
    check_us(
        &d,
        &[("acme", 4)],
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 2 changes, 0 blocked
          - rollback tenant acme: app 4 -> 2 in schema tenant_acme
              U4 column (undoes V4)
              U3 view (undoes V3)
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +1 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=4
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2

        ROLLBACK across 2 versions! Plan: 0 to bootstrap, 0 to create, 0 to migrate, 1 to roll back, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
}

#[test]
fn rollback_without_allow_rollback_is_blocked_with_the_reason() {
    let d = with_undo(&[("acme", "us", Active)], 2, &[3, 4], false);
    check_us(
        &d,
        &[("acme", 4)],
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant acme, app: app in tenant_acme is at version 4, above the target 2: going back runs the undo files U4, U3, and [policy] allow_rollback is not true in neo.toml; allow it, or raise the target (or write a forward migration)

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn rollback_across_a_version_without_undo_file_names_the_file() {
    let d = with_undo(&[("acme", "us", Active)], 1, &[2, 4], true);
    check_us(
        &d,
        &[("acme", 4)],
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant acme, app: app in tenant_acme cannot go back from 4 to 1: schemas/app/U3__view.sql missing (an undo file undoes the migration of the same version); write it, or raise the target

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}

#[test]
fn pin_below_the_live_version_rolls_back_that_tenant_only() {
    let mut d = with_undo(
        &[("acme", "us", Active), ("globex", "us", Active)],
        3,
        &[3],
        true,
    );
    d.tenants
        .get_mut("acme")
        .unwrap()
        .pins
        .insert("app".into(), 2);
    check_us(
        &d,
        &[("acme", 3), ("globex", 3)],
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 2 changes, 0 blocked
          - rollback tenant acme: app 3 -> 2 in schema tenant_acme
              U3 view (undoes V3)
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +1 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 1 to roll back, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
}

#[test]
fn rollback_of_every_tenant_is_shown_prominently() {
    let d = with_undo(
        &[("acme", "us", Active), ("globex", "us", Active)],
        2,
        &[3],
        true,
    );
    check_us(
        &d,
        &[("acme", 3), ("globex", 3)],
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 3 changes, 0 blocked
          - rollback tenant acme: app 3 -> 2 in schema tenant_acme
              U3 view (undoes V3)
          - rollback tenant globex: app 3 -> 2 in schema tenant_globex
              U3 view (undoes V3)
          ~ update_registry admin.database_connections in database neo_admin (2 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1,2 +1,2 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2
              -globex region=us at=127.0.0.1:5432/db_us schema=tenant_globex status=active versions=app=3
              +globex region=us at=127.0.0.1:5432/db_us schema=tenant_globex status=active versions=app=2

        ROLLBACK of every tenant! Plan: 0 to bootstrap, 0 to create, 0 to migrate, 2 to roll back, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 0 blocked.
    "#]],
    );
    let plan = plan(
        &d,
        &us_only(&d, &[("acme", Active, 3), ("globex", Active, 3)]),
        &only_us(),
    );
    assert!(render::markdown(&plan, &d).contains("> [!WARNING]\n> **ROLLBACK of every tenant!**"));
}

/// A region-scope set `common` with its target lowered to 1 (an undo file for V2), and `app`
/// lowered to 2 in every tenant.
fn region_rollback() -> Desired {
    let mut d = with_undo(&[("acme", "us", Active)], 2, &[3], true);
    let common = d
        .schema_sets
        .iter_mut()
        .find(|s| s.name == "common")
        .unwrap();
    common.target = 1;
    common.undo.insert(2, undo("common", 2, "flags"));
    d
}

#[test]
fn region_set_rollback_waits_while_a_dependent_set_has_tenants_to_take_back() {
    let d = region_rollback();
    check_us(
        &d,
        &[("acme", 3)],
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 2 changes, 1 blocked
          - rollback tenant acme: app 3 -> 2 in schema tenant_acme
              U3 view (undoes V3)
          ~ update_registry admin.database_connections in database neo_admin (1 upserted, 0 deleted)
              --- admin.database_connections (live)
              +++ admin.database_connections (planned)
              @@ -1 +1 @@
              -acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=3
              +acme region=us at=127.0.0.1:5432/db_us schema=tenant_acme status=active versions=app=2
          ! blocked common: common would go back from 2 to 1, but sets that depend on it are still above their target: app in 1 tenant(s) (acme). Tenants go back first: this apply takes them back, and the next apply (or the daemon's next reconcile) takes common back (apply runs region-scope sets before tenants, so doing both now would undo common under tenants that still use it)

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 1 to roll back, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 1 registry update; 1 blocked.
    "#]],
    );
}

#[test]
fn region_set_rolls_back_once_the_tenants_are_back() {
    let d = region_rollback();
    check_us(
        &d,
        &[("acme", 2)],
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 1 change, 0 blocked
          - rollback common: 2 -> 1 in schema common
              U2 flags (undoes V2)

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 1 to roll back, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 0 blocked.
    "#]],
    );
}

/// `count` tenants of a status named after their region (`us00`, `us01`, ...).
fn fleet(
    region: &'static str,
    count: usize,
    status: TenantStatus,
) -> Vec<(String, &'static str, TenantStatus)> {
    (0..count)
        .map(|i| (format!("{region}{i:02}"), region, status))
        .collect()
}

/// Plans a tree whose tenants are `desired_fleet` (slug, region, status) while every one of
/// them is active at `app` 3 in its region.
fn check_prune(
    desired_fleet: &[(String, &'static str, TenantStatus)],
    max: MaxPrune,
    allow: bool,
    expect: Expect,
) {
    let tenants: Vec<(&str, &str, TenantStatus)> = desired_fleet
        .iter()
        .map(|(s, r, st)| (s.as_str(), *r, *st))
        .collect();
    let mut d = desired(&tenants);
    d.policy.max_prune = max;
    let mut regions = Vec::new();
    for name in ["us", "eu"] {
        let mut state = managed(&d, name);
        for (slug, _, _) in desired_fleet.iter().filter(|t| t.1 == name) {
            super::tests::with_tenant(&mut state, &d, slug, Active, 3);
        }
        regions.push((name, state));
    }
    let mut o: Observed = super::tests::observed(regions);
    registry_in_line(&mut o, &d);
    let opts = PlanOptions {
        allow_mass_prune: allow,
        ..super::tests::options()
    };
    let plan = plan(&d, &o, &opts);
    // Only the lines that matter: the summary and the findings.
    let text = render::text(&plan, &d, render::TextOptions::default());
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Plan:") || l.contains("! blocked") || l.starts_with("Region"))
        .collect();
    expect.assert_eq(&lines.join("\n"));
}

#[test]
fn mass_prune_decisions() {
    // 2 of 3 archived: more than 10% (at least one tenant) of the region and of the total.
    let mut t = fleet("us", 3, Active);
    t[0].2 = Archived;
    t[1].2 = Archived;
    check_prune(
        &t,
        MaxPrune::DEFAULT,
        false,
        expect![[r#"
        Region eu (db_eu at 127.0.0.1:5433): 0 changes, 0 blocked
        Region us (db_us at 127.0.0.1:5432): 3 changes, 1 blocked
          ! blocked us: this plan archives or destroys 2 of 3 managed tenants in total (at most 1 allowed); 2 of 3 in region us (at most 1 allowed), more than [policy] max_prune = "10%" allows: the whole plan is refused and nothing is applied. If a merge removed or archived these tenants by mistake, revert it; if it is intended, apply with --allow-mass-prune (recorded in the run row), or raise max_prune in neo.toml
        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 2 to archive, 0 to destroy, 1 registry update; 1 blocked."#]],
    );
    // The same plan made for `apply --allow-mass-prune`: nothing blocked.
    check_prune(
        &t,
        MaxPrune::DEFAULT,
        true,
        expect![[r#"
        Region eu (db_eu at 127.0.0.1:5433): 0 changes, 0 blocked
        Region us (db_us at 127.0.0.1:5432): 3 changes, 0 blocked
        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 2 to archive, 0 to destroy, 1 registry update; 0 blocked."#]],
    );
    // A count that allows it.
    check_prune(
        &t,
        MaxPrune::Count(2),
        false,
        expect![[r#"
        Region eu (db_eu at 127.0.0.1:5433): 0 changes, 0 blocked
        Region us (db_us at 127.0.0.1:5432): 3 changes, 0 blocked
        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 2 to archive, 0 to destroy, 1 registry update; 0 blocked."#]],
    );
    // One region over its limit while the total is within: 2 of 2 in us, 2 of 22 in total.
    let mut t = fleet("us", 2, Archived);
    t.extend(fleet("eu", 20, Active));
    check_prune(
        &t,
        MaxPrune::Percent(10),
        false,
        expect![[r#"
        Region eu (db_eu at 127.0.0.1:5433): 0 changes, 0 blocked
        Region us (db_us at 127.0.0.1:5432): 3 changes, 1 blocked
          ! blocked us: this plan archives or destroys 2 of 2 in region us (at most 1 allowed), more than [policy] max_prune = "10%" allows: the whole plan is refused and nothing is applied. If a merge removed or archived these tenants by mistake, revert it; if it is intended, apply with --allow-mass-prune (recorded in the run row), or raise max_prune in neo.toml
        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 2 to archive, 0 to destroy, 1 registry update; 1 blocked."#]],
    );
    // One of ten archived: within 10%.
    let mut t = fleet("us", 10, Active);
    t[0].2 = Archived;
    check_prune(
        &t,
        MaxPrune::DEFAULT,
        false,
        expect![[r#"
        Region eu (db_eu at 127.0.0.1:5433): 0 changes, 0 blocked
        Region us (db_us at 127.0.0.1:5432): 2 changes, 0 blocked
        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 1 to archive, 0 to destroy, 1 registry update; 0 blocked."#]],
    );
}

#[test]
fn tenants_of_a_removed_region_file_are_orphaned_and_left_alone() {
    let d = desired(&[("acme", "us", Active)]);
    let mut o = us_only(&d, &[("acme", Active, 3)]);
    // The registry still places tenant `old` in region `ap`, whose file is gone.
    if let Some(RegionObservation::Reachable(state)) = o.regions.get_mut("us") {
        if let Some(crate::observed::ControlPlaneState::Ready { rows, .. }) =
            &mut state.control_plane
        {
            let mut row = rows["acme"].clone();
            row.tenant = "old".into();
            row.region = "ap".into();
            row.database = "db_ap".into();
            row.schema = "tenant_old".into();
            rows.insert("old".into(), row);
        }
    }
    check(
        &d,
        &o,
        &only_us(),
        expect![[r#"
        neo-reconcile plan: desired state d1e2s3i4r5e6

        Region us (db_us at 127.0.0.1:5432): 0 changes, 1 blocked
          ! blocked tenant old: tenant old is registered in region ap, whose file regions/ap.toml is gone: its database (db_ap at 127.0.0.1:5432) still holds schema tenant_old, which neo-reconcile no longer observes and never touches; put the region file back, or move or archive the tenants first and remove the region once it holds none

        Plan: 0 to bootstrap, 0 to create, 0 to migrate, 0 to suspend, 0 to resume, 0 to archive, 0 to destroy, 0 registry updates; 1 blocked.
    "#]],
    );
}
