//! Subcommands: each parses its arguments, calls the library, renders, and returns an exit
//! code. No business logic lives here.

pub mod adopt;
pub mod apply;
pub mod daemon;
pub mod plan;
pub mod validate;
pub mod vault;

use std::path::Path;

use neo_reconcile::desired::Desired;
use neo_reconcile::engine::{self, EngineError};

/// Loads the desired state; when invalid, prints every diagnostic to standard error first.
pub fn load_desired_or_report(dir: &Path) -> anyhow::Result<Desired> {
    match engine::load_desired(dir) {
        Ok(d) => Ok(d),
        Err(e) => {
            if let EngineError::Invalid { diagnostics, .. } = &e {
                for d in diagnostics {
                    eprintln!("{d}");
                }
            }
            Err(e.into())
        }
    }
}

/// The async runtime of the subcommands that talk to databases.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Triggers `shutdown` on Ctrl-C (SIGINT) or SIGTERM, so that an apply stops starting new
/// work, finishes or rolls back what is running, and releases its locks. Call it inside the
/// runtime.
pub fn stop_on_signal(trigger: neo_reconcile::shutdown::Trigger) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot listen for SIGTERM.");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::warn!(
            "Asked to stop: no new tenant starts; running transactions finish, locks are released."
        );
        trigger.trigger();
    });
}

/// Runs `work` until it ends or Ctrl-C/SIGTERM arrives (then drops it: for work whose
/// interrupted transactions the server rolls back). `None` when interrupted. Call it inside
/// the runtime; the caller still ends the run (revokes its leases) on both paths.
pub async fn until_signal<F: std::future::Future>(work: F) -> Option<F::Output> {
    let (trigger, shutdown) = neo_reconcile::shutdown::Shutdown::new();
    stop_on_signal(trigger);
    tokio::select! {
        out = work => Some(out),
        _ = shutdown.requested() => None,
    }
}
