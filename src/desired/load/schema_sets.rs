//! The schema sets of `neo.toml`: the directories under `schemas/`, each set's name, scope,
//! target and dependencies, the order of the sets by dependency (every cycle reported), and
//! what is known of each set for the tenant pins even when the set has errors of its own.
//! A set's migration files are checked in [`super::migrations`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use toml::Spanned;

use super::files::is_readme;
use super::names::list_or_none;
use super::tree::Cx;
use crate::desired::diagnostic::SourceText;
use crate::desired::identifiers;
use crate::desired::raw::{RawNeo, RawSchemaSet};
use crate::desired::schema_set::{DriftPolicy, SchemaSet, Scope};

/// Schema names neo-reconcile or PostgreSQL own, which no region-scope set may use.
const RESERVED_SCHEMAS: [&str; 4] = ["neo_reconcile", "admin", "public", "information_schema"];

/// The schema sets as far as tenant pins are concerned: the declared names, and what is known
/// of each declared set even when it has errors of its own (a gap, a duplicate version, an
/// unknown dependency), so that pins on it are still checked.
#[derive(Default)]
pub(super) struct KnownSets {
    pub(super) declared: BTreeSet<String>,
    pub(super) facts: BTreeMap<String, SetFacts>,
}

/// What pins on one set are checked against; `None` where the set's own errors leave it
/// unknown, and then the check that needs it is skipped.
pub(super) struct SetFacts {
    pub(super) scope: Option<Scope>,
    /// The highest version any migration file of the set names, even a broken file.
    pub(super) highest: Option<u32>,
    pub(super) target: Option<u32>,
}

impl Cx {
    /// Checks the schema sets of `neo.toml` and their migrations, and orders them by
    /// dependency. `None` when any of them is invalid.
    pub(super) fn check_schema_sets(
        &mut self,
        src: &SourceText,
        neo: &RawNeo,
    ) -> (Option<Vec<SchemaSet>>, KnownSets) {
        let declared: BTreeMap<&str, &RawSchemaSet> = neo
            .schema_sets
            .iter()
            .map(|(k, v)| (k.get_ref().as_str(), v.get_ref()))
            .collect();
        let mut ok = self.check_schema_dirs(&declared);

        let mut sets = BTreeMap::new();
        let mut facts = BTreeMap::new();
        for (key, spanned) in &neo.schema_sets {
            let (set, set_facts) = self.check_set(src, key, spanned.get_ref(), &declared);
            facts.insert(key.get_ref().clone(), set_facts);
            match set {
                Some(set) => {
                    sets.insert(set.name.clone(), set);
                }
                None => ok = false,
            }
        }

        let known = KnownSets {
            declared: declared.keys().map(|k| k.to_string()).collect(),
            facts,
        };
        let order = self.dependency_order(src, neo);
        match (order, ok) {
            (Some(order), true) => (
                Some(order.into_iter().filter_map(|n| sets.remove(&n)).collect()),
                known,
            ),
            _ => (None, known),
        }
    }

    /// Reports what under `schemas/` belongs to no declared set (typos or leftovers).
    /// `false` when there is any.
    fn check_schema_dirs(&mut self, declared: &BTreeMap<&str, &RawSchemaSet>) -> bool {
        let mut ok = true;
        for (name, is_dir) in self.list("schemas") {
            let relative = Path::new("schemas").join(&name);
            if !is_dir {
                if !is_readme(&name) {
                    self.diags.file_error(
                        &relative,
                        "",
                        "unexpected file in schemas/: migrations go in schemas/<set>/V<version>__<description>.sql",
                    );
                    ok = false;
                }
            } else if !declared.contains_key(name.as_str()) {
                ok = false;
                self.diags.file_error(
                    &relative,
                    "",
                    format!(
                        "schemas/{name}/ belongs to no schema set: declare [schema_sets.{name}] in neo.toml or remove the directory"
                    ),
                );
            }
        }
        ok
    }

    /// Checks one schema set: its name, scope, migrations, target and dependencies. Returns
    /// the set when it is valid, and in any case what the tenant pins are checked against.
    fn check_set(
        &mut self,
        src: &SourceText,
        key: &Spanned<String>,
        raw: &RawSchemaSet,
        declared: &BTreeMap<&str, &RawSchemaSet>,
    ) -> (Option<SchemaSet>, SetFacts) {
        let name = key.get_ref();
        let field = format!("schema_sets.{name}");
        let name_ok = self.check_identifier(src, key, &field, "schema set");
        let mut set_ok = name_ok;
        let scope = match raw.scope.get_ref().as_str() {
            "region" => Some(Scope::Region),
            "tenant" => Some(Scope::Tenant),
            other => {
                self.diags.error(
                    src,
                    raw.scope.span(),
                    format!("{field}.scope"),
                    format!("unknown scope {other:?}: use \"region\" (once per region database) or \"tenant\" (every tenant's schema)"),
                );
                None
            }
        };
        if scope == Some(Scope::Region) {
            set_ok &= self.check_region_set_name(src, key, &field, name_ok);
        }
        // The target is checked against the highest version present even when the set has
        // a gap or a duplicate: those are independent mistakes.
        let migrations = self.check_migrations(name, key.span(), src);
        let target = self.resolve_target(src, &field, raw.target.as_ref(), migrations.highest);
        let facts = SetFacts {
            scope,
            highest: migrations.highest,
            target,
        };
        set_ok &= self.check_depends_on(src, &field, name, scope, raw, declared);
        let undo = migrations.undo;
        let drift = match &raw.drift {
            None => Some(DriftPolicy::default()),
            Some(value) => {
                let policy = DriftPolicy::parse(value.get_ref());
                if policy.is_none() {
                    self.diags.error(
                        src,
                        value.span(),
                        format!("{field}.drift"),
                        format!("unknown drift policy {:?}: use \"report\" (block drifted targets with the diff), \"repair\" (put back indexes, views, functions, triggers, constraints and privileges) or \"off\"", value.get_ref()),
                    );
                }
                policy
            }
        };
        set_ok &= drift.is_some();
        let set = match (scope, migrations.valid, target, set_ok) {
            (Some(scope), Some(migrations), Some(target), true) => Some(SchemaSet {
                name: name.clone(),
                scope,
                target,
                depends_on: raw.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
                migrations,
                undo,
                drift: drift.unwrap_or_default(),
                drift_prune: raw.drift_prune.as_ref().is_some_and(|p| *p.get_ref()),
            }),
            _ => None,
        };
        (set, facts)
    }

    /// Checks the name of a region-scope set, which is also the schema it is applied into:
    /// not reserved, and short enough for every identifier derived from it.
    fn check_region_set_name(
        &mut self,
        src: &SourceText,
        key: &Spanned<String>,
        field: &str,
        name_ok: bool,
    ) -> bool {
        let name = key.get_ref();
        let mut ok = true;
        if RESERVED_SCHEMAS.contains(&name.as_str())
            || name.starts_with("tenant_")
            || name.starts_with("archived_")
            || name.starts_with("pg_")
        {
            ok = false;
            self.diags.error(
                src,
                key.span(),
                field,
                format!("a region-scope set is applied into schema {name:?}, which is reserved: rename the set"),
            );
        }
        if name_ok {
            ok &= identifiers::check(
                &mut self.diags,
                src,
                key.span(),
                field,
                "schema set name",
                name,
                &identifiers::of_region_set(name),
            );
        }
        ok
    }

    /// Checks a set's `depends_on`: every set declared, and no region-scope set depending on a
    /// tenant-scope one.
    fn check_depends_on(
        &mut self,
        src: &SourceText,
        field: &str,
        name: &str,
        scope: Option<Scope>,
        raw: &RawSchemaSet,
        declared: &BTreeMap<&str, &RawSchemaSet>,
    ) -> bool {
        let mut ok = true;
        for dep in &raw.depends_on {
            let d = dep.get_ref();
            match declared.get(d.as_str()) {
                None => {
                    ok = false;
                    self.diags.error(
                        src,
                        dep.span(),
                        format!("{field}.depends_on"),
                        format!(
                            "unknown schema set {d:?}: declared sets are {}",
                            list_or_none(declared.keys())
                        ),
                    );
                }
                Some(other)
                    if scope == Some(Scope::Region) && other.scope.get_ref() == "tenant" =>
                {
                    ok = false;
                    self.diags.error(
                        src,
                        dep.span(),
                        format!("{field}.depends_on"),
                        format!("region-scope set {name:?} cannot depend on tenant-scope set {d:?}: region sets are applied before any tenant"),
                    );
                }
                Some(_) => {}
            }
        }
        ok
    }

    /// Resolves a set's target against `highest`, the highest version of its migration files.
    /// Without any migration (`highest` is `None`, reported elsewhere) only the target's form is
    /// checked, and there is nothing to resolve it to.
    fn resolve_target(
        &mut self,
        src: &SourceText,
        field: &str,
        target: Option<&Spanned<toml::Value>>,
        highest: Option<u32>,
    ) -> Option<u32> {
        let Some(target) = target else {
            return highest;
        };
        let field = format!("{field}.target");
        match target.get_ref() {
            toml::Value::String(s) if s == "latest" => highest,
            toml::Value::Integer(n) if *n >= 1 => match highest {
                Some(latest) if *n > i64::from(latest) => {
                    self.diags.error(
                        src,
                        target.span(),
                        field,
                        format!("target {n} is above the highest migration (V{latest}): add the migration or lower the target"),
                    );
                    None
                }
                Some(_) => Some(*n as u32),
                None => None,
            },
            other => {
                let range = match highest {
                    Some(latest) => format!("a version from 1 to {latest}"),
                    None => "a version number from 1".to_string(),
                };
                self.diags.error(
                    src,
                    target.span(),
                    field,
                    format!("invalid target {other}: use \"latest\" or {range}"),
                );
                None
            }
        }
    }

    /// Orders the sets so that each comes after its dependencies, reporting every cycle.
    fn dependency_order(&mut self, src: &SourceText, neo: &RawNeo) -> Option<Vec<String>> {
        let deps: BTreeMap<&str, Vec<&Spanned<String>>> = neo
            .schema_sets
            .iter()
            .map(|(k, v)| {
                (
                    k.get_ref().as_str(),
                    v.get_ref().depends_on.iter().collect(),
                )
            })
            .collect();
        // Depth-first search; a back edge is a cycle, reported once at the edge that closes it.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'a>(
            node: &'a str,
            deps: &BTreeMap<&'a str, Vec<&'a Spanned<String>>>,
            marks: &mut BTreeMap<&'a str, Mark>,
            stack: &mut Vec<&'a str>,
            order: &mut Vec<String>,
            cycles: &mut Vec<(Vec<String>, &'a Spanned<String>)>,
        ) {
            marks.insert(node, Mark::Visiting);
            stack.push(node);
            for dep in deps.get(node).into_iter().flatten() {
                let d = dep.get_ref().as_str();
                let Some((&d, _)) = deps.get_key_value(d) else {
                    continue; // Unknown sets are reported elsewhere.
                };
                match marks.get(d) {
                    Some(Mark::Visiting) => {
                        let start = stack.iter().position(|n| *n == d).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            stack[start..].iter().map(|s| s.to_string()).collect();
                        cycle.push(d.to_string());
                        cycles.push((cycle, dep));
                    }
                    Some(Mark::Done) => {}
                    None => visit(d, deps, marks, stack, order, cycles),
                }
            }
            stack.pop();
            marks.insert(node, Mark::Done);
            order.push(node.to_string());
        }
        let mut marks = BTreeMap::new();
        let mut order = Vec::new();
        let mut cycles = Vec::new();
        for &node in deps.keys() {
            if !marks.contains_key(node) {
                visit(
                    node,
                    &deps,
                    &mut marks,
                    &mut Vec::new(),
                    &mut order,
                    &mut cycles,
                );
            }
        }
        for (cycle, edge) in &cycles {
            let field = format!("schema_sets.{}.depends_on", cycle[cycle.len() - 2]);
            self.diags.error(
                src,
                edge.span(),
                field,
                format!(
                    "dependency cycle: {}; remove one of these dependencies",
                    cycle.join(" -> ")
                ),
            );
        }
        cycles.is_empty().then_some(order)
    }
}
