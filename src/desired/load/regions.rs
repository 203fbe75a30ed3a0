//! The region files (`regions/<name>.toml`): each file's name, residency and endpoint, one
//! file per region, and the regions known by name (also from broken files) that tenants and
//! the control plane refer to.

use std::collections::BTreeMap;
use std::path::Path;

use super::files::file_stem;
use super::names::is_region_name;
use super::tree::Cx;
use crate::desired::credentials;
use crate::desired::diagnostic::SourceText;
use crate::desired::raw::{RawPostgres, RawRegion};
use crate::desired::region::{Endpoint, Region, SslMode};
use crate::desired::settings;

/// What the tenant checks need to know about a region, including one whose file has errors
/// (its name is still known, so tenants in it do not get a second, misleading error).
pub(super) struct KnownRegion {
    pub(super) residency: Option<String>,
}

impl Cx {
    /// Checks every region file. Returns the regions known by name (by their `name` and by
    /// their file name, also when the file is unusable) and the valid regions.
    #[allow(clippy::type_complexity)]
    pub(super) fn check_regions(
        &mut self,
        region_files: &[Result<(SourceText, RawRegion), String>],
    ) -> (BTreeMap<String, KnownRegion>, BTreeMap<String, Region>) {
        let mut known_regions: BTreeMap<String, KnownRegion> = BTreeMap::new();
        let mut regions = BTreeMap::new();
        let mut region_sources: BTreeMap<String, String> = BTreeMap::new();
        for entry in region_files {
            match entry {
                Ok((src, raw)) => {
                    let name = raw.name.get_ref().clone();
                    if let Some(first) = region_sources.get(&name) {
                        self.diags.error(
                            src,
                            raw.name.span(),
                            "name",
                            format!(
                                "duplicate region {name:?}: already defined in {first}; \
                                 each region has exactly one file"
                            ),
                        );
                        // The rest of the file is still checked: its other mistakes are
                        // independent of the duplicate.
                        self.check_region(src, raw, true);
                        continue;
                    }
                    region_sources.insert(name.clone(), src.display.clone());
                    // A file whose name differs from its `name` is reported once, in the file;
                    // tenants referring to either name are not reported again.
                    for known in [name.clone(), file_stem(&src.display).to_string()] {
                        known_regions.entry(known).or_insert(KnownRegion {
                            residency: Some(raw.residency.get_ref().clone()),
                        });
                    }
                    if let Some(region) = self.check_region(src, raw, false) {
                        regions.insert(name, region);
                    }
                }
                Err(stem) => {
                    known_regions
                        .entry(stem.clone())
                        .or_insert(KnownRegion { residency: None });
                }
            }
        }
        if region_files.is_empty() {
            self.diags.file_error(
                Path::new("regions"),
                "",
                "no regions: add regions/<name>.toml for each PostgreSQL cluster",
            );
        }
        (known_regions, regions)
    }

    /// Checks one region file. A `duplicate` (a second file claiming a region's name) is not
    /// also told to rename itself: that would overwrite the original.
    fn check_region(
        &mut self,
        src: &SourceText,
        raw: &RawRegion,
        duplicate: bool,
    ) -> Option<Region> {
        let mut ok = true;
        let name = raw.name.get_ref();
        let stem = file_stem(&src.display);
        if !duplicate && name != stem {
            ok = false;
            self.diags.error(
                src,
                raw.name.span(),
                "name",
                format!("name {name:?} differs from the file name: rename the file to regions/{name}.toml or set name = {stem:?}"),
            );
        }
        if !is_region_name(name) {
            ok = false;
            self.diags.error(
                src,
                raw.name.span(),
                "name",
                format!("invalid region name {name:?}: use lowercase letters, digits and '-', starting with a letter"),
            );
        }
        if raw.residency.get_ref().trim().is_empty() {
            ok = false;
            self.diags.error(
                src,
                raw.residency.span(),
                "residency",
                "empty residency: name the data-residency zone, such as \"US\" or \"EU\"",
            );
        }
        let postgres = self.check_endpoint(src, raw.postgres.get_ref());
        let credentials = credentials::check(&mut self.diags, src, &raw.credentials);
        let apply = settings::check_apply(&mut self.diags, src, raw.apply.as_ref());

        if !ok {
            return None;
        }
        Some(Region {
            name: name.clone(),
            residency: raw.residency.get_ref().clone(),
            postgres: postgres?,
            credentials: credentials?,
            apply: apply?,
        })
    }

    /// Checks a region's `[postgres]`: host, port, database and sslmode.
    fn check_endpoint(&mut self, src: &SourceText, pg: &RawPostgres) -> Option<Endpoint> {
        let mut ok = true;
        let host = pg.host.get_ref();
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains("://") {
            ok = false;
            self.diags.error(
                src,
                pg.host.span(),
                "postgres.host",
                "invalid host: give a host name or IP address, not a URL",
            );
        }
        let port = *pg.port.get_ref();
        if !(1..=65535).contains(&port) {
            ok = false;
            self.diags.error(
                src,
                pg.port.span(),
                "postgres.port",
                format!("port {port} is out of range: use 1 to 65535"),
            );
        }
        ok &= self.check_database(src, &pg.database, "postgres.database");
        let sslmode = match &pg.sslmode {
            None => Some(SslMode::VerifyFull),
            Some(s) => {
                let mode = SslMode::parse(s.get_ref());
                if mode.is_none() {
                    self.diags.error(
                        src,
                        s.span(),
                        "postgres.sslmode",
                        format!(
                            "unknown sslmode {:?}: use one of {}",
                            s.get_ref(),
                            SslMode::NAMES.join(", ")
                        ),
                    );
                }
                mode
            }
        };
        if !ok {
            return None;
        }
        Some(Endpoint {
            host: host.clone(),
            port: port as u16,
            database: pg.database.get_ref().clone(),
            sslmode: sslmode?,
        })
    }
}
