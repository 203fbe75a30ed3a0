//! Dynamic logins over a run, against real OpenBao: one lease per region, renewed while a
//! long apply runs with a short TTL, replaced when its max TTL runs out mid-apply, and gone
//! (lease and PostgreSQL login) when the run ends. Also the leak check with dynamic
//! credentials and AppRole: every password and token OpenBao handed out, recorded by the
//! test proxy between the two, is searched for in every byte of output and in the audit rows.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::proxy::Proxy;
use crate::support::vault_world::VaultWorld;

/// What a watcher saw of the leases of the regions while a run went on.
#[derive(Debug, Default)]
struct Seen {
    /// Every lease ID seen, per region.
    ids: std::collections::BTreeMap<String, BTreeSet<String>>,
    /// The most leases one region had at once.
    most_at_once: std::collections::BTreeMap<String, usize>,
}

/// Lists the regions' leases through OpenBao's API every 100 ms until `f` returns.
fn watching_leases<T>(v: &VaultWorld, regions: &[&str], f: impl FnOnce() -> T) -> (T, Seen) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Mutex::new(Seen::default());
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                for region in regions {
                    let leases = v.leases(region);
                    let mut seen = seen.lock().unwrap();
                    let most = seen.most_at_once.entry(region.to_string()).or_default();
                    *most = (*most).max(leases.len());
                    seen.ids
                        .entry(region.to_string())
                        .or_default()
                        .extend(leases);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let out = f();
        stop.store(true, Ordering::SeqCst);
        out
    });
    (out, seen.into_inner().unwrap())
}

/// Both regions on dynamic logins with a 3 s TTL, us-east applying slowly on one worker for
/// several seconds: each region has exactly one lease for the whole run (counted through
/// OpenBao's API), renewed in time, and revoked at the end, with its login gone from
/// PostgreSQL. No secret reaches any output.
#[test]
fn vault_dynamic_logins_take_one_lease_per_region_renewed_through_a_long_apply() {
    let v = VaultWorld::new();
    // Through a proxy that records OpenBao's answers: the dynamic passwords and the AppRole
    // tokens it handed out are the secrets searched for.
    let proxy = Proxy::start(&v.upstream());
    v.dynamic("us-east", "3s", "1h");
    v.dynamic("eu-west", "3s", "1h");
    v.world.edit("regions/us-east.toml", |s| {
        s.replace("max_parallel = 4", "max_parallel = 1")
    });
    v.slow_tenants(12, 0.3);
    let approle = v.approle("1m", "1h");
    let env = VaultWorld::via(&approle.env, &proxy.addr());
    let (apply, seen) = watching_leases(&v, &["us-east", "eu-west"], || {
        v.neo_env("apply", &["--auto-approve"], &env)
    });
    apply.expect_code(0);
    for region in ["us-east", "eu-west"] {
        assert_eq!(seen.ids[region].len(), 1, "{region}: {seen:?}");
        assert_eq!(seen.most_at_once[region], 1, "{region}: {seen:?}");
        assert!(v.leases(region).is_empty(), "{region}: lease left");
        assert_eq!(v.dynamic_logins(region), 0, "{region}: login left");
    }
    assert!(
        apply
            .stderr
            .contains("Renewed the lease of the region's dynamic login"),
        "{}",
        apply.stderr
    );
    let handed_out = proxy.handed_out_secrets();
    // An AppRole token and two dynamic passwords at least.
    assert!(handed_out.len() >= 3, "{handed_out:?}");
    handed_out.iter().for_each(|s| v.secret(s));
    v.assert_no_secret(&apply);
    let plan = v.neo_env("plan", &["--detailed-exitcode"], &env);
    plan.expect_code(0);
    proxy.handed_out_secrets().iter().for_each(|s| v.secret(s));
    v.assert_no_secret(&plan);
}

/// us-east's lease may live 9 s at most, and the apply of its many tenants lasts longer:
/// the keeper fetches a new login before the old one ends, the workers move to it between
/// tenants, the apply finishes with no failed tenant, and every login is gone afterwards.
#[test]
fn vault_a_lease_whose_max_ttl_runs_out_mid_apply_is_replaced_and_no_tenant_fails() {
    let v = VaultWorld::new();
    v.dynamic("us-east", "4s", "9s");
    v.world.edit("regions/us-east.toml", |s| {
        s.replace("max_parallel = 4", "max_parallel = 2")
    });
    v.slow_tenants(60, 0.3);
    let approle = v.approle("1m", "1h");
    let (apply, seen) = watching_leases(&v, &["us-east"], || {
        v.neo_env("apply", &["--auto-approve"], &approle.env)
    });
    apply.expect_code(0);
    assert!(
        apply
            .stderr
            .contains("New connections of the region use a new dynamic login"),
        "{}",
        apply.stderr
    );
    assert!(seen.ids["us-east"].len() >= 2, "{seen:?}");
    assert!(!apply.stdout.contains("failed"), "{}", apply.stdout);
    assert!(v.leases("us-east").is_empty());
    assert_eq!(v.dynamic_logins("us-east"), 0);
    let tenants = v.world.us.psql(
        "neo_us",
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant_t%'",
    );
    assert_eq!(tenants.trim(), "60");
}
