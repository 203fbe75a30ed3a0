//! Credentials from Vault, against a real OpenBao dev server (`support::bao`) and real
//! PostgreSQL clusters: KV v2 logins with a token, AppRole, and dynamic database credentials.

use crate::support::bao::BaoServer;
use crate::world::{Run, World};

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

/// A world whose regions read their `neo_migrator` logins from OpenBao's KV v2 at
/// `secret/neo/regions/<region>`, with no password left in the environment.
struct VaultWorld {
    world: World,
    bao: BaoServer,
    passwords: Vec<String>,
}

impl VaultWorld {
    fn new() -> VaultWorld {
        let mut world = World::new();
        let bao = BaoServer::start();
        let mut passwords = Vec::new();
        for ((_, password), region) in world.logins.iter().zip(["us-east", "eu-west"]) {
            bao.bao(&[
                "kv",
                "put",
                &format!("secret/neo/regions/{region}"),
                "username=neo_migrator",
                &format!("password={password}"),
            ]);
            passwords.push(password.clone());
        }
        world.logins.clear();
        for (region, prefix) in [("us-east", "NEO_US_EAST"), ("eu-west", "NEO_EU_WEST")] {
            world.edit(&format!("regions/{region}.toml"), |s| {
                s.replace(
                    &format!("env = \"{prefix}\""),
                    &format!("vault_kv = \"secret/neo/regions/{region}\""),
                )
            });
        }
        VaultWorld {
            world,
            bao,
            passwords,
        }
    }

    /// Runs the binary with `VAULT_ADDR` and `VAULT_TOKEN` (the root token) set.
    fn neo(&self, subcommand: &str, args: &[&str]) -> Run {
        let addr = self.bao.addr();
        let env = [
            ("VAULT_ADDR", addr.as_str()),
            ("VAULT_TOKEN", self.bao.root_token()),
        ];
        self.world
            .neo_at(self.world.tree.path(), subcommand, args, &env)
    }

    /// Asserts that no password nor the token appears in `run`'s output or in the regions'
    /// `neo_reconcile.runs` rows.
    #[track_caller]
    fn assert_no_secret(&self, run: &Run) {
        let mut rows = String::new();
        for (cluster, db) in [(&self.world.us, "neo_us"), (&self.world.eu, "neo_eu")] {
            if let Ok(r) = cluster.try_psql(
                db,
                "SELECT string_agg(t::text, '|') FROM neo_reconcile.runs t",
            ) {
                rows += &r;
            }
        }
        for secret in self
            .passwords
            .iter()
            .map(String::as_str)
            .chain([self.bao.root_token()])
        {
            for (what, text) in [
                ("stdout", &run.stdout),
                ("stderr", &run.stderr),
                ("runs", &rows),
            ] {
                assert!(
                    !text.contains(secret),
                    "a secret leaked into {what}:\n{text}"
                );
            }
        }
    }
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
/// neo_migrator`). Apply converges, one lease is issued for the region, and it is revoked
/// when the run ends: the dynamic login is gone from `pg_roles`.
#[test]
fn approle_and_dynamic_database_logins_converge_and_are_revoked_at_the_end() {
    let v = VaultWorld::new();
    let (user, password) = v.world.us.superuser();
    v.bao.bao(&["secrets", "enable", "database"]);
    v.bao.bao(&[
        "write",
        "database/config/us",
        "plugin_name=postgresql-database-plugin",
        "allowed_roles=neo-migrator-us",
        "connection_url=postgresql://{{username}}:{{password}}@127.0.0.1:PORT/neo_us?sslmode=disable"
            .replace("PORT", &v.world.us.port().to_string())
            .as_str(),
        &format!("username={user}"),
        &format!("password={password}"),
    ]);
    v.bao.bao(&[
        "write",
        "database/roles/neo-migrator-us",
        "db_name=us",
        "default_ttl=5m",
        "max_ttl=10m",
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT neo_migrator TO \"{{name}}\";",
        "revocation_statements=REVOKE neo_migrator FROM \"{{name}}\"; DROP ROLE IF EXISTS \"{{name}}\";",
    ]);
    let policy = v.bao.file(
        "policy.hcl",
        "path \"secret/data/neo/regions/*\" { capabilities = [\"read\"] }\n\
         path \"database/creds/neo-migrator-us\" { capabilities = [\"read\"] }\n\
         path \"sys/leases/revoke\" { capabilities = [\"update\"] }\n\
         path \"sys/leases/renew\" { capabilities = [\"update\"] }\n",
    );
    v.bao
        .bao(&["policy", "write", "neo", policy.to_str().unwrap()]);
    v.bao.bao(&["auth", "enable", "approle"]);
    v.bao.bao(&[
        "write",
        "auth/approle/role/neo",
        "token_policies=neo",
        "token_ttl=10m",
    ]);
    let role_id = v
        .bao
        .bao(&["read", "-field=role_id", "auth/approle/role/neo/role-id"]);
    let secret_id = v.bao.bao(&[
        "write",
        "-f",
        "-field=secret_id",
        "auth/approle/role/neo/secret-id",
    ]);
    let role_id_file = v.bao.file("role-id", &role_id);
    let secret_id_file = v.bao.file("secret-id", &secret_id);
    v.world.edit("regions/us-east.toml", |s| {
        s.replace(
            "\nvault_kv = \"secret/neo/regions/us-east\"",
            "\nvault_database_role = \"database/creds/neo-migrator-us\"\nset_role = \"neo_migrator\"",
        )
    });
    let logins = "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%'";
    let addr = v.bao.addr();
    let env = [
        ("VAULT_ADDR", addr.as_str()),
        ("VAULT_ROLE_ID_FILE", role_id_file.to_str().unwrap()),
        ("VAULT_SECRET_ID_FILE", secret_id_file.to_str().unwrap()),
    ];
    let apply = v
        .world
        .neo_at(v.world.tree.path(), "apply", &["--auto-approve"], &env);
    apply.expect_code(0);
    v.assert_no_secret(&apply);
    assert!(!apply.stdout.contains(secret_id.trim()) && !apply.stderr.contains(secret_id.trim()));
    // The run's one lease was revoked, and with it the login.
    assert_eq!(v.world.us.psql("postgres", logins).trim(), "0");
    assert!(v
        .bao
        .try_bao(&["list", "sys/leases/lookup/database/creds/neo-migrator-us"])
        .map_or(true, |out| out.trim().is_empty()));
    // What apply created belongs to neo_migrator's roles, not to the dynamic login.
    assert_eq!(
        v.world.us.psql("neo_us", "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'neo_reconcile'").trim(),
        "neo_migrator"
    );
    v.world
        .neo_at(v.world.tree.path(), "plan", &["--detailed-exitcode"], &env)
        .expect_code(0);
    assert_eq!(v.world.us.psql("postgres", logins).trim(), "0");
}
