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
