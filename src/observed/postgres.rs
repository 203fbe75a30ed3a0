//! Observing live PostgreSQL, read-only.
//!
//! One dedicated connection per region database, and a fixed number of queries whatever the
//! number of tenants: one catalog query (date, schemas, roles, and which bookkeeping objects
//! exist), then one read of each bookkeeping table, then, in the control-plane region, one
//! catalog query and one read of the registry in the control-plane database. Every query runs
//! in a read-only transaction (`default_transaction_read_only`), so an observation cannot
//! change anything even by mistake; the one exception is the expected shape of the schemas
//! checked for drift (`shape_query.rs`), built in a scratch schema inside a transaction that
//! is always rolled back.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};
use tracing::Instrument;

use super::state::{
    Bookkeeping, ControlPlaneState, DeadRun, HistoryRow, Observed, RegionObservation, RegionState,
    RegistryRow, TenantRow,
};
use crate::db::{ConnectError, Connector, Connectors};
use crate::desired::{Desired, Region, SchemaSet, TenantStatus};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("region {0} has no connector (it was not resolved)")]
    NoConnector(String),
    #[error("query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("unexpected value in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
}

/// Observes the given regions concurrently, each in a task of its own, so that decoding one
/// region's rows does not wait for another's on a multi-threaded runtime. A region that fails
/// is `Unreachable` with the reason; the others are observed all the same. The tasks end with
/// the call: dropping the future aborts them.
pub async fn observe(desired: &Desired, regions: &[&Region], connectors: &Connectors) -> Observed {
    let mut tasks = tokio::task::JoinSet::new();
    // The sets are what the drift check needs of the desired state, shared by the tasks.
    let sets: std::sync::Arc<[SchemaSet]> = desired.schema_sets.clone().into();
    for region in regions {
        let sets = sets.clone();
        let name = region.name.clone();
        let control_plane_db = (desired.control_plane.region == region.name)
            .then(|| desired.control_plane.database.clone());
        let connector = connectors.get(&region.name).cloned();
        tasks.spawn(
            async move {
                let result = match &connector {
                    Some(connector) => {
                        observe_database(&name, control_plane_db.as_deref(), connector, &sets).await
                    }
                    None => Err(ObserveError::NoConnector(name.clone())),
                };
                let observation = match result {
                    Ok(state) => RegionObservation::Reachable(state),
                    Err(e) => {
                        tracing::warn!(region = %name, reason = %e, "Region is unreachable.");
                        RegionObservation::Unreachable {
                            reason: e.to_string(),
                        }
                    }
                };
                (name, observation)
            }
            .in_current_span(),
        );
    }
    let mut regions = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((name, observation)) => {
                regions.insert(name, observation);
            }
            // A panic in a region's observation is the caller's, as it was before the tasks.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => unreachable!("an observation task was cancelled: {e}"),
        }
    }
    Observed { regions }
}

/// Observes one region's database (and the control-plane database when it lives there).
pub async fn observe_region(
    desired: &Desired,
    region: &Region,
    connector: &Connector,
) -> Result<RegionState, ObserveError> {
    let is_control_plane = desired.control_plane.region == region.name;
    observe_database(
        &region.name,
        is_control_plane.then_some(desired.control_plane.database.as_str()),
        connector,
        &desired.schema_sets,
    )
    .await
}

/// Observes region `name` through `connector`, and the control-plane database
/// `control_plane_db` when it lives in this region.
async fn observe_database(
    name: &str,
    control_plane_db: Option<&str>,
    connector: &Connector,
    sets: &[SchemaSet],
) -> Result<RegionState, ObserveError> {
    let mut conn = connector.connect_region().await?;
    let state = match read_region(&mut conn, control_plane_db).await {
        Ok((mut state, cp_exists)) => {
            let shapes =
                super::shape_query::observe_shapes(&mut conn, sets, state.bookkeeping.as_ref())
                    .await;
            shapes.map(|shapes| {
                state.shapes = shapes;
                (state, cp_exists)
            })
        }
        Err(e) => Err(e),
    };
    conn.close().await.ok();
    let (mut state, cp_exists) = state?;
    if let Some(database) = control_plane_db {
        state.control_plane = Some(if cp_exists {
            let mut cp = connector.connect(database).await?;
            let result = read_control_plane(&mut cp).await;
            cp.close().await.ok();
            result?
        } else {
            ControlPlaneState::NoDatabase
        });
    }
    tracing::debug!(
        region = %name,
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
                to_regclass('neo_reconcile.lock_holder') IS NOT NULL AS has_runs,
                EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('neo_reconcile.schema_history')
                        AND attname = 'reverted_by' AND NOT attisdropped) AS has_undo,
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
        shapes: Default::default(),
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
            let has_undo = catalog.try_get::<bool, _>("has_undo")?;
            bk.history = read_history(&mut tx, has_undo).await?;
        }
        if catalog.try_get::<bool, _>("has_tenants")? {
            let has_archived_at = catalog.try_get::<bool, _>("has_archived_at")?;
            bk.tenants = read_tenants(&mut tx, has_archived_at).await?;
        }
        if catalog.try_get::<bool, _>("has_runs")? {
            bk.dead_run = read_dead_run(&mut tx).await?;
        }
        state.bookkeeping = Some(bk);
    }
    let cp_exists = catalog.try_get::<bool, _>("cp_exists")?;
    tx.commit().await?;
    Ok((state, cp_exists))
}

/// A dead run's traces: a `lock_holder` row whose database session is gone, with the runs
/// still marked `running`; or, without any holder row, runs marked `running` while no session
/// holds the region lock. A live run holds the lock in the session its holder row names, so
/// its rows are never taken for a dead run's.
async fn read_dead_run(conn: &mut PgConnection) -> Result<Option<DeadRun>, ObserveError> {
    let row = sqlx::query(
        "SELECT (SELECT format('pid %s on host %s', h.pid, h.host) FROM neo_reconcile.lock_holder h
                 WHERE NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = h.backend_pid)) AS dead_holder,
                EXISTS (SELECT FROM neo_reconcile.lock_holder) AS any_holder,
                EXISTS (SELECT FROM pg_locks l
                        WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                          AND l.classid = (($1 >> 32) & 4294967295)::oid AND l.objid = ($1 & 4294967295)::oid) AS locked,
                ARRAY(SELECT id FROM neo_reconcile.runs WHERE outcome = 'running' ORDER BY id) AS running",
    )
    .bind(crate::sql::REGION_LOCK_KEY)
    .fetch_one(conn)
    .await?;
    let holder: Option<String> = row.try_get("dead_holder")?;
    let runs: Vec<i64> = row.try_get("running")?;
    let orphans = !row.try_get::<bool, _>("any_holder")?
        && !row.try_get::<bool, _>("locked")?
        && !runs.is_empty();
    Ok((holder.is_some() || orphans).then_some(DeadRun { runs, holder }))
}

/// Reads the migrations history as it stands: the applications of migrations, without those
/// an undo file reversed and without the undo rows themselves (`has_undo`: bookkeeping version
/// 5 or later, which records rollbacks).
async fn read_history(
    conn: &mut PgConnection,
    has_undo: bool,
) -> Result<Vec<HistoryRow>, ObserveError> {
    let rows = sqlx::query(if has_undo {
        "SELECT target_schema, schema_set, version, description, checksum,
                to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS applied_at,
                applied_by, success
         FROM neo_reconcile.schema_history WHERE direction = 'apply' AND reverted_by IS NULL
         ORDER BY target_schema, schema_set, version, id"
    } else {
        "SELECT target_schema, schema_set, version, description, checksum,
                to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS applied_at,
                applied_by, success
         FROM neo_reconcile.schema_history ORDER BY target_schema, schema_set, version, id"
    })
    .fetch_all(conn)
    .await?;
    // Columns by position, in the order of the SELECT list: the table has a row per migration
    // and schema, and looking each column up by name costs a hash per value.
    rows.iter()
        .map(|r| {
            Ok(HistoryRow {
                target_schema: r.try_get(0)?,
                schema_set: r.try_get(1)?,
                version: r.try_get::<i32, _>(2)? as u32,
                description: r.try_get(3)?,
                checksum: r.try_get(4)?,
                applied_at: r.try_get(5)?,
                applied_by: r.try_get(6)?,
                success: r.try_get(7)?,
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
