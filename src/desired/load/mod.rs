//! Reading and validating a desired-state tree.
//!
//! [`load`] reads every file of the tree, reports every problem it finds (it never stops at
//! the first one) and builds a [`Desired`] only when there is no error. Each file goes through
//! three stages, all in [`parse`] (the secret scan in [`secrets`]):
//!
//! 1. TOML syntax, with the parser's recovery so that all syntax errors of a file are shown;
//! 2. a scan for keys that look like plaintext secrets, which are reported and dropped;
//! 3. serde into the raw types of [`super::raw`]. Serde stops at the first problem, so after
//!    an unknown field or a value of the wrong type, the offending key is removed and the file
//!    is read again: one file can report many such mistakes.
//!
//! Then the rules that span files are checked, one module per part of the tree: [`neo`]
//! (`neo.toml` as a whole), [`regions`], [`tenants`], [`schema_sets`] and their
//! [`migrations`]; [`tree`] holds the validation's state and the order of the checks, and
//! [`files`] is the only module that touches the file system. Three groups of rules live
//! outside the loader: the settings and their durations in [`super::settings`], the length of
//! every derived PostgreSQL identifier in [`super::identifiers`], and what PostgreSQL's parser
//! says about each migration file in [`super::sql_check`] (parsed once per distinct content,
//! whatever the number of sets and tenants). A mistake never hides an independent one: a
//! schema set with a gap still has its target and the pins on it checked, a duplicate region
//! file still has its other fields checked.

mod files;
mod migrations;
mod names;
mod neo;
mod parse;
mod regions;
mod schema_sets;
mod secrets;
mod tenants;
mod tree;
mod undo;

pub(crate) use parse::{parse_toml_with, Required};

use std::path::Path;

use super::diagnostic::Diagnostic;
use super::state::Desired;

#[cfg(test)]
pub(super) use names::is_slug;

/// The outcome of reading a tree: the validated state when there is no error, and every
/// diagnostic (errors and warnings), sorted by file, line and column.
#[derive(Debug)]
pub struct Loaded {
    pub desired: Option<Desired>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads and validates the desired-state tree at `root`. Offline: no database, no network.
pub fn load(root: &Path) -> Loaded {
    let mut cx = tree::Cx::new(root);
    let desired = cx.load();
    let has_errors = cx.diags.has_errors();
    Loaded {
        desired: if has_errors { None } else { desired },
        diagnostics: cx.diags.into_sorted(),
    }
}
