//! The daemon's loop: one task that waits for the next event of a closed set, handles it,
//! and tells the [`Observer`] what happened.
//!
//! Events: the poll timer, a change under a local source (debounced), the resync schedule, a
//! maintenance window opening or closing, a retry after a transient failure, a reload
//! (SIGHUP), and shutdown. A reconcile loads the commit's tree (an invalid one is reported
//! and skipped: the last good commit stays), resolves the regions' logins with
//! [`db::resolve`] as the CLI does, and calls [`reconcile::once`]: in `Mode::Apply` for the
//! regions whose window is open when `auto_apply` is on, in `Mode::Plan` for the others.
//! Each reconcile runs in a tracing span that carries the commit, so every log line of it
//! names the commit; the commit also goes into the run rows through [`RunContext`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::Instrument;

use super::clock::Clock;
use super::config::Config;
use super::observer::{Fetched, Loaded, Observer, Reconciled, Trigger};
use super::schedule::{self, Ended, Jitter, Timers, Wake};
use super::source::{Fetch, Source, SourceError};
use crate::apply::RunContext;
use crate::db;
use crate::desired::{self, Desired, Severity};
use crate::plan::render::{self, TextOptions};
use crate::plan::Plan;
use crate::reconcile::{self, Approval, Mode, RunOutcome, Selection};
use crate::shutdown::Shutdown;
use crate::sources::credentials::Credentials;
use crate::sources::vault::keeper::Expiries;
use crate::sources::vault::Vault;

/// How long a local source must be quiet after a change before the loop fetches.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// What the loop is given besides its configuration: the clock, the credential source, the
/// reload requests and the seed of its jitter.
pub struct Inputs {
    pub clock: Clock,
    /// Where the regions' logins come from (the CLI's `Sources`: environment and Vault).
    pub credentials: Arc<dyn Credentials>,
    /// Vault, when configured: the leases of each reconcile are revoked when it ends.
    pub vault: Option<Arc<Vault>>,
    /// The daemon-long keeper's view of the client token's end, for the TTL metrics.
    pub vault_token: Option<Expiries>,
    /// New configurations (or why one could not be read), from SIGHUP.
    pub reload: mpsc::UnboundedReceiver<Result<Config, String>>,
    pub seed: u64,
}

/// Why the loop could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Hands the heap memory that an event's work freed back to the system. glibc's allocator
/// keeps freed memory in its arenas (one per thread that allocated, git2's fetch on a blocking
/// thread included) for reuse, which a daemon idle for a minute between polls would otherwise
/// hold as resident memory; `malloc_trim` returns the free pages of every arena.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only walks the allocator's own arenas under their locks; it has no
    // preconditions and does not touch memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The events the loop handles.
#[derive(Debug)]
enum Event {
    Timer(Wake),
    SourceChanged,
    Reload(Box<Result<Config, String>>),
    Shutdown,
}

/// The last commit whose tree was valid: what the daemon reconciles.
struct Good {
    sha: String,
    desired: Desired,
}

/// Runs the loop until `shutdown` resolves; then starts nothing new, lets a running reconcile
/// stop at its next safe point, and returns.
pub async fn run_with(
    config: Config,
    observer: Arc<dyn Observer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    inputs: Inputs,
) -> Result<(), DaemonError> {
    let (trigger, stop) = Shutdown::new();
    tokio::spawn(async move {
        shutdown.await;
        trigger.trigger();
    });
    let source = open_source(&config).await?;
    let mut daemon = Daemon {
        timers: Timers {
            poll: inputs.clock.now(),
            retry: None,
            resync: None,
            window: None,
        },
        jitter: Jitter::new(inputs.seed),
        changes: None,
        config,
        observer,
        inputs,
        stop,
        source: Some(source),
        good: None,
        attempt: 0,
        fetch_failures: 0,
    };
    daemon.watch_source();
    daemon.main().await;
    Ok(())
}

async fn open_source(config: &Config) -> Result<Source, SourceError> {
    let source_config = config.source.clone();
    blocking(move || Source::open(&source_config)).await
}

/// Runs blocking work (git, the file system) on tokio's blocking threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking task of the daemon panicked")
}

struct Daemon {
    config: Config,
    observer: Arc<dyn Observer>,
    inputs: Inputs,
    stop: Shutdown,
    /// Taken while a blocking task uses it.
    source: Option<Source>,
    good: Option<Good>,
    /// Consecutive reconciles that ended with a transient failure.
    attempt: u32,
    fetch_failures: u32,
    timers: Timers,
    jitter: Jitter,
    /// Changes under a local source: the watcher and its events.
    changes: Option<(notify::RecommendedWatcher, mpsc::UnboundedReceiver<()>)>,
}

impl Daemon {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inputs.clock.now()
    }

    fn wall(&self) -> SystemTime {
        self.now().into()
    }

    /// Reports the time left on the client token and, during a reconcile, on its leases
    /// (between reconciles the daemon holds no lease: each reconcile revokes its own).
    pub(super) fn report_vault(&self, leases: Option<&Expiries>) {
        let Some(token) = &self.inputs.vault_token else {
            return;
        };
        let leases = leases.map(|l| l.ttls().leases).unwrap_or_default();
        self.observer.vault_ttls(token.ttls().token, &leases);
    }

    async fn main(&mut self) {
        self.poll(Trigger::Start, true).await;
        release_freed_memory();
        loop {
            if self.stop.is_requested() {
                break;
            }
            let (at, why) = self.timers.earliest();
            self.observer.next_wakeup(at.into(), wake_text(why));
            let event = self.next_event(at, why).await;
            self.observer.tick(self.wall());
            self.report_vault(None);
            tracing::debug!(event = ?event, "Event.");
            match event {
                Event::Shutdown => break,
                Event::Timer(Wake::Poll) | Event::SourceChanged => {
                    self.poll(Trigger::NewCommit, false).await
                }
                Event::Timer(Wake::Retry) => self.poll(Trigger::Retry, true).await,
                Event::Timer(Wake::Resync) => self.reconcile(Trigger::Resync).await,
                Event::Timer(Wake::Window) => self.reconcile(Trigger::WindowOpened).await,
                Event::Reload(result) => self.reload(*result).await,
            }
            release_freed_memory();
        }
        tracing::info!("Stopping: nothing new starts.");
        self.observer.stopping();
    }

    async fn next_event(&mut self, at: chrono::DateTime<chrono::Utc>, why: Wake) -> Event {
        let stop = self.stop.clone();
        let clock = self.inputs.clock.clone();
        let changes = self.changes.as_mut().map(|(_, rx)| rx);
        tokio::select! {
            biased;
            _ = stop.requested() => Event::Shutdown,
            Some(r) = self.inputs.reload.recv() => Event::Reload(Box::new(r)),
            Some(()) = next_change(changes) => Event::SourceChanged,
            _ = clock.sleep_until(at) => Event::Timer(why),
        }
    }

    /// Watches a local source for changes (new commits written by another tool).
    fn watch_source(&mut self) {
        use notify::{EventKind, RecursiveMode, Watcher};
        self.changes = None;
        let Some(dir) = self.source.as_ref().and_then(Source::watch_dir) else {
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            if let Ok(e) = e {
                if matches!(
                    e.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) {
                    let _ = tx.send(());
                }
            }
        });
        match watcher.and_then(|mut w| w.watch(&dir, RecursiveMode::Recursive).map(|_| w)) {
            Ok(w) => self.changes = Some((w, rx)),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "Cannot watch the local source; polling only.")
            }
        }
    }

    /// Fetches the source; reconciles a new valid commit, or the last good one when `always`.
    async fn poll(&mut self, trigger: Trigger, always: bool) {
        let mut source = self.source.take().expect("the source is home");
        let (source, fetched) = blocking(move || {
            let r = source.fetch();
            (source, r)
        })
        .await;
        self.source = Some(source);
        let now = self.wall();
        let poll_every = self.config.source.poll_interval;
        let next_poll = match &fetched {
            Ok(_) => {
                self.fetch_failures = 0;
                schedule::poll_delay(poll_every, self.jitter.next_fraction())
            }
            Err(_) => {
                self.fetch_failures += 1;
                schedule::backoff(self.fetch_failures, self.jitter.next_fraction()).min(poll_every)
            }
        };
        self.timers.poll = self.now() + chrono::Duration::from_std(next_poll).expect("sane");
        let candidate = match fetched {
            Ok(Fetch::New(sha)) => {
                self.observer.fetched(
                    now,
                    &Fetched::Commit {
                        sha: sha.clone(),
                        new: true,
                    },
                );
                Some(sha)
            }
            Ok(Fetch::Same(sha)) => {
                self.observer.fetched(
                    now,
                    &Fetched::Commit {
                        sha: sha.clone(),
                        new: false,
                    },
                );
                // After a start or reload nothing is loaded yet: load the tip.
                self.good.is_none().then_some(sha)
            }
            Ok(Fetch::Rewound { from, to }) => {
                tracing::error!(from = %from, to = %to, "The branch moved backwards or sideways (force-push?); refused: set allow_rewind = true to follow it.");
                self.observer.fetched(
                    now,
                    &Fetched::Rewound {
                        from: from.clone(),
                        to,
                    },
                );
                self.good.is_none().then_some(from)
            }
            Err(e) => {
                tracing::warn!(error = %e, failures = self.fetch_failures, "Cannot fetch the source; keeping the last good commit.");
                self.observer.fetched(
                    now,
                    &Fetched::Failed {
                        message: e.to_string(),
                    },
                );
                None
            }
        };
        let loaded = match candidate {
            Some(sha) => self.load(sha).await,
            None => false,
        };
        if loaded {
            let trigger = if trigger == Trigger::Retry {
                Trigger::NewCommit
            } else {
                trigger
            };
            self.reconcile(trigger).await;
        } else if always {
            self.reconcile(trigger).await;
        }
    }

    /// Checks out and loads `sha`; `true` when it is valid and is now the good commit.
    async fn load(&mut self, sha: String) -> bool {
        let source = self.source.take().expect("the source is home");
        let at = sha.clone();
        let (source, result) = blocking(move || {
            let r = source
                .checkout(&at)
                .map(|root| (root.clone(), desired::load(&root)));
            (source, r)
        })
        .await;
        self.source = Some(source);
        let now = self.wall();
        let (root, loaded) = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(commit = %sha, error = %e, "Cannot check out the commit; keeping the last good one.");
                let problems = vec![e.to_string()];
                self.observer
                    .loaded(now, &Loaded::Invalid { sha, problems });
                return false;
            }
        };
        for w in loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
        {
            tracing::warn!(commit = %sha, file = %w.file, line = w.line, field = %w.field, "{}", w.message);
        }
        let Some(desired) = loaded.desired else {
            let problems: Vec<String> = loaded
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(ToString::to_string)
                .collect();
            tracing::error!(commit = %sha, errors = problems.len(), problems = %problems.join("\n"), "The commit's desired state is invalid; not applied. Still reconciling the last good commit.");
            self.observer
                .loaded(now, &Loaded::Invalid { sha, problems });
            self.prune();
            return false;
        };
        tracing::info!(commit = %sha, root = %root.display(), "Loaded a new commit.");
        self.observer
            .loaded(now, &Loaded::Valid { sha: sha.clone() });
        self.good = Some(Good { sha, desired });
        self.attempt = 0;
        self.prune();
        true
    }

    /// Removes the checkouts of every commit but the good one.
    fn prune(&self) {
        let keep: Vec<&str> = self.good.iter().map(|g| g.sha.as_str()).collect();
        if let Some(s) = &self.source {
            s.prune(&keep);
        }
    }

    async fn reload(&mut self, result: Result<Config, String>) {
        match result {
            Err(why) => {
                tracing::error!(error = %why, "The new configuration is invalid; keeping the old one.");
                self.observer.reloaded(Err(&why));
            }
            Ok(config) => {
                if config.source != self.config.source {
                    match open_source(&config).await {
                        Ok(s) => {
                            self.source = Some(s);
                            self.good = None;
                        }
                        Err(e) => {
                            let why = e.to_string();
                            tracing::error!(error = %why, "The new source cannot be used; keeping the old configuration.");
                            self.observer.reloaded(Err(&why));
                            return;
                        }
                    }
                }
                if config.vault != self.config.vault {
                    tracing::warn!(
                        "[vault] changed: the new settings take effect at the next restart."
                    );
                }
                tracing::info!(file = %config.file.display(), "Configuration reloaded.");
                self.config = config;
                self.observer.reloaded(Ok(()));
                self.watch_source();
                self.poll(Trigger::Start, true).await;
            }
        }
    }
}

/// The next change under a local source, after it has been quiet for [`DEBOUNCE`]; never,
/// without a local source.
async fn next_change(changes: Option<&mut mpsc::UnboundedReceiver<()>>) -> Option<()> {
    let Some(rx) = changes else {
        return std::future::pending().await;
    };
    rx.recv().await?;
    loop {
        tokio::time::sleep(DEBOUNCE).await;
        let mut more = false;
        while rx.try_recv().is_ok() {
            more = true;
        }
        if !more {
            return Some(());
        }
    }
}

fn wake_text(why: Wake) -> &'static str {
    match why {
        Wake::Poll => "poll the source",
        Wake::Retry => "retry after a transient failure",
        Wake::Resync => "resync (drift)",
        Wake::Window => "a maintenance window opens or closes",
    }
}

#[path = "run_reconcile.rs"]
mod run_reconcile;
