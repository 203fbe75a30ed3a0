//! The undo files of one schema set (`schemas/<set>/U<version>__<description>.sql`, which
//! undoes `V<version>__<description>.sql`): their names, one per version, not empty, each
//! beside its migration with the same description, and what PostgreSQL's parser says about
//! each (the same rules as migrations, `-- neo:no-transaction` included). A set may have
//! undo files for some versions only; a rollback across a version without one is refused by
//! the planner, which names the missing file.

use std::collections::BTreeMap;
use std::path::Path;

use super::migrations::parse_versioned_name;
use super::tree::Cx;
use crate::desired::schema_set::Migration;

impl Cx {
    /// Checks one undo file and records it in `undo` by the version it undoes. `false` when
    /// it is an error.
    pub(super) fn check_undo_file(
        &mut self,
        dir: &str,
        name: &str,
        undo: &mut BTreeMap<u32, Migration>,
    ) -> bool {
        let relative = Path::new(dir).join(name);
        let Some((version, description)) = parse_versioned_name('U', name) else {
            self.diags.file_error(
                &relative,
                name,
                "not an undo file name: use U<version>__<description>.sql with the version and description of the migration it undoes, such as U3__add_invoices.sql for V3__add_invoices.sql",
            );
            return false;
        };
        if version == 0 {
            self.diags.file_error(
                &relative,
                name,
                "version 0: an undo file undoes a migration, and versions start at V1",
            );
            return false;
        }
        if let Some(first) = undo.get(&version) {
            self.diags.file_error(
                &relative,
                name,
                format!(
                    "duplicate undo file for version {version}: {} undoes it too; keep one",
                    first.file
                ),
            );
            return false;
        }
        match self.read_sql_file(&relative, name, version, description, "undo file") {
            Some(m) => {
                undo.insert(version, m);
                true
            }
            None => false,
        }
    }

    /// Checks each undo file against the migration it undoes: the migration exists and has
    /// the same description. `claimed`: every version a migration file names (also an
    /// unusable one), so that a broken migration is not reported twice.
    pub(super) fn check_undo_pairs(
        &mut self,
        undo: &BTreeMap<u32, Migration>,
        migrations: &BTreeMap<u32, Migration>,
        claimed: &BTreeMap<u32, String>,
    ) -> bool {
        let mut ok = true;
        for (version, u) in undo {
            let name = u.file.rsplit('/').next().unwrap_or(&u.file);
            match migrations.get(version) {
                Some(m) if m.description != u.description => {
                    ok = false;
                    let expected = format!("U{version}__{}.sql", m.description);
                    self.diags.file_error(
                        Path::new(&u.file),
                        name,
                        format!(
                            "{name} undoes {}, whose description is {:?}: an undo file carries its migration's description; rename it {expected}",
                            m.file, m.description
                        ),
                    );
                }
                Some(_) => {}
                None if claimed.contains_key(version) => {}
                None => {
                    ok = false;
                    self.diags.file_error(
                        Path::new(&u.file),
                        name,
                        format!(
                            "{name} undoes version {version}, but the set has no migration V{version}__{}.sql: an undo file stands beside the migration it undoes; remove it or rename it",
                            u.description
                        ),
                    );
                }
            }
        }
        ok
    }
}
