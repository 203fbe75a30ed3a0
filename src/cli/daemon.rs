//! `neo-reconcile daemon [--config FILE] [--check-config [FILE]]`: the GitOps loop. Exit 0
//! after SIGTERM or Ctrl-C (nothing new starts; a running reconcile stops at a safe point),
//! 1 when the configuration is invalid or the loop cannot start.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use neo_reconcile::daemon::{self, config, ops, status};
use neo_reconcile::shutdown::Shutdown;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long, value_name = "FILE", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Only check the configuration (FILE, or --config's) and exit: 0 when valid, 1 with
    /// every problem otherwise.
    #[arg(long, value_name = "FILE")]
    #[allow(clippy::option_option)]
    pub check_config: Option<Option<PathBuf>>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.check_config {
        let file = file.as_ref().unwrap_or(&args.config);
        return Ok(match config::load(file) {
            Ok(_) => {
                println!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        });
    }
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let runtime = super::runtime()?;
    runtime.block_on(async {
        // The status, metrics and systemd notifications observe the loop; HTTP serves them
        // until the loop has stopped.
        let (observer, ops) = ops::observers(SystemTime::now(), status::system_clock());
        let (trigger, stop) = Shutdown::new();
        let server_stop = Shutdown::new();
        let server = ops
            .serve(
                config.listen,
                ops::alive_threshold(config.source.poll_interval),
                async move { server_stop.1.requested().await },
            )
            .await?;
        let server = tokio::spawn(server);
        tokio::spawn(async move {
            stop_requested().await;
            trigger.trigger();
        });
        let result = daemon::run(
            config,
            Arc::new(observer),
            async move { stop.requested().await },
        )
        .await;
        server_stop.0.trigger();
        let _ = server.await;
        result.map_err(anyhow::Error::from)
    })?;
    tracing::info!("Stopped.");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C stops the daemon.");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::warn!("Asked to stop: nothing new starts; a running reconcile stops at a safe point.");
}
