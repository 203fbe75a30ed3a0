//! What both benches share: running processes under a small measuring wrapper (wall time,
//! peak RSS and CPU time from `wait4`), the result table, number formatting, the settings
//! from the environment, psql, and cleaning up the cluster template.
//!
//! Included by `benches/plan.rs` and `benches/apply.rs` with `#[path]`; each bench uses a
//! part of it.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process to measure: the program, its arguments, extra environment variables, and the
/// files its standard output and error go to.
pub struct Proc {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// What [`measure`] measured.
pub struct Measured {
    /// From the first spawn to the last exit.
    pub wall: Duration,
    /// The largest peak RSS of the processes, in KiB.
    pub max_rss_kib: u64,
    /// The CPU time (user + system) of all the processes together.
    pub cpu: Duration,
    /// Each process's exit code (-1 when killed by a signal).
    pub codes: Vec<i32>,
}

/// The first argument that makes this bench binary a measuring wrapper (see [`wrapper`]).
pub const WRAP_FLAG: &str = "--neo-bench-measure";

/// Runs the processes at once and measures them, through a fresh copy of this binary.
///
/// Why a wrapper: Linux accounts a child's `ru_maxrss` from the moment it is forked, and at
/// `exec` keeps the high-water mark of the address space it leaves, which for a child of this
/// bench is the bench's own (in the plan bench, large after loading 10,000 tenants in
/// process). A child of the small wrapper starts from the wrapper's few MiB instead, so
/// `wait4` in the wrapper reports the measured program's own peak (with the wrapper's size,
/// about 3.5 MiB, as a floor).
pub fn measure(work: &Path, procs: &[Proc]) -> Measured {
    let spec = serde_json::Value::Array(
        procs
            .iter()
            .map(|p| {
                serde_json::json!({
                    "program": p.program,
                    "args": p.args,
                    "env": p.env,
                    "stdout": p.stdout,
                    "stderr": p.stderr,
                })
            })
            .collect(),
    );
    let spec_path = work.join("measure-spec.json");
    let result_path = work.join("measure-result.json");
    fs::write(&spec_path, spec.to_string()).expect("writing the measure spec");
    let status = Command::new(std::env::current_exe().expect("this bench's path"))
        .arg(WRAP_FLAG)
        .arg(&spec_path)
        .arg(&result_path)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .status()
        .expect("starting the measuring wrapper");
    assert!(status.success(), "the measuring wrapper failed: {status}");
    let result: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&result_path).expect("the wrapper's result"))
            .expect("the wrapper writes JSON");
    Measured {
        wall: Duration::from_nanos(result["wall_ns"].as_u64().unwrap()),
        max_rss_kib: result["max_rss_kib"].as_u64().unwrap(),
        cpu: Duration::from_nanos(result["cpu_ns"].as_u64().unwrap()),
        codes: result["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_i64().unwrap() as i32)
            .collect(),
    }
}

/// The wrapper's side of [`measure`]: starts every process of the spec at once, waits for
/// each with `wait4` (which gives that process's own resource usage; `ru_maxrss` is in KiB on
/// Linux), and writes the wall time from the first start to the last exit, the largest peak
/// RSS, the CPU time of all of them and the exit codes to `result`.
pub fn wrapper(spec: &str, result: &str) {
    let spec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(spec).expect("the measure spec"))
            .expect("the spec is JSON");
    let text = |v: &serde_json::Value| v.as_str().expect("a string").to_string();
    let mut commands: Vec<Command> = spec
        .as_array()
        .expect("a list of processes")
        .iter()
        .map(|p| {
            let mut command = Command::new(text(&p["program"]));
            command
                .args(p["args"].as_array().unwrap().iter().map(text))
                .stdin(Stdio::null())
                .stdout(File::create(text(&p["stdout"])).expect("the stdout file"))
                .stderr(File::create(text(&p["stderr"])).expect("the stderr file"));
            for pair in p["env"].as_array().unwrap() {
                command.env(text(&pair[0]), text(&pair[1]));
            }
            command
        })
        .collect();
    let start = Instant::now();
    let children: Vec<_> = commands
        .iter_mut()
        .map(|c| {
            c.spawn()
                .unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"))
        })
        .collect();
    let mut max_rss_kib = 0;
    let mut cpu = Duration::ZERO;
    let mut codes = Vec::new();
    for child in children {
        let mut status = 0;
        // SAFETY: `rusage` is plain data that wait4 fills in for the child started above.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = child.id() as libc::pid_t;
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
        // The child is reaped; dropping its handle neither waits nor kills.
        drop(child);
        max_rss_kib = max_rss_kib.max(usage.ru_maxrss as u64);
        for time in [usage.ru_utime, usage.ru_stime] {
            cpu += Duration::from_secs(time.tv_sec as u64)
                + Duration::from_micros(time.tv_usec as u64);
        }
        codes.push(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        });
    }
    let wall = start.elapsed();
    fs::write(
        result,
        serde_json::json!({
            "wall_ns": wall.as_nanos() as u64,
            "max_rss_kib": max_rss_kib,
            "cpu_ns": cpu.as_nanos() as u64,
            "codes": codes,
        })
        .to_string(),
    )
    .expect("writing the result");
}

/// The result table: one row per measurement.
#[derive(Default)]
pub struct Table {
    pub rows: Vec<[String; 8]>,
}

impl Table {
    /// Adds a row: the label, the samples' median, min and max, the peak RSS and the median
    /// CPU time of the processes (when measured) and the ratio of the median to `baseline`
    /// (when there is one).
    pub fn row(
        &mut self,
        label: &str,
        walls: &[Duration],
        rss_kib: Option<u64>,
        cpu: Option<Duration>,
        baseline: Option<Duration>,
    ) {
        let min = walls.iter().min().copied().unwrap_or_default();
        let max = walls.iter().max().copied().unwrap_or_default();
        let med = median(walls);
        self.rows.push([
            label.to_string(),
            walls.len().to_string(),
            ms(med),
            ms(min),
            ms(max),
            rss_kib.map_or("-".into(), mib),
            cpu.map_or("-".into(), ms),
            baseline.map_or("-".into(), |b| {
                format!("{:.2}x", med.as_secs_f64() / b.as_secs_f64())
            }),
        ]);
    }

    pub fn render(&self) -> String {
        let header = [
            "measurement",
            "n",
            "median",
            "min",
            "max",
            "peak RSS",
            "CPU",
            "vs baseline",
        ];
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::from("|");
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i == 0 {
                    let _ = write!(out, " {cell:<w$} |");
                } else {
                    let _ = write!(out, " {cell:>w$} |");
                }
            }
            out.push('\n');
            out
        };
        let mut out = line(&header.map(String::from));
        out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}

pub fn median(walls: &[Duration]) -> Duration {
    let mut sorted = walls.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// A duration for the table: milliseconds below 10 s, seconds above.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The psql client, from the same place the cluster harness takes the server from.
pub fn psql_path() -> PathBuf {
    let bin = std::env::var_os("NEO_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    [bin.join("psql"), PathBuf::from("/usr/bin/psql")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

/// 32 random hexadecimal digits.
pub fn random_password() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes the cluster template when dropped (see [`remove_template_leftovers`]).
pub struct TemplateCleanup;

impl Drop for TemplateCleanup {
    fn drop(&mut self) {
        remove_template_leftovers();
    }
}

/// Removes the cluster template this process made. The harness keeps it in a static, which
/// is never dropped, so without this it would stay until the next test process sweeps it.
pub fn remove_template_leftovers() {
    let prefix = format!("neo-pg-{}-template-", std::process::id());
    for dir in [std::env::temp_dir(), PathBuf::from("/tmp")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}
