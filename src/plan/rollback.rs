//! Rollback: a set's target (or a tenant's pin) below the live version. The versions above
//! the target are undone by their undo files (`U<n>__<description>.sql`), newest first, when
//! `[policy] allow_rollback` is true and every one of them has an undo file; otherwise the
//! target is blocked with the reason. A region-scope set waits while a tenant-scope set that
//! depends on it still has tenants to take back (the tenants go first). Also the order of a
//! tenant's rollbacks (dependents first) and how prominent the plan's rollbacks are.

use std::collections::{BTreeMap, BTreeSet};

use super::region::RegionPlanner;
use super::sets::index_history;
use super::types::{Action, BlockReason, MigrationStep, RegionPlan, Summary};
use crate::desired::{Desired, SchemaSet, Scope, TenantStatus};
use crate::observed::HistoryRow;

impl<F: Fn(&str) -> bool> RegionPlanner<'_, F> {
    /// Checks that a set may go back from `live` to `target` in `schema`: the repository still
    /// has the versions above the target, rollback is allowed, and each of those versions has
    /// an undo file. Every problem is reported; `false` when there is one.
    pub(super) fn check_rollback(
        &mut self,
        tenant: Option<&str>,
        set: &SchemaSet,
        schema: &str,
        live: u32,
        target: u32,
    ) -> bool {
        let name = &set.name;
        if live > set.latest() {
            self.block(
                BlockReason::Downgrade,
                tenant,
                Some(name),
                Some(schema),
                format!("{name} in {schema} is at version {live} (the repository has only up to V{}), above the target {target}: versions the repository does not have cannot be undone; restore their migrations (and undo files) or raise the target", set.latest()),
            );
            return false;
        }
        let mut ok = true;
        let undo_list = (target + 1..=live)
            .rev()
            .map(|v| format!("U{v}"))
            .collect::<Vec<_>>()
            .join(", ");
        if !self.desired.policy.allow_rollback {
            ok = false;
            self.block(
                BlockReason::RollbackNotAllowed,
                tenant,
                Some(name),
                Some(schema),
                format!("{name} in {schema} is at version {live}, above the target {target}: going back runs the undo files {undo_list}, and [policy] allow_rollback is not true in neo.toml; allow it, or raise the target (or write a forward migration)"),
            );
        }
        let missing: Vec<String> = (target + 1..=live)
            .rev()
            .filter(|v| set.undo(*v).is_none())
            .filter_map(|v| set.migration(v))
            .map(|m| undo_file_name(m.file.as_str(), m.version, &m.description))
            .collect();
        if !missing.is_empty() {
            ok = false;
            self.block(
                BlockReason::UndoMissing,
                tenant,
                Some(name),
                Some(schema),
                format!(
                    "{name} in {schema} cannot go back from {live} to {target}: {} missing (an undo file undoes the migration of the same version); write {}, or raise the target",
                    missing.join(", "),
                    if missing.len() == 1 { "it" } else { "them" }
                ),
            );
        }
        ok
    }

    /// Plans the rollback of a set in `schema` from `live` down to `target`, once
    /// [`check_rollback`](Self::check_rollback) allowed it.
    pub(super) fn push_rollback(
        &mut self,
        tenant: Option<&str>,
        set: &SchemaSet,
        schema: &str,
        live: u32,
        target: u32,
    ) {
        let versions = (target + 1..=live)
            .rev()
            .filter_map(|v| set.undo(v))
            .map(|u| MigrationStep {
                version: u.version,
                description: u.description.clone(),
                file: u.file.clone(),
                checksum: u.checksum.clone(),
                no_transaction: u.no_transaction,
            })
            .collect();
        self.out.actions.push(Action::Rollback {
            tenant: tenant.map(str::to_string),
            schema_set: set.name.clone(),
            schema: schema.to_string(),
            from: live,
            to: target,
            versions,
        });
    }

    /// Whether a region-scope set's rollback must wait for the tenants: a tenant-scope set
    /// depending on it is still above its target in some tenant of the region. Reported as
    /// blocked with the order to follow; the set stays where it is (so the tenants' own
    /// rollbacks, which depend on it, still run in this apply).
    pub(super) fn region_rollback_waits(
        &mut self,
        set: &SchemaSet,
        rows: Option<&Vec<&HistoryRow>>,
    ) -> bool {
        let live = rows.and_then(|r| r.last()).map_or(0, |r| r.version);
        if live <= set.target {
            return false;
        }
        let history = self
            .state
            .bookkeeping
            .as_ref()
            .map_or(&[][..], |b| b.history.as_slice());
        let applied = index_history(history);
        let managed = self.state.bookkeeping.as_ref().map(|b| &b.tenants);
        let mut waiting: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for dependent in self
            .desired
            .schema_sets
            .iter()
            .filter(|s| s.scope == Scope::Tenant && s.depends_on.contains(&set.name))
        {
            for tenant in self.desired.tenants_in(&self.region.name) {
                let is_live = managed
                    .and_then(|m| m.get(&tenant.slug))
                    .is_some_and(|r| r.status != TenantStatus::Deleted);
                let schema = tenant.schema();
                let version = applied
                    .get(&(schema.as_str(), dependent.name.as_str()))
                    .and_then(|r| r.last())
                    .map_or(0, |r| r.version);
                if is_live && version > tenant.target_of(dependent) {
                    waiting
                        .entry(dependent.name.as_str())
                        .or_default()
                        .push(tenant.slug.as_str());
                }
            }
        }
        if waiting.is_empty() {
            return false;
        }
        let sets: Vec<String> = waiting
            .iter()
            .map(|(s, tenants)| {
                format!(
                    "{s} in {} tenant(s) ({})",
                    tenants.len(),
                    tenants.join(", ")
                )
            })
            .collect();
        let message = format!(
            "{name} would go back from {live} to {target}, but sets that depend on it are still above their target: {}. Tenants go back first: this apply takes them back, and the next apply (or the daemon's next reconcile) takes {name} back (apply runs region-scope sets before tenants, so doing both now would undo {name} under tenants that still use it)",
            sets.join("; "),
            name = set.name,
            target = set.target,
        );
        self.block(
            BlockReason::RollbackOrder,
            None,
            Some(&set.name),
            Some(&set.name),
            message,
        );
        true
    }

    /// Puts a tenant's rollbacks planned since action `start` before its other set actions, in
    /// reverse dependency order: a set goes back before the sets it depends on.
    pub(super) fn order_rollbacks(&mut self, start: usize) {
        let tail = self.out.actions.split_off(start);
        let (mut rollbacks, rest): (Vec<_>, Vec<_>) = tail
            .into_iter()
            .partition(|a| matches!(a, Action::Rollback { .. }));
        rollbacks.reverse();
        self.out.actions.extend(rollbacks);
        self.out.actions.extend(rest);
    }
}

/// The undo file a migration needs: `schemas/app/V5__x.sql` → `schemas/app/U5__x.sql`.
fn undo_file_name(migration_file: &str, version: u32, description: &str) -> String {
    let dir = migration_file
        .rsplit_once('/')
        .map_or("", |(d, _)| d)
        .to_string();
    let sep = if dir.is_empty() { "" } else { "/" };
    format!("{dir}{sep}U{version}__{description}.sql")
}

/// Fills in how prominent the plan's rollbacks are: the most versions one rollback goes back,
/// and whether a tenant-scope set is rolled back in every tenant of the plan that has it.
pub(super) fn rollback_prominence(
    desired: &Desired,
    regions: &[RegionPlan],
    summary: &mut Summary,
) {
    let mut per_set: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for action in regions.iter().flat_map(|r| &r.actions) {
        if let Action::Rollback {
            tenant,
            schema_set,
            from,
            to,
            ..
        } = action
        {
            summary.rollback_max_versions = summary.rollback_max_versions.max(from - to);
            if let Some(t) = tenant {
                per_set.entry(schema_set).or_default().insert(t);
            }
        }
    }
    // The tenants the plan covers that have a live schema already: active or suspended, and
    // not created by this plan.
    let created: BTreeSet<&str> = regions
        .iter()
        .flat_map(|r| &r.actions)
        .filter(|a| matches!(a, Action::CreateTenant { .. }))
        .filter_map(Action::tenant)
        .collect();
    let planned: BTreeSet<&str> = regions
        .iter()
        .filter(|r| r.reachable)
        .flat_map(|r| desired.tenants_in(&r.name))
        .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
        .map(|t| t.slug.as_str())
        .filter(|t| !created.contains(t))
        .collect();
    summary.rollback_all_tenants = per_set
        .values()
        .any(|tenants| planned.len() > 1 && planned.iter().all(|t| tenants.contains(t)));
}
