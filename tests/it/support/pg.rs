//! Throwaway PostgreSQL 15 clusters for integration tests.
//!
//! `initdb` runs once per test process, into a template data directory. Every [`PgCluster`]
//! is a copy of that template (`cp -a`, much faster than another `initdb`) in its own
//! temporary directory, with its own TCP port on 127.0.0.1 and its own Unix socket directory,
//! started with `pg_ctl start -w`. Durability is turned off (`fsync`, `synchronous_commit`,
//! `full_page_writes`) because the data is thrown away, except in the clusters benchmarks
//! start with [`PgCluster::start_durable`], which run at PostgreSQL's defaults.
//!
//! The superuser [`SUPERUSER`] authenticates with SCRAM and a random per-process password
//! over TCP, and without a password (`trust`) over the cluster's private Unix socket, which
//! is what [`PgCluster::psql`] uses.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root every server command
//! (`initdb`, `pg_ctl`) runs as the unprivileged user `postgres` through `runuser`, and the
//! temporary directories (under a world-traversable directory such as `/tmp`) are handed to
//! that user.
//!
//! Dropping a cluster stops its server (`pg_ctl stop -m immediate`) and removes its
//! directory; that also happens while a failing test unwinds. A test process that is killed
//! runs no destructor, and statics are never dropped, so the template and any cluster of a
//! process that no longer exists are stopped and removed by the next test process.
//!
//! The server binaries come from `$NEO_PG_BIN`, else `/usr/lib/postgresql/15/bin`, else
//! `pg_config --bindir`.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::panic;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tempfile::TempDir;

/// The name of every test cluster's superuser.
pub const SUPERUSER: &str = "postgres";

/// The address every test cluster listens on.
const HOST: &str = "127.0.0.1";

/// The unprivileged operating-system user that runs the servers when the tests run as root.
const SERVER_USER: &str = "postgres";

/// What to do when the server binaries are missing.
const INSTALL_HINT: &str = "install Debian's postgresql-15: apt-get install postgresql-15 \
                            (or point NEO_PG_BIN at a PostgreSQL 15 bin directory)";

/// The prefix of every directory this module creates; the full name is
/// `neo-pg-<pid>-<kind>-<random>`, so that a later process can tell whether its owner is gone.
const DIR_PREFIX: &str = "neo-pg-";

/// How many ports to try when another process takes the chosen one before the server binds it.
const START_ATTEMPTS: usize = 5;

/// How many seconds `pg_ctl` waits for a server to start or to stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// How many lines of the server log a failure message quotes.
const LOG_TAIL_LINES: usize = 40;

/// Settings shared by every cluster, appended once to the template's `postgresql.conf`.
const SETTINGS: &str = "
# neo-reconcile test cluster: throwaway data, so no durability.
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 32MB
";

/// Where the PostgreSQL binaries are and how to run them, found once per process.
struct Tools {
    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    bin: PathBuf,
    /// The `psql` client.
    psql: PathBuf,
    /// Whether server commands run as [`SERVER_USER`], because this process is root.
    as_server_user: bool,
    /// The directory in which cluster directories are created.
    parent: PathBuf,
}

/// The template every cluster is copied from, made once per process.
struct Template {
    /// Owns the template's directory. Statics are never dropped, so the next test process
    /// removes it (see [`sweep_leftovers`]).
    _dir: TempDir,
    /// The initialized data directory.
    data: PathBuf,
    /// The superuser's password.
    password: String,
}

/// One running PostgreSQL cluster in its own temporary directory.
///
/// Dropping it stops the server immediately and removes the directory, also while a
/// panicking test unwinds.
#[derive(Debug)]
pub struct PgCluster {
    /// The cluster's directory, which is also its Unix socket directory.
    dir: TempDir,
    /// The data directory, inside `dir`.
    data: PathBuf,
    /// The server log, inside `dir`.
    log: PathBuf,
    /// The TCP port on [`HOST`].
    port: u16,
    /// Whether the server was started and not stopped since.
    running: bool,
}

/// Why a start attempt failed.
enum StartFailure {
    /// Another process took the port between choosing it and the server binding it.
    PortTaken,
    /// Anything else, with `pg_ctl`'s output and the server log's tail.
    Other(String),
}

impl PgCluster {
    /// Starts one cluster from a copy of the process's template, on a free port.
    ///
    /// A port taken by another process before the server could bind it is retried with a
    /// new one. Panics with the server log's tail when the server does not start.
    pub fn start() -> PgCluster {
        PgCluster::start_with(false)
    }

    /// As [`PgCluster::start`], at PostgreSQL's default durability (`fsync`,
    /// `synchronous_commit` and `full_page_writes` on), for benchmarks.
    pub fn start_durable() -> PgCluster {
        PgCluster::start_with(true)
    }

    fn start_with(durable: bool) -> PgCluster {
        let template = template();
        let dir = server_dir("cluster");
        let data = dir.path().join("data");
        run(
            Command::new("cp").arg("-a").arg(&template.data).arg(&data),
            "copying the template data directory",
        );
        let socket_dir = dir.path().to_string_lossy().replace('\'', "''");
        append(
            &data.join("postgresql.conf"),
            &format!("unix_socket_directories = '{socket_dir}'\n"),
        );
        if durable {
            append(
                &data.join("postgresql.conf"),
                "fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n",
            );
        }
        let log = dir.path().join("server.log");
        let mut cluster = PgCluster {
            dir,
            data,
            log,
            port: 0,
            running: false,
        };
        for attempt in 1..=START_ATTEMPTS {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(StartFailure::PortTaken) if attempt < START_ATTEMPTS => {}
                Err(StartFailure::PortTaken) => {
                    panic!(
                        "PostgreSQL could not bind a port in {START_ATTEMPTS} attempts: {}",
                        cluster.log_tail()
                    )
                }
                Err(StartFailure::Other(details)) => panic!("PostgreSQL did not start: {details}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts `n` independent clusters in parallel, one thread each.
    ///
    /// If any of them fails to start, the others are stopped and removed and the first
    /// failure's panic continues in the calling thread.
    pub fn start_many(n: usize) -> Vec<PgCluster> {
        PgCluster::start_many_with(n, false)
    }

    /// As [`PgCluster::start_many`]; `durable`: see [`PgCluster::start_durable`].
    pub fn start_many_with(n: usize, durable: bool) -> Vec<PgCluster> {
        // Run initdb here, once, rather than have every thread wait on it.
        template();
        let results: Vec<thread::Result<PgCluster>> = thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|_| scope.spawn(move || PgCluster::start_with(durable)))
                .collect();
            handles
                .into_iter()
                .map(thread::ScopedJoinHandle::join)
                .collect()
        });
        let mut clusters = Vec::with_capacity(n);
        let mut failure = None;
        for result in results {
            match result {
                Ok(cluster) => clusters.push(cluster),
                Err(payload) => {
                    failure.get_or_insert(payload);
                }
            }
        }
        if let Some(payload) = failure {
            drop(clusters);
            panic::resume_unwind(payload);
        }
        clusters
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The superuser's name and password, for connections over TCP.
    pub fn superuser(&self) -> (&'static str, &'static str) {
        (SUPERUSER, &template().password)
    }

    /// A `postgres://` URL for the superuser over TCP, password included (test clusters
    /// only). `db` is not percent-encoded, so it should be a plain identifier.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@{HOST}:{}/{db}",
            template().password,
            self.port
        )
    }

    /// sqlx connection options for the superuser over TCP, with its password.
    pub fn connect_options(&self, db: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(HOST)
            .port(self.port)
            .username(SUPERUSER)
            .password(&template().password)
            .database(db)
    }

    /// The directory holding the server's Unix socket (the cluster's own directory).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server's log file (an owned path, so that it outlives a borrow of the cluster).
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// Creates the database `name`, owned by the superuser.
    #[track_caller]
    pub fn create_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        );
    }

    /// Runs `sql` (one or more statements) with psql as the superuser over the Unix socket,
    /// and returns its unaligned, tuples-only output.
    ///
    /// psql runs with `-X -q -A -t -v ON_ERROR_STOP=1`, so the first error stops it; this
    /// panics with psql's error output then.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|error| {
            panic!("psql on port {} failed:\n{error}\nSQL: {sql}", self.port)
        })
    }

    /// Like [`PgCluster::psql`], but returns psql's error output instead of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut command = Command::new(&tools().psql);
        command
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string());
        command.args(["-U", SUPERUSER, "-d", db]);
        psql_output(command, sql)
    }

    /// Runs `sql` with psql as the login role `user` with `password`, over TCP, and returns
    /// its output or its error output.
    pub fn try_psql_as(
        &self,
        db: &str,
        user: &str,
        password: &str,
        sql: &str,
    ) -> Result<String, String> {
        let mut command = Command::new(&tools().psql);
        command.args([
            "-h",
            HOST,
            "-p",
            &self.port.to_string(),
            "-U",
            user,
            "-d",
            db,
        ]);
        command.env("PGPASSWORD", password);
        psql_output(command, sql)
    }

    /// A pool of at most 4 connections as the superuser over TCP, with its password.
    pub async fn pool(&self, db: &str) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect_with(self.connect_options(db))
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {db} on port {}: {error}", self.port))
    }

    /// Stops the server immediately (`pg_ctl stop -m immediate`), without removing its
    /// files. Stopping a stopped cluster does nothing.
    pub fn stop(&mut self) {
        if self.running {
            stop_server(&self.data);
            self.running = false;
        }
    }

    /// One attempt to start the server on `self.port`.
    fn try_start(&mut self) -> Result<(), StartFailure> {
        let log_start = fs::metadata(&self.log).map_or(0, |m| m.len());
        let output = server_command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-o"])
            .arg(format!("-p {}", self.port))
            .stdin(Stdio::null())
            .output()
            .map_err(|error| StartFailure::Other(format!("cannot run pg_ctl: {error}")))?;
        if output.status.success() {
            self.running = true;
            return Ok(());
        }
        // pg_ctl gives up after its timeout while the server may still be starting.
        stop_server(&self.data);
        let mut attempt_log = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.seek(SeekFrom::Start(log_start));
            let _ = file.read_to_string(&mut attempt_log);
        }
        if attempt_log.contains("Address already in use") {
            return Err(StartFailure::PortTaken);
        }
        Err(StartFailure::Other(format!(
            "pg_ctl start on port {} exited with {}:\n{}{}\n{}",
            self.port,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        )))
    }

    /// The last lines of the server log, for failure messages.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- last lines of {}\n{tail}", self.log.display())
    }
}

impl Drop for PgCluster {
    /// Stops the server; the directory is then removed by its `TempDir`. Errors are ignored:
    /// this also runs while a test panics.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Finds the binaries and the user to run them as, once per process.
fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let bin = find_bin_dir();
        let psql = [bin.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|path| path.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let as_server_user = effective_uid_is_root();
        if as_server_user {
            let known = Command::new("id").arg("-u").arg(SERVER_USER).output();
            assert!(
                known.is_ok_and(|output| output.status.success()),
                "running as root, but there is no user {SERVER_USER:?} to run PostgreSQL as: {INSTALL_HINT}"
            );
        }
        let temp = std::env::temp_dir();
        let parent = if !as_server_user || traversable_by_anyone(&temp) { temp } else { PathBuf::from("/tmp") };
        Tools { bin, psql, as_server_user, parent }
    })
}

/// The directory holding the server binaries; panics with an install hint without one.
fn find_bin_dir() -> PathBuf {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("NEO_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            has_server(&dir),
            "NEO_PG_BIN={} holds no initdb and pg_ctl: {INSTALL_HINT}",
            dir.display()
        );
        return dir;
    }
    let debian = Path::new("/usr/lib/postgresql/15/bin");
    if has_server(debian) {
        return debian.to_path_buf();
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_server(&dir) {
            return dir;
        }
    }
    panic!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in $NEO_PG_BIN, \
         /usr/lib/postgresql/15/bin or `pg_config --bindir`: {INSTALL_HINT}"
    );
}

/// Whether this process's effective user id is 0, from `/proc/self/status` (real, effective,
/// saved and filesystem ids follow `Uid:`).
fn effective_uid_is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let ids = status.lines().find_map(|line| line.strip_prefix("Uid:"));
    ids.and_then(|ids| ids.split_whitespace().nth(1)) == Some("0")
}

/// Whether every directory from `dir` up to `/` can be traversed by other users.
fn traversable_by_anyone(dir: &Path) -> bool {
    dir.is_absolute()
        && dir
            .ancestors()
            .all(|d| fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// A command for the server binary `program`, run as [`SERVER_USER`] when we are root.
fn server_command(program: &str) -> Command {
    let tools = tools();
    let path = tools.bin.join(program);
    if tools.as_server_user {
        let mut command = Command::new("runuser");
        command.args(["-u", SERVER_USER, "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// Runs `command` to completion; panics with its output unless it succeeds.
#[track_caller]
fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{what}: cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{what}: {command:?} exited with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A new directory that only the server user can enter, named after this process.
fn server_dir(kind: &str) -> TempDir {
    let tools = tools();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-{kind}-", std::process::id()))
        .tempdir_in(&tools.parent)
        .unwrap_or_else(|error| {
            panic!(
                "cannot create a directory in {}: {error}",
                tools.parent.display()
            )
        });
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|error| panic!("cannot chmod {}: {error}", dir.path().display()));
    if tools.as_server_user {
        run(
            Command::new("chown").arg(SERVER_USER).arg(dir.path()),
            "handing a directory to the server user",
        );
    }
    dir
}

/// Runs initdb once per process: the first call makes the template, later calls return it.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        sweep_leftovers();
        let dir = server_dir("template");
        let data = dir.path().join("data");
        let password = random_password();
        let pwfile = dir.path().join("pwfile");
        fs::write(&pwfile, &password).expect("writing the password file");
        if tools().as_server_user {
            run(
                Command::new("chown").arg(SERVER_USER).arg(&pwfile),
                "handing the password file to the server user",
            );
        }
        run(
            server_command("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        let _ = fs::remove_file(&pwfile);
        append(&data.join("postgresql.conf"), SETTINGS);
        Template {
            _dir: dir,
            data,
            password,
        }
    })
}

/// Stops and removes what test processes that no longer exist left behind: their template,
/// and any cluster they could not drop (the process was killed), server included.
fn sweep_leftovers() {
    let Ok(entries) = fs::read_dir(&tools().parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|name| name.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let mut parts = rest.splitn(3, '-');
        let (Some(pid), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let owner_is_gone = pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists();
        if owner_is_gone && matches!(kind, "cluster" | "template") {
            let data = entry.path().join("data");
            if running_postmaster(&data).is_some() {
                stop_server(&data);
            }
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Stops the server of `data` immediately and waits for it to exit; if `pg_ctl` cannot,
/// kills the postmaster, whose children then exit by themselves. Never panics.
fn stop_server(data: &Path) {
    let stopped = server_command("pg_ctl")
        .arg("stop")
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT_SECS])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if stopped {
        return;
    }
    if let Some(pid) = running_postmaster(data) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The process id of the postmaster serving `data`, if one is running. The pid file alone
/// is not trusted: a stale one may name a process that reused the number.
fn running_postmaster(data: &Path) -> Option<u32> {
    let pid_file = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = pid_file.lines().next()?.trim().parse().ok()?;
    let command_line = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&command_line)
        .contains(&*data.to_string_lossy())
        .then_some(pid)
}

/// Appends `text` to the file at `path`.
fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .unwrap_or_else(|error| panic!("cannot append to {}: {error}", path.display()));
}

/// A free TCP port on [`HOST`] right now; another process may take it before the server does.
fn free_port() -> u16 {
    let listener = TcpListener::bind((HOST, 0)).expect("binding a free port");
    listener.local_addr().expect("the bound address").port()
}

/// 32 random hexadecimal digits from `/dev/urandom`.
fn random_password() -> String {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `name` as a double-quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs psql `command` with `sql` on its standard input, and returns its standard output, or
/// its standard error when it fails.
fn psql_output(mut command: Command, sql: &str) -> Result<String, String> {
    command
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    let mut stdin = child.stdin.take().expect("psql's standard input");
    // Write from another thread so that a large result cannot block psql while we write.
    let output = thread::scope(|scope| {
        scope.spawn(move || {
            // psql may exit before reading everything (ON_ERROR_STOP); its error is reported.
            let _ = stdin.write_all(sql.as_bytes());
        });
        child.wait_with_output()
    })
    .map_err(|error| format!("psql: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
