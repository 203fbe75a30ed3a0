//! One writer per region: a session-level advisory lock on a dedicated connection.
//!
//! [`RegionLock::acquire`] tries `pg_try_advisory_lock` in a loop until `lock_wait` runs out,
//! telling the waiter who holds the lock (from `neo_reconcile.lock_holder` when the holder
//! has written it, else from `pg_stat_activity`). The lock is released by
//! [`RegionLock::release`] on every exit path of apply; a killed process releases it by
//! losing its session, since the connection is not pooled and nothing else runs on it.

use std::time::Duration;

use tokio::time::Instant;

use sqlx::postgres::PgConnection;
use sqlx::Row;

use super::context::RunContext;

pub use crate::sql::{REGION_LOCK_KEY, REGISTRY_LOCK_KEY};

/// How often a waiter tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("timed out after {waited_secs}s waiting for the region lock, held by {holder}")]
    Timeout { waited_secs: u64, holder: String },
    #[error("lock query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// The held lock. Not `Drop`-based: releasing needs the connection and an await, so callers
/// release explicitly on every path, and a lost connection releases it server-side.
#[derive(Debug)]
pub struct RegionLock {
    _private: (),
}

impl RegionLock {
    pub async fn acquire(conn: &mut PgConnection, wait: Duration) -> Result<RegionLock, LockError> {
        let start = Instant::now();
        let mut announced = false;
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(REGION_LOCK_KEY)
                .fetch_one(&mut *conn)
                .await?;
            if got {
                return Ok(RegionLock { _private: () });
            }
            let holder = describe_holder(conn)
                .await
                .unwrap_or_else(|e| format!("an unknown session ({e})"));
            if start.elapsed() >= wait {
                return Err(LockError::Timeout {
                    waited_secs: start.elapsed().as_secs(),
                    holder,
                });
            }
            if !announced {
                tracing::info!(holder = %holder, wait_secs = wait.as_secs(), "Waiting for the region lock.");
                announced = true;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Records who holds the lock, for waiters to read. Needs the bookkeeping schema.
    pub async fn record_holder(
        &self,
        conn: &mut PgConnection,
        ctx: &RunContext,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO neo_reconcile.lock_holder (singleton, host, pid, backend_pid, started_at, command, run_by)
             VALUES (true, $1, $2, pg_backend_pid(), now(), $3, $4)
             ON CONFLICT (singleton) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
                 backend_pid = EXCLUDED.backend_pid, started_at = EXCLUDED.started_at,
                 command = EXCLUDED.command, run_by = EXCLUDED.run_by",
        )
        .bind(&ctx.host)
        .bind(ctx.pid as i32)
        .bind(&ctx.command)
        .bind(&ctx.run_by)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Removes the holder row and releases the lock.
    pub async fn release(self, conn: &mut PgConnection) {
        let cleared = sqlx::query(
            "DELETE FROM neo_reconcile.lock_holder WHERE backend_pid = pg_backend_pid()",
        )
        .execute(&mut *conn)
        .await;
        if let Err(e) = cleared {
            // Before bootstrap there is no holder table; that is fine.
            tracing::debug!(error = %e, "Could not clear the lock holder row.");
        }
        match sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(REGION_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
        {
            Ok(true) => tracing::debug!("Released the region lock."),
            Ok(false) => tracing::warn!("The region lock was not held at release."),
            Err(e) => {
                tracing::warn!(error = %e, "Could not release the region lock; it is released when the connection closes.")
            }
        }
    }
}

/// Who holds the lock: the holder row when written (and still alive), else the session.
async fn describe_holder(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    let row = sqlx::query(
        "SELECT a.pid, coalesce(a.application_name, '') AS app, coalesce(host(a.client_addr), 'local') AS client,
                to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS since,
                a.usename::text AS usename
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.classid = (($1 >> 32) & 4294967295)::oid AND l.objid = ($1 & 4294967295)::oid
         LIMIT 1",
    )
    .bind(REGION_LOCK_KEY)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok("a session that just let go".to_string());
    };
    let backend_pid: i32 = row.try_get("pid")?;
    let has_table: bool =
        sqlx::query_scalar("SELECT to_regclass('neo_reconcile.lock_holder') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if has_table {
        let holder = sqlx::query(
            "SELECT host, pid, command, run_by,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS since
             FROM neo_reconcile.lock_holder WHERE backend_pid = $1",
        )
        .bind(backend_pid)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(h) = holder {
            return Ok(format!(
                "{} on host {} (pid {}, running `{}` since {})",
                h.try_get::<String, _>("run_by")?,
                h.try_get::<String, _>("host")?,
                h.try_get::<i32, _>("pid")?,
                h.try_get::<String, _>("command")?,
                h.try_get::<String, _>("since")?,
            ));
        }
    }
    Ok(format!(
        "database session {backend_pid} ({} as {} from {}, connected since {})",
        row.try_get::<String, _>("app")?,
        row.try_get::<String, _>("usename")?,
        row.try_get::<String, _>("client")?,
        row.try_get::<String, _>("since")?,
    ))
}
