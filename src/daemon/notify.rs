//! systemd's `sd_notify` protocol as an [`Observer`], without libsystemd.
//!
//! Under `Type=notify`, systemd passes a Unix datagram socket in `$NOTIFY_SOCKET` (a path, or
//! an abstract socket name starting with `@`) and, with `WatchdogSec=`, the watchdog interval
//! in `$WATCHDOG_USEC` (for the process in `$WATCHDOG_PID`, when set). Each message is one
//! datagram of newline-separated `KEY=value` assignments. [`Notifier`] sends:
//!
//! - `READY=1` once, after the first load of a commit (or the first reconcile, whichever
//!   comes first), so `systemctl start` returns when the daemon has a desired state;
//! - `WATCHDOG=1` on the loop's ticks, at most once per half of the watchdog interval, so a
//!   stalled loop gets the service restarted;
//! - `STATUS=` lines that `systemctl status` shows, such as
//!   `commit abc1234: 2 regions converged`;
//! - `STOPPING=1` when the loop stops.
//!
//! The socket is non-blocking: a full socket buffer drops a message rather than stall the
//! loop, and send errors are logged, never returned to the loop.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::observer::{Fetched, Loaded, Observer, Reconciled};
use super::status::{redact_userinfo, region_views, short_sha, summary_line};

/// The longest `STATUS=` text sent; longer texts are cut.
const MAX_STATUS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot create a socket for $NOTIFY_SOCKET: {0}")]
    Socket(#[source] io::Error),
    #[error("$NOTIFY_SOCKET `{path}` is not a usable socket address: {source}")]
    Address { path: String, source: io::Error },
    #[error("$WATCHDOG_USEC `{0}` is not a number of microseconds")]
    Watchdog(String),
    #[error("cannot send to $NOTIFY_SOCKET: {0}")]
    Send(#[source] io::Error),
}

/// Sends systemd notifications; an [`Observer`].
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// Half of the watchdog interval, when the watchdog is on.
    ping_every: Option<Duration>,
    last_ping: Mutex<Option<SystemTime>>,
    ready: AtomicBool,
}

/// The socket's address: a path, or an abstract name after `@`.
fn address(path: &str) -> Result<SocketAddr, NotifyError> {
    let bad = |source| NotifyError::Address {
        path: path.to_string(),
        source,
    };
    match path.strip_prefix('@') {
        Some(name) => abstract_address(name.as_bytes()).map_err(bad),
        None if path.starts_with('/') => SocketAddr::from_pathname(path).map_err(bad),
        None => Err(bad(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract name (`@…`)",
        ))),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

/// One line of `STATUS=`: no newline (it would start another assignment), and short.
fn status_text(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() > MAX_STATUS {
        line = line.chars().take(MAX_STATUS - 1).collect();
        line.push('…');
    }
    line
}

impl Notifier {
    /// A notifier for the environment systemd sets, or `None` when `$NOTIFY_SOCKET` is not
    /// set (not started by systemd, or not `Type=notify`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET"),
            std::env::var("WATCHDOG_USEC").ok(),
            std::env::var("WATCHDOG_PID").ok(),
            std::process::id(),
        )
    }

    /// [`Notifier::from_env`] with the variables passed in. The watchdog is on when
    /// `watchdog_usec` is set and `watchdog_pid`, if set, is `pid`.
    pub fn from_vars(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<String>,
        watchdog_pid: Option<String>,
        pid: u32,
    ) -> Result<Option<Notifier>, NotifyError> {
        let Some(socket) = notify_socket.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let socket = socket.to_string_lossy().into_owned();
        let ours = pid_matches(watchdog_pid.as_deref(), pid);
        let watchdog = match watchdog_usec.filter(|_| ours) {
            None => None,
            Some(usec) => {
                let n: u64 = usec
                    .trim()
                    .parse()
                    .map_err(|_| NotifyError::Watchdog(usec.clone()))?;
                (n > 0).then(|| Duration::from_micros(n))
            }
        };
        Notifier::new(&socket, watchdog).map(Some)
    }

    /// A notifier sending to `socket` (a path or `@name`), pinging a watchdog of interval
    /// `watchdog` when given.
    pub fn new(socket: &str, watchdog: Option<Duration>) -> Result<Notifier, NotifyError> {
        let addr = address(socket)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Notifier {
            socket,
            addr,
            ping_every: watchdog.map(|w| w / 2),
            last_ping: Mutex::new(None),
            ready: AtomicBool::new(false),
        })
    }

    /// Sends one message (newline-separated assignments).
    pub fn send(&self, message: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.addr)
            .map(|_| ())
            .map_err(NotifyError::Send)
    }

    /// Sends, logging a failure instead of returning it: the loop never waits on systemd.
    fn notify(&self, message: &str) {
        if let Err(e) = self.send(message) {
            tracing::warn!(error = %e, "systemd notification not sent.");
        }
    }

    fn status(&self, text: &str) {
        self.notify(&format!("STATUS={}", status_text(text)));
    }

    /// `READY=1` the first time, with a status line.
    fn ready_once(&self, text: &str) {
        if !self.ready.swap(true, Ordering::SeqCst) {
            self.notify(&format!("READY=1\nSTATUS={}", status_text(text)));
        } else {
            self.status(text);
        }
    }
}

/// Whether `$WATCHDOG_PID`, when set, names this process.
fn pid_matches(watchdog_pid: Option<&str>, pid: u32) -> bool {
    watchdog_pid.map_or(true, |p| p.trim().parse::<u32>() == Ok(pid))
}

/// Whether the watchdog is due: never pinged, `every` elapsed, or the clock went back.
fn watchdog_due(last: Option<SystemTime>, now: SystemTime, every: Duration) -> bool {
    last.map_or(true, |last| {
        now.duration_since(last).map_or(true, |d| d >= every)
    })
}

impl Observer for Notifier {
    fn tick(&self, now: SystemTime) {
        let Some(every) = self.ping_every else {
            return;
        };
        let mut last = self.last_ping.lock().unwrap_or_else(|e| e.into_inner());
        // A clock stepped backwards counts as time elapsed: better a ping too many.
        if watchdog_due(*last, now, every) {
            *last = Some(now);
            drop(last);
            self.notify("WATCHDOG=1");
        }
    }

    fn fetched(&self, _now: SystemTime, fetched: &Fetched) {
        match fetched {
            Fetched::Commit { .. } => {}
            Fetched::Failed { message } => {
                self.status(&format!("fetch failed: {}", redact_userinfo(message)))
            }
            Fetched::Rewound { from, to } => self.status(&format!(
                "branch rewound from {} to {}: refused",
                short_sha(from),
                short_sha(to)
            )),
        }
    }

    fn loaded(&self, _now: SystemTime, loaded: &Loaded) {
        match loaded {
            Loaded::Valid { sha } => {
                self.ready_once(&format!("commit {} loaded", short_sha(sha)));
            }
            Loaded::Invalid { sha, problems } => self.ready_once(&format!(
                "commit {} invalid ({} problem(s)), not applied",
                short_sha(sha),
                problems.len()
            )),
        }
    }

    fn reconciled(&self, run: &Reconciled<'_>) {
        let text = match run.outcome {
            Ok(outcome) => summary_line(run.commit, &region_views(outcome)),
            Err(message) => format!(
                "commit {}: reconcile could not start: {message}",
                short_sha(run.commit)
            ),
        };
        self.ready_once(&text);
    }

    fn reloaded(&self, result: Result<(), &str>) {
        match result {
            Ok(()) => self.status("configuration reloaded"),
            Err(message) => self.status(&format!("configuration reload refused: {message}")),
        }
    }

    fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping");
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
