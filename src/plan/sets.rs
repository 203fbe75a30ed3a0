//! Schema sets: the region-scope sets of a region and the tenant-scope sets of a tenant,
//! each target checked against its migration history (gaps, changed checksums, blocked
//! dependencies) before its migration, or its rollback (see `rollback.rs`), is planned. Also
//! the history indexes the rest of the planner reads versions from.

use std::collections::{BTreeMap, BTreeSet};

use super::region::RegionPlanner;
use super::types::{Action, BlockReason, MigrationStep};
use crate::desired::{Desired, SchemaSet, Scope, Tenant};
use crate::observed::HistoryRow;

impl<F: Fn(&str) -> bool> RegionPlanner<'_, F> {
    /// Plans the region-scope sets in dependency order; returns the sets that are blocked.
    pub(super) fn plan_region_sets(
        &mut self,
        applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
    ) -> BTreeSet<String> {
        let mut blocked_sets = BTreeSet::new();
        for set in self
            .desired
            .schema_sets
            .iter()
            .filter(|s| s.scope == Scope::Region)
        {
            let schema = set.name.as_str();
            let rows = applied.get(&(schema, set.name.as_str()));
            let exists = self.state.schemas.contains(schema);
            if rows.is_none() && exists {
                self.block(
                    BlockReason::Unmanaged,
                    None,
                    Some(&set.name),
                    Some(schema),
                    format!("schema {schema} exists but neo-reconcile has no history for it: record what it holds first with `neo-reconcile adopt --schema-set {} --region {} --at-version <N>` (N = the last migration of schemas/{}/ it already holds; `--from-flyway` instead of `--at-version <N>` reads Flyway's history)", set.name, self.region.name, set.name),
                );
                blocked_sets.insert(set.name.clone());
                continue;
            }
            if rows.is_some() && !exists {
                self.block(
                    BlockReason::MissingOutOfBand,
                    None,
                    Some(&set.name),
                    Some(schema),
                    format!("schema {schema} has migration history but no longer exists (dropped out of band): restore it from backup"),
                );
                blocked_sets.insert(set.name.clone());
                continue;
            }
            if exists && !self.check_drift(None, schema) {
                blocked_sets.insert(set.name.clone());
                continue;
            }
            if self.region_rollback_waits(set, rows) {
                continue;
            }
            if !self.plan_set(
                None,
                set,
                schema,
                set.target,
                rows.map_or(&[][..], Vec::as_slice),
                &blocked_sets,
            ) {
                blocked_sets.insert(set.name.clone());
            }
        }
        blocked_sets
    }

    /// Plans a tenant's sets in dependency order; returns the versions it will be at.
    pub(super) fn plan_tenant_sets(
        &mut self,
        tenant: &Tenant,
        schema: &str,
        applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
        region_blocked: &BTreeSet<String>,
    ) -> BTreeMap<String, u32> {
        let mut blocked = region_blocked.clone();
        let mut versions = BTreeMap::new();
        let start = self.out.actions.len();
        for set in self
            .desired
            .schema_sets
            .iter()
            .filter(|s| s.scope == Scope::Tenant)
        {
            let rows = applied
                .get(&(schema, set.name.as_str()))
                .map_or(&[][..], Vec::as_slice);
            let live = rows.last().map_or(0, |r| r.version);
            let target = tenant.target_of(set);
            if self.plan_set(Some(&tenant.slug), set, schema, target, rows, &blocked) {
                versions.insert(set.name.clone(), target);
            } else {
                blocked.insert(set.name.clone());
                if live > 0 {
                    versions.insert(set.name.clone(), live);
                }
            }
        }
        self.order_rollbacks(start);
        versions.retain(|_, v| *v > 0);
        versions
    }

    /// Checks one target of a set against its history and plans its migration. `false` when
    /// the target is blocked.
    pub(super) fn plan_set(
        &mut self,
        tenant: Option<&str>,
        set: &SchemaSet,
        schema: &str,
        target: u32,
        rows: &[&HistoryRow],
        blocked: &BTreeSet<String>,
    ) -> bool {
        // A target with nothing to do is not held up by a blocked dependency: listing every
        // tenant at its target as blocked would bury the finding that blocks them.
        let needs_work = rows.last().map_or(0, |r| r.version) != target;
        if let Some(dep) = set
            .depends_on
            .iter()
            .find(|d| needs_work && blocked.contains(*d))
        {
            self.block(
                BlockReason::DependencyBlocked,
                tenant,
                Some(&set.name),
                Some(schema),
                format!(
                    "{} in {schema} depends on {dep}, which is blocked",
                    set.name
                ),
            );
            return false;
        }
        let mut ok = self.check_history(tenant, set, schema, rows);
        let live = rows.last().map_or(0, |r| r.version);
        if live > target {
            ok &= self.check_rollback(tenant, set, schema, live, target);
        }
        if !ok {
            return false;
        }
        if live > target {
            self.push_rollback(tenant, set, schema, live, target);
        }
        if live < target {
            self.out.actions.push(Action::Migrate {
                tenant: tenant.map(str::to_string),
                schema_set: set.name.clone(),
                schema: schema.to_string(),
                from: live,
                to: target,
                versions: set.migrations[live as usize..target as usize]
                    .iter()
                    .map(|m| MigrationStep {
                        version: m.version,
                        description: m.description.clone(),
                        file: m.file.clone(),
                        checksum: m.checksum.clone(),
                        no_transaction: m.no_transaction,
                    })
                    .collect(),
            });
        }
        true
    }

    /// Checks the history of a set in one schema: no version recorded without the ones before
    /// it, and every applied migration's checksum still that of its file. `false` when not.
    fn check_history(
        &mut self,
        tenant: Option<&str>,
        set: &SchemaSet,
        schema: &str,
        rows: &[&HistoryRow],
    ) -> bool {
        let mut ok = true;
        for (i, row) in rows.iter().enumerate() {
            let expected = i as u32 + 1;
            if row.version != expected {
                ok = false;
                self.block(
                    BlockReason::HistoryGap,
                    tenant,
                    Some(&set.name),
                    Some(schema),
                    format!("history of {} in {schema} records version {} without version {expected}: repair neo_reconcile.schema_history", set.name, row.version),
                );
                break;
            }
            match set.migration(row.version) {
                Some(m) if m.checksum != row.checksum => {
                    ok = false;
                    self.block(
                        BlockReason::ChecksumMismatch,
                        tenant,
                        Some(&set.name),
                        Some(schema),
                        format!(
                            "checksum mismatch: {} (version {}) was applied to {schema} on {} by {} with checksum {}, but the file now has {}: a migration must never change once applied; restore the file or add a new migration",
                            m.file, row.version, row.applied_at, row.applied_by, short(&row.checksum), short(&m.checksum)
                        ),
                    );
                }
                _ => {}
            }
        }
        ok
    }
}

/// The live version of each tenant-scope set in a schema (sets never applied are left out).
pub(super) fn live_versions(
    desired: &Desired,
    schema: &str,
    applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
) -> BTreeMap<String, u32> {
    desired
        .schema_sets
        .iter()
        .filter(|s| s.scope == Scope::Tenant)
        .filter_map(|s| {
            Some((
                s.name.clone(),
                applied.get(&(schema, s.name.as_str()))?.last()?.version,
            ))
        })
        .collect()
}

/// Successful history rows by (schema, set), sorted by version.
///
/// The rows are sorted once by (schema, set, version), stably so that rows of one version keep
/// their order, and cut into groups; the map is then built from keys already in order, in
/// linear time. The observer reads the history in that order, so the sort only checks it.
pub(super) fn index_history(history: &[HistoryRow]) -> BTreeMap<(&str, &str), Vec<&HistoryRow>> {
    fn key(r: &HistoryRow) -> (&str, &str) {
        (r.target_schema.as_str(), r.schema_set.as_str())
    }
    let mut rows: Vec<&HistoryRow> = history.iter().filter(|r| r.success).collect();
    rows.sort_by(|a, b| key(a).cmp(&key(b)).then(a.version.cmp(&b.version)));
    let mut groups: Vec<((&str, &str), Vec<&HistoryRow>)> = Vec::new();
    for row in rows {
        match groups.last_mut() {
            Some((k, group)) if *k == key(row) => group.push(row),
            _ => groups.push((key(row), vec![row])),
        }
    }
    groups.into_iter().collect()
}

fn short(checksum: &str) -> &str {
    &checksum[..checksum.len().min(12)]
}
