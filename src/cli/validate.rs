//! `neo-reconcile validate [DIR] [--format text|json]`: offline check of a desired-state tree.
//! Exit 0 when valid (warnings allowed), 1 when any error is found.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use neo_reconcile::desired::{self, diagnostic::Report, Diagnostic, Severity};
use neo_reconcile::sources::git;

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
    let mut loaded = desired::load(&args.dir);
    loaded.diagnostics.extend(removed_regions(&args.dir));
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

/// A warning for each region file the tree's previous commit had and the tree no longer has
/// (see [`git::removed_region_files`]): the tenants its database still holds become orphaned.
fn removed_regions(dir: &std::path::Path) -> Vec<Diagnostic> {
    git::removed_region_files(dir)
        .into_iter()
        .map(|(file, commit)| {
            let name = file
                .trim_start_matches("regions/")
                .trim_end_matches(".toml")
                .to_string();
            Diagnostic {
                message: format!(
                    "region file removed (commit {commit} has it): if region {name}'s database still holds tenants, they become orphaned: neo-reconcile no longer observes nor touches them (plan reports them from the registry); put the file back to manage them again, or move or archive them first"
                ),
                file,
                line: 1,
                column: 1,
                field: "name".into(),
                severity: Severity::Warning,
            }
        })
        .collect()
}
