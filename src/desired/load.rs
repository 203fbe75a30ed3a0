//! Reading and validating a desired-state tree.
//!
//! [`load`] reads every file of the tree, reports every problem it finds (it never stops at
//! the first one) and builds a [`Desired`] only when there is no error. Each file goes through
//! three stages:
//!
//! 1. TOML syntax, with the parser's recovery so that all syntax errors of a file are shown;
//! 2. a scan for keys that look like plaintext secrets, which are reported and dropped;
//! 3. serde into the raw types of [`super::raw`]. Serde stops at the first problem, so after
//!    an unknown field or a value of the wrong type, the offending key is removed and the file
//!    is read again: one file can report many such mistakes.
//!
//! Then the rules that span files are checked (regions, tenants, schema sets, migrations).
//! Three groups of rules live in their own modules: the settings and their durations in
//! [`super::settings`], the length of every derived PostgreSQL identifier in
//! [`super::identifiers`], and what PostgreSQL's parser says about each migration file in
//! [`super::sql_check`] (parsed once per distinct content, whatever the number of sets and
//! tenants). A mistake never hides an independent one: a schema set with a gap
//! still has its target and the pins on it checked, a duplicate region file still has its
//! other fields checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::credentials;
use super::diagnostic::{self, Diagnostic, Diagnostics, SourceText};
use super::extensions;
use super::identifiers;
use super::raw::{RawNeo, RawRegion, RawSchemaSet, RawTenant};
use super::settings;
use super::sql_check::{self, Checked};
use super::{
    ControlPlane, Desired, Endpoint, Migration, Policy, Region, SchemaSet, Scope, SslMode, Tenant,
    TenantStatus,
};

/// The outcome of reading a tree: the validated state when there is no error, and every
/// diagnostic (errors and warnings), sorted by file, line and column.
#[derive(Debug)]
pub struct Loaded {
    pub desired: Option<Desired>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Key fragments that mark a value as a secret, which must never be committed.
const SECRET_MARKERS: [&str; 4] = ["password", "passwd", "secret", "token"];

/// Schema names neo-reconcile or PostgreSQL own, which no region-scope set may use.
const RESERVED_SCHEMAS: [&str; 4] = ["neo_reconcile", "admin", "public", "information_schema"];

/// Reads and validates the desired-state tree at `root`. Offline: no database, no network.
pub fn load(root: &Path) -> Loaded {
    let mut cx = Cx {
        root: root.to_path_buf(),
        diags: Diagnostics::default(),
        files: BTreeMap::new(),
        parsed: HashMap::new(),
    };
    let desired = cx.load();
    let has_errors = cx.diags.has_errors();
    Loaded {
        desired: if has_errors { None } else { desired },
        diagnostics: cx.diags.into_sorted(),
    }
}

/// The state of one validation: diagnostics so far, the bytes of every file read (for the
/// digest), and what the parser said about each distinct migration file, by checksum.
struct Cx {
    root: PathBuf,
    diags: Diagnostics,
    files: BTreeMap<String, Vec<u8>>,
    parsed: HashMap<String, Checked>,
}

/// The schema sets as far as tenant pins are concerned: the declared names, and what is known
/// of each declared set even when it has errors of its own (a gap, a duplicate version, an
/// unknown dependency), so that pins on it are still checked.
#[derive(Default)]
struct KnownSets {
    declared: BTreeSet<String>,
    facts: BTreeMap<String, SetFacts>,
}

/// What pins on one set are checked against; `None` where the set's own errors leave it
/// unknown, and then the check that needs it is skipped.
struct SetFacts {
    scope: Option<Scope>,
    /// The highest version any migration file of the set names, even a broken file.
    highest: Option<u32>,
    target: Option<u32>,
}

/// The migrations of one set: the valid sequence when there is no error, and the highest
/// version any file names (also when some are broken), to check targets and pins against.
struct Migrations {
    valid: Option<Vec<Migration>>,
    highest: Option<u32>,
}

/// What the tenant checks need to know about a region, including one whose file has errors
/// (its name is still known, so tenants in it do not get a second, misleading error).
struct KnownRegion {
    residency: Option<String>,
}

impl Cx {
    fn load(&mut self) -> Option<Desired> {
        if !self.root.is_dir() {
            self.diags.file_error(
                Path::new("."),
                "",
                format!(
                    "{} is not a directory: give the root of a desired-state repository",
                    self.root.display()
                ),
            );
            return None;
        }

        let neo_path = Path::new("neo.toml");
        let neo = match self.read(neo_path) {
            Some(src) => parse_toml::<RawNeo>(&src, &mut self.diags).map(|raw| (src, raw)),
            None => {
                self.diags.file_error(
                    neo_path,
                    "",
                    "missing neo.toml: a desired-state repository has neo.toml at its root \
                     with format_version = 1",
                );
                None
            }
        };

        // Files whose name matches their content come first, so that of two files claiming
        // one name, the one named after it is the original and the other the duplicate.
        let mut region_files = self.read_toml_dir::<RawRegion>("regions");
        region_files.sort_by_key(
            |f| !matches!(f, Ok((src, raw)) if file_stem(&src.display) == raw.name.get_ref()),
        );
        let mut tenant_files = self.read_toml_dir::<RawTenant>("tenants");
        tenant_files.sort_by_key(
            |f| !matches!(f, Ok((src, raw)) if file_stem(&src.display) == raw.slug.get_ref()),
        );

        let mut known_regions: BTreeMap<String, KnownRegion> = BTreeMap::new();
        let mut regions = BTreeMap::new();
        let mut region_sources: BTreeMap<String, String> = BTreeMap::new();
        for entry in &region_files {
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

        // Without a usable neo.toml the tenants are still checked, against no schema sets.
        let mut control_plane = None;
        let mut schema_sets = None;
        let mut known_sets = None;
        let mut policy = None;
        let mut extensions = None;
        if let Some((src, neo)) = &neo {
            control_plane = self.check_control_plane(src, neo, &known_regions);
            policy = Some(settings::check_policy(
                &mut self.diags,
                src,
                neo.policy.as_ref(),
            ));
            if *neo.format_version.get_ref() != 1 {
                self.diags.error(
                    src,
                    neo.format_version.span(),
                    "format_version",
                    format!(
                        "unsupported format_version {}: this neo-reconcile reads format_version = 1",
                        neo.format_version.get_ref()
                    ),
                );
            }
            let (ordered, known) = self.check_schema_sets(src, neo);
            let region_sets: Vec<&str> = neo
                .schema_sets
                .iter()
                .filter(|(_, s)| s.get_ref().scope.get_ref() == "region")
                .map(|(k, _)| k.get_ref().as_str())
                .collect();
            extensions = Some(extensions::check_extensions(
                &mut self.diags,
                src,
                neo.extensions.as_ref(),
                &region_sets,
            ));
            schema_sets = ordered;
            known_sets = Some(known);
        }
        let tenants = self.check_tenants(
            &tenant_files,
            &known_regions,
            known_sets.as_ref(),
            policy.as_ref(),
        );

        let files = std::mem::take(&mut self.files);
        let digest = digest(&files);
        Some(Desired {
            root: self.root.clone(),
            control_plane: control_plane?,
            policy: policy?,
            extensions: extensions?,
            schema_sets: schema_sets?,
            regions,
            tenants,
            digest,
        })
    }

    /// Reads a file relative to the root as UTF-8 text, remembering its bytes for the digest.
    /// A missing file is `None`; an unreadable one is reported.
    fn read(&mut self, relative: &Path) -> Option<SourceText> {
        let bytes = match fs::read(self.root.join(relative)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.diags
                    .file_error(relative, "", format!("cannot read the file: {e}"));
                return None;
            }
        };
        let src = SourceText::new(relative, String::new());
        self.files.insert(src.display.clone(), bytes.clone());
        match String::from_utf8(bytes) {
            Ok(text) => Some(SourceText::new(relative, text)),
            Err(_) => {
                self.diags.file_error(
                    relative,
                    "",
                    "the file is not valid UTF-8: save it as UTF-8",
                );
                None
            }
        }
    }

    /// Lists a directory relative to the root, sorted by name. A missing directory is empty.
    fn list(&mut self, dir: &str) -> Vec<(String, bool)> {
        let Ok(entries) = fs::read_dir(self.root.join(dir)) else {
            return Vec::new();
        };
        let mut names: Vec<(String, bool)> = entries
            .filter_map(Result::ok)
            .map(|e| {
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                (e.file_name().to_string_lossy().into_owned(), is_dir)
            })
            .filter(|(name, _)| !name.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Reads every `*.toml` file of a directory. A file that cannot be used is `Err(stem)`,
    /// after its problems were reported, so that references to it are not reported again.
    #[allow(clippy::type_complexity)]
    fn read_toml_dir<T: DeserializeOwned + Required>(
        &mut self,
        dir: &str,
    ) -> Vec<Result<(SourceText, T), String>> {
        let mut out = Vec::new();
        for (name, is_dir) in self.list(dir) {
            let relative = Path::new(dir).join(&name);
            let Some(stem) = name.strip_suffix(".toml") else {
                if !is_dir && !is_readme(&name) {
                    self.diags.file_error(
                        &relative,
                        "",
                        format!("unexpected file in {dir}/: only <name>.toml files belong here"),
                    );
                }
                continue;
            };
            let parsed = self
                .read(&relative)
                .and_then(|src| parse_toml::<T>(&src, &mut self.diags).map(|raw| (src, raw)));
            out.push(parsed.ok_or_else(|| stem.to_string()));
        }
        out
    }

    fn check_control_plane(
        &mut self,
        src: &SourceText,
        neo: &RawNeo,
        regions: &BTreeMap<String, KnownRegion>,
    ) -> Option<ControlPlane> {
        let cp = neo.control_plane.get_ref();
        let mut ok = true;
        if !regions.contains_key(cp.region.get_ref()) {
            ok = false;
            self.diags.error(
                src,
                cp.region.span(),
                "control_plane.region",
                format!(
                    "unknown region {:?}: the control plane must be one of the regions ({})",
                    cp.region.get_ref(),
                    list_or_none(regions.keys())
                ),
            );
        }
        ok &= self.check_database(src, &cp.database, "control_plane.database");
        ok.then(|| ControlPlane {
            region: cp.region.get_ref().clone(),
            database: cp.database.get_ref().clone(),
        })
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

        let pg = raw.postgres.get_ref();
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

        let credentials = credentials::check(&mut self.diags, src, &raw.credentials);
        let apply = settings::check_apply(&mut self.diags, src, raw.apply.as_ref());

        if !ok {
            return None;
        }
        Some(Region {
            name: name.clone(),
            residency: raw.residency.get_ref().clone(),
            postgres: Endpoint {
                host: host.clone(),
                port: port as u16,
                database: pg.database.get_ref().clone(),
                sslmode: sslmode?,
            },
            credentials: credentials?,
            apply: apply?,
        })
    }

    /// Checks the schema sets of `neo.toml` and their migrations, and orders them by
    /// dependency. `None` when any of them is invalid.
    fn check_schema_sets(
        &mut self,
        src: &SourceText,
        neo: &RawNeo,
    ) -> (Option<Vec<SchemaSet>>, KnownSets) {
        let mut ok = true;
        let declared: BTreeMap<&str, &RawSchemaSet> = neo
            .schema_sets
            .iter()
            .map(|(k, v)| (k.get_ref().as_str(), v.get_ref()))
            .collect();

        // Directories under schemas/ that no set declares are typos or leftovers.
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

        let mut sets = BTreeMap::new();
        let mut facts = BTreeMap::new();
        for (key, spanned) in &neo.schema_sets {
            let name = key.get_ref();
            let raw = spanned.get_ref();
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
            if scope == Some(Scope::Region)
                && (RESERVED_SCHEMAS.contains(&name.as_str())
                    || name.starts_with("tenant_")
                    || name.starts_with("archived_")
                    || name.starts_with("pg_"))
            {
                set_ok = false;
                self.diags.error(
                    src,
                    key.span(),
                    field.clone(),
                    format!("a region-scope set is applied into schema {name:?}, which is reserved: rename the set"),
                );
            }
            if scope == Some(Scope::Region) && name_ok {
                set_ok &= identifiers::check(
                    &mut self.diags,
                    src,
                    key.span(),
                    &field,
                    "schema set name",
                    name,
                    &identifiers::of_region_set(name),
                );
            }
            // The target is checked against the highest version present even when the set has
            // a gap or a duplicate: those are independent mistakes.
            let migrations = self.check_migrations(name, key.span(), src);
            let target = self.resolve_target(src, &field, raw.target.as_ref(), migrations.highest);
            facts.insert(
                name.clone(),
                SetFacts {
                    scope,
                    highest: migrations.highest,
                    target,
                },
            );
            for dep in &raw.depends_on {
                let d = dep.get_ref();
                match declared.get(d.as_str()) {
                    None => {
                        set_ok = false;
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
                        set_ok = false;
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
            match (scope, migrations.valid, target, set_ok) {
                (Some(scope), Some(migrations), Some(target), true) => {
                    sets.insert(
                        name.clone(),
                        SchemaSet {
                            name: name.clone(),
                            scope,
                            target,
                            depends_on: raw
                                .depends_on
                                .iter()
                                .map(|d| d.get_ref().clone())
                                .collect(),
                            migrations,
                        },
                    );
                }
                _ => ok = false,
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

    /// Reads and checks the migration files of one set: names, versions 1..=N without gaps or
    /// duplicates, and no empty file.
    fn check_migrations(
        &mut self,
        set: &str,
        set_span: Range<usize>,
        neo_src: &SourceText,
    ) -> Migrations {
        let dir = format!("schemas/{set}");
        let missing = |diags: &mut Diagnostics| {
            diags.error(
                neo_src,
                set_span.clone(),
                format!("schema_sets.{set}"),
                format!("no migrations for schema set {set:?}: create {dir}/V1__<description>.sql"),
            );
        };
        if !self.root.join(&dir).is_dir() {
            missing(&mut self.diags);
            return Migrations {
                valid: None,
                highest: None,
            };
        }
        let mut ok = true;
        let mut by_version: BTreeMap<u32, Migration> = BTreeMap::new();
        // The file that claims each version first, even when it is unusable (empty, not
        // UTF-8): a version it claims is neither missing nor free for another file.
        let mut claimed: BTreeMap<u32, String> = BTreeMap::new();
        for (name, is_dir) in self.list(&dir) {
            let relative = Path::new(&dir).join(&name);
            if is_dir {
                ok = false;
                self.diags.file_error(&relative, &name, "unexpected directory: a schema set's migrations are files directly in its directory");
                continue;
            }
            if is_readme(&name) {
                continue;
            }
            let Some((version, description)) = parse_migration_name(&name) else {
                ok = false;
                self.diags.file_error(
                    &relative,
                    &name,
                    "not a migration file name: use V<version>__<description>.sql, such as V3__add_invoices.sql",
                );
                continue;
            };
            if version == 0 {
                ok = false;
                self.diags
                    .file_error(&relative, &name, "version 0: versions start at V1");
                continue;
            }
            let display = diagnostic::display_path(&relative);
            if let Some(first) = claimed.get(&version) {
                ok = false;
                self.diags.file_error(
                    &relative,
                    &name,
                    format!("duplicate version {version}: {first} has it too; give each migration its own version"),
                );
            } else {
                claimed.insert(version, display);
            }
            let Some(src) = self.read(&relative) else {
                ok = false;
                continue;
            };
            if is_effectively_empty(&src.text) {
                ok = false;
                self.diags.file_error(&relative, &name, "empty migration: a migration must contain SQL; remove the file if it is not needed");
                continue;
            }
            let checksum = hex(&Sha256::digest(src.text.as_bytes()));
            let no_transaction = src
                .text
                .lines()
                .next()
                .is_some_and(|l| l.trim() == "-- neo:no-transaction");
            // The same content in several sets is parsed once; its findings are reported in
            // each file.
            let checked = self
                .parsed
                .entry(checksum.clone())
                .or_insert_with(|| sql_check::check(&src.text, no_transaction));
            for f in &checked.findings {
                self.diags.at(
                    f.severity,
                    &src,
                    f.offset..f.offset,
                    &name,
                    f.message.clone(),
                );
            }
            if by_version.contains_key(&version) {
                continue;
            }
            by_version.insert(
                version,
                Migration {
                    version,
                    description: description.to_string(),
                    file: src.display.clone(),
                    sql: checked.sql.clone(),
                    statements: checked.statements.clone(),
                    checksum,
                    no_transaction,
                },
            );
        }
        // Report each gap at the first file after it.
        let mut expected = 1;
        for (&version, file) in &claimed {
            if version != expected {
                ok = false;
                let missing = if version == expected + 1 {
                    format!("version {expected} is missing")
                } else {
                    format!("versions {expected} to {} are missing", version - 1)
                };
                self.diags.file_error(
                    Path::new(file),
                    file.rsplit('/').next().unwrap_or(file),
                    format!("{missing}: versions must run 1, 2, 3, ... without gaps"),
                );
            }
            expected = version + 1;
        }
        if claimed.is_empty() && ok {
            ok = false;
            missing(&mut self.diags);
        }
        Migrations {
            valid: ok.then(|| by_version.into_values().collect()),
            highest: claimed.last_key_value().map(|(&v, _)| v),
        }
    }

    fn check_tenants(
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
            let region = raw.region.get_ref();
            match regions.get(region) {
                None => {
                    ok = false;
                    self.diags.error(
                        src,
                        raw.region.span(),
                        "region",
                        format!(
                            "unknown region {region:?}: known regions are {}",
                            list_or_none(regions.keys())
                        ),
                    );
                }
                // A region whose residency is unknown (its file is broken) or empty (reported
                // there) asks nothing of its tenants.
                Some(known) => match (&raw.residency, &known.residency) {
                    (Some(want), Some(have)) if want.get_ref() != have => {
                        ok = false;
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
                    }
                    // A missing residency would let a tenant into any region unnoticed: the
                    // tenant file must state the zone its data is bound to.
                    (None, Some(have)) if !have.trim().is_empty() => {
                        ok = false;
                        self.diags.error(
                            src,
                            0..0,
                            "residency",
                            format!(
                                "missing required field `residency`: required because region {region:?} declares residency {have:?}; add residency = {have:?}"
                            ),
                        );
                    }
                    _ => {}
                },
            }
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
            let mut pins = BTreeMap::new();
            for (key, version) in &raw.schema_sets {
                let set_name = key.get_ref();
                let field = format!("schema_sets.{set_name}");
                let Some(sets) = sets else {
                    continue; // neo.toml is unusable; that is reported there.
                };
                let Some(set) = sets.facts.get(set_name) else {
                    ok = false;
                    self.diags.error(
                        src,
                        key.span(),
                        field,
                        format!(
                            "unknown schema set {set_name:?}: declared sets are {}",
                            list_or_none(sets.declared.iter())
                        ),
                    );
                    continue;
                };
                // A set with errors of its own (reported in neo.toml) is still checked as far
                // as it is known: its scope, its highest version, its target.
                if set.scope == Some(Scope::Region) {
                    ok = false;
                    self.diags.error(
                        src,
                        key.span(),
                        field,
                        format!("{set_name:?} is a region-scope set: only tenant-scope sets can be pinned per tenant"),
                    );
                    continue;
                }
                let v = *version.get_ref();
                let range = match set.highest {
                    Some(h) => format!(
                        " (V{h} is the highest in schemas/{set_name}/): use a version from 1 to {h}"
                    ),
                    None => ": use a version from 1".to_string(),
                };
                if v < 1 || set.highest.is_some_and(|h| v > i64::from(h)) {
                    ok = false;
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
                    continue;
                }
                let Ok(v) = u32::try_from(v) else {
                    continue; // Above any version; only possible when the set has none.
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
            }
            if let (true, Some(status)) = (ok, status) {
                tenants.insert(
                    slug.clone(),
                    Tenant {
                        slug: slug.clone(),
                        region: region.clone(),
                        status,
                        pins,
                    },
                );
            }
        }
        tenants
    }

    /// Checks a database name: a plain identifier that PostgreSQL keeps whole.
    fn check_database(&mut self, src: &SourceText, value: &Spanned<String>, field: &str) -> bool {
        let name = value.get_ref();
        self.check_identifier(src, value, field, "database")
            && identifiers::check(
                &mut self.diags,
                src,
                value.span(),
                field,
                "database name",
                name,
                &identifiers::of_database(name),
            )
    }

    /// Checks that a name can be used as a PostgreSQL identifier without quoting.
    fn check_identifier(
        &mut self,
        src: &SourceText,
        value: &Spanned<String>,
        field: &str,
        what: &str,
    ) -> bool {
        let v = value.get_ref();
        let ok = is_identifier(v);
        if !ok {
            self.diags.error(
                src,
                value.span(),
                field,
                format!("invalid {what} name {v:?}: use 1 to 63 lowercase letters, digits and '_', starting with a letter or '_'"),
            );
        }
        ok
    }
}

/// The keys a raw file type requires, as dotted paths (`*` stands for every entry of a
/// table), so that every missing one is reported at once instead of serde's first.
pub(crate) trait Required {
    const REQUIRED: &'static [&'static str];
}

impl Required for RawNeo {
    const REQUIRED: &'static [&'static str] = &[
        "format_version",
        "control_plane",
        "control_plane.region",
        "control_plane.database",
        "schema_sets.*.scope",
    ];
}

impl Required for RawRegion {
    const REQUIRED: &'static [&'static str] = &[
        "name",
        "residency",
        "postgres",
        "postgres.host",
        "postgres.port",
        "postgres.database",
        "credentials",
    ];
}

impl Required for RawTenant {
    const REQUIRED: &'static [&'static str] = &["slug", "region"];
}

/// Parses a TOML file into a raw type, reporting every syntax error, every plaintext secret,
/// every missing required key, every unknown field and every value of the wrong type. `None`
/// when the file is unusable (syntax errors, or a required key missing).
fn parse_toml<T: DeserializeOwned + Required>(
    src: &SourceText,
    diags: &mut Diagnostics,
) -> Option<T> {
    parse_toml_with(src, diags, true)
}

/// As [`parse_toml`]; `scan_secrets` off skips the plaintext-secret scan, for files (the
/// daemon's configuration) whose keys name secret files, such as `token_file`.
pub(crate) fn parse_toml_with<T: DeserializeOwned + Required>(
    src: &SourceText,
    diags: &mut Diagnostics,
    scan_secrets: bool,
) -> Option<T> {
    let (mut doc, errors) = DeTable::parse_recoverable(&src.text);
    // Secrets are reported even in a file that does not parse.
    let secrets = if scan_secrets {
        remove_secrets(doc.get_mut(), "", src, diags)
    } else {
        Vec::new()
    };
    if !errors.is_empty() {
        for e in &errors {
            let span = e.span().unwrap_or(0..0);
            diags.error(
                src,
                span.clone(),
                field_of_line(&src.text, span.start),
                format!("TOML syntax error: {}", first_line(e.message())),
            );
        }
        return None;
    }
    let mut missing = false;
    for path in T::REQUIRED {
        for (field, span) in missing_keys(doc.get_ref(), path) {
            if secrets.contains(&field) {
                continue; // Reported as a secret already.
            }
            missing = true;
            let key = field.rsplit('.').next().unwrap_or(&field).to_string();
            // Point at the start of the table's header line (`[postgres]`).
            let line_start = src.text[..span.start.min(src.text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            diags.error(
                src,
                line_start..line_start,
                field,
                format!("missing required field `{key}`: add it"),
            );
        }
    }

    // Serde stops at the first problem: report it, remove the key at fault, read again.
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..256 {
        match T::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(value) => return (!missing).then_some(value),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = first_line(e.message());
                if message.starts_with("missing field `") {
                    // Every missing key was reported above, or was removed for its type or as a
                    // secret and reported then.
                    if !missing && removed.is_empty() && secrets.is_empty() {
                        diags.error(src, span, "", format!("{message}: add it"));
                    }
                    return None;
                }
                let path = key_path_at(doc.get_ref(), span.start);
                let field = path.join(".");
                let message = if message.starts_with("unknown field") {
                    format!("{message}; fix the spelling or remove it (unknown fields are never ignored)")
                } else {
                    format!("wrong type: {}", message.replace("i64", "an integer"))
                };
                diags.error(src, span, field.clone(), message);
                if path.is_empty() || !remove_path(doc.get_mut(), &path) {
                    return None;
                }
                removed.push(field);
            }
        }
    }
    None
}

/// The missing keys of one required path, with the span to point at: the table that should
/// hold the key (its header), or the start of the file for top-level keys.
fn missing_keys(table: &DeTable<'_>, path: &str) -> Vec<(String, Range<usize>)> {
    fn walk(
        table: &DeTable<'_>,
        at: Range<usize>,
        parts: &[&str],
        prefix: &str,
        out: &mut Vec<(String, Range<usize>)>,
    ) {
        let Some((first, rest)) = parts.split_first() else {
            return;
        };
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        if *first == "*" {
            for (k, v) in table.iter() {
                if let DeValue::Table(inner) = v.get_ref() {
                    walk(inner, k.span(), rest, &join(k.get_ref()), out);
                }
            }
            return;
        }
        match table.get_key_value(*first) {
            None => out.push((join(first), at.start..at.start)),
            Some((k, v)) => {
                if let DeValue::Table(inner) = v.get_ref() {
                    walk(inner, k.span(), rest, &join(first), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    let parts: Vec<&str> = path.split('.').collect();
    // A missing parent table is reported once, for the parent.
    walk(table, 0..0, &parts, "", &mut out);
    out
}

/// The field a syntax error is about, from the text: the key on the error's line, under the
/// last `[table]` header before it, or the header itself when the error is in one.
fn field_of_line(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let header = |l: &str| -> Option<String> {
        let t = l.trim_start();
        t.starts_with('[').then(|| {
            let inner = t.trim_start_matches('[');
            let end = inner.find(']').unwrap_or(inner.len());
            inner[..end].trim().to_string()
        })
    };
    if let Some(h) = header(line) {
        return h;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .find_map(header)
        .unwrap_or_default();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
    match (table.is_empty(), key) {
        (_, None) => table,
        (true, Some(k)) => k.to_string(),
        (false, Some(k)) => format!("{table}.{k}"),
    }
}

/// The key path (`["postgres", "port"]`) of the deepest key whose key or value contains the
/// byte offset `pos`. Every table is searched: the span of a `[table]` section covers only its
/// header, not the keys below it.
fn key_path_at(table: &DeTable<'_>, pos: usize) -> Vec<String> {
    for (k, v) in table.iter() {
        let here = vec![k.get_ref().to_string()];
        if k.span().contains(&pos) {
            return here;
        }
        if let DeValue::Table(inner) = v.get_ref() {
            let deeper = key_path_at(inner, pos);
            if !deeper.is_empty() {
                return [here, deeper].concat();
            }
        }
        if v.span().contains(&pos) {
            return here;
        }
    }
    Vec::new()
}

/// Removes the key at `path`; `false` when there is no such key.
fn remove_path(table: &mut DeTable<'_>, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(last.as_str()).is_some(),
        [first, rest @ ..] => match table.get_mut(first.as_str()).map(|v| v.get_mut()) {
            Some(DeValue::Table(inner)) => remove_path(inner, rest),
            _ => false,
        },
    }
}

/// Reports and removes every key that looks like a plaintext secret, and every string value
/// (also inside arrays) that embeds a password in a connection URL. Values are never echoed.
/// Returns the dotted paths of the keys removed.
fn remove_secrets(
    table: &mut DeTable<'_>,
    prefix: &str,
    src: &SourceText,
    diags: &mut Diagnostics,
) -> Vec<String> {
    const URL_MESSAGE: &str = "this value embeds a password in a connection URL: credentials come from Vault only; remove it from the repository and rotate it";
    let mut doomed = Vec::new();
    let mut removed = Vec::new();
    for (k, v) in table.iter_mut() {
        let key = k.get_ref().to_string();
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let lower = key.to_ascii_lowercase();
        if SECRET_MARKERS.iter().any(|m| lower.contains(m)) {
            diags.error(
                src,
                k.span(),
                path.clone(),
                format!("`{key}` looks like a plaintext secret: credentials come from Vault only (set [credentials] vault_kv or vault_database_role in the region file); remove it from the repository and rotate it"),
            );
            doomed.push(key);
            removed.push(path);
            continue;
        }
        let span = v.span();
        match v.get_mut() {
            DeValue::Table(inner) => removed.extend(remove_secrets(inner, &path, src, diags)),
            DeValue::String(s) if url_has_password(s) => {
                diags.error(src, span, path.clone(), URL_MESSAGE);
                doomed.push(key);
                removed.push(path);
            }
            DeValue::Array(items) => {
                let secret =
                    |v: &DeValue<'_>| matches!(v, DeValue::String(s) if url_has_password(s));
                if items.iter().any(|i| secret(i.get_ref())) {
                    // A plain array of values (never an array of tables): rebuild it without them.
                    let mut kept = toml::de::DeArray::new();
                    for item in items.iter() {
                        if secret(item.get_ref()) {
                            diags.error(src, item.span(), path.clone(), URL_MESSAGE);
                        } else {
                            kept.push(item.clone());
                        }
                    }
                    *items = kept;
                    removed.push(path.clone());
                }
                for item in items.iter_mut() {
                    if let DeValue::Table(inner) = item.get_mut() {
                        removed.extend(remove_secrets(inner, &format!("{path}[]"), src, diags));
                    }
                }
            }
            _ => {}
        }
    }
    for key in doomed {
        table.remove(key.as_str());
    }
    removed
}

/// Whether a string looks like `scheme://user:password@host`.
fn url_has_password(s: &str) -> bool {
    let Some((_, rest)) = s.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty()))
}

/// `V<version>__<description>.sql` → `(version, description)`.
fn parse_migration_name(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix('V')?.strip_suffix(".sql")?;
    let (version, description) = rest.split_once("__")?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if description.is_empty()
        || !description
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    Some((version.parse().ok()?, description))
}

/// A migration with nothing but white space and `--` comments.
fn is_effectively_empty(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with("--"))
}

pub(super) fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=40).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

fn is_region_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

fn is_readme(name: &str) -> bool {
    name.eq_ignore_ascii_case("README.md") || name.eq_ignore_ascii_case("README")
}

fn file_stem(display: &str) -> &str {
    let name = display.rsplit('/').next().unwrap_or(display);
    name.strip_suffix(".toml").unwrap_or(name)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a (impl AsRef<str> + 'a + ?Sized)>) -> String {
    let names: Vec<&str> = names.map(AsRef::as_ref).collect();
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over every file of the tree, in path order: `path NUL length NUL bytes`.
fn digest(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(bytes.len().to_string().as_bytes());
        h.update([0]);
        h.update(bytes);
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_names() {
        assert_eq!(parse_migration_name("V1__init.sql"), Some((1, "init")));
        assert_eq!(
            parse_migration_name("V012__add-col_2.sql"),
            Some((12, "add-col_2"))
        );
        for bad in [
            "V1_init.sql",
            "v1__init.sql",
            "V__init.sql",
            "V1__.sql",
            "V1__init.SQL",
            "V1__in it.sql",
            "Vx__a.sql",
        ] {
            assert_eq!(parse_migration_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_with_passwords() {
        assert!(url_has_password("postgres://neo:hunter2@db:5432/x"));
        assert!(!url_has_password("postgres://neo@db:5432/x"));
        assert!(!url_has_password("secret/neo/regions/us-east"));
        assert!(!url_has_password("https://vault:8200/v1/x"));
    }

    #[test]
    fn names() {
        assert!(
            is_slug("acme")
                && is_slug("a1_b")
                && !is_slug("a")
                && !is_slug("1a")
                && !is_slug("Acme")
                && !is_slug("a-b")
        );
        assert!(is_slug(&"a".repeat(40)) && !is_slug(&"a".repeat(41)));
        assert!(is_identifier("neo_us") && !is_identifier("neo-us") && !is_identifier(""));
    }
}
