//! A test world whose regions read their logins from a real OpenBao dev server: KV v2 secrets
//! for both regions to start with, then, per test, dynamic logins from the database secrets
//! engine (configured as the README recommends) and AppRole login with a least-privilege
//! policy. Also the checks the Vault tests share: no secret in any output or audit row, and
//! the leases and dynamic logins that exist.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::support::bao::BaoServer;
use crate::world::{Run, World};

/// The policy AppRole's tokens get: only what neo-reconcile needs (vault/neo-reconcile-policy.hcl).
const POLICY: &str = include_str!("../../../vault/neo-reconcile-policy.hcl");

pub struct VaultWorld {
    pub world: World,
    pub bao: BaoServer,
    /// Every secret handed out so far (passwords, secret IDs), for the leak checks.
    secrets: Mutex<Vec<String>>,
}

/// AppRole login for the binary: the files with the IDs, and the environment naming them.
pub struct AppRole {
    pub role_id_file: PathBuf,
    pub secret_id_file: PathBuf,
    pub env: Vec<(String, String)>,
}

/// The cluster, database and name of each region.
fn regions(world: &World) -> [(&'static str, &crate::support::pg::PgCluster, &'static str); 2] {
    [
        ("us-east", &world.us, "neo_us"),
        ("eu-west", &world.eu, "neo_eu"),
    ]
}

impl VaultWorld {
    /// Both regions read `neo_migrator`'s login from `secret/neo/regions/<region>`; no
    /// password is left in the environment.
    pub fn new() -> VaultWorld {
        let mut world = World::new();
        let bao = BaoServer::start();
        let mut secrets = Vec::new();
        for ((_, password), region) in world.logins.iter().zip(["us-east", "eu-west"]) {
            bao.bao(&[
                "kv",
                "put",
                &format!("secret/neo/regions/{region}"),
                "username=neo_migrator",
                &format!("password={password}"),
            ]);
            secrets.push(password.clone());
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
            secrets: Mutex::new(secrets),
        }
    }

    /// Runs the binary with `VAULT_ADDR` and `VAULT_TOKEN` (the root token) set.
    pub fn neo(&self, subcommand: &str, args: &[&str]) -> Run {
        let addr = self.bao.addr();
        let env = [
            ("VAULT_ADDR", addr.as_str()),
            ("VAULT_TOKEN", self.bao.root_token()),
        ];
        self.world
            .neo_at(self.world.tree.path(), subcommand, args, &env)
    }

    /// Runs the binary with `env` (e.g. [`AppRole::env`]) and nothing else about Vault.
    pub fn neo_env(&self, subcommand: &str, args: &[&str], env: &[(String, String)]) -> Run {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.world
            .neo_at(self.world.tree.path(), subcommand, args, &env)
    }

    /// Remembers a secret for [`VaultWorld::assert_no_secret`].
    pub fn secret(&self, value: &str) {
        self.secrets.lock().unwrap().push(value.trim().to_string());
    }

    /// `region` takes dynamic logins from `database/creds/neo-migrator-<region>`, with
    /// `SET ROLE neo_migrator`. The database engine connects as the cluster's superuser.
    pub fn dynamic(&self, region: &str, default_ttl: &str, max_ttl: &str) {
        let (_, cluster, db) = regions(&self.world)
            .into_iter()
            .find(|(r, _, _)| *r == region)
            .expect("a world region");
        let (user, password) = cluster.superuser();
        let _ = self.bao.try_bao(&["secrets", "enable", "database"]);
        let url = format!(
            "connection_url=postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/{db}?sslmode=disable",
            cluster.port()
        );
        self.bao.bao(&[
            "write",
            &format!("database/config/{region}"),
            "plugin_name=postgresql-database-plugin",
            &format!("allowed_roles=neo-migrator-{region}"),
            &url,
            &format!("username={user}"),
            &format!("password={password}"),
        ]);
        self.bao.bao(&[
            "write",
            &format!("database/roles/neo-migrator-{region}"),
            &format!("db_name={region}"),
            &format!("default_ttl={default_ttl}"),
            &format!("max_ttl={max_ttl}"),
            "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT neo_migrator TO \"{{name}}\";",
            "revocation_statements=REVOKE neo_migrator FROM \"{{name}}\"; DROP ROLE IF EXISTS \"{{name}}\";",
        ]);
        self.world.edit(&format!("regions/{region}.toml"), |s| {
            s.replace(
                &format!("\nvault_kv = \"secret/neo/regions/{region}\""),
                &format!("\nvault_database_role = \"database/creds/neo-migrator-{region}\"\nset_role = \"neo_migrator\""),
            )
        });
    }

    /// AppRole `neo` with the example policy and tokens living `token_ttl` (at most
    /// `token_max_ttl`); its role ID and secret ID in files.
    pub fn approle(&self, token_ttl: &str, token_max_ttl: &str) -> AppRole {
        let policy = self.bao.file("policy.hcl", POLICY);
        self.bao
            .bao(&["policy", "write", "neo", policy.to_str().unwrap()]);
        let _ = self.bao.try_bao(&["auth", "enable", "approle"]);
        self.bao.bao(&[
            "write",
            "auth/approle/role/neo",
            "token_policies=neo",
            &format!("token_ttl={token_ttl}"),
            &format!("token_max_ttl={token_max_ttl}"),
        ]);
        let role_id = self
            .bao
            .bao(&["read", "-field=role_id", "auth/approle/role/neo/role-id"]);
        let secret_id = self.bao.bao(&[
            "write",
            "-f",
            "-field=secret_id",
            "auth/approle/role/neo/secret-id",
        ]);
        self.secret(&secret_id);
        let role_id_file = self.bao.file("role-id", &role_id);
        let secret_id_file = self.bao.file("secret-id", &secret_id);
        let env = vec![
            ("VAULT_ADDR".to_string(), self.bao.addr()),
            (
                "VAULT_ROLE_ID_FILE".to_string(),
                role_id_file.to_str().unwrap().to_string(),
            ),
            (
                "VAULT_SECRET_ID_FILE".to_string(),
                secret_id_file.to_str().unwrap().to_string(),
            ),
        ];
        AppRole {
            role_id_file,
            secret_id_file,
            env,
        }
    }

    /// The IDs of the leases OpenBao holds for `region`'s dynamic logins, counted through its
    /// API (`sys/leases/lookup`).
    pub fn leases(&self, region: &str) -> Vec<String> {
        self.bao
            .try_bao(&[
                "list",
                "-format=json",
                &format!("sys/leases/lookup/database/creds/neo-migrator-{region}"),
            ])
            .ok()
            .and_then(|out| serde_json::from_str::<Vec<String>>(&out).ok())
            .unwrap_or_default()
    }

    /// How many dynamic logins (`v-…` roles) exist in `region`'s cluster.
    pub fn dynamic_logins(&self, region: &str) -> usize {
        let (_, cluster, _) = regions(&self.world)
            .into_iter()
            .find(|(r, _, _)| *r == region)
            .expect("a world region");
        cluster
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%'",
            )
            .trim()
            .parse()
            .unwrap()
    }

    /// Makes each tenant's first migration take `secs` seconds (a `pg_sleep`), and adds
    /// `n` tenants `t001`… in us-east, so that an apply lasts as long as a test needs.
    pub fn slow_tenants(&self, n: usize, secs: f64) {
        self.world.edit(
            "schemas/tenant_template/V1__create_users_and_projects.sql",
            |s| format!("{s}\nSELECT pg_sleep({secs});\n"),
        );
        for i in 1..=n {
            self.world.write(
                &format!("tenants/t{i:03}.toml"),
                &format!("slug = \"t{i:03}\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n"),
            );
        }
    }

    /// Asserts that no secret (passwords, secret IDs, the root token, and the passwords of
    /// the dynamic logins in `extra`) appears in `run`'s output or in the regions'
    /// `neo_reconcile.runs` rows.
    #[track_caller]
    pub fn assert_no_secret(&self, run: &Run) {
        let mut rows = String::new();
        for (cluster, db) in [(&self.world.us, "neo_us"), (&self.world.eu, "neo_eu")] {
            if let Ok(r) = cluster.try_psql(
                db,
                "SELECT string_agg(t::text, '|') FROM neo_reconcile.runs t",
            ) {
                rows += &r;
            }
        }
        let secrets = self.secrets.lock().unwrap().clone();
        for secret in secrets
            .iter()
            .map(String::as_str)
            .chain([self.bao.root_token()])
            .filter(|s| !s.is_empty())
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

impl VaultWorld {
    /// Moves `region` back to `env` credentials (its password in the environment), so that
    /// it does not depend on Vault.
    pub fn env_region(&mut self, region: &str) {
        let (prefix, index) = match region {
            "us-east" => ("NEO_US_EAST", 0),
            _ => ("NEO_EU_WEST", 1),
        };
        let password = self.secrets.lock().unwrap()[index].clone();
        self.world.logins.push((prefix, password));
        self.world.edit(&format!("regions/{region}.toml"), |s| {
            s.replace(
                &format!("vault_kv = \"secret/neo/regions/{region}\""),
                &format!("env = \"{prefix}\""),
            )
        });
    }

    /// `env` with `VAULT_ADDR` pointing at `addr` (a proxy) instead.
    pub fn via(env: &[(String, String)], addr: &str) -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| match k.as_str() {
                "VAULT_ADDR" => (k.clone(), addr.to_string()),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    }

    /// The environment of a run with the root token.
    pub fn root_env(&self) -> Vec<(String, String)> {
        vec![
            ("VAULT_ADDR".to_string(), self.bao.addr()),
            ("VAULT_TOKEN".to_string(), self.bao.root_token().to_string()),
        ]
    }

    /// OpenBao's `host:port`, for a proxy's upstream.
    pub fn upstream(&self) -> String {
        self.bao.addr().trim_start_matches("http://").to_string()
    }
}
