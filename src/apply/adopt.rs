//! Adopting tenant schemas that already exist (migrated by Flyway or by hand).
//!
//! For each tenant, under the region lock and in one transaction: check the schema exists and
//! has no history for the set yet; read the versions to record (`--at-version N`, or the
//! successful rows of the schema's `flyway_schema_history`, refusing when a failed Flyway
//! migration is present); make the tenant's NOLOGIN roles and hand the schema and its objects
//! to the owner role (so later migrations, which run under `SET ROLE`, can alter them); grant
//! the rw role; then record the tenant and one history row per version with the repository
//! file's checksum. No migration SQL runs.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor, Row};

use super::lock::RegionLock;
use super::RunContext;
use crate::bookkeeping;
use crate::desired::{Desired, Region, SchemaSet, Scope, Tenant, TenantStatus};
use crate::observed::postgres::connect;
use crate::plan::BOOKKEEPING_SCHEMA;
use crate::sources::credentials::Credentials;
use crate::sql::ident;

// Interim: adopt's bookkeeping statements still quote values; they move to bound parameters
// in the adopt change that follows.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Where the versions to record come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdoptFrom {
    /// Versions 1..=N, as the operator says.
    AtVersion(u32),
    /// The successful versions in the schema's `flyway_schema_history`.
    Flyway,
}

/// What happened to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdoptOutcome {
    Adopted { tenant: String, versions: u32 },
    Refused { tenant: String, reason: String },
}

/// Adopts the given tenants' schemas for a tenant-scope set. Tenants are grouped by region;
/// each region is handled under its lock.
pub async fn adopt(
    desired: &Desired,
    tenants: &[&Tenant],
    set: &SchemaSet,
    from: AdoptFrom,
    credentials: &dyn Credentials,
    ctx: &RunContext,
) -> Vec<AdoptOutcome> {
    let mut out = Vec::new();
    for region in desired.regions.values() {
        let here: Vec<&Tenant> = tenants
            .iter()
            .copied()
            .filter(|t| t.region == region.name)
            .collect();
        if here.is_empty() {
            continue;
        }
        match adopt_in_region(region, &here, set, from, credentials, ctx).await {
            Ok(mut outcomes) => out.append(&mut outcomes),
            Err(reason) => out.extend(here.iter().map(|t| AdoptOutcome::Refused {
                tenant: t.slug.clone(),
                reason: reason.clone(),
            })),
        }
    }
    out
}

async fn adopt_in_region(
    region: &Region,
    tenants: &[&Tenant],
    set: &SchemaSet,
    from: AdoptFrom,
    credentials: &dyn Credentials,
    ctx: &RunContext,
) -> Result<Vec<AdoptOutcome>, String> {
    let creds = credentials.fetch(region).await.map_err(|e| e.to_string())?;
    let db = &region.postgres.database;
    let mut lock_conn = connect(&region.postgres, db, &creds)
        .await
        .map_err(|e| e.to_string())?;
    let lock = RegionLock::acquire(&mut lock_conn, region.apply.lock_wait)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let mut conn = connect(&region.postgres, db, &creds).await.map_err(|e| e.to_string())?;
        // Bookkeeping first, as apply's bootstrap does.
        conn.execute(sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {0}; SET search_path TO {0}", ident(BOOKKEEPING_SCHEMA))))
            .await
            .map_err(|e| e.to_string())?;
        bookkeeping::region().run_direct(&mut conn).await.map_err(|e| e.to_string())?;
        conn.execute("RESET search_path").await.map_err(|e| e.to_string())?;
        lock.record_holder(&mut lock_conn, ctx).await.map_err(|e| e.to_string())?;
        let mut outcomes = Vec::new();
        for tenant in tenants {
            let outcome = match adopt_tenant(&mut conn, tenant, set, from, ctx).await {
                Ok(versions) => {
                    tracing::info!(region = %region.name, tenant = %tenant.slug, schema_set = %set.name, versions, "Adopted.");
                    AdoptOutcome::Adopted { tenant: tenant.slug.clone(), versions }
                }
                Err(reason) => {
                    tracing::warn!(region = %region.name, tenant = %tenant.slug, reason = %reason, "Adoption refused.");
                    AdoptOutcome::Refused { tenant: tenant.slug.clone(), reason }
                }
            };
            outcomes.push(outcome);
        }
        conn.close().await.ok();
        Ok(outcomes)
    }
    .await;
    lock.release(&mut lock_conn).await;
    lock_conn.close().await.ok();
    result
}

/// Adopts one tenant in one transaction; returns the number of versions recorded.
async fn adopt_tenant(
    conn: &mut PgConnection,
    tenant: &Tenant,
    set: &SchemaSet,
    from: AdoptFrom,
    ctx: &RunContext,
) -> Result<u32, String> {
    if set.scope != Scope::Tenant {
        return Err(format!(
            "{} is a region-scope set; adopt records tenant-scope sets",
            set.name
        ));
    }
    if !matches!(
        tenant.status,
        TenantStatus::Active | TenantStatus::Suspended
    ) {
        return Err(format!(
            "tenant {} is {} in the desired state; only active or suspended tenants are adopted",
            tenant.slug, tenant.status
        ));
    }
    let schema = tenant.schema();
    let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
    let db = |e: sqlx::Error| e.to_string();

    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
            .bind(&schema)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
    if !exists {
        return Err(format!("schema {schema} does not exist: there is nothing to adopt (a new tenant is created by apply)"));
    }
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM neo_reconcile.schema_history WHERE target_schema = $1 AND schema_set = $2 AND success",
    )
    .bind(&schema)
    .bind(&set.name)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    if recorded > 0 {
        return Err(format!(
            "{schema} already has {recorded} recorded version(s) of {}: it is managed already",
            set.name
        ));
    }

    let version = match from {
        AdoptFrom::AtVersion(n) => n,
        AdoptFrom::Flyway => flyway_version(&mut tx, &schema).await?,
    };
    if version < 1 || version > set.latest() {
        return Err(format!(
            "version {version} is not in schemas/{}/ (V1 to V{})",
            set.name,
            set.latest()
        ));
    }

    // Roles, ownership and grants, as create_tenant leaves a new tenant.
    let (owner, rw) = (tenant.owner_role(), tenant.rw_role());
    let managed: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM neo_reconcile.tenants WHERE slug = $1)")
            .bind(&tenant.slug)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
    if !managed {
        let mut statements = Vec::new();
        for role in [&owner, &rw] {
            statements.push(format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {}) THEN CREATE ROLE {} NOLOGIN; END IF; END$$",
                literal(role),
                ident(role)
            ));
        }
        statements.push(format!("GRANT {} TO CURRENT_USER", ident(&owner)));
        statements.push(reassign_schema_objects(&schema, &owner));
        let (s, o, r) = (ident(&schema), ident(&owner), ident(&rw));
        statements.extend([
            format!("REVOKE ALL ON SCHEMA {s} FROM PUBLIC"),
            format!("GRANT USAGE ON SCHEMA {s} TO {r}"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}"),
            format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {r}"),
            format!("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {r}"),
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}"),
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {r}"),
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT EXECUTE ON FUNCTIONS TO {r}"),
            format!(
                "INSERT INTO neo_reconcile.tenants (slug, status, schema_name, owner_role, rw_role, git_commit) VALUES ({}, 'active', {}, {}, {}, {})",
                literal(&tenant.slug),
                literal(&schema),
                literal(&owner),
                literal(&rw),
                ctx.commit.as_deref().map_or("NULL".into(), literal)
            ),
        ]);
        tx.execute(sqlx::raw_sql(&statements.join(";\n")))
            .await
            .map_err(|e| format!("cannot take over {schema} (the login role must own its objects or be a superuser): {e}"))?;
    }

    let source = match from {
        AdoptFrom::AtVersion(_) => "manual",
        AdoptFrom::Flyway => "flyway",
    };
    for m in &set.migrations[..version as usize] {
        sqlx::query(
            "INSERT INTO neo_reconcile.schema_history
             (target_schema, schema_set, version, description, checksum, applied_by, git_commit, execution_ms, success, adopted_from)
             VALUES ($1, $2, $3, $4, $5, session_user || '@' || $6, $7, 0, true, $8)",
        )
        .bind(&schema)
        .bind(&set.name)
        .bind(m.version as i32)
        .bind(&m.description)
        .bind(&m.checksum)
        .bind(&ctx.host)
        .bind(&ctx.commit)
        .bind(source)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(version)
}

/// The highest version recorded by Flyway, after checking that the history is usable: no
/// failed migration, integer versions only, and every version from 1 up without a gap.
async fn flyway_version(conn: &mut PgConnection, schema: &str) -> Result<u32, String> {
    let table = format!("{}.flyway_schema_history", ident(schema));
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&table)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    if !exists {
        return Err(format!("{schema} has no flyway_schema_history table"));
    }
    let rows = sqlx::query(&format!(
        "SELECT version, description, success FROM {table} WHERE version IS NOT NULL ORDER BY installed_rank"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    let mut versions = Vec::new();
    for row in &rows {
        let version: String = row.try_get("version").map_err(|e| e.to_string())?;
        let description: String = row.try_get("description").map_err(|e| e.to_string())?;
        let success: bool = row.try_get("success").map_err(|e| e.to_string())?;
        if !success {
            return Err(format!(
                "{schema}: Flyway recorded a failed migration (version {version}, {description:?}); repair it with Flyway first (flyway repair), then adopt"
            ));
        }
        let v: u32 = version
            .parse()
            .map_err(|_| format!("{schema}: Flyway version {version:?} is not a whole number; neo-reconcile versions are 1, 2, 3, ..."))?;
        versions.push(v);
    }
    versions.sort_unstable();
    versions.dedup();
    if versions.is_empty() {
        return Err(format!(
            "{schema}: flyway_schema_history records no versioned migration"
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if *v != i as u32 + 1 {
            return Err(format!(
                "{schema}: Flyway history has versions {versions:?}, not 1 to {} without gaps",
                versions.len()
            ));
        }
    }
    Ok(versions.len() as u32)
}

/// A statement handing a schema and the objects in it to `owner`. Sequences that belong to a
/// table column follow their table.
fn reassign_schema_objects(schema: &str, owner: &str) -> String {
    format!(
        "DO $$
DECLARE r record;
BEGIN
  EXECUTE format('ALTER SCHEMA %I OWNER TO %I', {s}, {o});
  FOR r IN SELECT c.relname, c.relkind FROM pg_class c
           WHERE c.relnamespace = {s}::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
  LOOP
    EXECUTE format('ALTER %s %I.%I OWNER TO %I',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
      {s}, r.relname, {o});
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS sig, p.prokind FROM pg_proc p WHERE p.pronamespace = {s}::regnamespace
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I', CASE r.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, r.sig, {o});
  END LOOP;
END$$",
        s = literal(schema),
        o = literal(owner)
    )
}

/// Whether a set can be adopted: used by the CLI to reject a region-scope set up front.
pub fn check_set(set: &SchemaSet) -> Result<(), String> {
    if set.scope == Scope::Tenant {
        Ok(())
    } else {
        Err(format!(
            "{} is a region-scope set; adopt records tenant-scope sets",
            set.name
        ))
    }
}
