//! Adopting schemas that already exist (migrated by Flyway or by hand): tenants' schemas for a
//! tenant-scope set, and a region-scope set's schema in chosen regions.
//!
//! Per region, under the region lock: bootstrap neo-reconcile's bookkeeping as apply does,
//! then adopt each schema in its own transaction: check the schema exists and has no history
//! for the set yet; read the versions to record (`--at-version N`, or the successful rows of
//! the schema's `flyway_schema_history`, refusing when a failed Flyway migration is present);
//! make the NOLOGIN owner role (and, for a tenant, its rw role) and hand the schema and its
//! objects to the owner role, so later migrations, which run under `SET ROLE`, can alter them;
//! then record the tenant (for a tenant) and one history row per version with the repository
//! file's checksum. No migration SQL runs.
//!
//! Every value reaches the server as a bind parameter; names in DDL are quoted with
//! [`ident`].

use std::fmt;

use sqlx::migrate::MigrateError;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor, Row};

use super::context::RunContext;
use super::lock::{LockError, RegionLock};
use crate::bookkeeping;
use crate::db::{ConnectError, Connectors};
use crate::desired::{Desired, Region, SchemaSet, Scope, Tenant, TenantStatus};
use crate::plan::BOOKKEEPING_SCHEMA;
use crate::sql::{self, ident};

/// Where the versions to record come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdoptFrom {
    /// Versions 1..=N, as the operator says.
    AtVersion(u32),
    /// The successful versions in the schema's `flyway_schema_history`.
    Flyway,
}

impl AdoptFrom {
    /// The `adopted_from` value of the history rows.
    fn source(self) -> &'static str {
        match self {
            AdoptFrom::AtVersion(_) => "manual",
            AdoptFrom::Flyway => "flyway",
        }
    }
}

/// What one adoption is about: a tenant's schema, or a region-scope set's schema in a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tenant(String),
    Region(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tenant(slug) => f.write_str(slug),
            Target::Region(name) => write!(f, "region {name}"),
        }
    }
}

/// What happened to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdoptOutcome {
    Adopted { target: Target, versions: u32 },
    Refused { target: Target, reason: String },
}

/// Why a schema (or a whole region) was not adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("region {0} has no connector")]
    NoConnector(String),
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("bootstrap of {BOOKKEEPING_SCHEMA}: {0}")]
    Bootstrap(#[from] MigrateError),
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("{set} is a {scope}-scope set; {hint}")]
    WrongScope {
        set: String,
        scope: Scope,
        hint: &'static str,
    },
    #[error("tenant {slug} is {status} in the desired state; only active or suspended tenants are adopted")]
    TenantStatus { slug: String, status: TenantStatus },
    #[error("schema {schema} does not exist: there is nothing to adopt ({hint})")]
    NoSchema { schema: String, hint: &'static str },
    #[error("{schema} already has {recorded} recorded version(s) of {set}: it is managed already")]
    Managed {
        schema: String,
        set: String,
        recorded: i64,
    },
    #[error("version {version} is not in schemas/{set}/ (V1 to V{latest})")]
    UnknownVersion {
        version: u32,
        set: String,
        latest: u32,
    },
    #[error("{0}")]
    Flyway(String),
    #[error("cannot take over {schema} (the login role must own its objects or be a superuser): {source}")]
    TakeOver { schema: String, source: sqlx::Error },
}

/// One schema to adopt in a region.
#[derive(Clone, Copy)]
enum Item<'a> {
    Tenant(&'a Tenant),
    /// The schema of the region-scope set being adopted.
    RegionSchema,
}

impl Item<'_> {
    fn target(&self, region: &Region) -> Target {
        match self {
            Item::Tenant(t) => Target::Tenant(t.slug.clone()),
            Item::RegionSchema => Target::Region(region.name.clone()),
        }
    }
}

/// Adopts the given tenants' schemas for a tenant-scope set. Tenants are grouped by region;
/// each region is handled under its lock.
pub async fn adopt_tenants(
    desired: &Desired,
    tenants: &[&Tenant],
    set: &SchemaSet,
    from: AdoptFrom,
    connectors: &Connectors,
    ctx: &RunContext,
) -> Vec<AdoptOutcome> {
    let mut out = Vec::new();
    for region in desired.regions.values() {
        let here: Vec<Item> = tenants
            .iter()
            .filter(|t| t.region == region.name)
            .map(|t| Item::Tenant(t))
            .collect();
        if !here.is_empty() {
            out.extend(adopt_in_region(region, &here, set, from, connectors, ctx).await);
        }
    }
    out
}

/// Adopts a region-scope set's schema in each of the given regions, one region after the
/// other, each under its lock.
pub async fn adopt_region_set(
    regions: &[&Region],
    set: &SchemaSet,
    from: AdoptFrom,
    connectors: &Connectors,
    ctx: &RunContext,
) -> Vec<AdoptOutcome> {
    let mut out = Vec::new();
    for region in regions {
        out.extend(
            adopt_in_region(region, &[Item::RegionSchema], set, from, connectors, ctx).await,
        );
    }
    out
}

/// Adopts the items of one region under its lock; a region-wide failure (credentials,
/// connection, lock, bootstrap) refuses every item of the region.
async fn adopt_in_region(
    region: &Region,
    items: &[Item<'_>],
    set: &SchemaSet,
    from: AdoptFrom,
    connectors: &Connectors,
    ctx: &RunContext,
) -> Vec<AdoptOutcome> {
    match adopt_locked(region, items, set, from, connectors, ctx).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            tracing::warn!(region = %region.name, schema_set = %set.name, error = %e, "Adoption refused in the whole region.");
            items
                .iter()
                .map(|item| AdoptOutcome::Refused {
                    target: item.target(region),
                    reason: e.to_string(),
                })
                .collect()
        }
    }
}

async fn adopt_locked(
    region: &Region,
    items: &[Item<'_>],
    set: &SchemaSet,
    from: AdoptFrom,
    connectors: &Connectors,
    ctx: &RunContext,
) -> Result<Vec<AdoptOutcome>, AdoptError> {
    let connector = connectors
        .get(&region.name)
        .ok_or_else(|| AdoptError::NoConnector(region.name.clone()))?;
    let mut lock_conn = connector.connect_region().await?;
    let lock = RegionLock::acquire(&mut lock_conn, region.apply.lock_wait).await?;
    let result = async {
        let mut conn = connector.connect_region().await?;
        // Bookkeeping first, as apply's bootstrap does.
        conn.execute(sqlx::raw_sql(&format!(
            "CREATE SCHEMA IF NOT EXISTS {0}; SET search_path TO {0}",
            ident(BOOKKEEPING_SCHEMA)
        )))
        .await?;
        bookkeeping::region().run_direct(&mut conn).await?;
        conn.execute("RESET search_path").await?;
        lock.record_holder(&mut lock_conn, ctx).await?;
        let mut outcomes = Vec::new();
        for item in items {
            let target = item.target(region);
            let result = match item {
                Item::Tenant(tenant) => adopt_tenant(&mut conn, tenant, set, from, ctx).await,
                Item::RegionSchema => adopt_region_schema(&mut conn, set, from, ctx).await,
            };
            outcomes.push(match result {
                Ok(versions) => {
                    tracing::info!(region = %region.name, target = %target, schema_set = %set.name, versions, "Adopted.");
                    AdoptOutcome::Adopted { target, versions }
                }
                Err(e) => {
                    tracing::warn!(region = %region.name, target = %target, schema_set = %set.name, reason = %e, "Adoption refused.");
                    AdoptOutcome::Refused {
                        target,
                        reason: e.to_string(),
                    }
                }
            });
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
) -> Result<u32, AdoptError> {
    if set.scope != Scope::Tenant {
        return Err(AdoptError::WrongScope {
            set: set.name.clone(),
            scope: set.scope,
            hint: "adopt its schema per region with --region, not per tenant",
        });
    }
    if !matches!(
        tenant.status,
        TenantStatus::Active | TenantStatus::Suspended
    ) {
        return Err(AdoptError::TenantStatus {
            slug: tenant.slug.clone(),
            status: tenant.status,
        });
    }
    let schema = tenant.schema();
    let mut tx = conn.begin().await?;
    let version = check_and_read_version(
        &mut tx,
        &schema,
        set,
        from,
        "a new tenant is created by apply",
    )
    .await?;

    // Roles, ownership and grants, as create_tenant leaves a new tenant.
    let (owner, rw) = (tenant.owner_role(), tenant.rw_role());
    let managed: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM neo_reconcile.tenants WHERE slug = $1)")
            .bind(&tenant.slug)
            .fetch_one(&mut *tx)
            .await?;
    if !managed {
        let take_over = async {
            create_role_if_missing(&mut tx, &owner).await?;
            create_role_if_missing(&mut tx, &rw).await?;
            run(&mut tx, &[format!("GRANT {} TO CURRENT_USER", ident(&owner))]).await?;
            hand_over(&mut tx, &schema, &owner).await?;
            let (s, o, r) = (ident(&schema), ident(&owner), ident(&rw));
            run(&mut tx, &[
                format!("REVOKE ALL ON SCHEMA {s} FROM PUBLIC"),
                format!("GRANT USAGE ON SCHEMA {s} TO {r}"),
                format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}"),
                format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {r}"),
                format!("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {r}"),
                format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}"),
                format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {r}"),
                format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT EXECUTE ON FUNCTIONS TO {r}"),
            ])
            .await?;
            sqlx::query(
                "INSERT INTO neo_reconcile.tenants (slug, status, schema_name, owner_role, rw_role, git_commit)
                 VALUES ($1, 'active', $2, $3, $4, $5)",
            )
            .bind(&tenant.slug)
            .bind(&schema)
            .bind(&owner)
            .bind(&rw)
            .bind(&ctx.commit)
            .execute(&mut *tx)
            .await?;
            Ok::<(), sqlx::Error>(())
        }
        .await;
        take_over.map_err(|source| AdoptError::TakeOver {
            schema: schema.clone(),
            source,
        })?;
    }

    record_history(&mut tx, &schema, set, version, from, ctx).await?;
    tx.commit().await?;
    Ok(version)
}

/// Adopts a region-scope set's schema (named after the set) in one transaction; returns the
/// number of versions recorded. The owner role and grant are those `create_region_set_schema`
/// gives a schema apply creates.
async fn adopt_region_schema(
    conn: &mut PgConnection,
    set: &SchemaSet,
    from: AdoptFrom,
    ctx: &RunContext,
) -> Result<u32, AdoptError> {
    if set.scope != Scope::Region {
        return Err(AdoptError::WrongScope {
            set: set.name.clone(),
            scope: set.scope,
            hint: "adopt it per tenant with --tenant or --all, not per region",
        });
    }
    let schema = set.name.as_str();
    let mut tx = conn.begin().await?;
    let version = check_and_read_version(
        &mut tx,
        schema,
        set,
        from,
        "apply creates a region's schema",
    )
    .await?;
    let owner = sql::region_set_owner(&set.name);
    let take_over = async {
        create_role_if_missing(&mut tx, &owner).await?;
        run(
            &mut tx,
            &[format!("GRANT {} TO CURRENT_USER", ident(&owner))],
        )
        .await?;
        hand_over(&mut tx, schema, &owner).await
    }
    .await;
    take_over.map_err(|source| AdoptError::TakeOver {
        schema: schema.to_string(),
        source,
    })?;
    record_history(&mut tx, schema, set, version, from, ctx).await?;
    tx.commit().await?;
    Ok(version)
}

/// Checks that `schema` exists and has no history for `set`, and returns the version to
/// record (from the operator or from Flyway's history), checked against the set's files.
async fn check_and_read_version(
    conn: &mut PgConnection,
    schema: &str,
    set: &SchemaSet,
    from: AdoptFrom,
    created_by: &'static str,
) -> Result<u32, AdoptError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Err(AdoptError::NoSchema {
            schema: schema.to_string(),
            hint: created_by,
        });
    }
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM neo_reconcile.schema_history WHERE target_schema = $1 AND schema_set = $2 AND success AND direction = 'apply' AND reverted_by IS NULL",
    )
    .bind(schema)
    .bind(&set.name)
    .fetch_one(&mut *conn)
    .await?;
    if recorded > 0 {
        return Err(AdoptError::Managed {
            schema: schema.to_string(),
            set: set.name.clone(),
            recorded,
        });
    }
    let version = match from {
        AdoptFrom::AtVersion(n) => n,
        AdoptFrom::Flyway => flyway_version(conn, schema).await?,
    };
    if version < 1 || version > set.latest() {
        return Err(AdoptError::UnknownVersion {
            version,
            set: set.name.clone(),
            latest: set.latest(),
        });
    }
    Ok(version)
}

/// Records versions 1..=`version` of `set` as applied to `schema`, with the checksums of the
/// repository's files.
async fn record_history(
    conn: &mut PgConnection,
    schema: &str,
    set: &SchemaSet,
    version: u32,
    from: AdoptFrom,
    ctx: &RunContext,
) -> Result<(), sqlx::Error> {
    for m in &set.migrations[..version as usize] {
        sqlx::query(
            "INSERT INTO neo_reconcile.schema_history
             (target_schema, schema_set, version, description, checksum, applied_by, git_commit, execution_ms, success, adopted_from)
             VALUES ($1, $2, $3, $4, $5, session_user || '@' || $6, $7, 0, true, $8)",
        )
        .bind(schema)
        .bind(&set.name)
        .bind(m.version as i32)
        .bind(&m.description)
        .bind(&m.checksum)
        .bind(&ctx.host)
        .bind(&ctx.commit)
        .bind(from.source())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The highest version recorded by Flyway, after checking that the history is usable: no
/// failed migration, integer versions only, and every version from 1 up without a gap.
async fn flyway_version(conn: &mut PgConnection, schema: &str) -> Result<u32, AdoptError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = $1 AND c.relname = 'flyway_schema_history')",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Err(AdoptError::Flyway(format!(
            "{schema} has no flyway_schema_history table"
        )));
    }
    let rows = sqlx::query(&format!(
        "SELECT version, description, success FROM {}.flyway_schema_history WHERE version IS NOT NULL ORDER BY installed_rank",
        ident(schema)
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut versions = Vec::new();
    for row in &rows {
        let version: String = row.try_get("version")?;
        let description: String = row.try_get("description")?;
        let success: bool = row.try_get("success")?;
        if !success {
            return Err(AdoptError::Flyway(format!(
                "{schema}: Flyway recorded a failed migration (version {version}, {description:?}); repair it with Flyway first (flyway repair), then adopt"
            )));
        }
        let v: u32 = version.parse().map_err(|_| {
            AdoptError::Flyway(format!(
                "{schema}: Flyway version {version:?} is not a whole number; neo-reconcile versions are 1, 2, 3, ..."
            ))
        })?;
        versions.push(v);
    }
    versions.sort_unstable();
    versions.dedup();
    if versions.is_empty() {
        return Err(AdoptError::Flyway(format!(
            "{schema}: flyway_schema_history records no versioned migration"
        )));
    }
    for (i, v) in versions.iter().enumerate() {
        if *v != i as u32 + 1 {
            return Err(AdoptError::Flyway(format!(
                "{schema}: Flyway history has versions {versions:?}, not 1 to {} without gaps",
                versions.len()
            )));
        }
    }
    Ok(versions.len() as u32)
}

/// Runs statements one at a time (so an error names the statement that failed).
async fn run(conn: &mut PgConnection, statements: &[String]) -> Result<(), sqlx::Error> {
    for statement in statements {
        conn.execute(sqlx::raw_sql(statement)).await?;
    }
    Ok(())
}

/// Creates a NOLOGIN role unless one of that name exists. The check is a bound query; the
/// name reaches the DDL only through [`ident`]. No other neo-reconcile writer runs meanwhile,
/// since the caller holds the region lock.
async fn create_role_if_missing(conn: &mut PgConnection, role: &str) -> Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        run(conn, &[format!("CREATE ROLE {} NOLOGIN", ident(role))]).await?;
    }
    Ok(())
}

/// Hands a schema and the objects in it to `owner`: tables, views, materialized views,
/// sequences (those that belong to a table column follow their table), foreign tables,
/// routines, and types made with `CREATE TYPE` or `CREATE DOMAIN`. What PostgreSQL makes part
/// of another object is left alone: a range type's constructor functions (which belong to the
/// bootstrap superuser) and its multirange type (which PostgreSQL 15 refuses to alter on its
/// own; the range's owner can still alter or drop both). The objects are listed by bound
/// catalog queries; names are quoted with [`ident`], and a routine is named by its
/// `regprocedure` text, PostgreSQL's own quoted rendering of its signature.
async fn hand_over(conn: &mut PgConnection, schema: &str, owner: &str) -> Result<(), sqlx::Error> {
    let (s, o) = (ident(schema), ident(owner));
    let mut statements = vec![format!("ALTER SCHEMA {s} OWNER TO {o}")];

    let relations = sqlx::query(
        "SELECT c.relname::text AS name, c.relkind::text AS kind
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                           AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
         ORDER BY c.relname",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for row in &relations {
        let name: String = row.try_get("name")?;
        let kind = match row.try_get::<String, _>("kind")?.as_str() {
            "v" => "VIEW",
            "m" => "MATERIALIZED VIEW",
            "S" => "SEQUENCE",
            "f" => "FOREIGN TABLE",
            _ => "TABLE",
        };
        statements.push(format!("ALTER {kind} {s}.{} OWNER TO {o}", ident(&name)));
    }

    let routines = sqlx::query(
        "SELECT p.oid::regprocedure::text AS signature, p.prokind::text AS kind
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = $1
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                           AND d.objid = p.oid AND d.deptype = 'i')
         ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for row in &routines {
        let signature: String = row.try_get("signature")?;
        let kind = match row.try_get::<String, _>("kind")?.as_str() {
            "p" => "PROCEDURE",
            "a" => "AGGREGATE",
            _ => "FUNCTION",
        };
        statements.push(format!("ALTER {kind} {signature} OWNER TO {o}"));
    }

    // Types of their own: not the row types of tables and views, nor array or multirange
    // types, which follow the type they belong to.
    let types = sqlx::query(
        "SELECT t.typname::text AS name, t.typtype::text AS kind
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = $1
           AND (t.typtype IN ('d', 'e', 'r')
                OR (t.typtype = 'c' AND EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')))
         ORDER BY t.typname",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for row in &types {
        let name: String = row.try_get("name")?;
        let kind = match row.try_get::<String, _>("kind")?.as_str() {
            "d" => "DOMAIN",
            _ => "TYPE",
        };
        statements.push(format!("ALTER {kind} {s}.{} OWNER TO {o}", ident(&name)));
    }
    run(conn, &statements).await
}
