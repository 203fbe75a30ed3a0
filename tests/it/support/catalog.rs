//! The catalog of a schema as comparable text: one query per kind of object (relations,
//! columns, constraints, indexes, views, functions, triggers, types, policies, comments),
//! the schema's own name replaced by `<schema>`, items sorted. Two schemas built by different
//! routes (neo-reconcile and psql in `corpus.rs`, tenants at the same version in
//! `robustness.rs`, a rollback against a straight migration in `rollback.rs`) are compared
//! through it.

use crate::support::pg::PgCluster;

/// One query per kind of catalog object in schema `{schema}`; each returns one text per
/// object. They run with `search_path = pg_catalog`, so every name in a definition is
/// schema-qualified, and the schema's name is then replaced by a placeholder.
pub const CATALOG: &[(&str, &str)] = &[
    (
        "relations",
        "SELECT c.relname || ' kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
                || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
                || ' options=' || coalesce(c.reloptions::text, '')
                || coalesce(' partition of ' || (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1)
                            || ' ' || pg_get_expr(c.relpartbound, c.oid), '')
                || coalesce(' partitioned by ' || pg_get_partkeydef(c.oid), '')
                || coalesce(' sequence ' || format_type(s.seqtypid, NULL) || ' start ' || s.seqstart || ' increment ' || s.seqincrement
                            || ' min ' || s.seqmin || ' max ' || s.seqmax || ' cache ' || s.seqcache || ' cycle ' || s.seqcycle, '')
                || coalesce(' owned by ' || (SELECT d.refobjid::regclass::text || '.' || a.attname
                                               FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1), '')
           FROM pg_class c LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
          WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind NOT IN ('i', 'I')",
    ),
    (
        "columns",
        "SELECT c.relname || '.' || a.attname || ' #' || a.attnum || ' ' || format_type(a.atttypid, a.atttypmod)
                || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
                || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
                || CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END
                || CASE WHEN a.attcollation <> t.typcollation THEN ' collate ' || a.attcollation::regcollation::text ELSE '' END
                || CASE WHEN a.attstorage <> t.typstorage THEN ' storage ' || a.attstorage::text ELSE '' END
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind NOT IN ('i', 'I', 'S')
            AND a.attnum > 0 AND NOT a.attisdropped",
    ),
    (
        "constraints",
        "SELECT coalesce(c.relname, 'type ' || t.typname) || ' ' || co.conname || ' ' || co.contype::text || ': '
                || pg_get_constraintdef(co.oid)
                || CASE WHEN co.condeferrable THEN ' deferrable' ELSE '' END
                || CASE WHEN co.condeferred THEN ' deferred' ELSE '' END
                || CASE WHEN co.convalidated THEN '' ELSE ' not valid' END
           FROM pg_constraint co
           LEFT JOIN pg_class c ON c.oid = co.conrelid
           LEFT JOIN pg_type t ON t.oid = co.contypid
          WHERE co.connamespace = '{schema}'::regnamespace",
    ),
    (
        "indexes",
        "SELECT pg_get_indexdef(i.indexrelid)
                || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
                || CASE WHEN i.indisready THEN '' ELSE ' NOT READY' END
                || CASE WHEN i.indisclustered THEN ' clustered' ELSE '' END
                || CASE WHEN i.indisreplident THEN ' replica identity' ELSE '' END
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE c.relnamespace = '{schema}'::regnamespace",
    ),
    (
        "views",
        "SELECT c.relname || ' kind=' || c.relkind::text || ':' || chr(10) || pg_get_viewdef(c.oid)
           FROM pg_class c
          WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind IN ('v', 'm')",
    ),
    (
        "functions",
        "SELECT CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid)
                     ELSE p.prokind::text || ' ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' END
           FROM pg_proc p
          WHERE p.pronamespace = '{schema}'::regnamespace",
    ),
    (
        "triggers",
        "SELECT pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE c.relnamespace = '{schema}'::regnamespace AND NOT t.tgisinternal",
    ),
    (
        "types",
        "SELECT t.typname || ' type=' || t.typtype::text
                || CASE t.typtype
                     WHEN 'e' THEN ' (' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                              FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
                     WHEN 'd' THEN ' over ' || format_type(t.typbasetype, t.typtypmod)
                                  || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
                                  || coalesce(' default ' || t.typdefault, '')
                     WHEN 'r' THEN ' of ' || (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid)
                     ELSE '' END
           FROM pg_type t
          WHERE t.typnamespace = '{schema}'::regnamespace",
    ),
    (
        "policies",
        "SELECT p.tablename || ' ' || p.policyname || ' ' || p.permissive || ' ' || p.cmd
                || ' to ' || p.roles::text || coalesce(' using ' || p.qual, '') || coalesce(' check ' || p.with_check, '')
           FROM pg_policies p
          WHERE p.schemaname = '{schema}'",
    ),
    (
        "comments",
        "SELECT o.type || ' ' || o.identity || ' = ' || quote_literal(d.description)
           FROM pg_description d, LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) o
          WHERE d.objoid >= 16384 AND o.schema = '{schema}'",
    ),
];

/// Every kind of [`CATALOG`] object in `schema` of database `db`, normalized and sorted.
pub fn catalog(cluster: &PgCluster, db: &str, schema: &str) -> Vec<(&'static str, Vec<String>)> {
    CATALOG
        .iter()
        .map(|(kind, query)| {
            let sql = format!(
                "SET search_path TO pg_catalog;\nSELECT coalesce(json_agg(x), '[]') FROM ({}) q(x)",
                query.replace("{schema}", schema)
            );
            let out = cluster.psql(db, &sql);
            let items: Vec<String> = serde_json::from_str(out.trim())
                .unwrap_or_else(|e| panic!("catalog query {kind}: {e}: {out}"));
            let mut items: Vec<String> = items.iter().map(|item| normalize(item, schema)).collect();
            items.sort();
            (*kind, items)
        })
        .collect()
}

/// `text` with every whole-word occurrence of `schema` replaced by `<schema>`.
pub fn normalize(text: &str, schema: &str) -> String {
    let word =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in text.match_indices(schema) {
        let end = at + schema.len();
        if at < last || word(text[..at].chars().next_back()) || word(text[end..].chars().next()) {
            continue;
        }
        out.push_str(&text[last..at]);
        out.push_str("<schema>");
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// The catalog as text, one block per kind, multi-line definitions indented.
pub fn render(catalog: &[(&str, Vec<String>)]) -> String {
    let mut out = String::new();
    for (kind, items) in catalog {
        out += &format!("== {kind} ({})\n", items.len());
        for item in items {
            out += &item.replace('\n', "\n    ");
            out.push('\n');
        }
    }
    out
}

/// The normalized catalog of each of `schemas` in `db`, as text, from one psql session.
pub fn catalogs_of(cluster: &PgCluster, db: &str, schemas: &[&String]) -> Vec<(String, String)> {
    if schemas.is_empty() {
        return Vec::new();
    }
    let mut sql = String::from("SET search_path TO pg_catalog;\n");
    for schema in schemas {
        for (kind, query) in CATALOG {
            sql += &format!(
                "SELECT json_build_array('{schema}', '{kind}', coalesce(json_agg(x ORDER BY x), '[]')) FROM ({}) q(x);\n",
                query.replace("{schema}", schema)
            );
        }
    }
    let out = cluster.psql(db, &sql);
    let mut by_schema: Vec<(String, String)> = schemas
        .iter()
        .map(|s| (s.to_string(), String::new()))
        .collect();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("catalog row is not JSON ({e}): {line}"));
        let schema = row[0].as_str().unwrap();
        let mut items: Vec<String> = row[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| normalize(i.as_str().unwrap_or_default(), schema))
            .collect();
        items.sort();
        let entry = by_schema.iter_mut().find(|(s, _)| s == schema).unwrap();
        entry.1 += &format!(
            "== {} ({})\n{}\n",
            row[1].as_str().unwrap(),
            items.len(),
            items.join("\n")
        );
    }
    by_schema
}
