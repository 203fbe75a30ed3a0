//! Everything that reports on the daemon, assembled: the status, the metrics and systemd's
//! notifications as one [`Fanout`] observer for the loop, and an [`Ops`] handle that serves
//! them over HTTP.
//!
//! The daemon command calls [`observers`] once at start, hands the [`Fanout`] to its loop,
//! and runs [`Ops::serve`] beside it with the same shutdown signal:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, SystemTime};
//! use neo_reconcile::daemon::{ops, status};
//!
//! let (observer, ops) = ops::observers(SystemTime::now(), status::system_clock());
//! let listen = "127.0.0.1:9187".parse()?;
//! let server = ops.serve(listen, Duration::from_secs(180), async { /* shutdown */ }).await?;
//! tokio::spawn(server);
//! // ... the loop reports through `observer` ...
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::http::{self, HttpError, HttpState};
use super::metrics::{MetricsHandle, MetricsObserver};
use super::notify::Notifier;
use super::observer::{Fanout, Observer};
use super::status::{Clock, StatusHandle, StatusObserver};

/// What serves the reports the observers keep.
#[derive(Clone)]
pub struct Ops {
    pub status: StatusHandle,
    pub metrics: MetricsHandle,
    clock: Clock,
    /// Whether systemd's notifications are on (`$NOTIFY_SOCKET` was set and usable).
    pub notifying: bool,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("notifying", &self.notifying)
            .finish_non_exhaustive()
    }
}

/// A sensible `/healthz` threshold for a loop that wakes at least every `poll_interval`:
/// three missed polls, and never under a minute.
pub fn alive_threshold(poll_interval: Duration) -> Duration {
    (poll_interval * 3).max(Duration::from_secs(60))
}

/// The status, the metrics and (when systemd started the daemon with `Type=notify`) the
/// notifier, as one observer for the loop, with the handle that serves them. `started` is the
/// daemon's start; `clock` tells the time when `/healthz`, `/status` and the staleness gauge
/// are read. A `$NOTIFY_SOCKET` that cannot be used is logged and left out: the daemon runs
/// without notifications rather than not at all (systemd then reports the start as timed out).
pub fn observers(started: SystemTime, clock: Clock) -> (Fanout, Ops) {
    let notifier = match Notifier::from_env() {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "systemd notifications are off.");
            None
        }
    };
    with_notifier(started, clock, notifier)
}

/// [`observers`] with the notifier given (tests, or a caller that built its own).
pub fn with_notifier(
    started: SystemTime,
    clock: Clock,
    notifier: Option<Notifier>,
) -> (Fanout, Ops) {
    let status = StatusObserver::new(started);
    let (metrics, metrics_handle) = MetricsObserver::new(started, clock.clone());
    let ops = Ops {
        status: status.handle(),
        metrics: metrics_handle,
        clock,
        notifying: notifier.is_some(),
    };
    let mut all: Vec<Box<dyn Observer>> = vec![Box::new(status), Box::new(metrics)];
    // systemd hears last, so `/status` already shows what `STATUS=` announces.
    if let Some(n) = notifier {
        all.push(Box::new(n));
    }
    (Fanout(all), ops)
}

impl Ops {
    /// What the HTTP endpoints read, with `/healthz` failing after `alive_within` without a
    /// tick.
    pub fn http_state(&self, alive_within: Duration) -> HttpState {
        HttpState {
            status: self.status.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
            alive_within,
        }
    }

    /// Binds `listen` now (so a taken port fails the start) and returns the server, to spawn
    /// or await; it stops when `shutdown` completes.
    pub async fn serve(
        &self,
        listen: SocketAddr,
        alive_within: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<impl Future<Output = ()> + Send + 'static, HttpError> {
        let listener = http::bind(listen).await?;
        let bound = listener.local_addr().unwrap_or(listen);
        tracing::info!(listen = %bound, "Serving /healthz, /readyz, /metrics and /status.");
        let state = self.http_state(alive_within);
        Ok(http::serve(listener, state, shutdown))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::daemon::observer::Loaded;
    use crate::daemon::testing::at;

    #[test]
    fn one_fanout_feeds_status_metrics_and_systemd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let systemd = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str().unwrap(), None).unwrap();
        let (observer, ops) = with_notifier(at(0), Arc::new(|| at(5)), Some(notifier));
        assert!(ops.notifying);
        observer.loaded(
            at(1),
            &Loaded::Valid {
                sha: "abc1234def".into(),
            },
        );
        let doc = ops.status.render(at(5));
        assert_eq!(doc.source.last_good_commit.as_deref(), Some("abc1234def"));
        assert!(ops
            .metrics
            .prometheus_text()
            .contains("neo_reconcile_commit_info{commit=\"abc1234def\"} 1"));
        let mut buf = [0u8; 256];
        let n = systemd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=commit abc1234 loaded");
    }

    #[tokio::test]
    async fn serve_binds_before_it_runs() {
        let (_, ops) = with_notifier(at(0), Arc::new(|| at(0)), None);
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let result = ops.serve(addr, Duration::from_secs(60), async {}).await;
        assert!(matches!(result, Err(HttpError::Bind { .. })));
        let server = ops
            .serve(
                "127.0.0.1:0".parse().unwrap(),
                Duration::from_secs(60),
                async {},
            )
            .await
            .unwrap();
        // An already-completed shutdown stops it at once.
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap();
    }

    #[test]
    fn alive_threshold_is_three_polls_or_a_minute() {
        assert_eq!(
            alive_threshold(Duration::from_secs(60)),
            Duration::from_secs(180)
        );
        assert_eq!(
            alive_threshold(Duration::from_secs(5)),
            Duration::from_secs(60)
        );
    }
}
