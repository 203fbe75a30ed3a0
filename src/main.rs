//! The `neo-reconcile` command line. `main` owns logging setup and exit codes; each
//! subcommand lives in its own file under `cli/` and returns the exit code it wants.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Declarative GitOps reconciler for multi-tenant, multi-region PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "neo-reconcile", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (-v: debug, -vv: trace). RUST_LOG, when set, wins.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log line format, written to standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a desired-state tree offline and report every problem with file:line:column.
    Validate(cli::validate::Args),
    /// Dry run: observe live PostgreSQL and show what apply would change. Changes nothing.
    Plan(cli::plan::Args),
    /// Converge live PostgreSQL to the plan: logs it, confirms, applies under region locks.
    #[command(
        after_help = "Exit codes:\n  0  converged: everything selected is as desired\n  1  could not start, nothing changed: invalid tree, refused or stale plan, every region with work unreachable or locked by another run\n  2  usage error\n  3  some targets failed (after retries), or some regions could not start while others changed\n  4  everything that could run succeeded, but blocked findings remain for a human"
    )]
    Apply(cli::apply::Args),
    /// Record existing tenant or region-scope schemas (Flyway or hand-migrated) as managed,
    /// without running SQL.
    Adopt(cli::adopt::Args),
    /// The GitOps loop: follow a git branch and converge on every new commit, resync and
    /// maintenance window (see the README's "Running the daemon").
    Daemon(cli::daemon::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    let result = match cli.command {
        Command::Validate(args) => cli::validate::run(args),
        Command::Plan(args) => cli::plan::run(args),
        Command::Apply(args) => cli::apply::run(args),
        Command::Adopt(args) => cli::adopt::run(args),
        Command::Daemon(args) => cli::daemon::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
