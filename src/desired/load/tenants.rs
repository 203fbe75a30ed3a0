//! The tenant files (`tenants/<slug>.toml`): each tenant's slug, region and residency,
//! status, and pins on tenant-scope schema sets, one file per tenant.

use std::collections::BTreeMap;

use toml::Spanned;

use super::files::file_stem;
use super::names::{is_slug, list_or_none};
use super::regions::KnownRegion;
use super::schema_sets::KnownSets;
use super::tree::Cx;
use crate::desired::diagnostic::SourceText;
use crate::desired::identifiers;
use crate::desired::raw::RawTenant;
use crate::desired::schema_set::Scope;
use crate::desired::state::Policy;
use crate::desired::tenant::{Tenant, TenantStatus};

impl Cx {
    /// Checks every usable tenant file against the known regions and, when `neo.toml` is
    /// usable, its schema sets and policy. Returns the valid tenants by slug.
    pub(super) fn check_tenants(
        &mut self,
        files: &[Result<(SourceText, RawTenant), String>],
        regions: &BTreeMap<String, KnownRegion>,
        sets: Option<&KnownSets>,
        policy: Option<&Policy>,
    ) -> BTreeMap<String, Tenant> {
        let mut tenants = BTreeMap::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (src, raw) in files.iter().flatten() {
            let slug = raw.slug.get_ref();
            let mut ok = self.check_slug(src, raw, &mut seen);
            ok &= self.check_tenant_region(src, raw, regions);
            let status = self.check_status(src, raw, policy);
            let (pins_ok, pins) = self.check_pins(src, raw, sets);
            ok &= pins_ok;
            if let (true, Some(status)) = (ok, status) {
                tenants.insert(
                    slug.clone(),
                    Tenant {
                        slug: slug.clone(),
                        region: raw.region.get_ref().clone(),
                        status,
                        pins,
                    },
                );
            }
        }
        tenants
    }

    /// Checks a tenant's slug: one file per slug (`seen` holds the file of each slug so far),
    /// the file named after it, and a valid slug whose derived identifiers fit.
    fn check_slug(
        &mut self,
        src: &SourceText,
        raw: &RawTenant,
        seen: &mut BTreeMap<String, String>,
    ) -> bool {
        let slug = raw.slug.get_ref();
        let mut ok = true;
        let duplicate = seen.get(slug).cloned();
        if let Some(first) = duplicate.as_ref() {
            ok = false;
            self.diags.error(
                src,
                raw.slug.span(),
                "slug",
                format!("duplicate tenant {slug:?}: already defined in {first}; each tenant has exactly one file"),
            );
        } else {
            seen.insert(slug.clone(), src.display.clone());
        }
        let stem = file_stem(&src.display);
        // A duplicate is reported once: renaming its file as the stem rule advises would
        // overwrite the original.
        if duplicate.is_none() && slug != stem {
            ok = false;
            self.diags.error(
                src,
                raw.slug.span(),
                "slug",
                format!("slug {slug:?} differs from the file name: rename the file to tenants/{slug}.toml or set slug = {stem:?}"),
            );
        }
        if !is_slug(slug) {
            ok = false;
            self.diags.error(
                src,
                raw.slug.span(),
                "slug",
                format!("invalid slug {slug:?}: use 2 to 40 characters, lowercase letters, digits and '_', starting with a letter"),
            );
        } else {
            ok &= identifiers::check(
                &mut self.diags,
                src,
                raw.slug.span(),
                "slug",
                "slug",
                slug,
                &identifiers::of_tenant(slug),
            );
        }
        ok
    }

    /// Checks a tenant's region: a known one, whose residency the tenant states.
    fn check_tenant_region(
        &mut self,
        src: &SourceText,
        raw: &RawTenant,
        regions: &BTreeMap<String, KnownRegion>,
    ) -> bool {
        let region = raw.region.get_ref();
        let Some(known) = regions.get(region) else {
            self.diags.error(
                src,
                raw.region.span(),
                "region",
                format!(
                    "unknown region {region:?}: known regions are {}",
                    list_or_none(regions.keys())
                ),
            );
            return false;
        };
        // A region whose residency is unknown (its file is broken) or empty (reported
        // there) asks nothing of its tenants.
        match (&raw.residency, &known.residency) {
            (Some(want), Some(have)) if want.get_ref() != have => {
                self.diags.error(
                    src,
                    want.span(),
                    "residency",
                    format!(
                        "residency {:?} differs from region {region:?}'s residency {have:?}: move the tenant to a region in {:?} or fix the residency",
                        want.get_ref(),
                        want.get_ref()
                    ),
                );
                false
            }
            // A missing residency would let a tenant into any region unnoticed: the
            // tenant file must state the zone its data is bound to.
            (None, Some(have)) if !have.trim().is_empty() => {
                self.diags.error(
                    src,
                    0..0,
                    "residency",
                    format!(
                        "missing required field `residency`: required because region {region:?} declares residency {have:?}; add residency = {have:?}"
                    ),
                );
                false
            }
            _ => true,
        }
    }

    /// Checks a tenant's status, and warns when a deleted tenant's data will be kept.
    /// `None` when the status is unknown.
    fn check_status(
        &mut self,
        src: &SourceText,
        raw: &RawTenant,
        policy: Option<&Policy>,
    ) -> Option<TenantStatus> {
        let status = match &raw.status {
            None => Some(TenantStatus::Active),
            Some(s) => {
                let status = TenantStatus::parse(s.get_ref());
                if status.is_none() {
                    self.diags.error(
                        src,
                        s.span(),
                        "status",
                        format!(
                            "unknown status {:?}: use one of {}",
                            s.get_ref(),
                            TenantStatus::NAMES.join(", ")
                        ),
                    );
                }
                status
            }
        };
        // Without a usable neo.toml the policy is unknown, so there is nothing to warn about.
        if status == Some(TenantStatus::Deleted) && policy.is_some_and(|p| !p.allow_destroy) {
            let span = raw.status.as_ref().map_or(0..0, |s| s.span());
            self.diags.warning(
                src,
                span,
                "status",
                "tenant is deleted but neo.toml has [policy] allow_destroy = false: its data will not be dropped",
            );
        }
        status
    }

    /// Checks a tenant's pins against the schema sets (nothing to check them against when
    /// `neo.toml` is unusable). Returns whether they are valid, and the valid pins.
    fn check_pins(
        &mut self,
        src: &SourceText,
        raw: &RawTenant,
        sets: Option<&KnownSets>,
    ) -> (bool, BTreeMap<String, u32>) {
        let mut ok = true;
        let mut pins = BTreeMap::new();
        let Some(sets) = sets else {
            return (ok, pins); // neo.toml is unusable; that is reported there.
        };
        for (key, version) in &raw.schema_sets {
            ok &= self.check_pin(src, sets, key, version, &mut pins);
        }
        (ok, pins)
    }

    /// Checks one pin: a declared, tenant-scope set and a version it has, and warns when the
    /// pin differs from the set's target. A valid pin goes into `pins`.
    fn check_pin(
        &mut self,
        src: &SourceText,
        sets: &KnownSets,
        key: &Spanned<String>,
        version: &Spanned<i64>,
        pins: &mut BTreeMap<String, u32>,
    ) -> bool {
        let set_name = key.get_ref();
        let field = format!("schema_sets.{set_name}");
        let Some(set) = sets.facts.get(set_name) else {
            self.diags.error(
                src,
                key.span(),
                field,
                format!(
                    "unknown schema set {set_name:?}: declared sets are {}",
                    list_or_none(sets.declared.iter())
                ),
            );
            return false;
        };
        // A set with errors of its own (reported in neo.toml) is still checked as far
        // as it is known: its scope, its highest version, its target.
        if set.scope == Some(Scope::Region) {
            self.diags.error(
                src,
                key.span(),
                field,
                format!("{set_name:?} is a region-scope set: only tenant-scope sets can be pinned per tenant"),
            );
            return false;
        }
        let v = *version.get_ref();
        let range = match set.highest {
            Some(h) => {
                format!(
                    " (V{h} is the highest in schemas/{set_name}/): use a version from 1 to {h}"
                )
            }
            None => ": use a version from 1".to_string(),
        };
        if v < 1 || set.highest.is_some_and(|h| v > i64::from(h)) {
            let what = if v < 1 {
                "below V1"
            } else {
                "above the highest migration"
            };
            self.diags.error(
                src,
                version.span(),
                field,
                format!("pin {v} is {what}{range}"),
            );
            return false;
        }
        let Ok(v) = u32::try_from(v) else {
            return true; // Above any version; only possible when the set has none.
        };
        if let Some(target) = set.target.filter(|t| *t != v) {
            let how = if v > target { "ahead of" } else { "behind" };
            self.diags.warning(
                src,
                version.span(),
                field.clone(),
                format!("pinned at {v}, {how} the set's target {target}: remove the pin once the fleet catches up"),
            );
        }
        pins.insert(set_name.clone(), v);
        true
    }
}
