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

/// AppRole tokens living 3 s, 6 s at most, through an apply that lasts longer: the keeper
/// renews the token, logs in again before it dies, and moves the region to a login leased
/// under the new token (the old token's leases die with it); no tenant fails and nothing is
/// left afterwards.
#[test]
fn vault_an_approle_token_reaching_its_max_ttl_mid_apply_is_replaced_by_a_new_login() {
    let v = VaultWorld::new();
    v.dynamic("us-east", "1m", "1h");
    v.world.edit("regions/us-east.toml", |s| {
        s.replace("max_parallel = 4", "max_parallel = 1")
    });
    v.slow_tenants(16, 0.3);
    let approle = v.approle("3s", "6s");
    let apply = v.neo_env("apply", &["--auto-approve"], &approle.env);
    apply.expect_code(0);
    for expected in [
        "Renewed the Vault token",
        "Logged in to Vault again",
        "New connections of the region use a new dynamic login",
    ] {
        assert!(
            apply.stderr.contains(expected),
            "{expected}:\n{}",
            apply.stderr
        );
    }
    assert!(!apply.stdout.contains("failed"), "{}", apply.stdout);
    assert!(v.leases("us-east").is_empty());
    assert_eq!(v.dynamic_logins("us-east"), 0);
    v.assert_no_secret(&apply);
}

/// A plain token that reaches its max TTL cannot be replaced: the keeper says so clearly
/// (KV logins, fetched at the start, are not affected).
#[test]
fn vault_a_plain_token_reaching_its_max_ttl_is_reported_clearly() {
    let v = VaultWorld::new();
    v.approle("1m", "1h"); // writes the example policy
    v.world.edit("regions/us-east.toml", |s| {
        s.replace("max_parallel = 4", "max_parallel = 1")
    });
    v.slow_tenants(14, 0.3);
    let token = v.bao.bao(&[
        "token",
        "create",
        "-policy=neo",
        "-ttl=3s",
        "-explicit-max-ttl=5s",
        "-field=token",
    ]);
    v.secret(&token);
    let env = vec![
        ("VAULT_ADDR".to_string(), v.bao.addr()),
        ("VAULT_TOKEN".to_string(), token.trim().to_string()),
    ];
    let apply = v.neo_env("apply", &["--auto-approve"], &env);
    apply.expect_code(0);
    assert!(
        apply.stderr.contains("cannot log in again") && apply.stderr.contains("Use AppRole"),
        "{}",
        apply.stderr
    );
    v.assert_no_secret(&apply);
}

/// SIGTERM during an apply on a dynamic login: the run stops at a safe point and still
/// revokes its lease; the login is gone from PostgreSQL.
#[test]
fn vault_sigterm_during_an_apply_still_revokes_the_lease() {
    let v = VaultWorld::new();
    v.dynamic("us-east", "1m", "1h");
    v.world.edit("regions/us-east.toml", |s| {
        s.replace("max_parallel = 4", "max_parallel = 1")
    });
    v.slow_tenants(30, 0.3);
    let approle = v.approle("1m", "1h");
    let tree = v.world.tree.path().to_str().unwrap().to_string();
    let mut cmd = v.world.command(&["apply", &tree, "--auto-approve"]);
    cmd.envs(
        approle
            .env
            .iter()
            .map(|(k, val)| (k.as_str(), val.as_str())),
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Wait for the lease, then for the first tenants.
    while v.leases("us-east").is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Asked to stop"), "{stderr}");
    assert!(stderr.contains("Revoked a dynamic login"), "{stderr}");
    assert!(v.leases("us-east").is_empty());
    assert_eq!(v.dynamic_logins("us-east"), 0);
}

/// Renewals fail (the proxy answers 500 to every `sys/leases/renew` during the run): the
/// keeper backs off, and when the backoff would reach the grace period it fetches a new login
/// instead; the apply finishes with no failed tenant.
#[test]
fn vault_failing_renewals_lead_to_fresh_credentials_before_the_lease_ends() {
    let v = VaultWorld::new();
    let proxy = Proxy::start(&v.upstream());
    proxy.inject(
        "sys/leases/renew",
        crate::support::proxy::Fault::Status(500),
        1000,
    );
    v.dynamic("us-east", "4s", "1h");
    v.world.edit("regions/us-east.toml", |s| {
        s.replace("max_parallel = 4", "max_parallel = 1")
    });
    v.slow_tenants(16, 0.3);
    let approle = v.approle("1m", "1h");
    let env = VaultWorld::via(&approle.env, &proxy.addr());
    let apply = v.neo_env("apply", &["--auto-approve"], &env);
    apply.expect_code(0);
    for expected in [
        "Cannot renew the lease of the region's dynamic login",
        "New connections of the region use a new dynamic login",
    ] {
        assert!(
            apply.stderr.contains(expected),
            "{expected}:\n{}",
            apply.stderr
        );
    }
    assert!(!apply.stdout.contains("failed"), "{}", apply.stdout);
    assert!(proxy.log().iter().any(|e| e.injected));
    assert!(v.leases("us-east").is_empty());
    assert_eq!(v.dynamic_logins("us-east"), 0);
}
