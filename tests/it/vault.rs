//! Credentials from Vault, against a real OpenBao dev server (`support::bao`) and real
//! PostgreSQL clusters: KV v2 logins with a token, AppRole, and dynamic database credentials.

use crate::support::bao::BaoServer;
use crate::support::vault_world::VaultWorld;

/// The harness itself: a dev server starts, answers as root, and stores and reads KV v2.
#[test]
fn bao_dev_server_starts_and_kv_works() {
    let bao = BaoServer::start();
    bao.bao(&[
        "kv",
        "put",
        "secret/neo/smoke",
        "username=neo",
        "password=s3cret",
    ]);
    let read = bao.bao_json(&["kv", "get", "-format=json", "secret/neo/smoke"]);
    assert_eq!(read["data"]["data"]["username"], "neo");
    assert_eq!(read["data"]["data"]["password"], "s3cret");
    let other = BaoServer::start();
    assert_ne!(bao.addr(), other.addr());
    assert!(other.try_bao(&["kv", "get", "secret/neo/smoke"]).is_err());
}

/// `plan` and `apply` read the logins from Vault KV with a token: nothing in the environment
/// but `VAULT_ADDR` and `VAULT_TOKEN`, and no secret in any output or audit row.
#[test]
fn vault_kv_logins_plan_and_apply_converge_without_passwords_in_the_environment() {
    let v = VaultWorld::new();
    let plan = v.neo("plan", &[]);
    plan.expect_code(0);
    v.assert_no_secret(&plan);
    let apply = v.neo("apply", &["--auto-approve", "-vv"]);
    apply.expect_code(0);
    v.assert_no_secret(&apply);
    v.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    // The token from a file works the same.
    let file = v.bao.file("token", &format!("{}\n", v.bao.root_token()));
    let addr = v.bao.addr();
    let run = v.world.neo_at(
        v.world.tree.path(),
        "plan",
        &["--vault-token-file", file.to_str().unwrap()],
        &[("VAULT_ADDR", addr.as_str())],
    );
    run.expect_code(0);
    v.assert_no_secret(&run);
}

/// A missing secret (404) or a secret without the password field fails its region, named with
/// the Vault path, and changes nothing there; the other region converges.
#[test]
fn vault_kv_missing_secret_or_field_fails_only_that_region() {
    let v = VaultWorld::new();
    v.bao.bao(&["kv", "delete", "secret/neo/regions/eu-west"]);
    v.bao
        .bao(&["kv", "metadata", "delete", "secret/neo/regions/eu-west"]);
    let eu_before = v.world.eu.psql(
        "postgres",
        "SELECT string_agg(datname || rolname, ',') FROM pg_database, pg_roles",
    );
    let plan = v.neo("plan", &[]);
    plan.expect_code(1);
    let all = format!("{}{}", plan.stdout, plan.stderr);
    assert!(
        all.contains("eu-west")
            && all.contains("secret/neo/regions/eu-west")
            && all.contains("404"),
        "{all}"
    );
    v.assert_no_secret(&plan);
    let apply = v.neo("apply", &["--auto-approve"]);
    apply.expect_code(3);
    v.assert_no_secret(&apply);
    assert_eq!(
        v.world
            .us
            .psql(
                "neo_us",
                "SELECT to_regclass('neo_reconcile.runs') IS NOT NULL"
            )
            .trim(),
        "t"
    );
    assert_eq!(
        v.world
            .eu
            .psql(
                "neo_eu",
                "SELECT to_regclass('neo_reconcile.runs') IS NOT NULL"
            )
            .trim(),
        "f"
    );
    assert_eq!(
        eu_before,
        v.world.eu.psql(
            "postgres",
            "SELECT string_agg(datname || rolname, ',') FROM pg_database, pg_roles"
        )
    );

    // The secret is back, without its password field.
    v.bao.bao(&[
        "kv",
        "put",
        "secret/neo/regions/eu-west",
        "username=neo_migrator",
    ]);
    let plan = v.neo("plan", &["--region", "eu-west"]);
    plan.expect_code(1);
    let all = format!("{}{}", plan.stdout, plan.stderr);
    assert!(
        all.contains("secret/neo/regions/eu-west") && all.contains("no field \"password\""),
        "{all}"
    );
}

/// A region reading Vault with no Vault configured is refused before anything connects.
#[test]
fn a_vault_source_without_vault_configuration_is_refused_up_front() {
    let v = VaultWorld::new();
    let before = v.world.snapshot();
    let run = v.world.neo("plan", &[]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("Vault is not configured")
            && run.stderr.contains("us-east (secret/neo/regions/us-east)"),
        "{}",
        run.stderr
    );
    assert_eq!(before, v.world.snapshot());
}

/// AppRole login and dynamic logins: us-east's login comes from OpenBao's database secrets
/// engine (a short-lived role, member of `neo_migrator`, sessions under `SET ROLE
/// neo_migrator`). Apply converges, and the run's lease is revoked when it ends: the dynamic
/// login is gone from `pg_roles` and OpenBao holds no lease for the region.
#[test]
fn approle_and_dynamic_database_logins_converge_and_are_revoked_at_the_end() {
    let v = VaultWorld::new();
    v.dynamic("us-east", "5m", "10m");
    let approle = v.approle("10m", "1h");
    let apply = v.neo_env("apply", &["--auto-approve"], &approle.env);
    apply.expect_code(0);
    v.assert_no_secret(&apply);
    // The run's one lease was revoked, and with it the login.
    assert_eq!(v.dynamic_logins("us-east"), 0);
    assert!(v.leases("us-east").is_empty());
    // What apply created belongs to neo_migrator's roles, not to the dynamic login.
    assert_eq!(
        v.world.us.psql("neo_us", "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'neo_reconcile'").trim(),
        "neo_migrator"
    );
    v.neo_env("plan", &["--detailed-exitcode"], &approle.env)
        .expect_code(0);
    assert_eq!(v.dynamic_logins("us-east"), 0);
}
