//! `neo-reconcile validate [DIR] [--format text|json]`: offline check of a desired-state tree.
//! Exit 0 when valid (warnings allowed), 1 when any error is found.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use neo_reconcile::desired::{self, diagnostic::Report, Severity};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The root of the desired-state tree.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Output format: text for people, json for CI annotations.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = desired::load(&args.dir);
    let report = Report::new(&args.dir, &loaded.diagnostics);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            for d in &loaded.diagnostics {
                println!("{d}");
            }
            let noun = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
            match &loaded.desired {
                Some(d) => println!(
                    "{}: valid: {}, {}, {} ({})",
                    args.dir.display(),
                    noun(d.regions.len(), "region"),
                    noun(d.tenants.len(), "tenant"),
                    noun(d.schema_sets.len(), "schema set"),
                    noun(report.warnings, "warning"),
                ),
                None => println!(
                    "{}: invalid: {}, {}",
                    args.dir.display(),
                    noun(report.errors, "error"),
                    noun(report.warnings, "warning"),
                ),
            }
        }
    }
    let failed = loaded
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
