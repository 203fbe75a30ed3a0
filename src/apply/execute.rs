//! Running one action on one connection. Every change and its bookkeeping row are written in
//! one transaction; a migration marked `-- neo:no-transaction` runs alone, outside a
//! transaction, and its history row is written only after it succeeds.

use std::time::Instant;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

use super::RunContext;
use crate::desired::{ApplySettings, Desired, Migration};
use crate::plan::{Action, MigrationStep};
use crate::sql::{self, literal};

/// Why an action failed: the migration version, when it was one, and the database's error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ActionError {
    pub what: String,
    pub version: Option<u32>,
    pub message: String,
}

impl ActionError {
    fn new(what: impl Into<String>, version: Option<u32>, e: impl std::fmt::Display) -> Self {
        ActionError {
            what: what.into(),
            version,
            message: e.to_string(),
        }
    }
}

/// Runs one action of a region. Not for `Bootstrap` and `UpdateRegistry`, which need other
/// connections and are run by the caller.
pub async fn run_action(
    conn: &mut PgConnection,
    desired: &Desired,
    settings: &ApplySettings,
    ctx: &RunContext,
    run_id: i64,
    action: &Action,
) -> Result<(), ActionError> {
    let what = super::describe(action);
    match action {
        Action::Migrate {
            tenant,
            schema_set,
            schema,
            from,
            versions,
            ..
        } => {
            let set = desired.schema_set(schema_set).ok_or_else(|| {
                ActionError::new(
                    &what,
                    None,
                    format!("schema set {schema_set} is not in the desired state"),
                )
            })?;
            let owner = match tenant {
                Some(t) => format!("tenant_{t}_owner"),
                None => {
                    if *from == 0 {
                        in_transaction(conn, &sql::create_region_set_schema(schema), "")
                            .await
                            .map_err(|e| ActionError::new(&what, None, e))?;
                    }
                    sql::region_set_owner(schema_set)
                }
            };
            for step in versions {
                let migration = set
                    .migration(step.version)
                    .filter(|m| m.checksum == step.checksum)
                    .ok_or_else(|| {
                        ActionError::new(
                            &what,
                            Some(step.version),
                            format!("{} changed since the plan was made", step.file),
                        )
                    })?;
                apply_migration(
                    conn, schema, &owner, schema_set, migration, step, settings, ctx, run_id,
                )
                .await
                .map_err(|e| {
                    ActionError::new(format!("{what}: {}", step.file), Some(step.version), e)
                })?;
            }
            Ok(())
        }
        // Lifecycle actions: the statements `plan --show-sql` shows, and the bookkeeping row,
        // in one transaction.
        Action::CreateTenant { .. }
        | Action::SuspendTenant { .. }
        | Action::ResumeTenant { .. }
        | Action::ArchiveTenant { .. }
        | Action::DestroyTenant { .. } => in_transaction(
            conn,
            &crate::plan::render::action_sql(action, desired),
            &lifecycle_bookkeeping(action, ctx),
        )
        .await
        .map_err(|e| ActionError::new(&what, None, e)),
        Action::Bootstrap { .. } | Action::UpdateRegistry { .. } => {
            Err(ActionError::new(&what, None, "not run per tenant"))
        }
    }
}

fn commit_literal(ctx: &RunContext) -> String {
    ctx.commit.as_deref().map_or("NULL".into(), literal)
}

/// The `neo_reconcile.tenants` change that goes with a lifecycle action.
fn lifecycle_bookkeeping(action: &Action, ctx: &RunContext) -> String {
    match action {
        Action::CreateTenant { tenant, schema, owner_role, rw_role } => format!(
            "INSERT INTO neo_reconcile.tenants (slug, status, schema_name, owner_role, rw_role, git_commit) \
             VALUES ({}, 'active', {}, {}, {}, {}) \
             ON CONFLICT (slug) DO UPDATE SET status = 'active', schema_name = EXCLUDED.schema_name, \
             owner_role = EXCLUDED.owner_role, rw_role = EXCLUDED.rw_role, updated_at = now(), git_commit = EXCLUDED.git_commit",
            literal(tenant),
            literal(schema),
            literal(owner_role),
            literal(rw_role),
            commit_literal(ctx)
        ),
        Action::SuspendTenant { tenant, .. } => set_status(tenant, "suspended", None, ctx),
        Action::ResumeTenant { tenant, .. } => set_status(tenant, "active", None, ctx),
        Action::ArchiveTenant { tenant, archived_schema, .. } => set_status(tenant, "archived", Some(archived_schema), ctx),
        Action::DestroyTenant { tenant, .. } => set_status(tenant, "deleted", None, ctx),
        _ => String::new(),
    }
}

fn set_status(tenant: &str, status: &str, schema: Option<&str>, ctx: &RunContext) -> String {
    let schema = schema
        .map(|s| format!(", schema_name = {}", literal(s)))
        .unwrap_or_default();
    format!(
        "UPDATE neo_reconcile.tenants SET status = {}{schema}, updated_at = now(), git_commit = {} WHERE slug = {}",
        literal(status),
        commit_literal(ctx),
        literal(tenant)
    )
}

/// Runs statements and a bookkeeping statement in one transaction.
async fn in_transaction(
    conn: &mut PgConnection,
    statements: &[String],
    bookkeeping: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut batch = statements.join(";\n");
    if !bookkeeping.is_empty() {
        batch.push_str(";\n");
        batch.push_str(bookkeeping);
    }
    tx.execute(sqlx::raw_sql(&batch)).await?;
    tx.commit().await
}

/// How a migration attempt ended, for its history row.
enum Attempt<'e> {
    /// Applied inside its transaction: timed from the transaction's start (`now()`).
    InTransaction,
    /// Applied outside a transaction, in this many milliseconds.
    Alone { elapsed_ms: u128 },
    /// Failed (and rolled back) with this error.
    Failed { error: &'e str },
}

/// The history row of a migration attempt.
fn history_insert(
    schema: &str,
    set: &str,
    m: &Migration,
    ctx: &RunContext,
    run_id: i64,
    attempt: Attempt,
) -> String {
    let (elapsed, success, error) = match attempt {
        Attempt::InTransaction => (
            "(extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint".to_string(),
            true,
            "NULL".to_string(),
        ),
        Attempt::Alone { elapsed_ms } => (elapsed_ms.to_string(), true, "NULL".to_string()),
        Attempt::Failed { error } => ("0".to_string(), false, literal(error)),
    };
    format!(
        "INSERT INTO neo_reconcile.schema_history \
         (target_schema, schema_set, version, description, checksum, applied_by, git_commit, execution_ms, success, run_id, error) \
         VALUES ({}, {}, {}, {}, {}, session_user || '@' || {}, {}, {elapsed}, {success}, {run_id}, {error})",
        literal(schema),
        literal(set),
        m.version,
        literal(&m.description),
        literal(&m.checksum),
        literal(&ctx.host),
        commit_literal(ctx),
    )
}

/// Applies one migration: in a transaction with its history row, or, for a
/// `-- neo:no-transaction` migration, alone and then its history row.
#[allow(clippy::too_many_arguments)]
async fn apply_migration(
    conn: &mut PgConnection,
    schema: &str,
    owner: &str,
    set: &str,
    m: &Migration,
    step: &MigrationStep,
    settings: &ApplySettings,
    ctx: &RunContext,
    run_id: i64,
) -> Result<(), sqlx::Error> {
    let started = Instant::now();
    let result: Result<(), sqlx::Error> = if step.no_transaction {
        async {
            // Alone, outside a transaction: each statement runs by itself (CREATE INDEX
            // CONCURRENTLY refuses a transaction block). Session settings are reset afterwards,
            // whatever happens.
            let preamble = sql::no_transaction_preamble(schema, owner, settings).join(";\n");
            conn.execute(sqlx::raw_sql(&preamble)).await?;
            let mut ran = Ok(());
            for statement in sql::split_statements(&m.sql) {
                if let Err(e) = conn.execute(sqlx::raw_sql(&statement)).await {
                    ran = Err(e);
                    break;
                }
            }
            let reset = conn
                .execute(sqlx::raw_sql(&sql::reset_session().join(";\n")))
                .await;
            ran?;
            reset?;
            conn.execute(sqlx::raw_sql(&history_insert(
                schema,
                set,
                m,
                ctx,
                run_id,
                Attempt::Alone {
                    elapsed_ms: started.elapsed().as_millis(),
                },
            )))
            .await
            .map(|_| ())
        }
        .await
    } else {
        async {
            let mut tx = conn.begin().await?;
            // The migration's text is followed by a newline so that a trailing comment cannot
            // swallow what comes after it.
            let batch = format!(
                "{};\n{}\n;\nRESET ROLE;\n{}",
                sql::migration_preamble(schema, owner, settings).join(";\n"),
                m.sql,
                history_insert(schema, set, m, ctx, run_id, Attempt::InTransaction)
            );
            match tx.execute(sqlx::raw_sql(&batch)).await {
                Ok(_) => tx.commit().await,
                Err(e) => {
                    tx.rollback().await.ok();
                    Err(e)
                }
            }
        }
        .await
    };
    match &result {
        Ok(()) => tracing::info!(
            schema = %schema, schema_set = %set, version = m.version, elapsed_ms = started.elapsed().as_millis() as u64,
            "Applied migration."
        ),
        Err(e) => {
            tracing::error!(schema = %schema, schema_set = %set, version = m.version, error = %e, "Migration failed; rolled back.");
            record_failure(conn, schema, set, m, ctx, run_id, &e.to_string()).await;
        }
    }
    result
}

/// Records a failed attempt for the audit trail (best effort: the failure is reported anyway).
async fn record_failure(
    conn: &mut PgConnection,
    schema: &str,
    set: &str,
    m: &Migration,
    ctx: &RunContext,
    run_id: i64,
    error: &str,
) {
    let q = history_insert(schema, set, m, ctx, run_id, Attempt::Failed { error });
    if let Err(e) = conn.execute(sqlx::raw_sql(&q)).await {
        tracing::warn!(error = %e, "Could not record the failed migration in schema_history.");
    }
}
