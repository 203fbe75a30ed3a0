//! Rendering a [`Plan`]: text for a terminal, JSON (stable, `format_version: 1`) for tools and
//! `apply --plan`, Markdown for a pull-request comment. The registry change is shown as a
//! unified diff.

use std::fmt::Write;

use similar::udiff::UnifiedHunkHeader;
use similar::{group_diff_ops, DiffOp};

use super::types::{Action, Plan, RegionPlan, Summary};
use crate::desired::Desired;
use crate::sql;

/// Options of the text rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// Show the statements each action runs (needs the desired state, for migration files).
    pub show_sql: bool,
}

/// The plan for a terminal: grouped by region, one line per action with `+`/`~`/`-`/`!`
/// markers, and a closing summary line.
pub fn text(plan: &Plan, desired: &Desired, options: TextOptions) -> String {
    let mut out = String::new();
    let commit = plan
        .desired
        .commit
        .as_deref()
        .map(|c| format!(", commit {}", &c[..c.len().min(12)]))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "neo-reconcile plan: desired state {}{commit}",
        &plan.desired.digest[..plan.desired.digest.len().min(12)]
    );
    for region in &plan.regions {
        out.push('\n');
        region_text(&mut out, region, desired, options);
    }
    out.push('\n');
    out.push_str(&summary_line(&plan.summary));
    out.push('\n');
    out
}

fn region_text(out: &mut String, region: &RegionPlan, desired: &Desired, options: TextOptions) {
    let endpoint = desired
        .regions
        .get(&region.name)
        .map(|r| {
            format!(
                " ({} at {}:{})",
                r.postgres.database, r.postgres.host, r.postgres.port
            )
        })
        .unwrap_or_default();
    if !region.reachable {
        let _ = writeln!(
            out,
            "Region {}{endpoint}: UNREACHABLE: {}",
            region.name,
            region.reason.as_deref().unwrap_or("unknown reason")
        );
        return;
    }
    let _ = writeln!(
        out,
        "Region {}{endpoint}: {} change{}, {} blocked",
        region.name,
        region.actions.len(),
        if region.actions.len() == 1 { "" } else { "s" },
        region.blocked.len()
    );
    if region.actions.is_empty() && region.blocked.is_empty() && region.drift.is_empty() {
        let _ = writeln!(out, "  (no changes)");
    }
    // The statements of every action, as apply runs them (joined per target, see
    // `sql::programs`).
    let programs = options
        .show_sql
        .then(|| desired.regions.get(&region.name))
        .flatten()
        .map(|r| sql::programs(&region.actions, desired, r));
    for (i, action) in region.actions.iter().enumerate() {
        let _ = writeln!(out, "  {}", action_line(action));
        action_details(out, action);
        if let Some(program) = programs.as_ref().map(|p| &p[i]) {
            let lines = match program {
                Ok(program) => program.render(),
                Err(e) => vec![format!("-- cannot show the statements: {e}")],
            };
            for stmt in lines {
                for line in stmt.lines() {
                    let _ = writeln!(out, "        | {line}");
                }
            }
        }
    }
    region_findings(out, region);
}

/// The findings of a region: blocked targets, drift, scheduled actions, unmanaged schemas.
fn region_findings(out: &mut String, region: &RegionPlan) {
    for b in &region.blocked {
        let who = match (&b.tenant, &b.schema_set) {
            (Some(t), Some(s)) => format!("tenant {t}, {s}"),
            (Some(t), None) => format!("tenant {t}"),
            (None, Some(s)) => s.clone(),
            (None, None) => region.name.clone(),
        };
        let _ = writeln!(out, "  ! blocked {who}: {}", b.message);
    }
    for d in &region.drift {
        let who = d
            .tenant
            .as_ref()
            .map_or_else(|| d.schema.clone(), |t| format!("tenant {t}"));
        let (mark, what) = if d.repaired {
            ("~", "repaired")
        } else {
            ("!", "blocked")
        };
        let _ = writeln!(
            out,
            "  {mark} drift {who}: {} (schema {}, {what})",
            d.expected, d.schema
        );
        for line in &d.diff {
            let _ = writeln!(out, "      {line}");
        }
    }
    for s in &region.scheduled {
        let _ = writeln!(
            out,
            "  @ {} {} scheduled: schema {} is dropped by the first apply after {} ([policy] destroy_after)",
            s.kind, s.tenant, s.schema, s.due
        );
    }
    for s in &region.unmanaged {
        let _ = writeln!(
            out,
            "  ? unmanaged schema {s}: no bookkeeping row, left alone"
        );
    }
}

/// The lines under an action: the migrations or undo files it runs, the registry diff.
fn action_details(out: &mut String, action: &Action) {
    match action {
        Action::Migrate { versions, .. } => {
            for v in versions {
                let note = if v.no_transaction {
                    " [no transaction]"
                } else {
                    ""
                };
                let _ = writeln!(out, "      V{} {}{note}", v.version, v.description);
            }
        }
        Action::Rollback { versions, .. } => {
            for v in versions {
                let note = if v.no_transaction {
                    " [no transaction]"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "      U{} {}{note} (undoes V{})",
                    v.version, v.description, v.version
                );
            }
        }
        Action::UpdateRegistry {
            upsert,
            delete,
            before,
            ..
        } => {
            for line in registry_diff(before, upsert, delete).lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
        _ => {}
    }
}

/// One line for an action, with its marker.
pub fn action_line(action: &Action) -> String {
    match action {
        Action::Bootstrap { database, schema, create_database, from, to } => format!(
            "+ bootstrap {schema} in database {database}{} (version {from} -> {to})",
            if *create_database { " (create the database)" } else { "" }
        ),
        Action::CreateExtension { name, schema, create_schema } => format!(
            "+ create_extension {name} in schema {schema}{}",
            if *create_schema { " (create the schema)" } else { "" }
        ),
        Action::Migrate { tenant, schema_set, schema, from, to, .. } => match tenant {
            Some(t) => format!("~ migrate tenant {t}: {schema_set} {from} -> {to} in schema {schema}"),
            None => format!("~ migrate {schema_set}: {from} -> {to} in schema {schema}"),
        },
        Action::Rollback { tenant, schema_set, schema, from, to, .. } => match tenant {
            Some(t) => format!("- rollback tenant {t}: {schema_set} {from} -> {to} in schema {schema}"),
            None => format!("- rollback {schema_set}: {from} -> {to} in schema {schema}"),
        },
        Action::CreateTenant { tenant, schema, owner_role, rw_role } => {
            format!("+ create_tenant {tenant} (schema {schema}, roles {owner_role}, {rw_role})")
        }
        Action::SuspendTenant { tenant, schema, rw_role } => {
            format!("- suspend_tenant {tenant} (revoke {rw_role}'s access to {schema})")
        }
        Action::ResumeTenant { tenant, schema, rw_role } => {
            format!("~ resume_tenant {tenant} (give {rw_role} access to {schema} again)")
        }
        Action::ArchiveTenant { tenant, schema, archived_schema, .. } => {
            format!("- archive_tenant {tenant} (rename {schema} to {archived_schema}, data kept)")
        }
        Action::RestoreTenant { tenant, archived_schema, schema, rw_role } => format!(
            "~ restore_tenant {tenant} (rename {archived_schema} back to {schema}, give {rw_role} access again)"
        ),
        Action::DestroyTenant { tenant, schema, owner_role, rw_role } => format!(
            "- destroy_tenant {tenant} (DROP schema {schema} and its data, roles {owner_role}, {rw_role})"
        ),
        Action::CloseDeadRun { runs, holder } => format!(
            "~ close_dead_run: {}{} (its process is gone; marked interrupted)",
            match runs.as_slice() {
                [] => "no run left running".to_string(),
                [one] => format!("run {one} still marked running"),
                many => format!("runs {} still marked running", many.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")),
            },
            holder.as_ref().map_or_else(String::new, |h| format!(", the region lock last held by {h}")),
        ),
        Action::RepairDrift { tenant, schema, expected, statements } => format!(
            "~ repair_drift {}: put back definitions of {expected} in schema {schema} ({} statement{})",
            tenant.as_ref().map_or_else(|| schema.clone(), |t| format!("tenant {t}")),
            statements.len(),
            if statements.len() == 1 { "" } else { "s" }
        ),
        Action::ComputeShape { versions, .. } => format!(
            "+ compute_shape {versions}: run its migrations in a scratch schema that is never committed, keep the shape for drift checks"
        ),
        Action::UpdateRegistry { database, upsert, delete, .. } => format!(
            "~ update_registry admin.database_connections in database {database} ({} upserted, {} deleted)",
            upsert.len(),
            delete.len()
        ),
    }
}

/// The registry change as a unified diff, one line per row, rows matched by tenant slug.
///
/// The registry is a keyed table, so rows are paired by key rather than by a line diff: a
/// changed row shows as its old line followed by its new line, and the work is linear in the
/// number of rows (a Myers line diff is quadratic when every row changes, as when a whole fleet
/// moves to a new version: 0.65 s for 10,000 rows, see BENCHMARKS.md). Hunks are grouped and
/// headed by `similar`, with no context lines.
pub fn registry_diff(
    before: &[crate::observed::RegistryRow],
    upsert: &[crate::observed::RegistryRow],
    delete: &[String],
) -> String {
    use std::collections::BTreeMap;
    let old: BTreeMap<&str, String> = before
        .iter()
        .map(|r| (r.tenant.as_str(), r.render_line()))
        .collect();
    let mut new = old.clone();
    for slug in delete {
        new.remove(slug.as_str());
    }
    for row in upsert {
        new.insert(&row.tenant, row.render_line());
    }
    let old: Vec<(&str, String)> = old.into_iter().collect();
    let new: Vec<(&str, String)> = new.into_iter().collect();

    let (mut i, mut j) = (0, 0);
    let mut ops: Vec<DiffOp> = Vec::new();
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => a.0.cmp(b.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        let op = match order {
            std::cmp::Ordering::Less => DiffOp::Delete {
                old_index: i,
                old_len: 1,
                new_index: j,
            },
            std::cmp::Ordering::Greater => DiffOp::Insert {
                old_index: i,
                new_index: j,
                new_len: 1,
            },
            std::cmp::Ordering::Equal if old[i].1 == new[j].1 => DiffOp::Equal {
                old_index: i,
                new_index: j,
                len: 1,
            },
            std::cmp::Ordering::Equal => DiffOp::Replace {
                old_index: i,
                old_len: 1,
                new_index: j,
                new_len: 1,
            },
        };
        i += op.old_range().len();
        j += op.new_range().len();
        // Unchanged rows next to each other make one `Equal`: `group_diff_ops` splits hunks at
        // every `Equal`, and one per row would print an empty hunk per unchanged row.
        match (op, ops.last_mut()) {
            (DiffOp::Equal { .. }, Some(DiffOp::Equal { len, .. })) => *len += 1,
            _ => ops.push(op),
        }
    }
    if ops.iter().all(|op| matches!(op, DiffOp::Equal { .. })) {
        return String::new();
    }

    let mut out = String::from(
        "--- admin.database_connections (live)\n+++ admin.database_connections (planned)\n",
    );
    for group in group_diff_ops(ops, 0) {
        let _ = writeln!(out, "{}", UnifiedHunkHeader::new(&group));
        for op in &group {
            for k in op.old_range() {
                if !matches!(op, DiffOp::Equal { .. }) {
                    let _ = writeln!(out, "-{}", old[k].1);
                }
            }
            for k in op.new_range() {
                if !matches!(op, DiffOp::Equal { .. }) {
                    let _ = writeln!(out, "+{}", new[k].1);
                }
            }
        }
    }
    out
}

/// The closing line: counts of what the plan does.
pub fn summary_line(s: &Summary) -> String {
    if s.changes == 0 && s.blocked == 0 && s.unreachable == 0 {
        return "No changes. The live state matches the desired state.".to_string();
    }
    // Restores are rare: named only when there are some, so the usual line stays short.
    let restore = if s.restore_tenant > 0 {
        format!(", {} to restore", s.restore_tenant)
    } else {
        String::new()
    };
    let extensions = if s.create_extension > 0 {
        format!(
            ", {} extension{} to create",
            s.create_extension,
            if s.create_extension == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let dead = if s.close_dead_run > 0 {
        format!(
            ", {} dead run{} to close",
            s.close_dead_run,
            if s.close_dead_run == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let shapes = if s.compute_shape > 0 {
        format!(
            ", {} expected shape{} to compute",
            s.compute_shape,
            if s.compute_shape == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let repairs = if s.repair_drift > 0 {
        format!(
            ", {} drifted schema{} to repair",
            s.repair_drift,
            if s.repair_drift == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let mut line = String::new();
    if let Some(warning) = rollback_warning(s) {
        line.push_str(&warning);
        line.push(' ');
    }
    let rollback = if s.rollback > 0 {
        format!(", {} to roll back", s.rollback)
    } else {
        String::new()
    };
    let _ = write!(
        line,
        "Plan: {} to bootstrap{extensions}{dead}, {} to create, {} to migrate{rollback}{repairs}{shapes}, {} to suspend, {} to resume, {} to archive{restore}, {} to destroy, {} registry update{}; {} blocked",
        s.bootstrap,
        s.create_tenant,
        s.migrate,
        s.suspend_tenant,
        s.resume_tenant,
        s.archive_tenant,
        s.destroy_tenant,
        s.update_registry,
        if s.update_registry == 1 { "" } else { "s" },
        s.blocked
    );
    if s.unreachable > 0 {
        let _ = write!(
            line,
            ", {} region{} unreachable",
            s.unreachable,
            if s.unreachable == 1 { "" } else { "s" }
        );
    }
    line.push('.');
    line
}

/// The warning a prominent rollback puts before the summary line: one across more than one
/// version, or of every tenant of a set.
pub fn rollback_warning(s: &Summary) -> Option<String> {
    let mut what = Vec::new();
    if s.rollback_all_tenants {
        what.push("of every tenant".to_string());
    }
    if s.rollback_max_versions > 1 {
        what.push(format!("across {} versions", s.rollback_max_versions));
    }
    (!what.is_empty()).then(|| format!("ROLLBACK {}!", what.join(" and ")))
}

/// The plan as stable JSON (`format_version: 1`).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("a plan always serializes")
}

/// The plan for a pull-request comment: a summary table and a collapsible section per region.
pub fn markdown(plan: &Plan, desired: &Desired) -> String {
    let s = &plan.summary;
    let mut out = String::new();
    let _ = writeln!(out, "### neo-reconcile plan\n");
    let _ = writeln!(
        out,
        "Desired state `{}`{}\n",
        &plan.desired.digest[..plan.desired.digest.len().min(12)],
        plan.desired
            .commit
            .as_deref()
            .map(|c| format!(", commit `{}`", &c[..c.len().min(12)]))
            .unwrap_or_default()
    );
    if let Some(warning) = rollback_warning(s) {
        let _ = writeln!(
            out,
            "> [!WARNING]\n> **{warning}** This plan runs undo files: {} rollback(s), up to {} version(s) back. Review the undo files and the data they drop before approving.\n",
            s.rollback, s.rollback_max_versions
        );
    }
    let _ = writeln!(out, "| region | reachable | bootstrap | create | migrate | rollback | suspend | resume | archive | destroy | registry | blocked |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &plan.regions {
        let count = |k: &str| r.actions.iter().filter(|a| a.kind() == k).count();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            if r.reachable { "yes" } else { "**no**" },
            count("bootstrap"),
            count("create_tenant"),
            count("migrate"),
            match count("rollback") {
                0 => "0".to_string(),
                n => format!("**{n}**"),
            },
            count("suspend_tenant"),
            count("resume_tenant"),
            count("archive_tenant"),
            count("destroy_tenant"),
            count("update_registry"),
            if r.blocked.is_empty() {
                "0".to_string()
            } else {
                format!("**{}**", r.blocked.len())
            },
        );
    }
    let _ = writeln!(out, "\n{}\n", summary_line(s));
    for r in &plan.regions {
        let mut body = String::new();
        region_text(&mut body, r, desired, TextOptions::default());
        let _ = writeln!(
            out,
            "<details><summary>Region {} ({} changes, {} blocked)</summary>\n\n```diff\n{}```\n\n</details>\n",
            r.name,
            r.actions.len(),
            r.blocked.len(),
            body
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::registry_diff;
    use crate::desired::TenantStatus;
    use crate::observed::RegistryRow;

    fn row(tenant: &str, version: u32) -> RegistryRow {
        RegistryRow {
            tenant: tenant.into(),
            region: "us".into(),
            host: "db".into(),
            port: 5432,
            database: "neo".into(),
            schema: format!("tenant_{tenant}"),
            status: TenantStatus::Active,
            schema_versions: [("app".to_string(), version)].into(),
            commit: None,
        }
    }

    /// `before`: tenants at version 1; `after`: (tenant, version) upserted; `delete`: removed.
    fn check(before: &[&str], upsert: &[(&str, u32)], delete: &[&str], expect: Expect) {
        let before: Vec<RegistryRow> = before.iter().map(|t| row(t, 1)).collect();
        let upsert: Vec<RegistryRow> = upsert.iter().map(|(t, v)| row(t, *v)).collect();
        let delete: Vec<String> = delete.iter().map(|t| t.to_string()).collect();
        expect.assert_eq(&registry_diff(&before, &upsert, &delete));
    }

    #[test]
    fn no_change_is_no_diff() {
        check(&["a", "b"], &[("a", 1)], &[], expect![""]);
    }

    #[test]
    fn unchanged_rows_around_changes_make_no_empty_hunks() {
        check(
            &["a", "b", "c", "d", "e", "f", "g"],
            &[("b", 2), ("f", 2)],
            &[],
            expect![[r#"
                --- admin.database_connections (live)
                +++ admin.database_connections (planned)
                @@ -2 +2 @@
                -b region=us at=db:5432/neo schema=tenant_b status=active versions=app=1
                +b region=us at=db:5432/neo schema=tenant_b status=active versions=app=2
                @@ -6 +6 @@
                -f region=us at=db:5432/neo schema=tenant_f status=active versions=app=1
                +f region=us at=db:5432/neo schema=tenant_f status=active versions=app=2
            "#]],
        );
    }

    #[test]
    fn inserts_and_deletes_at_both_ends() {
        check(
            &["b", "c", "d"],
            &[("a", 1), ("e", 1)],
            &["b", "d"],
            expect![[r#"
                --- admin.database_connections (live)
                +++ admin.database_connections (planned)
                @@ -1 +1 @@
                +a region=us at=db:5432/neo schema=tenant_a status=active versions=app=1
                -b region=us at=db:5432/neo schema=tenant_b status=active versions=app=1
                @@ -3 +3 @@
                -d region=us at=db:5432/neo schema=tenant_d status=active versions=app=1
                +e region=us at=db:5432/neo schema=tenant_e status=active versions=app=1
            "#]],
        );
    }
}
