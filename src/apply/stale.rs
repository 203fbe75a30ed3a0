//! Whether an approved plan still holds: the actions a fresh plan of the live state needs
//! must be exactly the approved ones, region by region.

use super::report::describe;
use crate::plan::{Action, Plan, RegionPlan};

/// The actions of a region plan that apply runs per region (the registry is updated once, at
/// the end, from what actually happened).
pub(super) fn region_actions(r: &RegionPlan) -> Vec<&Action> {
    r.actions
        .iter()
        .filter(|a| !matches!(a, Action::UpdateRegistry { .. }))
        .collect()
}

/// Why a freshly computed region plan differs from the approved one, if it does.
///
/// A dead run's leftovers and expected shapes to compute are not compared: whichever run takes
/// the lock first closes or computes them, and either way the rest of the plan holds.
pub fn stale_reason(approved: &RegionPlan, fresh: &RegionPlan) -> Option<String> {
    let compared = |r| {
        region_actions(r)
            .into_iter()
            .filter(|a| !matches!(a, Action::CloseDeadRun { .. } | Action::ComputeShape { .. }))
            .collect::<Vec<_>>()
    };
    let (a, f) = (compared(approved), compared(fresh));
    if a == f {
        return None;
    }
    for old in &a {
        if f.contains(old) {
            continue;
        }
        if let Action::Migrate {
            tenant,
            schema_set,
            schema,
            from,
            ..
        } = old
        {
            let who = tenant
                .as_ref()
                .map_or_else(|| format!("schema {schema}"), |t| format!("tenant {t}"));
            let now = f.iter().find_map(|n| match n {
                Action::Migrate {
                    tenant: t2,
                    schema_set: s2,
                    from: f2,
                    ..
                } if t2 == tenant && s2 == schema_set => Some(*f2),
                _ => None,
            });
            return Some(match now {
                Some(now) => format!(
                    "{who} is now at version {now} of {schema_set}, the plan expected {from}"
                ),
                None => format!("{who} no longer needs {schema_set} migrated from version {from}"),
            });
        }
        return Some(format!(
            "`{}` is no longer what the live state needs",
            describe(old)
        ));
    }
    let new = f
        .iter()
        .find(|n| !a.contains(n))
        .map(|n| describe(n))
        .unwrap_or_default();
    Some(format!("`{new}` is now needed but is not in the plan"))
}

/// Checks an approved plan against the live state before anything changes: every region of
/// the plan must plan exactly the same actions now.
pub fn check_not_stale(approved: &Plan, fresh: &Plan) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    for a in approved
        .regions
        .iter()
        .filter(|r| !region_actions(r).is_empty())
    {
        match fresh.regions.iter().find(|f| f.name == a.name) {
            Some(f) if !f.reachable => reasons.push(format!(
                "region {} is unreachable: {}",
                a.name,
                f.reason.as_deref().unwrap_or("")
            )),
            Some(f) => {
                if let Some(r) = stale_reason(a, f) {
                    reasons.push(format!("region {}: {r}", a.name));
                }
            }
            None => reasons.push(format!("region {} is not planned any more", a.name)),
        }
    }
    for f in &fresh.regions {
        let in_approved = approved
            .regions
            .iter()
            .any(|a| a.name == f.name && !region_actions(a).is_empty());
        if !in_approved && !region_actions(f).is_empty() {
            reasons.push(format!(
                "region {}: `{}` is now needed but is not in the plan",
                f.name,
                describe(region_actions(f)[0])
            ));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::MigrationStep;

    fn migrate(tenant: &str, from: u32) -> Action {
        Action::Migrate {
            tenant: Some(tenant.into()),
            schema_set: "app".into(),
            schema: format!("tenant_{tenant}"),
            from,
            to: 5,
            versions: vec![MigrationStep {
                version: 5,
                description: "x".into(),
                file: "schemas/app/V5__x.sql".into(),
                checksum: "c".into(),
                no_transaction: false,
            }],
        }
    }

    fn region(actions: Vec<Action>) -> RegionPlan {
        RegionPlan {
            name: "us".into(),
            reachable: true,
            reason: None,
            actions,
            blocked: vec![],
            unmanaged: vec![],
            scheduled: vec![],
            drift: vec![],
        }
    }

    #[test]
    fn stale_reasons_name_the_tenant_and_versions() {
        let approved = region(vec![migrate("acme", 3)]);
        assert_eq!(
            stale_reason(&approved, &region(vec![migrate("acme", 3)])),
            None
        );
        assert_eq!(
            stale_reason(&approved, &region(vec![migrate("acme", 4)])).unwrap(),
            "tenant acme is now at version 4 of app, the plan expected 3"
        );
        assert_eq!(
            stale_reason(&approved, &region(vec![])).unwrap(),
            "tenant acme no longer needs app migrated from version 3"
        );
        assert_eq!(
            stale_reason(&region(vec![]), &region(vec![migrate("beta", 1)])).unwrap(),
            "`migrate tenant beta: app 1 -> 5 in schema tenant_beta` is now needed but is not in the plan"
        );
    }
}
