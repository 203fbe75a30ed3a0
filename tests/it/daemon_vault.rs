//! The daemon with Vault's dynamic logins, in-process: `daemon::run` itself (the wiring the
//! binary uses, with its Vault login and the token keeper that lives as long as the daemon),
//! a `[vault]` table with AppRole pointing at a real OpenBao dev server, both regions taking
//! their logins from the database secrets engine, and a git repository made with git2. Each
//! reconcile's leases are revoked when it ends, and a stop in the middle of an apply leaves no
//! lock, no partial migration, no lease and no dynamic login behind.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use neo_reconcile::daemon::config::{self, Config};
use neo_reconcile::daemon::observer::{Loaded, Observer, Trigger};
use neo_reconcile::reconcile::RegionStatus;
use tempfile::TempDir;
use tokio::sync::oneshot;

use crate::daemon::{commit_all, runtime, Rec, Recorder};
use crate::support::vault_world::{AppRole, VaultWorld};

/// The regions and their databases.
const REGIONS: [(&str, &str); 2] = [("us-east", "neo_us"), ("eu-west", "neo_eu")];

/// A daemon configuration over the world's tree (read over `file://`) that applies
/// automatically and logs in to OpenBao with AppRole, as `[vault]` in production does.
fn vault_daemon_config(v: &VaultWorld, cache: &Path, approle: &AppRole) -> Config {
    let text = format!(
        "[source]\nurl = \"file://{}\"\nbranch = \"main\"\ncache_dir = \"{}\"\npoll_interval = \"60s\"\n\
         [reconcile]\nauto_apply = true\n\
         [vault]\naddress = \"{}\"\n\
         [vault.approle]\nrole_id_file = \"{}\"\nsecret_id_file = \"{}\"\n",
        v.world.tree.path().display(),
        cache.display(),
        v.bao.addr(),
        approle.role_id_file.display(),
        approle.secret_id_file.display(),
    );
    config::parse(Path::new("/test/config.toml"), text, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `f` every 100 ms (real time, at most `secs` seconds) until it returns `true`.
async fn until(what: &str, secs: u64, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The number of tenant schemas of `db` whose migrations reached `version` successfully.
fn tenants_at(v: &VaultWorld, region: &str, version: u32) -> usize {
    let (cluster, db) = match region {
        "us-east" => (&v.world.us, "neo_us"),
        _ => (&v.world.eu, "neo_eu"),
    };
    cluster
        .try_psql(
            db,
            &format!(
                "SELECT count(DISTINCT target_schema) FROM neo_reconcile.schema_history \
                 WHERE target_schema LIKE 'tenant_%' AND success AND version >= {version}"
            ),
        )
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Asserts that no region holds a lease or a dynamic login in OpenBao and PostgreSQL.
#[track_caller]
fn assert_no_lease_nor_login(v: &VaultWorld, when: &str) {
    for (region, _) in REGIONS {
        assert_eq!(
            v.leases(region),
            Vec::<String>::new(),
            "{region}: lease left {when}"
        );
        assert_eq!(v.dynamic_logins(region), 0, "{region}: login left {when}");
    }
}

/// The first reconcile reported, before it ended, the AppRole token's time left (at most its
/// one-minute TTL) and a lease of at most one minute for each region; after its leases were
/// revoked, the token's time left and no lease.
fn assert_ttls_reported(recs: &[Rec]) {
    let end = recs
        .iter()
        .position(|r| matches!(r, Rec::Reconciled { .. }))
        .expect("a reconcile");
    let ttls: Vec<_> = recs[..end]
        .iter()
        .filter_map(|r| match r {
            Rec::VaultTtls { token, leases } => Some((*token, leases.clone())),
            _ => None,
        })
        .collect();
    let minute = Duration::from_secs(60);
    let live = |t: Option<Duration>| t.is_some_and(|t| t > Duration::ZERO && t <= minute);
    let during = ttls.iter().find(|(_, leases)| !leases.is_empty());
    let Some((token, leases)) = during else {
        panic!("no lease TTLs reported during the reconcile: {ttls:?}")
    };
    let mut regions: Vec<_> = leases.iter().map(|(r, _)| r.as_str()).collect();
    regions.sort();
    assert_eq!(regions, ["eu-west", "us-east"], "{ttls:?}");
    assert!(live(*token), "{ttls:?}");
    assert!(leases.iter().all(|(_, t)| live(Some(*t))), "{ttls:?}");
    let (token, leases) = ttls.last().unwrap();
    assert!(
        leases.is_empty() && live(*token),
        "after revoking: {ttls:?}"
    );
}

/// `neo-reconcile daemon` on dynamic logins: the first reconcile converges, reports the token's
/// and the leases' time left (the TTL metrics), and revokes its leases, a new tenant committed later is applied on fresh logins that are revoked too, and a
/// stop asked for while a slow apply runs (SIGTERM in the binary) makes the loop return `Ok`
/// with no advisory lock, no `lock_holder` row, no failed or partial migration, no lease left
/// in OpenBao and no dynamic login left in PostgreSQL.
#[test]
fn daemon_on_vault_dynamic_logins_revokes_every_lease_and_a_stop_mid_apply_leaves_nothing() {
    let v = VaultWorld::new();
    v.dynamic("us-east", "1m", "1h");
    v.dynamic("eu-west", "1m", "1h");
    // us-east migrates one tenant at a time, and each new tenant's first migration takes a
    // fifth of a second: an apply of many new tenants lasts long enough to be stopped.
    v.world.edit("regions/us-east.toml", |s| {
        s.replace("max_parallel = 4", "max_parallel = 1")
    });
    v.world.edit(
        "schemas/tenant_template/V1__create_users_and_projects.sql",
        |s| format!("{s}\nSELECT pg_sleep(0.2);\n"),
    );
    let approle = v.approle("1m", "1h");
    let first = commit_all(v.world.tree.path(), "the example, on dynamic logins");
    let cache = TempDir::new().unwrap();
    let config = vault_daemon_config(&v, cache.path(), &approle);
    let rec = Arc::new(Recorder::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let observer: Arc<dyn Observer> = rec.clone();

    let example = runtime().block_on(async {
        let daemon = tokio::spawn(neo_reconcile::daemon::run(config, observer, async move {
            let _ = stopped.await;
        }));

        // The first reconcile applies the example in both regions on dynamic logins, and its
        // leases are revoked before it is reported.
        let r = rec
            .wait("the first reconcile", |r| matches!(r, Rec::Reconciled { .. }))
            .await;
        let Rec::Reconciled { commit, trigger, applying, regions, .. } = &r else {
            unreachable!()
        };
        assert!(*commit == first && *trigger == Trigger::Start && *applying, "{r:?}");
        assert!(
            regions.len() == 2 && regions.iter().all(|(_, s)| *s == RegionStatus::Converged),
            "{r:?}"
        );
        until("the example tenants at V5", 10, || {
            tenants_at(&v, "us-east", 5) > 0 && tenants_at(&v, "eu-west", 5) > 0
        })
        .await;
        let example = tenants_at(&v, "us-east", 5);
        assert_no_lease_nor_login(&v, "after the first reconcile");
        assert_ttls_reported(&rec.all());

        // A new tenant, picked up by the watcher and applied on new logins, revoked in turn.
        v.world.write(
            "tenants/wonka.toml",
            "slug = \"wonka\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n",
        );
        let second = commit_all(v.world.tree.path(), "add wonka");
        until("wonka applied", 30, || {
            tenants_at(&v, "us-east", 5) == example + 1
        })
        .await;
        let r = rec
            .wait("the new commit's reconcile", |r| {
                matches!(r, Rec::Reconciled { commit, .. } if *commit == second)
            })
            .await;
        assert!(
            matches!(&r, Rec::Reconciled { trigger: Trigger::NewCommit, applying: true, .. }),
            "{r:?}"
        );
        assert_no_lease_nor_login(&v, "after the second reconcile");

        // Twenty slow tenants: stop the daemon once the apply holds its lease and has
        // migrated a few of them.
        for i in 1..=20 {
            v.world.write(
                &format!("tenants/t{i:03}.toml"),
                &format!("slug = \"t{i:03}\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n"),
            );
        }
        let third = commit_all(v.world.tree.path(), "twenty slow tenants");
        rec.wait("the slow commit loaded", |r| {
            matches!(r, Rec::Loaded(Loaded::Valid { sha, .. }) if *sha == third)
        })
        .await;
        until("the slow apply under way", 30, || {
            !v.leases("us-east").is_empty() && tenants_at(&v, "us-east", 1) >= example + 3
        })
        .await;
        let stopping_at = Instant::now();
        let _ = stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(60), daemon)
            .await
            .expect("the daemon stops")
            .expect("the daemon's task does not panic");
        assert!(result.is_ok(), "{result:?}");
        assert!(
            stopping_at.elapsed() < Duration::from_secs(10),
            "the stop took {:?}",
            stopping_at.elapsed()
        );
        assert!(matches!(rec.all().last(), Some(Rec::Stopping)), "{:#?}", rec.all());
        example
    });

    // Stopped at a safe point: fewer than all twenty, and not one left half done.
    let migrated = tenants_at(&v, "us-east", 5) - example - 1;
    assert!(
        (2..20).contains(&migrated),
        "{migrated} of the twenty migrated"
    );
    for (cluster, (region, db)) in [&v.world.us, &v.world.eu].into_iter().zip(REGIONS) {
        for (what, sql) in [
            ("an advisory lock left", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
            ("a lock_holder row left", "SELECT count(*) FROM neo_reconcile.lock_holder"),
            ("a failed migration", "SELECT count(*) FROM neo_reconcile.schema_history WHERE NOT success"),
            (
                "a tenant schema without its migrations",
                "SELECT count(*) FROM pg_namespace n WHERE nspname LIKE 'tenant_%' AND NOT EXISTS \
                 (SELECT 1 FROM neo_reconcile.schema_history h WHERE h.target_schema = n.nspname AND h.success AND h.version >= 5)",
            ),
        ] {
            assert_eq!(cluster.psql(db, sql).trim(), "0", "{region}: {what}");
        }
    }
    assert_no_lease_nor_login(&v, "after the stop");

    // What the stop left undone is finished by the next run, which then has nothing to do.
    v.neo_env("apply", &["--auto-approve"], &approle.env)
        .expect_code(0);
    v.neo_env("plan", &["--detailed-exitcode"], &approle.env)
        .expect_code(0);
    assert_eq!(tenants_at(&v, "us-east", 5), example + 21);
    assert_no_lease_nor_login(&v, "after the final apply");
}
