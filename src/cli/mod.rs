//! Subcommands: each parses its arguments, calls the library, renders, and returns an exit
//! code. No business logic lives here.

pub mod adopt;
pub mod apply;
pub mod plan;
pub mod validate;

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
