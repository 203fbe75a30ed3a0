//! What neo-reconcile does when Vault fails it, against real OpenBao (and, for faults OpenBao
//! cannot produce on demand, the test proxy in front of it). us-east takes its login from the
//! environment and eu-west from Vault KV: every failure must name eu-west and its Vault path,
//! leave eu-west untouched, let us-east converge, and end with exit 1 for plan (3 for an
//! apply that changed us-east; 1 when it had nothing left to do). Transient errors (cut
//! connections, 5xx, 429) are tried again within the run; a 4xx is not.

use crate::support::proxy::{Fault, Proxy};
use crate::support::vault_world::VaultWorld;
use crate::world::Run;

const EU_PATH: &str = "secret/neo/regions/eu-west";

/// A world with us-east on `env` credentials and eu-west on Vault KV.
fn world() -> VaultWorld {
    let mut v = VaultWorld::new();
    v.env_region("us-east");
    v
}

/// What must not change in eu-west: databases, roles, and neo_eu's schemas.
fn eu_state(v: &VaultWorld) -> String {
    v.world.eu.psql(
        "postgres",
        "SELECT (SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database) || ' ' || (SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles)",
    ) + &v.world.eu.psql(
        "neo_eu",
        "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace",
    )
}

/// Runs plan and apply with `env`, asserting that eu-west fails with a message naming it,
/// its Vault path and `reason`, that eu-west is unchanged and us-east converged.
#[track_caller]
fn assert_only_eu_fails(v: &VaultWorld, env: &[(String, String)], reason: &str) {
    let before = eu_state(v);
    let plan = v.neo_env("plan", &[], env);
    plan.expect_code(1);
    assert_names_failure(v, &plan, reason);
    let us_had_work = v
        .world
        .us
        .psql("neo_us", "SELECT to_regclass('neo_reconcile.runs') IS NULL")
        .trim()
        == "t";
    let apply = v.neo_env("apply", &["--auto-approve"], env);
    apply.expect_code(if us_had_work { 3 } else { 1 });
    assert_names_failure(v, &apply, reason);
    assert_eq!(before, eu_state(v), "eu-west changed");
    v.neo_env("plan", &["--region", "us-east", "--detailed-exitcode"], env)
        .expect_code(0);
}

#[track_caller]
fn assert_names_failure(v: &VaultWorld, run: &Run, reason: &str) {
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("eu-west") && all.contains(EU_PATH) && all.contains(reason),
        "expected eu-west, {EU_PATH} and {reason:?} in:\n{all}"
    );
    v.assert_no_secret(run);
}

/// Vault unreachable, a bad token, a policy without the secret, then a sealed Vault.
#[test]
fn vault_unreachable_forbidden_or_sealed_fails_only_its_region() {
    let v = world();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = VaultWorld::via(&v.root_env(), &format!("http://127.0.0.1:{port}"));
    assert_only_eu_fails(&v, &unreachable, "unreachable");

    let mut bad_token = v.root_env();
    bad_token[1].1 = "s.not-a-token".to_string();
    assert_only_eu_fails(&v, &bad_token, "403");

    let policy = v.bao.file(
        "us-only.hcl",
        "path \"secret/data/neo/regions/us-east\" { capabilities = [\"read\"] }\n",
    );
    v.bao
        .bao(&["policy", "write", "us-only", policy.to_str().unwrap()]);
    let token = v
        .bao
        .bao(&["token", "create", "-policy=us-only", "-field=token"]);
    v.secret(&token);
    let mut forbidden = v.root_env();
    forbidden[1].1 = token.trim().to_string();
    assert_only_eu_fails(&v, &forbidden, "permission denied (403)");

    v.bao.bao(&["operator", "seal"]);
    assert_only_eu_fails(&v, &v.root_env(), "503");
}

/// A secret whose password PostgreSQL refuses: told apart from a network error.
#[test]
fn vault_credentials_postgres_rejects_fail_only_their_region_as_a_rejected_login() {
    let v = world();
    v.secret("wrong-password-4711");
    v.bao.bao(&[
        "kv",
        "put",
        EU_PATH,
        "username=neo_migrator",
        "password=wrong-password-4711",
    ]);
    assert_only_eu_fails(&v, &v.root_env(), "rejected the login");
    let plan = v.neo_env("plan", &[], &v.root_env());
    assert!(
        plan.stderr.contains("not a network error") || plan.stdout.contains("not a network error")
    );
}

/// Through the proxy: two 500s, then two 429s, then two cut connections before the secret
/// are tried again and the run converges; a 403 is not tried again and fails
/// eu-west; a cut connection on every attempt fails it as unreachable.
#[test]
fn vault_transient_errors_are_retried_within_a_run_and_4xx_are_not() {
    let v = world();
    let proxy = Proxy::start(&v.upstream());
    let env = VaultWorld::via(&v.root_env(), &proxy.addr());
    for fault in [Fault::Status(500), Fault::Status(429), Fault::Cut] {
        proxy.inject("/v1/secret/data/neo/regions/eu-west", fault, 2);
        let plan = v.neo_env("plan", &[], &env);
        plan.expect_code(0);
        v.assert_no_secret(&plan);
    }
    let reads = |p: &Proxy| {
        p.log()
            .iter()
            .filter(|e| e.path.contains("regions/eu-west"))
            .count()
    };
    // Three runs, each one read after two injected failures.
    assert_eq!(reads(&proxy), 9);

    // A 403 for plan and apply: each asks once, and fails.
    proxy.inject("/v1/secret/data/neo/regions/eu-west", Fault::Status(403), 2);
    let before = reads(&proxy);
    assert_only_eu_fails(&v, &env, "permission denied (403)");
    assert_eq!(reads(&proxy) - before, 2);

    proxy.inject("/v1/secret/data/neo/regions/eu-west", Fault::Cut, 1000);
    assert_only_eu_fails(&v, &env, "unreachable");
}
