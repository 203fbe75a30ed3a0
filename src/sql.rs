//! The SQL of each plan action, built in one place so that `plan --show-sql` shows exactly
//! the statements apply runs. Pure string building; names are quoted with [`ident`] even
//! though validation already restricts them to plain identifiers.

use std::time::Duration;

use crate::desired::ApplySettings;
use crate::observed::RegistryRow;

/// Quotes an identifier for PostgreSQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for PostgreSQL (standard_conforming_strings is on by default).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn millis(d: Duration) -> String {
    literal(&format!("{}ms", d.as_millis()))
}

/// The owner role of a region-scope set's schema.
pub fn region_set_owner(set: &str) -> String {
    format!("{set}_owner")
}

/// Creates a tenant's roles and schema, and the grants that let its rw role use every object
/// the owner role will create.
pub fn create_tenant(schema: &str, owner: &str, rw: &str) -> Vec<String> {
    let (s, o, r) = (ident(schema), ident(owner), ident(rw));
    vec![
        format!("CREATE ROLE {o} NOLOGIN"),
        format!("CREATE ROLE {r} NOLOGIN"),
        // The login role applies migrations under SET ROLE, so it must be a member.
        format!("GRANT {o} TO CURRENT_USER"),
        format!("CREATE SCHEMA {s} AUTHORIZATION {o}"),
        format!("REVOKE ALL ON SCHEMA {s} FROM PUBLIC"),
        format!("GRANT USAGE ON SCHEMA {s} TO {r}"),
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}"),
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {r}"),
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT EXECUTE ON FUNCTIONS TO {r}"),
    ]
}

/// Creates a region-scope set's owner role and schema, if they do not exist yet.
pub fn create_region_set_schema(schema: &str) -> Vec<String> {
    let owner = region_set_owner(schema);
    vec![
        format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {}) THEN CREATE ROLE {} NOLOGIN; END IF; END$$",
            literal(&owner),
            ident(&owner)
        ),
        format!("GRANT {} TO CURRENT_USER", ident(&owner)),
        format!("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}", ident(schema), ident(&owner)),
    ]
}

/// Cuts the rw role (and so every member login role) off the tenant's schema.
pub fn suspend_tenant(schema: &str, rw: &str) -> Vec<String> {
    vec![format!(
        "REVOKE USAGE ON SCHEMA {} FROM {}",
        ident(schema),
        ident(rw)
    )]
}

pub fn resume_tenant(schema: &str, rw: &str) -> Vec<String> {
    vec![format!(
        "GRANT USAGE ON SCHEMA {} TO {}",
        ident(schema),
        ident(rw)
    )]
}

/// Renames the schema, keeping its data, and cuts the rw role off.
pub fn archive_tenant(schema: &str, archived: &str, rw: &str) -> Vec<String> {
    vec![
        format!(
            "ALTER SCHEMA {} RENAME TO {}",
            ident(schema),
            ident(archived)
        ),
        format!(
            "REVOKE USAGE ON SCHEMA {} FROM {}",
            ident(archived),
            ident(rw)
        ),
    ]
}

/// Drops the tenant's schema with its data, and its roles. Dropping the schema also removes
/// the rw role's grants and default privileges there; `DROP OWNED` catches anything the owner
/// role still owns elsewhere in this database.
pub fn destroy_tenant(schema: &str, owner: &str, rw: &str) -> Vec<String> {
    let (o, r) = (ident(owner), ident(rw));
    vec![
        format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(schema)),
        format!("DROP OWNED BY {o}"),
        format!("DROP ROLE IF EXISTS {r}"),
        format!("DROP ROLE IF EXISTS {o}"),
    ]
}

/// The statements that frame one migration inside its transaction: the migration then runs
/// with the target schema first on the search path, under the owner role, with timeouts.
pub fn migration_preamble(schema: &str, owner: &str, settings: &ApplySettings) -> Vec<String> {
    vec![
        format!("SET LOCAL search_path TO {}", ident(schema)),
        format!("SET LOCAL lock_timeout = {}", millis(settings.lock_timeout)),
        format!(
            "SET LOCAL statement_timeout = {}",
            millis(settings.statement_timeout)
        ),
        format!("SET LOCAL ROLE {}", ident(owner)),
    ]
}

/// The session settings of a `-- neo:no-transaction` migration, which runs alone outside a
/// transaction; [`reset_session`] undoes them.
pub fn no_transaction_preamble(schema: &str, owner: &str, settings: &ApplySettings) -> Vec<String> {
    vec![
        format!("SET search_path TO {}", ident(schema)),
        format!("SET lock_timeout = {}", millis(settings.lock_timeout)),
        format!(
            "SET statement_timeout = {}",
            millis(settings.statement_timeout)
        ),
        format!("SET ROLE {}", ident(owner)),
    ]
}

pub fn reset_session() -> Vec<String> {
    vec![
        "RESET ROLE".into(),
        "RESET search_path".into(),
        "RESET lock_timeout".into(),
        "RESET statement_timeout".into(),
    ]
}

/// The registry change, as one statement per row (run in one transaction).
pub fn registry_update(upsert: &[RegistryRow], delete: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for row in upsert {
        let versions = serde_json::to_string(&row.schema_versions).unwrap_or_else(|_| "{}".into());
        out.push(format!(
            "INSERT INTO admin.database_connections (tenant_slug, region, host, port, database_name, schema_name, status, schema_versions, updated_at, git_commit) \
             VALUES ({}, {}, {}, {}, {}, {}, {}, {}::jsonb, now(), {}) \
             ON CONFLICT (tenant_slug) DO UPDATE SET region = EXCLUDED.region, host = EXCLUDED.host, port = EXCLUDED.port, \
             database_name = EXCLUDED.database_name, schema_name = EXCLUDED.schema_name, status = EXCLUDED.status, \
             schema_versions = EXCLUDED.schema_versions, updated_at = now(), git_commit = EXCLUDED.git_commit",
            literal(&row.tenant),
            literal(&row.region),
            literal(&row.host),
            row.port,
            literal(&row.database),
            literal(&row.schema),
            literal(row.status.as_str()),
            literal(&versions),
            row.commit.as_deref().map_or("NULL".to_string(), literal),
        ));
    }
    for slug in delete {
        out.push(format!(
            "DELETE FROM admin.database_connections WHERE tenant_slug = {}",
            literal(slug)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}

/// Splits a SQL script into statements at top-level semicolons, understanding `--` and
/// nested `/* */` comments, quoted strings (`'...'`, `E'...'`), quoted identifiers and
/// dollar-quoted bodies (`$$...$$`, `$tag$...$tag$`). Statements that hold only comments and
/// white space are dropped. Used for `-- neo:no-transaction` migrations, whose statements run
/// one by one outside any transaction.
pub fn split_statements(script: &str) -> Vec<String> {
    let b = script.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    let mut has_code = false;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                let backslash = i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e');
                i += 1;
                while i < b.len() {
                    if backslash && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                has_code = true;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                has_code = true;
            }
            b'$' => {
                // A dollar quote's tag: $$ or $ident$ (not $1, a parameter).
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map(|p| i + 1 + p);
                if let Some(end) = tag_end
                    .filter(|&e| b[e] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit))
                {
                    let tag = &script[i..=end];
                    match script[end + 1..].find(tag) {
                        Some(close) => i = end + 1 + close + tag.len() - 1,
                        None => i = b.len() - 1,
                    }
                }
                has_code = true;
            }
            b';' => {
                if has_code {
                    out.push(script[start..i].trim().to_string());
                }
                start = i + 1;
                has_code = false;
            }
            c if !c.is_ascii_whitespace() => has_code = true,
            _ => {}
        }
        i += 1;
    }
    if has_code {
        out.push(script[start..].trim().to_string());
    }
    out
}

#[cfg(test)]
mod split_tests {
    use super::split_statements;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let script = "-- neo:no-transaction\n-- a comment; with a semicolon\nDROP INDEX CONCURRENTLY IF EXISTS i;\n\
            /* block; /* nested; */ still */ CREATE INDEX CONCURRENTLY i ON t (a) WHERE b <> ';';\n\
            DO $body$ BEGIN PERFORM 1; END $body$;\nSELECT $$a;b$$, E'it\\'s;', \"we;ird\", $1\n-- trailing comment;\n";
        let got = split_statements(script);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(
            got[0].ends_with("DROP INDEX CONCURRENTLY IF EXISTS i"),
            "{}",
            got[0]
        );
        assert!(got[1].ends_with("WHERE b <> ';'"), "{}", got[1]);
        assert_eq!(got[2], "DO $body$ BEGIN PERFORM 1; END $body$");
        assert!(
            got[3].starts_with("SELECT $$a;b$$, E'it\\'s;', \"we;ird\", $1"),
            "{}",
            got[3]
        );
    }

    #[test]
    fn comment_only_scripts_have_no_statements() {
        assert!(split_statements("-- neo:no-transaction\n-- nothing\n/* here; */\n").is_empty());
    }
}
