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

/// Drops the tenant's schema with its data, and its roles.
pub fn destroy_tenant(schema: &str, owner: &str, rw: &str) -> Vec<String> {
    let (o, r) = (ident(owner), ident(rw));
    vec![
        format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(schema)),
        format!("DROP OWNED BY {r}, {o}"),
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
