//! `neo-reconcile daemon`: the GitOps loop that runs for months on bastion hosts.
//!
//! The loop (see ARCHITECTURE.md) fetches the source, loads and validates the desired state,
//! and calls [`crate::reconcile::once`], the same entry point as the CLI; it never plans or
//! applies by itself. What it does is reported through one [`observer::Observer`], which the
//! HTTP endpoints, the metrics and systemd's notifications are built on.
//!
//! - [`config`]: the configuration file, validated with file:line:column diagnostics.
//! - [`schedule`]: the pure decisions (windows, resync, poll jitter, backoff, next wake-up).
//! - [`source`]: the git source (cache, fetch, rewind check, clean checkouts).
//! - [`clock`]: the injected clock.
//! - [`run`]: the loop itself; [`run()`] here wires it to signals and Vault.

pub mod clock;
pub mod config;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod observer;
pub mod ops;
pub mod run;
pub mod schedule;
pub mod source;
pub mod status;
#[cfg(test)]
mod testing;

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use crate::sources::credentials::Sources;
use crate::sources::vault::keeper::LeaseKeeper;
use crate::sources::vault::Vault;

/// Runs the daemon with the system clock until `shutdown` resolves: SIGHUP reloads the
/// configuration from its file (a bad one is refused and the old one kept), the regions'
/// logins come from the environment and Vault (as for the CLI), and the leases taken are
/// revoked after each reconcile.
pub async fn run(
    config: config::Config,
    observer: Arc<dyn observer::Observer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), run::DaemonError> {
    let (tx, reload) = tokio::sync::mpsc::unbounded_channel();
    let file = config.file.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGHUP; reloads are not possible.");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!(file = %file.display(), "SIGHUP: reloading the configuration.");
            let loaded = config::load(&file).map_err(|e| e.to_string());
            if tx.send(loaded).is_err() {
                return;
            }
        }
    });
    let vault = match &config.vault {
        None => None,
        Some(v) => Some(Vault::connect(v).await.map(Arc::new)),
    };
    if let Some(Err(e)) = &vault {
        tracing::error!(error = %e, "Cannot log in to Vault; regions reading it fail until a restart.");
    }
    let sources = match vault.clone() {
        None => Sources::default(),
        Some(v) => Sources::with_vault(v),
    };
    let vault = vault.and_then(Result::ok);
    // The client token lives as long as the daemon: a keeper with no region renews it (or
    // logs in again with AppRole) also while the loop is idle between reconciles, each of
    // which keeps its own leases.
    let token_keeper = vault.as_ref().map(|v| {
        let none = Arc::new(crate::db::Connectors::default());
        LeaseKeeper::start(v.clone(), none, &[])
    });
    let inputs = run::Inputs {
        clock: clock::Clock::System,
        credentials: Arc::new(sources),
        vault_token: token_keeper.as_ref().map(LeaseKeeper::expiries),
        vault,
        reload,
        seed: random_seed(),
    };
    let result = run::run_with(config, observer, shutdown, inputs).await;
    if let Some(keeper) = token_keeper {
        for (region, reason) in keeper.finish().await {
            tracing::warn!(region = %region, reason = %reason, "Cannot revoke a dynamic login's lease; it ends at its TTL.");
        }
    }
    result
}

/// A seed from the standard library's per-process random keys.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}
