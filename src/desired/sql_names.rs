//! Names in migrations that name a schema.
//!
//! A migration runs with `search_path` set to its target schema alone (the tenant's
//! `tenant_<slug>`, or the region-scope set's schema), so that one file serves every target:
//! it must not name a schema. [`check`] finds every place a statement's parse tree names one:
//!
//! - a qualified name: `other.t` as a table, view, sequence or index (`RangeVar`), a type, a
//!   function or procedure (called or defined), an operator (`OPERATOR(other.+)`), a
//!   collation, an operator class, a trigger's function, `OWNED BY other.t.c`, a three-part
//!   column reference `other.t.c`, the object of `DROP`, `COMMENT ON`, `ALTER ... OWNER TO`,
//!   `ALTER ... RENAME`, ...;
//! - a schema named as such: `CREATE SCHEMA`, `DROP SCHEMA`, `ALTER ... SET SCHEMA`,
//!   `GRANT ... ON SCHEMA`, `... IN SCHEMA`, `CREATE EXTENSION ... SCHEMA`, `REINDEX SCHEMA`,
//!   a function's `SET search_path = other`;
//! - `SET search_path` as a statement, which would take the migration out of its schema.
//!
//! Schemas `pg_catalog` and `information_schema` belong to the server and are the same in
//! every database: naming them is allowed (the parser itself writes `pg_catalog.int4` for
//! `integer`), and so is `pg_temp`, the session's own temporary schema (`SET search_path =
//! pg_catalog, pg_temp` is how a `SECURITY DEFINER` function is written safely). `public` gives a warning: it is where extensions usually live
//! (`public.citext`), and since it is not on a migration's `search_path`, their objects can
//! only be reached by naming it; but it is shared by every tenant of the region, so a migration
//! must never create or change anything in it. Any other schema, the target schema's own name
//! included, is an error.
//!
//! The walk is over the whole tree (serialized by pg_query's protobuf types), so that no node
//! type is forgotten: the generic rules look at fields by name (`schemaname`, `names`,
//! `funcname`, ...), and the statements whose object is a plain list of names (`DROP`,
//! `COMMENT ON`, ...) are read from the typed tree, since how long a qualified name is depends
//! on the kind of object. Names inside string literals (function bodies written with `$$`,
//! `DO` blocks, `'other.t'::regclass`) are not parsed SQL and are not seen.

use std::collections::BTreeSet;

use pg_query::protobuf::{self, GrantTargetType, ObjectType, Token};
use pg_query::NodeEnum;
use serde_json::Value;

use super::diagnostic::Severity;
use super::sql_check::{Finding, Source};

/// Fields that hold a qualified name as a list of strings (possibly a list of such lists):
/// the schema is the next-to-last element.
const QUALIFIED_NAME_FIELDS: [&str; 22] = [
    "names",            // TypeName
    "funcname",         // FuncCall, CreateFunctionStmt, CreateTrigStmt, CreateEventTrigStmt
    "objname",          // ObjectWithArgs: functions, aggregates, operators in DROP, GRANT, ...
    "name",             // A_Expr: an operator, OPERATOR(other.+)
    "oper_name",        // SubLink: x OPERATOR(other.=) ANY (...)
    "exclude_op_names", // IndexStmt: EXCLUDE ... WITH OPERATOR(other.&&)
    "collname",         // CollateClause, ALTER COLLATION
    "collation",        // IndexElem, PartitionElem
    "opclass",          // IndexElem, PartitionElem: gin (c other.gin_trgm_ops)
    "defnames",         // DefineStmt (CREATE AGGREGATE/OPERATOR/TYPE/COLLATION ...), statistics
    "domainname",       // CreateDomainStmt
    "type_name",        // CreateEnumStmt, CreateRangeStmt, AlterEnumStmt, AlterTypeStmt, ...
    "opclassname",      // CreateOpClassStmt
    "opfamilyname",     // CreateOpClassStmt, CreateOpFamilyStmt, AlterOpFamilyStmt
    "order_family",     // CreateOpClassItem
    "conversion_name",  // CreateConversionStmt
    "func_name",        // CreateConversionStmt
    "dictname",         // AlterTSDictionaryStmt
    "cfgname",          // AlterTSConfigurationStmt
    "dicts",            // AlterTSConfigurationStmt
    "handler_name",     // CreateAmStmt
    "plhandler",        // CreatePLangStmt (also plinline, plvalidator: rare enough)
];

/// Fields that hold a schema's name.
const SCHEMA_FIELDS: [&str; 3] = ["schemaname", "newschema", "local_schema"];

/// Checks one statement (starting at byte `start`, ending at `end` of the file).
pub(crate) fn check(
    node: &NodeEnum,
    src: &Source<'_>,
    start: usize,
    end: usize,
    out: &mut Vec<Finding>,
) {
    let mut walker = Walker {
        src,
        start,
        end,
        out,
        seen: BTreeSet::new(),
    };
    if let NodeEnum::VariableSetStmt(s) = node {
        if s.name == "search_path" {
            walker.out.push(Finding::error(
                start,
                "SET search_path in a migration: remove it; neo-reconcile sets search_path to \
                 the migration's target schema alone, and everything the migration creates \
                 must land there",
            ));
            return;
        }
    }
    walker.typed(node);
    match serde_json::to_value(node) {
        Ok(tree) => walker.walk(&tree, start),
        Err(e) => walker.out.push(Finding::error(
            start,
            format!("cannot inspect this statement's names: {e}"),
        )),
    }
}

struct Walker<'a, 's> {
    src: &'a Source<'s>,
    start: usize,
    end: usize,
    out: &'a mut Vec<Finding>,
    /// (offset, schema) already reported, so that a name reached by two rules is reported once.
    seen: BTreeSet<(usize, String)>,
}

impl Walker<'_, '_> {
    /// The statements whose object is a list of names, whose meaning depends on its type.
    fn typed(&mut self, node: &NodeEnum) {
        match node {
            NodeEnum::DropStmt(s) => {
                for o in &s.objects {
                    self.object(s.remove_type, o);
                }
            }
            NodeEnum::CommentStmt(s) => self.boxed_object(s.objtype, &s.object),
            NodeEnum::SecLabelStmt(s) => self.boxed_object(s.objtype, &s.object),
            NodeEnum::AlterOwnerStmt(s) => self.boxed_object(s.object_type, &s.object),
            NodeEnum::AlterObjectSchemaStmt(s) => self.boxed_object(s.object_type, &s.object),
            NodeEnum::AlterObjectDependsStmt(s) => self.boxed_object(s.object_type, &s.object),
            NodeEnum::AlterExtensionContentsStmt(s) => self.boxed_object(s.objtype, &s.object),
            NodeEnum::RenameStmt(s) => {
                if s.rename_type == ObjectType::ObjectSchema as i32 {
                    self.schema(&s.subname, None, self.start);
                }
                self.boxed_object(s.rename_type, &s.object);
            }
            NodeEnum::ReindexStmt(s)
                if s.kind == protobuf::ReindexObjectType::ReindexObjectSchema as i32 =>
            {
                self.schema(&s.name, None, self.start);
            }
            NodeEnum::GrantStmt(s)
                if s.objtype == ObjectType::ObjectSchema as i32
                    || s.targtype == GrantTargetType::AclTargetAllInSchema as i32 =>
            {
                for name in s.objects.iter().filter_map(string) {
                    self.schema(name, None, self.start);
                }
            }
            NodeEnum::AlterDefaultPrivilegesStmt(s) => {
                for d in s.options.iter().filter_map(def_elem) {
                    if d.defname == "schemas" {
                        for name in list(d.arg.as_deref()).iter().flat_map(|l| l.iter()) {
                            if let Some(name) = string(name) {
                                self.schema(name, None, d.location.max(0) as usize);
                            }
                        }
                    }
                }
            }
            NodeEnum::CreateExtensionStmt(s) => {
                for d in s.options.iter().filter_map(def_elem) {
                    if d.defname == "schema" {
                        if let Some(name) = d.arg.as_deref().and_then(string) {
                            self.schema(name, None, d.location.max(0) as usize);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn boxed_object(&mut self, objtype: i32, object: &Option<Box<protobuf::Node>>) {
        if let Some(o) = object {
            self.object(objtype, o);
        }
    }

    /// The object of `DROP`, `COMMENT ON`, ...: a schema's name, or a list of names whose
    /// last element names the object, qualified by its relation for the objects that belong
    /// to a table, and after the access method for operator classes and families. Types
    /// (`TypeName`) and routines (`ObjectWithArgs`) are found by the generic walk.
    fn object(&mut self, objtype: i32, node: &protobuf::Node) {
        use ObjectType as O;
        let kind = O::try_from(objtype).unwrap_or(O::Undefined);
        if let Some(name) = string(node) {
            if kind == O::ObjectSchema {
                self.schema(name, None, self.start);
            }
            return;
        }
        let Some(items) = list(Some(node)) else {
            return;
        };
        let Some(names) = strings(items) else {
            return;
        };
        let names = match kind {
            O::ObjectColumn
            | O::ObjectTrigger
            | O::ObjectRule
            | O::ObjectPolicy
            | O::ObjectTabconstraint => &names[..names.len().saturating_sub(1)],
            O::ObjectOpclass | O::ObjectOpfamily => &names[names.len().min(1)..],
            _ => &names[..],
        };
        self.qualified(names, self.start);
    }

    /// Walks the serialized tree. `loc` is the byte offset of the nearest node that has one.
    fn walk(&mut self, value: &Value, loc: usize) {
        match value {
            Value::Object(map) => {
                let loc = map
                    .get("location")
                    .and_then(Value::as_i64)
                    .filter(|l| *l >= 0)
                    .map_or(loc, |l| l as usize);
                for (key, v) in map {
                    match (key.as_str(), v) {
                        (k, Value::String(s)) if SCHEMA_FIELDS.contains(&k) && !s.is_empty() => {
                            let relname = map.get("relname").and_then(Value::as_str);
                            self.schema(s, relname, loc);
                        }
                        (k, Value::Array(items)) if QUALIFIED_NAME_FIELDS.contains(&k) => {
                            self.name_list(items, loc);
                        }
                        ("ColumnRef", Value::Object(c)) => {
                            // schema.table.column, or database.schema.table.column.
                            if let Some(Value::Array(fields)) = c.get("fields") {
                                let names: Vec<&str> = fields
                                    .iter()
                                    .map(|f| json_string(f).unwrap_or("*"))
                                    .collect();
                                if names.len() >= 3 {
                                    let at =
                                        c.get("location").and_then(Value::as_i64).unwrap_or(-1);
                                    let at = if at >= 0 { at as usize } else { loc };
                                    self.qualified(&names[..names.len() - 1], at);
                                }
                            }
                        }
                        ("DefElem", Value::Object(d)) => self.def_elem(d, loc),
                        _ => {}
                    }
                    self.walk(v, loc);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, loc);
                }
            }
            _ => {}
        }
    }

    /// A list of names, or a list of such lists.
    fn name_list(&mut self, items: &[Value], loc: usize) {
        let names: Option<Vec<&str>> = items.iter().map(json_string).collect();
        match names {
            Some(names) => self.qualified(&names, loc),
            None => {
                for item in items {
                    if let Some(Value::Array(inner)) = item.pointer("/node/List/items") {
                        self.name_list(inner, loc);
                    }
                }
            }
        }
    }

    /// Options that hold names: a sequence's `OWNED BY table.column` and `SEQUENCE NAME`, and a
    /// function's `SET search_path`.
    fn def_elem(&mut self, d: &serde_json::Map<String, Value>, loc: usize) {
        let loc = d
            .get("location")
            .and_then(Value::as_i64)
            .filter(|l| *l >= 0)
            .map_or(loc, |l| l as usize);
        let items = || -> Option<Vec<&str>> {
            match d.get("arg")?.pointer("/node/List/items")? {
                Value::Array(items) => items.iter().map(json_string).collect(),
                _ => None,
            }
        };
        match d.get("defname").and_then(Value::as_str) {
            Some("owned_by") => {
                if let Some(names) = items() {
                    self.qualified(&names[..names.len().saturating_sub(1)], loc);
                }
            }
            Some("sequence_name") => {
                if let Some(names) = items() {
                    self.qualified(&names, loc);
                }
            }
            Some("set") => {
                let Some(set) = d
                    .get("arg")
                    .and_then(|a| a.pointer("/node/VariableSetStmt"))
                else {
                    return;
                };
                if set.get("name").and_then(Value::as_str) != Some("search_path") {
                    return;
                }
                let mut values = Vec::new();
                collect_svals(set.get("args").unwrap_or(&Value::Null), &mut values);
                for value in values {
                    for schema in value.split(',').map(|s| s.trim().trim_matches('"')) {
                        if !schema.is_empty() && schema != "$user" {
                            self.schema(schema, None, loc);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// A qualified name `[catalog.]schema.object`: its schema is the next-to-last element.
    fn qualified(&mut self, names: &[&str], loc: usize) {
        if names.len() >= 2 {
            let schema = names[names.len() - 2];
            let object = names[names.len() - 1];
            self.schema(schema, Some(object), loc);
        }
    }

    /// Reports a schema, named alone or as the qualifier of `object`.
    fn schema(&mut self, schema: &str, object: Option<&str>, loc: usize) {
        let severity = match schema {
            "pg_catalog" | "information_schema" | "pg_temp" => return,
            "public" => Severity::Warning,
            _ => Severity::Error,
        };
        let offset = self.locate(schema, object.is_some(), loc);
        if !self.seen.insert((offset, schema.to_string())) {
            return;
        }
        let named = match object {
            Some(object) => format!(" ({}.{})", quote(schema), quote(object)),
            None => String::new(),
        };
        let message = if severity == Severity::Warning {
            format!(
                "names the schema \"public\"{named}: allowed for the objects of extensions \
                 installed there, which are not on a migration's search_path (public.citext), \
                 but a migration must never create or change anything in public: every tenant \
                 of the region shares it"
            )
        } else {
            let write = match object {
                Some(object) => format!("write {} without a schema", quote(object)),
                None => "leave schemas to neo-reconcile".to_string(),
            };
            format!(
                "names the schema {}{named}: a migration must not name a schema, not even \
                 its target's; it runs with search_path set to its target schema alone (the \
                 tenant's, or the region-scope set's), so {write}",
                quote_always(schema)
            )
        };
        self.out.push(Finding {
            offset,
            severity,
            message,
        });
    }

    /// The offset of the token naming `schema` (followed by a `.` when `dotted`) at or after
    /// `loc` in the statement, or after its start; `loc` when no token matches (a name that
    /// the parser inserted itself).
    fn locate(&self, schema: &str, dotted: bool, loc: usize) -> usize {
        let tokens = self.src.tokens;
        let matches = |i: usize| {
            let t = &tokens[i];
            ident_eq(self.src.token_text(t), schema)
                && (!dotted
                    || tokens
                        .get(i + 1)
                        .is_some_and(|n| n.token == Token::Ascii46 as i32))
        };
        let range = |from: usize| {
            let first = tokens.partition_point(|t| (t.start as usize) < from);
            let last = tokens.partition_point(|t| (t.start as usize) < self.end);
            first..last.max(first)
        };
        range(loc.max(self.start))
            .chain(range(self.start))
            .find(|&i| matches(i))
            .map_or(loc, |i| tokens[i].start as usize)
    }
}

/// Whether a token (an identifier, quoted or not, or a keyword used as one) is `name` as the
/// parser reads it: unquoted identifiers are folded to lower case.
fn ident_eq(token: &str, name: &str) -> bool {
    match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\"") == name,
        None => token.to_lowercase() == name,
    }
}

/// A name as it would be written: quoted when it is not a plain lower-case identifier (nor an
/// operator).
fn quote(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    let operator = !name.is_empty() && name.chars().all(|c| "+-*/<>=~!@#%^&|`?".contains(c));
    if plain || operator {
        name.to_string()
    } else {
        quote_always(name)
    }
}

fn quote_always(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn def_elem(node: &protobuf::Node) -> Option<&protobuf::DefElem> {
    match &node.node {
        Some(NodeEnum::DefElem(d)) => Some(d),
        _ => None,
    }
}

fn string(node: &protobuf::Node) -> Option<&str> {
    match &node.node {
        Some(NodeEnum::String(s)) => Some(&s.sval),
        _ => None,
    }
}

fn list(node: Option<&protobuf::Node>) -> Option<&[protobuf::Node]> {
    match &node?.node {
        Some(NodeEnum::List(l)) => Some(&l.items),
        _ => None,
    }
}

fn strings(items: &[protobuf::Node]) -> Option<Vec<&str>> {
    items.iter().map(string).collect()
}

/// The string of a serialized `String` node.
fn json_string(value: &Value) -> Option<&str> {
    value.pointer("/node/String/sval").and_then(Value::as_str)
}

/// Every `sval` under a serialized value (the strings of `SET ... = a, 'b'`).
fn collect_svals<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("sval", Value::String(s)) => out.push(s),
                    _ => collect_svals(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_svals(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use crate::desired::sql_check;

    /// Checks a transactional migration and renders its findings (see `sql_check::tests`).
    fn check(sql: &str, expected: Expect) {
        let checked = sql_check::check(sql, false);
        expected.assert_eq(&sql_check::tests::render(sql, &checked.findings));
    }

    #[test]
    fn unqualified_names_are_fine() {
        check(
            "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL, \
               tags text[] COLLATE \"C\", at timestamptz DEFAULT now());\n\
             CREATE INDEX ON users (lower(email) text_pattern_ops);\n\
             CREATE VIEW v AS SELECT u.id, u.email FROM users u WHERE u.id > 0;\n\
             COMMENT ON COLUMN users.email IS 'x';\n\
             COMMENT ON TRIGGER tr ON users IS 'x';\n\
             DROP TRIGGER IF EXISTS tr ON users;\n\
             CREATE SEQUENCE s OWNED BY users.id;\n\
             ALTER TABLE users ADD CONSTRAINT c CHECK (email <> ''), ALTER COLUMN email SET DATA TYPE varchar(200);\n\
             SELECT extract(year FROM now()), trim(' x '), 1::integer, CAST(1 AS bigint), pg_catalog.now(), \
               information_schema._pg_truetypid(a, t) FROM pg_catalog.pg_attribute a, pg_catalog.pg_type t;\n\
             CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path FROM CURRENT RETURN 1;\n\
             CREATE FUNCTION g() RETURNS int LANGUAGE sql SET search_path = pg_catalog, pg_temp RETURN 1;\n",
            expect![[""]],
        );
    }

    #[test]
    fn qualified_names_name_a_schema() {
        check(
            "CREATE TABLE other.t (id int REFERENCES billing.accounts (id));\n\
             INSERT INTO tenant_acme.t SELECT * FROM \"Other\".u;\n\
             SELECT other.f(1), 1::other.money, x OPERATOR(other.+) 1, a.b.c FROM t;\n\
             CREATE INDEX i ON t USING gin (c other.gin_trgm_ops);\n\
             CREATE FUNCTION other.g() RETURNS int LANGUAGE sql RETURN 1;\n\
             CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION other.h();\n\
             CREATE SEQUENCE s OWNED BY other.t.id;\n\
             CREATE TYPE other.e AS ENUM ('a');\n\
             ALTER TYPE other.e ADD VALUE 'b';\n\
             CREATE DOMAIN other.d AS int;\n\
             SELECT 'x' COLLATE other.c;\n",
            expect![[r#"
                1:14 error: names the schema "other" (other.t)
                1:41 error: names the schema "billing" (billing.accounts)
                2:13 error: names the schema "tenant_acme" (tenant_acme.t)
                2:41 error: names the schema "Other" ("Other".u)
                3:8 error: names the schema "other" (other.f)
                3:23 error: names the schema "other" (other.money)
                3:47 error: names the schema "other" (other.+)
                3:59 error: names the schema "a" (a.b)
                4:34 error: names the schema "other" (other.gin_trgm_ops)
                5:17 error: names the schema "other" (other.g)
                6:67 error: names the schema "other" (other.h)
                7:28 error: names the schema "other" (other.t)
                8:13 error: names the schema "other" (other.e)
                9:12 error: names the schema "other" (other.e)
                10:15 error: names the schema "other" (other.d)
                11:20 error: names the schema "other" (other.c)
            "#]],
        );
    }

    #[test]
    fn objects_of_ddl_statements_name_a_schema() {
        check(
            "DROP TABLE other.t, u;\n\
             DROP FUNCTION other.f(int);\n\
             DROP TYPE other.e;\n\
             DROP TRIGGER tr ON other.t;\n\
             COMMENT ON COLUMN other.t.c IS 'x';\n\
             COMMENT ON TABLE other.t IS 'x';\n\
             ALTER TABLE other.t RENAME TO u;\n\
             ALTER VIEW v SET SCHEMA other;\n\
             ALTER FUNCTION other.f(int) OWNER TO r;\n\
             DROP OPERATOR CLASS other.oc USING gin;\n",
            expect![[r#"
                1:12 error: names the schema "other" (other.t)
                2:15 error: names the schema "other" (other.f)
                3:11 error: names the schema "other" (other.e)
                4:20 error: names the schema "other" (other.t)
                5:19 error: names the schema "other" (other.t)
                6:18 error: names the schema "other" (other.t)
                7:13 error: names the schema "other" (other.t)
                8:25 error: names the schema "other"
                9:16 error: names the schema "other" (other.f)
                10:21 error: names the schema "other" (other.oc)
            "#]],
        );
    }

    #[test]
    fn schemas_named_as_such() {
        check(
            "CREATE SCHEMA other;\n\
             DROP SCHEMA IF EXISTS other;\n\
             GRANT USAGE ON SCHEMA other TO r;\n\
             GRANT SELECT ON ALL TABLES IN SCHEMA other TO r;\n\
             ALTER DEFAULT PRIVILEGES IN SCHEMA other GRANT SELECT ON TABLES TO r;\n\
             CREATE EXTENSION IF NOT EXISTS citext SCHEMA other;\n\
             ALTER SCHEMA other RENAME TO x;\n\
             CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = other, public RETURN 1;\n",
            expect![[r#"
                1:15 error: names the schema "other"
                2:23 error: names the schema "other"
                3:23 error: names the schema "other"
                4:38 error: names the schema "other"
                5:36 error: names the schema "other"
                6:46 error: names the schema "other"
                7:14 error: names the schema "other"
                8:64 error: names the schema "other"
                8:71 warning: names the schema "public"
            "#]],
        );
    }

    #[test]
    fn set_search_path_is_an_error_and_public_a_warning() {
        check(
            "SET search_path TO other;\nRESET search_path;\n\
             CREATE TABLE t (email public.citext, id uuid DEFAULT public.gen_random_uuid());\n",
            expect![[r#"
                1:1 error: SET search_path in a migration
                2:1 error: SET search_path in a migration
                3:23 warning: names the schema "public" (public.citext)
                3:54 warning: names the schema "public" (public.gen_random_uuid)
            "#]],
        );
    }

    #[test]
    fn function_bodies_parsed_by_the_server_are_checked() {
        check(
            "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql\nBEGIN ATOMIC\n  SELECT count(*) FROM other.t;\nEND;\n\
             CREATE FUNCTION g() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM other.t $$;\n",
            expect![[r#"
                3:24 error: names the schema "other" (other.t)
            "#]],
        );
    }
}
