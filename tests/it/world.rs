//! A test world: two throwaway clusters (us-east, eu-west), each with a least-privilege
//! login role `neo_migrator` owning the region database, and a copy of the example
//! `desired-state/` whose regions point at them. Tests run the built binary against it, with
//! credentials passed through the environment exactly as scripts and CI do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::support::pg::PgCluster;

pub const BIN: &str = env!("CARGO_BIN_EXE_neo-reconcile");

pub struct World {
    pub us: PgCluster,
    pub eu: PgCluster,
    pub tree: TempDir,
    /// The `neo_migrator` passwords, by env prefix.
    pub logins: Vec<(&'static str, String)>,
}

/// The output of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }

    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl World {
    pub fn new() -> World {
        let mut clusters = PgCluster::start_many(2).into_iter();
        let (us, eu) = (clusters.next().unwrap(), clusters.next().unwrap());
        let mut logins = Vec::new();
        for (cluster, db, prefix) in [
            (&us, "neo_us", "NEO_US_EAST"),
            (&eu, "neo_eu", "NEO_EU_WEST"),
        ] {
            let password = random_password();
            cluster.psql(
                "postgres",
                &format!(
                    "CREATE ROLE neo_migrator LOGIN CREATEROLE CREATEDB PASSWORD '{password}'"
                ),
            );
            cluster.psql(
                "postgres",
                &format!("CREATE DATABASE {db} OWNER neo_migrator"),
            );
            logins.push((prefix, password));
        }
        let tree = TempDir::new().unwrap();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("desired-state"),
            tree.path(),
        );
        let world = World {
            us,
            eu,
            tree,
            logins,
        };
        world.edit("regions/us-east.toml", |s| {
            s.replace("port = 55432", &format!("port = {}", world.us.port()))
        });
        world.edit("regions/eu-west.toml", |s| {
            s.replace("port = 55433", &format!("port = {}", world.eu.port()))
        });
        world
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tree.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn edit(&self, rel: &str, f: impl FnOnce(&str) -> String) {
        let old = std::fs::read_to_string(self.path(rel)).unwrap();
        let new = f(&old);
        assert_ne!(old, new, "edit of {rel} changed nothing");
        self.write(rel, &new);
    }

    /// A command running the binary with the regions' credentials in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env_remove("RUST_LOG").env("NO_COLOR", "1");
        for (prefix, password) in &self.logins {
            cmd.env(format!("{prefix}_USER"), "neo_migrator")
                .env(format!("{prefix}_PASSWORD"), password);
        }
        cmd
    }

    /// Runs `neo-reconcile <subcommand> <tree> <args...>`.
    pub fn neo(&self, subcommand: &str, args: &[&str]) -> Run {
        let tree = self.tree.path().to_str().unwrap().to_string();
        let mut all = vec![subcommand, tree.as_str()];
        all.extend_from_slice(args);
        Run::from(self.command(&all).output().unwrap())
    }

    /// Runs `plan --region us-east` with every statement logged by the us-east server
    /// (`log_statement = all`, the application name in each line's prefix) and returns the
    /// plan and the server log written meanwhile.
    pub fn plan_us_with_server_log(&self) -> (Run, String) {
        self.us
            .psql("postgres", "ALTER SYSTEM SET log_statement = 'all'");
        self.us.psql(
            "postgres",
            "ALTER SYSTEM SET log_line_prefix = '%m [%p] %a '",
        );
        self.us.psql("postgres", "SELECT pg_reload_conf()");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let log = self.us.log_path();
        let before = std::fs::read_to_string(&log).unwrap_or_default().len();
        let plan = self.neo("plan", &["--region", "us-east"]);
        self.us.psql("postgres", "ALTER SYSTEM RESET log_statement");
        self.us.psql("postgres", "SELECT pg_reload_conf()");
        let text = std::fs::read_to_string(&log).unwrap();
        (plan, text[before..].to_string())
    }

    /// Everything a read-only command must leave untouched, in both clusters: databases,
    /// schemas, roles, relations, and the content of neo-reconcile's tables.
    pub fn snapshot(&self) -> String {
        let mut out = String::new();
        for (cluster, db) in [(&self.us, "neo_us"), (&self.eu, "neo_eu")] {
            out += &cluster.psql(
                "postgres",
                "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
            );
            out += &cluster.psql(
                "postgres",
                "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles",
            );
            out += &cluster.psql(
                db,
                "SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text, ',' ORDER BY n.nspname, c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
            );
            out += &cluster.psql(db, "SELECT string_agg(nspname || ':' || coalesce(nspacl::text, ''), ',' ORDER BY nspname) FROM pg_namespace");
            for table in [
                "neo_reconcile.schema_history",
                "neo_reconcile.tenants",
                "neo_reconcile.runs",
            ] {
                let exists =
                    cluster.psql(db, &format!("SELECT to_regclass('{table}') IS NOT NULL"));
                if exists.trim() == "t" {
                    out += &cluster.psql(
                        db,
                        &format!(
                            "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
                        ),
                    );
                }
            }
        }
        out
    }
}

fn random_password() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    format!(
        "pw{:016x}{:08x}",
        h.finish(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl World {
    /// Copies the desired-state tree, as it is now, to `to` (created if missing), for tests
    /// that need the tree at another path.
    pub fn copy_tree(&self, to: &Path) {
        copy_dir(self.tree.path(), to);
    }

    /// Runs `neo-reconcile <subcommand> <tree> <args...>` on the tree at `tree` (not
    /// necessarily this world's), with `env` added to the environment.
    pub fn neo_at(
        &self,
        tree: &Path,
        subcommand: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Run {
        let tree = tree.to_str().expect("a UTF-8 tree path").to_string();
        let mut all = vec![subcommand, tree.as_str()];
        all.extend_from_slice(args);
        let mut cmd = self.command(&all);
        cmd.envs(env.iter().copied());
        Run::from(cmd.output().unwrap())
    }
}
