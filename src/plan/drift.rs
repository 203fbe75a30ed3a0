//! Live-schema drift: a checked target's observed shape against the shape its recorded
//! versions should have (both observed, see `observed::shape`), as a diff of the normalized
//! descriptions, and what the set's `drift` policy makes of it: blocked with the diff
//! (`report`, or anything that cannot be put back), or put back (`repair`) by one action whose
//! statements come from the expected definitions.

use std::collections::BTreeMap;

use similar::{ChangeTag, TextDiff};

use super::region::RegionPlanner;
use super::types::{Action, BlockReason, DriftReport};
use crate::desired::{DriftPolicy, Scope, TenantStatus};
use crate::observed::shape::{shape_id, Expected, ShapeEntry, ShapeKey, Target};

/// The order objects are dropped in (dependents first) and, reversed, created in; `None` for
/// objects that carry data or are not put back.
fn rank(object: &str) -> Option<usize> {
    [
        "trigger ",
        "constraint ",
        "view ",
        "index ",
        "function ",
        "procedure ",
    ]
    .iter()
    .position(|p| object.starts_with(p))
}

/// What it takes to bring one target back to its expected shape.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Repair {
    /// `(rank, statement)` of the objects to drop, and of those to create.
    drops: Vec<(usize, String)>,
    creates: Vec<(usize, String)>,
    revokes: Vec<String>,
    grants: Vec<String>,
    /// The changes that cannot be put back (tables, columns, owners, extra objects without
    /// `drift_prune`, ...): their objects.
    pub(super) unrepairable: Vec<String>,
}

impl Repair {
    /// The statements in the order they run: drops, creates, revokes, grants.
    pub(super) fn statements(mut self) -> Vec<String> {
        self.drops.sort_by_key(|(r, _)| *r);
        self.creates.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
        let mut out: Vec<String> = self.drops.into_iter().map(|(_, s)| s).collect();
        out.extend(self.creates.into_iter().map(|(_, s)| s));
        out.extend(self.revokes);
        out.extend(self.grants);
        out
    }
}

/// What putting back each differing object takes, objects matched by name.
pub(super) fn repair(expected: &[ShapeEntry], live: &[ShapeEntry], prune: bool) -> Repair {
    let by_object = |entries: &[ShapeEntry]| -> BTreeMap<String, ShapeEntry> {
        entries
            .iter()
            .map(|e| (e.object.clone(), e.clone()))
            .collect()
    };
    let (want, have) = (by_object(expected), by_object(live));
    let mut out = Repair::default();
    let mut objects: Vec<&String> = want.keys().chain(have.keys()).collect();
    objects.sort();
    objects.dedup();
    for object in objects {
        let (w, h) = (want.get(object), have.get(object));
        if w.map(|e| &e.line) == h.map(|e| &e.line) {
            continue;
        }
        let grant = object.starts_with("grant ");
        let drop = h.and_then(|e| e.drop.clone());
        let create = w.and_then(|e| e.create.clone());
        let ok = match (grant, rank(object), w.is_some(), h.is_some()) {
            (true, _, true, false) => create.map(|s| out.grants.push(s)).is_some(),
            (true, _, false, true) => drop.map(|s| out.revokes.push(s)).is_some(),
            (true, _, _, _) => match (drop, create) {
                (Some(d), Some(c)) => {
                    out.revokes.push(d);
                    out.grants.push(c);
                    true
                }
                _ => false,
            },
            (false, None, _, _) => false,
            (false, Some(r), true, false) => create.map(|s| out.creates.push((r, s))).is_some(),
            (false, Some(r), false, true) => {
                prune && drop.map(|s| out.drops.push((r, s))).is_some()
            }
            // A function is replaced in place: dropping it would fail on its dependents.
            (false, Some(r), _, _) if object.starts_with("function ") => {
                create.map(|s| out.creates.push((r, s))).is_some()
            }
            (false, Some(r), _, _) => match (drop, create) {
                (Some(d), Some(c)) => {
                    out.drops.push((r, d));
                    out.creates.push((r, c));
                    true
                }
                _ => false,
            },
        };
        if !ok {
            out.unrepairable.push(object.clone());
        }
    }
    // Privileges on an extra object that is dropped go with it: revoking them afterwards
    // would name an object that no longer exists.
    let dropped: Vec<&String> = have
        .keys()
        .filter(|o| !want.contains_key(*o) && rank(o).is_some() && prune)
        .collect();
    out.revokes.retain(|revoke| {
        !have.iter().any(|(object, entry)| {
            entry.drop.as_ref() == Some(revoke)
                && dropped
                    .iter()
                    .any(|d| object.contains(&format!(" on {d} to ")))
        })
    });
    out.unrepairable.retain(|object| {
        !(object.starts_with("grant ")
            && dropped
                .iter()
                .any(|d| object.contains(&format!(" on {d} to "))))
    });
    // The owner of an object that is created again is the role the repair runs as.
    let unrepairable = std::mem::take(&mut out.unrepairable);
    out.unrepairable = unrepairable
        .iter()
        .filter(|o| {
            o.strip_suffix(" owner").map_or(true, |object| {
                unrepairable.iter().any(|u| u == object)
                    || !(want.contains_key(object) ^ have.contains_key(object))
            })
        })
        .cloned()
        .collect();
    out
}

/// The changed lines of the two descriptions, expected (`-`) against live (`+`), under a
/// `---`/`+++` header.
pub(super) fn diff(
    expected_label: &str,
    live_label: &str,
    expected: &[ShapeEntry],
    live: &[ShapeEntry],
) -> Vec<String> {
    let text = |entries: &[ShapeEntry]| -> String {
        entries.iter().map(|e| format!("{}\n", e.line)).collect()
    };
    let (old, new) = (text(expected), text(live));
    let mut out = vec![
        format!("--- expected ({expected_label})"),
        format!("+++ live {live_label}"),
    ];
    for change in TextDiff::from_lines(&old, &new).iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Equal => continue,
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
        };
        out.push(format!("{sign}{}", change.value().trim_end_matches('\n')));
    }
    out
}

impl<F: Fn(&str) -> bool> RegionPlanner<'_, F> {
    /// Checks a target's live shape against its expected one; `false` when drift blocks it.
    /// Under `drift = "repair"`, when every difference can be put back, plans the repair
    /// instead.
    pub(super) fn check_drift(&mut self, tenant: Option<&str>, schema: &str) -> bool {
        let shapes = &self.state.shapes;
        let Some(target) = self.drift_target(schema) else {
            return true;
        };
        let (Some(fingerprint), Some(Expected::Known(expected))) = (
            shapes.fingerprints.get(schema),
            shapes.expected.get(&target.key),
        ) else {
            return true;
        };
        if *fingerprint == expected.fingerprint || shapes.is_accepted(schema, &target.key) {
            return true;
        }
        let live = shapes
            .live
            .get(schema)
            .map_or(&[][..], |s| s.entries.as_slice());
        let versions = target.key.to_string();
        let lines = diff(&versions, schema, &expected.entries, live);
        if self.midway_no_transaction(tenant, &target)
            && !lines[2..].iter().any(|l| l.starts_with('-'))
        {
            // Extra objects only, before a `-- neo:no-transaction` migration this plan runs:
            // most likely what an interrupted attempt of it left (its statements completed,
            // its history row not written); it is written to run again over them.
            return true;
        }
        if self.undoing_without_transaction(tenant, &target) {
            // A rollback whose first undo file runs outside a transaction: a failed attempt
            // of it leaves the schema between two shapes (some of its statements done), and
            // the file is written to run again over that.
            return true;
        }
        let fix = repair(&expected.entries, live, target.prune);
        let repairable = target.policy == DriftPolicy::Repair && fix.unrepairable.is_empty();
        self.out.drift.push(DriftReport {
            tenant: tenant.map(str::to_string),
            schema: schema.to_string(),
            expected: versions.clone(),
            repaired: repairable,
            diff: lines,
        });
        let statements = fix.statements();
        if repairable && !statements.is_empty() {
            self.out.actions.push(Action::RepairDrift {
                tenant: tenant.map(str::to_string),
                schema: schema.to_string(),
                expected: versions,
                statements,
            });
            return true;
        }
        let why = if target.policy == DriftPolicy::Repair {
            "these changes cannot be put back automatically (tables, columns, owners, or extra objects without drift_prune = true): restore them by hand, or accept the live shape with `neo-reconcile adopt --accept-drift`"
        } else {
            "drift = \"report\": put the schema back by hand, set drift = \"repair\" on the set, or accept the live shape with `neo-reconcile adopt --accept-drift`"
        };
        self.block(
            BlockReason::Drift,
            tenant,
            None,
            Some(schema),
            format!("the live schema {schema} differs from what {versions} creates (see the diff); nothing else is done in it until a human acts: {why}"),
        );
        false
    }

    /// Whether the next migration of one of the target's sets is a `-- neo:no-transaction`
    /// one that this plan applies.
    fn midway_no_transaction(&self, tenant: Option<&str>, target: &Target) -> bool {
        target.key.0.iter().any(|(name, version)| {
            let Some(set) = self.desired.schema_set(name) else {
                return false;
            };
            let goal = match tenant.and_then(|t| self.desired.tenants.get(t)) {
                Some(t) => t.target_of(set),
                None => set.target,
            };
            goal > *version && set.migration(version + 1).is_some_and(|m| m.no_transaction)
        })
    }

    /// Whether this plan rolls one of the target's sets back, starting with a
    /// `-- neo:no-transaction` undo file.
    fn undoing_without_transaction(&self, tenant: Option<&str>, target: &Target) -> bool {
        self.desired.policy.allow_rollback
            && target.key.0.iter().any(|(name, version)| {
                let Some(set) = self.desired.schema_set(name) else {
                    return false;
                };
                let goal = match tenant.and_then(|t| self.desired.tenants.get(t)) {
                    Some(t) => t.target_of(set),
                    None => set.target,
                };
                goal < *version && set.undo.get(version).is_some_and(|u| u.no_transaction)
            })
    }

    /// The observed target of a schema, if it is checked for drift.
    fn drift_target(&self, schema: &str) -> Option<Target> {
        self.state.shapes.targets.get(schema).cloned()
    }
}

impl<F: Fn(&str) -> bool> RegionPlanner<'_, F> {
    /// Plans a `compute_shape` action for every combination of versions a checked target has
    /// after this plan (projected tenants, region-scope sets) whose expected shape is not
    /// cached yet, so that the next plan can check them. Nothing is planned when the cache
    /// could not be read.
    pub(super) fn plan_expected_shapes(&mut self) {
        if !self.state.shapes.cache_read {
            return;
        }
        let sets = &self.desired.schema_sets;
        let mut keys: BTreeMap<ShapeKey, Scope> = BTreeMap::new();
        for set in sets
            .iter()
            .filter(|s| s.scope == Scope::Region && s.drift != DriftPolicy::Off)
        {
            let planned = self.out.actions.iter().rev().find_map(|a| match a {
                Action::Migrate {
                    tenant: None,
                    schema_set,
                    to,
                    ..
                }
                | Action::Rollback {
                    tenant: None,
                    schema_set,
                    to,
                    ..
                } if *schema_set == set.name => Some(*to),
                _ => None,
            });
            let now = self
                .state
                .shapes
                .targets
                .get(&set.name)
                .map(|t| t.key.clone());
            let key = match planned {
                Some(0) => None,
                Some(v) => Some(ShapeKey(vec![(set.name.clone(), v)])),
                None => now,
            };
            if let Some(key) = key {
                keys.insert(key, Scope::Region);
            }
        }
        let tenant_sets: Vec<_> = sets.iter().filter(|s| s.scope == Scope::Tenant).collect();
        for tenant in self
            .desired
            .tenants_in(&self.region.name)
            .filter(|t| (self.selected_tenant)(&t.slug))
        {
            let Some(Some(p)) = self.projections.get(&tenant.slug) else {
                continue;
            };
            if p.status != TenantStatus::Active {
                continue;
            }
            let held: Vec<_> = tenant_sets
                .iter()
                .filter_map(|s| p.versions.get(&s.name).filter(|v| **v > 0).map(|v| (s, *v)))
                .collect();
            if held.iter().all(|(s, _)| s.drift == DriftPolicy::Off) {
                continue;
            }
            let key = ShapeKey(held.iter().map(|(s, v)| (s.name.clone(), *v)).collect());
            keys.insert(key, Scope::Tenant);
        }
        for (key, scope) in keys {
            let Some(id) = shape_id(sets, &key) else {
                continue;
            };
            if !self.state.shapes.computed.contains(&id) {
                self.out.actions.push(Action::ComputeShape {
                    versions: key.to_string(),
                    key,
                    scope,
                    id,
                });
            }
        }
    }
}
