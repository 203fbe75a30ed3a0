//! `neo.toml` as a whole: reading it, its format version, the control plane, the policy,
//! the extensions, and the schema sets (checked in [`super::schema_sets`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::names::list_or_none;
use super::parse::parse_toml;
use super::regions::KnownRegion;
use super::schema_sets::KnownSets;
use super::tree::Cx;
use crate::desired::diagnostic::SourceText;
use crate::desired::raw::RawNeo;
use crate::desired::schema_set::SchemaSet;
use crate::desired::state::{ControlPlane, Extensions, Policy};
use crate::desired::{extensions, settings};

/// What a usable `neo.toml` gives the rest of the validation and the [`Desired`]: each part
/// that has errors of its own is `None`, and `known_sets` is what tenant pins are checked
/// against even then.
///
/// [`Desired`]: crate::desired::Desired
pub(super) struct Neo {
    pub(super) control_plane: Option<ControlPlane>,
    pub(super) policy: Policy,
    pub(super) extensions: Extensions,
    pub(super) schema_sets: Option<Vec<SchemaSet>>,
    pub(super) known_sets: KnownSets,
}

impl Cx {
    /// Reads and parses `neo.toml`; `None`, after reporting why, when it is missing or unusable.
    pub(super) fn read_neo(&mut self) -> Option<(SourceText, RawNeo)> {
        let neo_path = Path::new("neo.toml");
        match self.read(neo_path) {
            Some(src) => parse_toml::<RawNeo>(&src, &mut self.diags).map(|raw| (src, raw)),
            None => {
                self.diags.file_error(
                    neo_path,
                    "",
                    "missing neo.toml: a desired-state repository has neo.toml at its root \
                     with format_version = 1",
                );
                None
            }
        }
    }

    /// Checks a parsed `neo.toml` against the regions the tree knows.
    pub(super) fn check_neo(
        &mut self,
        src: &SourceText,
        neo: &RawNeo,
        known_regions: &BTreeMap<String, KnownRegion>,
    ) -> Neo {
        let control_plane = self.check_control_plane(src, neo, known_regions);
        let policy = settings::check_policy(&mut self.diags, src, neo.policy.as_ref());
        if *neo.format_version.get_ref() != 1 {
            self.diags.error(
                src,
                neo.format_version.span(),
                "format_version",
                format!(
                    "unsupported format_version {}: this neo-reconcile reads format_version = 1",
                    neo.format_version.get_ref()
                ),
            );
        }
        let (schema_sets, known_sets) = self.check_schema_sets(src, neo);
        let region_sets: Vec<&str> = neo
            .schema_sets
            .iter()
            .filter(|(_, s)| s.get_ref().scope.get_ref() == "region")
            .map(|(k, _)| k.get_ref().as_str())
            .collect();
        let extensions = extensions::check_extensions(
            &mut self.diags,
            src,
            neo.extensions.as_ref(),
            &region_sets,
        );
        Neo {
            control_plane,
            policy,
            extensions,
            schema_sets,
            known_sets,
        }
    }

    /// Checks `[control_plane]`: one of the regions, and a valid database name.
    fn check_control_plane(
        &mut self,
        src: &SourceText,
        neo: &RawNeo,
        regions: &BTreeMap<String, KnownRegion>,
    ) -> Option<ControlPlane> {
        let cp = neo.control_plane.get_ref();
        let mut ok = true;
        if !regions.contains_key(cp.region.get_ref()) {
            ok = false;
            self.diags.error(
                src,
                cp.region.span(),
                "control_plane.region",
                format!(
                    "unknown region {:?}: the control plane must be one of the regions ({})",
                    cp.region.get_ref(),
                    list_or_none(regions.keys())
                ),
            );
        }
        ok &= self.check_database(src, &cp.database, "control_plane.database");
        ok.then(|| ControlPlane {
            region: cp.region.get_ref().clone(),
            database: cp.database.get_ref().clone(),
        })
    }
}
