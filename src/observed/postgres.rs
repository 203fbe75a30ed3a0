//! Observing live PostgreSQL, read-only.
//!
//! One dedicated connection per region database, and a fixed number of queries whatever the
//! number of tenants: one catalog query (date, schemas, roles, and which bookkeeping objects
//! exist), then one read of each bookkeeping table, then, in the control-plane region, one
//! catalog query and one read of the registry in the control-plane database. Every query runs
//! in a read-only transaction (`default_transaction_read_only`), so an observation cannot
//! change anything even by mistake.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{Connection, Row};

use super::{
    Bookkeeping, ControlPlaneState, HistoryRow, Observed, RegionObservation, RegionState,
    RegistryRow, TenantRow,
};
use crate::desired::{Desired, Endpoint, Region, SslMode, TenantStatus};
use crate::sources::credentials::{Credentials, DbCredentials};

/// The `application_name` of every connection neo-reconcile opens.
pub const APPLICATION_NAME: &str = "neo-reconcile";

/// How long to wait for a region's database to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("credentials: {0}")]
    Credentials(#[from] crate::sources::credentials::CredentialError),
    #[error("cannot connect to {host}:{port}/{database}: {message}")]
    Connect {
        host: String,
        port: u16,
        database: String,
        message: String,
    },
    #[error("connecting to {host}:{port}/{database} timed out after {secs}s")]
    Timeout {
        host: String,
        port: u16,
        database: String,
        secs: u64,
    },
    #[error("query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("unexpected value in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
}

/// Connection options for a region's endpoint. The password goes into the driver only; these
/// options are never logged.
///
/// Every session runs with `standard_conforming_strings = on`, set at connection start so it
/// wins over a database's or role's `off`: a second wall behind bound parameters, so that a
/// backslash can never end a string literal early.
pub fn connect_options(
    endpoint: &Endpoint,
    database: &str,
    creds: &DbCredentials,
) -> PgConnectOptions {
    PgConnectOptions::new()
        .host(&endpoint.host)
        .port(endpoint.port)
        .database(database)
        .username(&creds.username)
        .password(creds.password.expose())
        .ssl_mode(match endpoint.sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        })
        .application_name(APPLICATION_NAME)
        .options([("standard_conforming_strings", "on")])
}

/// Opens one connection, with a timeout, naming the endpoint (never the password) on error.
///
/// A server that answers but is full ("too many connections", also a role's or database's
/// `CONNECTION LIMIT`) or still starting up is asked again, with a growing pause, until
/// [`CONNECT_TIMEOUT`]: apply closes and opens connections as it goes, and a closed session's
/// server process can still count against the limit for a moment. Any other failure, such as a
/// refused connection or bad credentials, is reported at once.
pub async fn connect(
    endpoint: &Endpoint,
    database: &str,
    creds: &DbCredentials,
) -> Result<PgConnection, ObserveError> {
    let options = connect_options(endpoint, database, creds);
    let mut last_transient: Option<String> = None;
    let attempts = async {
        let mut pause = Duration::from_millis(50);
        loop {
            match PgConnection::connect_with(&options).await {
                Err(e) if is_transient_connect_error(&e) => {
                    tracing::debug!(host = %endpoint.host, port = endpoint.port, database = %database, error = %e, "Server not accepting connections for now; asking again.");
                    last_transient = Some(e.to_string());
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    };
    let connect_error = |message: String| ObserveError::Connect {
        host: endpoint.host.clone(),
        port: endpoint.port,
        database: database.to_string(),
        message,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempts).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(connect_error(e.to_string())),
        Err(_) => match last_transient {
            Some(message) => Err(connect_error(format!(
                "{message} (asked again for {}s)",
                CONNECT_TIMEOUT.as_secs()
            ))),
            None => Err(ObserveError::Timeout {
                host: endpoint.host.clone(),
                port: endpoint.port,
                database: database.to_string(),
                secs: CONNECT_TIMEOUT.as_secs(),
            }),
        },
    }
}

/// Whether a failed connection attempt is worth repeating: the server is full
/// (`too_many_connections`, 53300) or not accepting connections yet (`cannot_connect_now`,
/// 57P03, while it starts up or recovers).
fn is_transient_connect_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("53300" | "57P03")))
}

/// Observes the given regions concurrently. A region that fails is `Unreachable` with the
/// reason; the others are observed all the same.
pub async fn observe(
    desired: &Desired,
    regions: &[&Region],
    credentials: &dyn Credentials,
) -> Observed {
    let futures = regions.iter().map(|region| async move {
        let observation = match observe_region(desired, region, credentials).await {
            Ok(state) => RegionObservation::Reachable(state),
            Err(e) => {
                tracing::warn!(region = %region.name, reason = %e, "Region is unreachable.");
                RegionObservation::Unreachable {
                    reason: e.to_string(),
                }
            }
        };
        (region.name.clone(), observation)
    });
    Observed {
        regions: futures_util::future::join_all(futures)
            .await
            .into_iter()
            .collect(),
    }
}

/// Observes one region's database (and the control-plane database when it lives there).
pub async fn observe_region(
    desired: &Desired,
    region: &Region,
    credentials: &dyn Credentials,
) -> Result<RegionState, ObserveError> {
    let creds = credentials.fetch(region).await?;
    let mut conn = connect(&region.postgres, &region.postgres.database, &creds).await?;
    let is_control_plane = desired.control_plane.region == region.name;
    let state = read_region(
        &mut conn,
        is_control_plane.then_some(desired.control_plane.database.as_str()),
    )
    .await;
    conn.close().await.ok();
    let (mut state, cp_exists) = state?;
    if is_control_plane {
        state.control_plane = Some(if cp_exists {
            let mut cp = connect(&region.postgres, &desired.control_plane.database, &creds).await?;
            let result = read_control_plane(&mut cp).await;
            cp.close().await.ok();
            result?
        } else {
            ControlPlaneState::NoDatabase
        });
    }
    tracing::debug!(
        region = %region.name,
        schemas = state.schemas.len(),
        tenants = state.bookkeeping.as_ref().map_or(0, |b| b.tenants.len()),
        "Observed region."
    );
    Ok(state)
}

/// Reads a region database: 1 catalog query, then at most 3 bookkeeping reads. Returns the
/// state and whether the control-plane database (when asked about) exists.
async fn read_region(
    conn: &mut PgConnection,
    control_plane_db: Option<&str>,
) -> Result<(RegionState, bool), ObserveError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    let catalog = sqlx::query(
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') AS today,
                extract(epoch FROM now())::bigint AS now,
                ARRAY(SELECT nspname::text FROM pg_namespace
                      WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema') AS schemas,
                ARRAY(SELECT rolname::text FROM pg_roles
                      WHERE rolname LIKE 'tenant\\_%' OR rolname LIKE '%\\_owner') AS roles,
                to_regclass('neo_reconcile._sqlx_migrations') IS NOT NULL AS has_migrations,
                to_regclass('neo_reconcile.schema_history') IS NOT NULL AS has_history,
                to_regclass('neo_reconcile.tenants') IS NOT NULL AS has_tenants,
                EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('neo_reconcile.tenants')
                        AND attname = 'archived_at' AND NOT attisdropped) AS has_archived_at,
                ARRAY(SELECT e.extname::text || ' ' || n.nspname::text FROM pg_extension e
                      JOIN pg_namespace n ON n.oid = e.extnamespace) AS extensions,
                ARRAY(SELECT name::text FROM pg_available_extensions) AS available_extensions,
                ARRAY(SELECT DISTINCT name::text FROM pg_available_extension_versions
                      WHERE (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                         OR (trusted AND has_database_privilege(current_database(), 'CREATE')))
                      AS creatable_extensions,
                EXISTS (SELECT FROM pg_database WHERE datname = $1) AS cp_exists",
    )
    .bind(control_plane_db.unwrap_or(""))
    .fetch_one(&mut *tx)
    .await?;
    let schemas: BTreeSet<String> = catalog
        .try_get::<Vec<String>, _>("schemas")?
        .into_iter()
        .collect();
    let mut state = RegionState {
        today: catalog.try_get("today")?,
        now: catalog.try_get("now")?,
        roles: catalog
            .try_get::<Vec<String>, _>("roles")?
            .into_iter()
            .collect(),
        extensions: catalog
            .try_get::<Vec<String>, _>("extensions")?
            .into_iter()
            .filter_map(|e| {
                e.split_once(' ')
                    .map(|(n, s)| (n.to_string(), s.to_string()))
            })
            .collect(),
        available_extensions: catalog
            .try_get::<Vec<String>, _>("available_extensions")?
            .into_iter()
            .collect(),
        creatable_extensions: catalog
            .try_get::<Vec<String>, _>("creatable_extensions")?
            .into_iter()
            .collect(),
        bookkeeping: None,
        control_plane: None,
        schemas,
    };
    if state.schemas.contains("neo_reconcile") {
        let mut bk = Bookkeeping::default();
        if catalog.try_get::<bool, _>("has_migrations")? {
            let v: Option<i64> = sqlx::query_scalar(
                "SELECT max(version) FROM neo_reconcile._sqlx_migrations WHERE success",
            )
            .fetch_one(&mut *tx)
            .await?;
            bk.version = v.unwrap_or(0) as u32;
        }
        if catalog.try_get::<bool, _>("has_history")? {
            bk.history = read_history(&mut tx).await?;
        }
        if catalog.try_get::<bool, _>("has_tenants")? {
            let has_archived_at = catalog.try_get::<bool, _>("has_archived_at")?;
            bk.tenants = read_tenants(&mut tx, has_archived_at).await?;
        }
        state.bookkeeping = Some(bk);
    }
    let cp_exists = catalog.try_get::<bool, _>("cp_exists")?;
    tx.commit().await?;
    Ok((state, cp_exists))
}

async fn read_history(conn: &mut PgConnection) -> Result<Vec<HistoryRow>, ObserveError> {
    let rows = sqlx::query(
        "SELECT target_schema, schema_set, version, description, checksum,
                to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS applied_at,
                applied_by, success
         FROM neo_reconcile.schema_history ORDER BY target_schema, schema_set, version, id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HistoryRow {
                target_schema: r.try_get("target_schema")?,
                schema_set: r.try_get("schema_set")?,
                version: r.try_get::<i32, _>("version")? as u32,
                description: r.try_get("description")?,
                checksum: r.try_get("checksum")?,
                applied_at: r.try_get("applied_at")?,
                applied_by: r.try_get("applied_by")?,
                success: r.try_get("success")?,
            })
        })
        .collect()
}

/// Reads `neo_reconcile.tenants`; `archived_at` exists from bookkeeping version 3 on.
async fn read_tenants(
    conn: &mut PgConnection,
    has_archived_at: bool,
) -> Result<BTreeMap<String, TenantRow>, ObserveError> {
    let rows = sqlx::query(if has_archived_at {
        "SELECT slug, status, schema_name, owner_role, rw_role,
                extract(epoch FROM archived_at)::bigint AS archived_at
         FROM neo_reconcile.tenants"
    } else {
        "SELECT slug, status, schema_name, owner_role, rw_role, NULL::bigint AS archived_at
         FROM neo_reconcile.tenants"
    })
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let slug: String = r.try_get("slug")?;
            let status: String = r.try_get("status")?;
            let status = TenantStatus::parse(&status).ok_or_else(|| ObserveError::Corrupt {
                table: "neo_reconcile.tenants",
                message: format!("tenant {slug} has unknown status {status:?}"),
            })?;
            Ok((
                slug.clone(),
                TenantRow {
                    slug,
                    status,
                    schema_name: r.try_get("schema_name")?,
                    owner_role: r.try_get("owner_role")?,
                    rw_role: r.try_get("rw_role")?,
                    archived_at: r.try_get("archived_at")?,
                },
            ))
        })
        .collect()
}

/// Reads the registry: 1 catalog query and at most 1 read of the table.
async fn read_control_plane(conn: &mut PgConnection) -> Result<ControlPlaneState, ObserveError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    let catalog = sqlx::query(
        "SELECT to_regclass('admin._sqlx_migrations') IS NOT NULL AS has_migrations,
                to_regclass('admin.database_connections') IS NOT NULL AS has_registry",
    )
    .fetch_one(&mut *tx)
    .await?;
    let mut version = 0;
    let mut rows = BTreeMap::new();
    if catalog.try_get::<bool, _>("has_migrations")? {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM admin._sqlx_migrations WHERE success")
                .fetch_one(&mut *tx)
                .await?;
        version = v.unwrap_or(0) as u32;
    }
    if catalog.try_get::<bool, _>("has_registry")? {
        let found = sqlx::query(
            "SELECT tenant_slug, region, host, port, database_name, schema_name, status,
                    schema_versions::text AS schema_versions, git_commit
             FROM admin.database_connections",
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in &found {
            let tenant: String = r.try_get("tenant_slug")?;
            let status: String = r.try_get("status")?;
            let corrupt = |message: String| ObserveError::Corrupt {
                table: "admin.database_connections",
                message,
            };
            let status = TenantStatus::parse(&status)
                .ok_or_else(|| corrupt(format!("tenant {tenant} has unknown status {status:?}")))?;
            let versions: String = r.try_get("schema_versions")?;
            let schema_versions = serde_json::from_str(&versions).map_err(|e| {
                corrupt(format!(
                    "tenant {tenant} has schema_versions that are not a map of versions: {e}"
                ))
            })?;
            rows.insert(
                tenant.clone(),
                RegistryRow {
                    tenant,
                    region: r.try_get("region")?,
                    host: r.try_get("host")?,
                    port: r.try_get::<i32, _>("port")? as u16,
                    database: r.try_get("database_name")?,
                    schema: r.try_get("schema_name")?,
                    status,
                    schema_versions,
                    commit: r.try_get("git_commit")?,
                },
            );
        }
    }
    tx.commit().await?;
    Ok(ControlPlaneState::Ready { version, rows })
}
