//! neo-reconcile's own rows in a region: its bookkeeping schemas (bootstrap) and the `runs`
//! audit trail.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

use super::context::RunContext;
use crate::bookkeeping;
use crate::db::Connector;
use crate::desired::Desired;
use crate::plan::BOOKKEEPING_SCHEMA;
use crate::sql;

/// Creates or upgrades one of neo-reconcile's own schemas with the embedded migrations.
pub(super) async fn bootstrap(
    lock_conn: &mut PgConnection,
    connector: &Connector,
    database: &str,
    schema: &str,
    create_database: bool,
) -> Result<(), String> {
    if create_database {
        lock_conn
            .execute(sqlx::raw_sql(&sql::create_database(database).sql))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut conn = connector
        .connect(database)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        conn.execute(sqlx::raw_sql(&sql::bootstrap_schema(schema).sql))
            .await
            .map_err(|e| e.to_string())?;
        let migrator = if schema == BOOKKEEPING_SCHEMA {
            bookkeeping::region()
        } else {
            bookkeeping::control_plane()
        };
        migrator
            .run_direct(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    conn.close().await.ok();
    result
}

/// Records the start of a run in the region; a run still marked running is marked
/// interrupted first.
pub(super) async fn start_run(
    conn: &mut PgConnection,
    desired: &Desired,
    ctx: &RunContext,
    plan_text: &str,
) -> Result<i64, sqlx::Error> {
    // We hold the lock, so a run still marked running was cut off (killed, or lost its host).
    sqlx::query("UPDATE neo_reconcile.runs SET outcome = 'interrupted', finished_at = now() WHERE outcome = 'running'")
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar(
        "INSERT INTO neo_reconcile.runs (command, host, pid, run_by, desired_digest, git_commit, plan_text)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(&ctx.command)
    .bind(&ctx.host)
    .bind(ctx.pid as i32)
    .bind(&ctx.run_by)
    .bind(&desired.digest)
    .bind(&ctx.commit)
    .bind(plan_text)
    .fetch_one(conn)
    .await
}

/// Records how a run ended (best effort: the outcome is reported anyway).
pub(super) async fn finish_run(
    conn: &mut PgConnection,
    run_id: i64,
    outcome: &str,
    error: Option<&str>,
) {
    let done = sqlx::query(
        "UPDATE neo_reconcile.runs SET outcome = $2, error = $3, finished_at = now() WHERE id = $1",
    )
    .bind(run_id)
    .bind(outcome)
    .bind(error)
    .execute(conn)
    .await;
    if let Err(e) = done {
        tracing::warn!(run_id, error = %e, "Could not record the end of the run.");
    }
}
