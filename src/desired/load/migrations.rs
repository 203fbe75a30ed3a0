//! The migration files of one schema set (`schemas/<set>/V<version>__<description>.sql`):
//! their names, versions 1..=N without gaps or duplicates, no empty file, and what
//! PostgreSQL's parser says about each ([`crate::desired::sql_check`], once per distinct
//! content). The set's undo files (`U<version>__...`) are checked in `undo.rs`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::files::{hex, is_readme};
use super::tree::Cx;
use crate::desired::diagnostic::{self, Diagnostics, SourceText};
use crate::desired::schema_set::Migration;
use crate::desired::sql_check;

/// The migrations of one set: the valid sequence when there is no error, and the highest
/// version any file names (also when some are broken), to check targets and pins against.
pub(super) struct Migrations {
    pub(super) valid: Option<Vec<Migration>>,
    /// The undo files by the version they undo (see `undo.rs`), when there is no error.
    pub(super) undo: BTreeMap<u32, Migration>,
    pub(super) highest: Option<u32>,
}

impl Cx {
    /// Reads and checks the migration files of one set: names, versions 1..=N without gaps or
    /// duplicates, and no empty file.
    pub(super) fn check_migrations(
        &mut self,
        set: &str,
        set_span: Range<usize>,
        neo_src: &SourceText,
    ) -> Migrations {
        let dir = format!("schemas/{set}");
        let missing = |diags: &mut Diagnostics| {
            diags.error(
                neo_src,
                set_span.clone(),
                format!("schema_sets.{set}"),
                format!("no migrations for schema set {set:?}: create {dir}/V1__<description>.sql"),
            );
        };
        if !self.dir_exists(&dir) {
            missing(&mut self.diags);
            return Migrations {
                valid: None,
                undo: BTreeMap::new(),
                highest: None,
            };
        }
        let mut ok = true;
        let mut by_version: BTreeMap<u32, Migration> = BTreeMap::new();
        // The file that claims each version first, even when it is unusable (empty, not
        // UTF-8): a version it claims is neither missing nor free for another file.
        let mut claimed: BTreeMap<u32, String> = BTreeMap::new();
        let mut undo = BTreeMap::new();
        for (name, is_dir) in self.list(&dir) {
            if !is_dir && name.starts_with('U') {
                ok &= self.check_undo_file(&dir, &name, &mut undo);
                continue;
            }
            ok &= self.check_migration_file(&dir, &name, is_dir, &mut claimed, &mut by_version);
        }
        ok &= self.report_gaps(&claimed);
        ok &= self.check_undo_pairs(&undo, &by_version, &claimed);
        if claimed.is_empty() && ok {
            ok = false;
            missing(&mut self.diags);
        }
        Migrations {
            valid: ok.then(|| by_version.into_values().collect()),
            undo: if ok { undo } else { BTreeMap::new() },
            highest: claimed.last_key_value().map(|(&v, _)| v),
        }
    }

    /// Checks one entry of a set's directory: records the version it claims in `claimed` and,
    /// the first time a version is seen in a usable file, its migration in `by_version`.
    /// `false` when the entry is an error.
    fn check_migration_file(
        &mut self,
        dir: &str,
        name: &str,
        is_dir: bool,
        claimed: &mut BTreeMap<u32, String>,
        by_version: &mut BTreeMap<u32, Migration>,
    ) -> bool {
        let relative = Path::new(dir).join(name);
        if is_dir {
            self.diags.file_error(&relative, name, "unexpected directory: a schema set's migrations are files directly in its directory");
            return false;
        }
        if is_readme(name) {
            return true;
        }
        let Some((version, description)) = parse_migration_name(name) else {
            self.diags.file_error(
                &relative,
                name,
                "not a migration file name: use V<version>__<description>.sql, such as V3__add_invoices.sql",
            );
            return false;
        };
        if version == 0 {
            self.diags
                .file_error(&relative, name, "version 0: versions start at V1");
            return false;
        }
        let mut ok = true;
        let display = diagnostic::display_path(&relative);
        if let Some(first) = claimed.get(&version) {
            ok = false;
            self.diags.file_error(
                &relative,
                name,
                format!("duplicate version {version}: {first} has it too; give each migration its own version"),
            );
        } else {
            claimed.insert(version, display);
        }
        if let Some(m) = self.read_sql_file(&relative, name, version, description, "migration") {
            // A duplicate version keeps the first file's migration (the duplicate is reported).
            by_version.entry(version).or_insert(m);
        } else {
            return false;
        }
        ok
    }

    /// Reads one SQL file of a set (a migration or an undo file, `what` says which in
    /// messages): not empty, its checksum, `-- neo:no-transaction`, and what PostgreSQL's
    /// parser says about it (reported at their position). `None` when it is unusable.
    pub(super) fn read_sql_file(
        &mut self,
        relative: &Path,
        name: &str,
        version: u32,
        description: &str,
        what: &str,
    ) -> Option<Migration> {
        let src = self.read(relative)?;
        if is_effectively_empty(&src.text) {
            self.diags.file_error(
                relative,
                name,
                format!(
                    "empty {what}: {} must contain SQL; remove the file if it is not needed",
                    if what == "migration" {
                        "a migration"
                    } else {
                        "an undo file"
                    }
                ),
            );
            return None;
        }
        let checksum = hex(&Sha256::digest(src.text.as_bytes()));
        let no_transaction = src
            .text
            .lines()
            .next()
            .is_some_and(|l| l.trim() == "-- neo:no-transaction");
        // The same content in several sets is parsed once; its findings are reported in
        // each file.
        let checked = self
            .parsed
            .entry(checksum.clone())
            .or_insert_with(|| sql_check::check(&src.text, no_transaction));
        for f in &checked.findings {
            self.diags.at(
                f.severity,
                &src,
                f.offset..f.offset,
                name,
                f.message.clone(),
            );
        }
        Some(Migration {
            version,
            description: description.to_string(),
            file: src.display.clone(),
            sql: checked.sql.clone(),
            statements: checked.statements.clone(),
            checksum,
            no_transaction,
            adds_enum_value: checked.adds_enum_value,
        })
    }

    /// Reports each gap in the claimed versions at the first file after it. `false` when
    /// there is a gap.
    fn report_gaps(&mut self, claimed: &BTreeMap<u32, String>) -> bool {
        let mut ok = true;
        let mut expected = 1;
        for (&version, file) in claimed {
            if version != expected {
                ok = false;
                let missing = if version == expected + 1 {
                    format!("version {expected} is missing")
                } else {
                    format!("versions {expected} to {} are missing", version - 1)
                };
                self.diags.file_error(
                    Path::new(file),
                    file.rsplit('/').next().unwrap_or(file),
                    format!("{missing}: versions must run 1, 2, 3, ... without gaps"),
                );
            }
            expected = version + 1;
        }
        ok
    }
}

/// `V<version>__<description>.sql` → `(version, description)`.
fn parse_migration_name(name: &str) -> Option<(u32, &str)> {
    parse_versioned_name('V', name)
}

/// `<prefix><version>__<description>.sql` → `(version, description)`: migrations (`V`) and
/// undo files (`U`) are named alike.
pub(super) fn parse_versioned_name(prefix: char, name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(".sql")?;
    let (version, description) = rest.split_once("__")?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if description.is_empty()
        || !description
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    Some((version.parse().ok()?, description))
}

/// A migration with nothing but white space and `--` comments.
fn is_effectively_empty(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with("--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_names() {
        assert_eq!(parse_migration_name("V1__init.sql"), Some((1, "init")));
        assert_eq!(
            parse_migration_name("V012__add-col_2.sql"),
            Some((12, "add-col_2"))
        );
        for bad in [
            "V1_init.sql",
            "v1__init.sql",
            "V__init.sql",
            "V1__.sql",
            "V1__init.SQL",
            "V1__in it.sql",
            "Vx__a.sql",
        ] {
            assert_eq!(parse_migration_name(bad), None, "{bad}");
        }
    }
}
