//! A tenant as validated: its slug, its region, its lifecycle status and its pins, and the
//! PostgreSQL names derived from its slug.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::identifiers;
use super::schema_set::SchemaSet;
use super::state::Desired;

/// A tenant's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
    Archived,
    Deleted,
}

impl TenantStatus {
    pub const NAMES: [&'static str; 4] = ["active", "suspended", "archived", "deleted"];

    pub fn parse(s: &str) -> Option<TenantStatus> {
        Some(match s {
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            "archived" => TenantStatus::Archived,
            "deleted" => TenantStatus::Deleted,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub slug: String,
    pub region: String,
    pub status: TenantStatus,
    /// Per-tenant versions of tenant-scope sets that differ from the fleet (canaries).
    pub pins: BTreeMap<String, u32>,
}

impl Tenant {
    /// The schema holding the tenant's data: `tenant_<slug>`.
    pub fn schema(&self) -> String {
        identifiers::tenant_schema(&self.slug)
    }

    /// The NOLOGIN role owning the tenant's schema and objects.
    pub fn owner_role(&self) -> String {
        identifiers::tenant_owner_role(&self.slug)
    }

    /// The NOLOGIN role granting read/write; applications' login roles are its members.
    pub fn rw_role(&self) -> String {
        identifiers::tenant_rw_role(&self.slug)
    }

    /// The name the tenant's schema gets when it is archived on `date` (`yyyymmdd`).
    pub fn archived_schema(&self, date: &str) -> String {
        identifiers::archived_schema(&self.slug, date)
    }

    /// The version this tenant should be at for a tenant-scope set.
    pub fn target_of(&self, set: &SchemaSet) -> u32 {
        self.pins.get(&set.name).copied().unwrap_or(set.target)
    }

    /// Whether the tenant is pinned ahead of the fleet for any set (a canary).
    pub fn is_canary(&self, desired: &Desired) -> bool {
        self.pins
            .iter()
            .any(|(set, &v)| desired.schema_set(set).is_some_and(|s| v > s.target))
    }
}
