//! The state of one validation ([`Cx`]) and the order in which the parts of a tree are read
//! and checked: `neo.toml`, the region and tenant files, then the rules between them. The
//! checks themselves live in the sibling modules, each an `impl Cx` block of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::files::{digest, file_stem};
use crate::desired::diagnostic::Diagnostics;
use crate::desired::raw::{RawRegion, RawTenant};
use crate::desired::sql_check::Checked;
use crate::desired::state::Desired;

/// The state of one validation: diagnostics so far, the bytes of every file read (for the
/// digest), and what the parser said about each distinct migration file, by checksum.
pub(super) struct Cx {
    pub(super) root: PathBuf,
    pub(super) diags: Diagnostics,
    pub(super) files: BTreeMap<String, Vec<u8>>,
    pub(super) parsed: HashMap<String, Checked>,
}

impl Cx {
    /// A validation of the tree at `root` that has read nothing yet.
    pub(super) fn new(root: &Path) -> Cx {
        Cx {
            root: root.to_path_buf(),
            diags: Diagnostics::default(),
            files: BTreeMap::new(),
            parsed: HashMap::new(),
        }
    }

    /// Reads and checks the whole tree. `None` when a part a [`Desired`] needs is unusable;
    /// every problem found on the way is in `self.diags`.
    pub(super) fn load(&mut self) -> Option<Desired> {
        if !self.root_is_dir() {
            self.diags.file_error(
                Path::new("."),
                "",
                format!(
                    "{} is not a directory: give the root of a desired-state repository",
                    self.root.display()
                ),
            );
            return None;
        }

        let neo = self.read_neo();

        // Files whose name matches their content come first, so that of two files claiming
        // one name, the one named after it is the original and the other the duplicate.
        let mut region_files = self.read_toml_dir::<RawRegion>("regions");
        region_files.sort_by_key(
            |f| !matches!(f, Ok((src, raw)) if file_stem(&src.display) == raw.name.get_ref()),
        );
        let mut tenant_files = self.read_toml_dir::<RawTenant>("tenants");
        tenant_files.sort_by_key(
            |f| !matches!(f, Ok((src, raw)) if file_stem(&src.display) == raw.slug.get_ref()),
        );

        let (known_regions, regions) = self.check_regions(&region_files);
        // Without a usable neo.toml the tenants are still checked, against no schema sets.
        let neo = neo
            .as_ref()
            .map(|(src, raw)| self.check_neo(src, raw, &known_regions));
        let tenants = self.check_tenants(
            &tenant_files,
            &known_regions,
            neo.as_ref().map(|n| &n.known_sets),
            neo.as_ref().map(|n| &n.policy),
        );

        let files = std::mem::take(&mut self.files);
        let digest = digest(&files);
        let neo = neo?;
        Some(Desired {
            root: self.root.clone(),
            control_plane: neo.control_plane?,
            policy: neo.policy,
            extensions: neo.extensions,
            schema_sets: neo.schema_sets?,
            regions,
            tenants,
            digest,
        })
    }
}
