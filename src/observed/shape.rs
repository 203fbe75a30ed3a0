//! Live-schema shapes as plain data: the normalized description of a schema (one line per
//! fact about its objects, the schema's own name and roles replaced by `@owner`/`@rw`), its
//! fingerprint, and the expected shape of each combination of set versions. [`targets`]
//! decides, from the observed bookkeeping alone, which schemas are checked and against which
//! versions; [`shape_id`] names the cached expected shape of a combination (apply computes it,
//! `neo_reconcile.expected_shapes` keeps it, the observer reads it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::state::{Bookkeeping, HistoryRow};
use crate::desired::{DriftPolicy, SchemaSet, Scope, TenantStatus};

/// The description query: `$1` the schemas, `$2` whether to return the lines. Its text is part
/// of every [`shape_id`]: a build that describes schemas differently computes them again.
pub const DESCRIBE: &str = include_str!("describe.sql");

/// The change-signature query (see `signature.sql`).
pub const SIGNATURE: &str = include_str!("signature.sql");

/// The name of this build's description (both queries), kept with every cached live
/// fingerprint: another build's fingerprints are not used.
pub fn describe_id() -> String {
    let mut hash = Sha256::new();
    hash.update(DESCRIBE.as_bytes());
    hash.update(b"\0");
    hash.update(SIGNATURE.as_bytes());
    format!("{:x}", hash.finalize())
}

/// The sets a schema holds and their versions, in the desired dependency order. Two schemas
/// with the same key should have the same shape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShapeKey(pub Vec<(String, u32)>);

impl fmt::Display for ShapeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(s, v)| format!("{s} V{v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// One fact of a schema's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeEntry {
    /// The object the line is about (`index projects_owner_idx`, `grant SELECT on table users
    /// to @rw`): lines of the same object in two shapes are one change.
    pub object: String,
    /// The readable, normalized line the diff shows.
    pub line: String,
    /// The statement that creates the object as this shape has it, for objects that carry no
    /// data (unqualified: it runs with the target schema first on `search_path`).
    pub create: Option<String>,
    /// The statement that removes the object.
    pub drop: Option<String>,
}

/// A schema's normalized description, entries sorted by line (bytewise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// The server's MD5 of the lines joined by newlines.
    pub fingerprint: String,
    pub entries: Vec<ShapeEntry>,
}

/// The shape a combination of set versions should have, as apply computed and cached it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Known(Shape),
    /// It could not be computed (a migration failed in the scratch schema); the targets at
    /// these versions are not checked until a file changes.
    Failed {
        reason: String,
    },
}

/// A schema checked for drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub key: ShapeKey,
    /// The tenant whose schema it is (none for a region-scope set's schema).
    pub tenant: Option<String>,
    pub policy: DriftPolicy,
    pub prune: bool,
}

/// Everything observed about live-schema drift in a region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shapes {
    /// The checked schemas and the versions they are checked against (see [`targets`]).
    pub targets: BTreeMap<String, Target>,
    /// The fingerprint of every checked schema whose expected shape is known, by schema.
    pub fingerprints: BTreeMap<String, String>,
    /// The change signature of those schemas (see `signature.sql`).
    pub signatures: BTreeMap<String, String>,
    /// The schemas whose fingerprint this observation computed (their signature was not the
    /// one cached with a fingerprint); apply records them.
    pub described: BTreeSet<String>,
    /// The descriptions of the schemas whose fingerprint differs from the expected one.
    pub live: BTreeMap<String, Shape>,
    /// The cached expected shape of every key a checked schema has (keys not computed yet
    /// are absent).
    pub expected: BTreeMap<ShapeKey, Expected>,
    /// The [`shape_id`] of every expected shape cached for this server, computed or failed.
    pub computed: BTreeSet<String>,
    /// Whether `computed` is known (the cache was read, or the bookkeeping is too old to have
    /// one); a plan computes missing shapes only then.
    pub cache_read: bool,
    /// The live shapes a human accepted (`adopt --accept-drift`), the latest per schema.
    pub accepted: BTreeMap<String, Accepted>,
}

/// A live shape accepted as it is, at the versions the schema had then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The versions, as [`ShapeKey`] displays them.
    pub versions: String,
    pub fingerprint: String,
}

impl Shapes {
    /// Whether a schema's live shape is the one a human accepted at its current versions.
    pub fn is_accepted(&self, schema: &str, key: &ShapeKey) -> bool {
        match (self.accepted.get(schema), self.fingerprints.get(schema)) {
            (Some(a), Some(live)) => a.versions == key.to_string() && a.fingerprint == *live,
            _ => false,
        }
    }
}

/// The schemas checked for drift in a region, with their keys: every region-scope set's
/// schema and every active tenant's schema that has history, whose history has no gap and
/// matches the checksums of the desired files, that has no failed attempt of a later version
/// (possibly half applied), and whose sets do not all say `drift = "off"`.
pub fn targets(sets: &[SchemaSet], bookkeeping: &Bookkeeping) -> BTreeMap<String, Target> {
    let mut applied: BTreeMap<(&str, &str), Vec<&HistoryRow>> = BTreeMap::new();
    for row in bookkeeping.history.iter().filter(|r| r.success) {
        applied
            .entry((row.target_schema.as_str(), row.schema_set.as_str()))
            .or_default()
            .push(row);
    }
    for rows in applied.values_mut() {
        rows.sort_by_key(|r| r.version);
    }
    // A failed attempt of a later version may have left part of a `-- neo:no-transaction`
    // migration behind: such a schema is between two shapes until the migration completes.
    let mut midway: BTreeSet<&str> = BTreeSet::new();
    for row in bookkeeping.history.iter().filter(|r| !r.success) {
        let done = applied
            .get(&(row.target_schema.as_str(), row.schema_set.as_str()))
            .map_or(0, |rows| rows.len() as u32);
        if row.version > done {
            midway.insert(row.target_schema.as_str());
        }
    }
    applied.retain(|(schema, _), _| !midway.contains(schema));
    let mut out = BTreeMap::new();
    for set in sets.iter().filter(|s| s.scope == Scope::Region) {
        if let Some(t) = target(sets, &applied, &set.name, None, Scope::Region) {
            out.insert(set.name.clone(), t);
        }
    }
    let schemas: BTreeSet<(&str, &str)> = bookkeeping
        .tenants
        .values()
        .filter(|r| r.status == TenantStatus::Active)
        .map(|r| (r.schema_name.as_str(), r.slug.as_str()))
        .collect();
    for (schema, slug) in schemas {
        if let Some(t) = target(sets, &applied, schema, Some(slug), Scope::Tenant) {
            out.insert(schema.to_string(), t);
        }
    }
    out
}

/// The target of one schema, when it is checked (see [`targets`]).
fn target(
    sets: &[SchemaSet],
    applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
    schema: &str,
    tenant: Option<&str>,
    scope: Scope,
) -> Option<Target> {
    let mut key = Vec::new();
    let mut policies = Vec::new();
    let mut prune = true;
    for set in sets.iter().filter(|s| s.scope == scope) {
        if scope == Scope::Region && set.name != schema {
            continue;
        }
        let Some(rows) = applied.get(&(schema, set.name.as_str())) else {
            continue;
        };
        for (i, row) in rows.iter().enumerate() {
            let same = set
                .migration(row.version)
                .is_some_and(|m| m.checksum == row.checksum);
            if row.version != i as u32 + 1 || !same {
                return None;
            }
        }
        key.push((set.name.clone(), rows.len() as u32));
        policies.push(set.drift);
        prune &= set.drift_prune;
    }
    policies.retain(|p| *p != DriftPolicy::Off);
    if key.is_empty() || policies.is_empty() {
        return None;
    }
    let policy = if policies.iter().all(|p| *p == DriftPolicy::Repair) {
        DriftPolicy::Repair
    } else {
        DriftPolicy::Report
    };
    Some(Target {
        key: ShapeKey(key),
        tenant: tenant.map(str::to_string),
        policy,
        prune,
    })
}

/// The name of the cached expected shape of `key`: a SHA-256 of the description query, the
/// versions, and the checksum of every migration they run, so that a changed file or a build
/// that describes schemas differently never reuses a stale shape. `None` when a set or
/// version of `key` is not in `sets`.
pub fn shape_id(sets: &[SchemaSet], key: &ShapeKey) -> Option<String> {
    // The query's own digest, computed once per process (the text is about 12 KB).
    static DESCRIBE_DIGEST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let describe =
        DESCRIBE_DIGEST.get_or_init(|| format!("{:x}", Sha256::digest(DESCRIBE.as_bytes())));
    let mut hash = Sha256::new();
    hash.update(describe.as_bytes());
    for (name, version) in &key.0 {
        let set = sets.iter().find(|s| &s.name == name)?;
        let files = set.migrations.get(..*version as usize)?;
        hash.update(format!("\0{name}\0{version}").as_bytes());
        for m in files {
            hash.update(format!("\0{}", m.checksum).as_bytes());
        }
    }
    Some(format!("{:x}", hash.finalize()))
}
