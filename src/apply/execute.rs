//! Running one action on one connection: the [`sql::Program`] that `plan --show-sql` shows,
//! step by step, values bound as parameters. Every change and its bookkeeping row are
//! written in one transaction; a migration marked `-- neo:no-transaction` runs alone,
//! outside a transaction, and its history row is written only after it succeeded.

use tokio::time::Instant;

use sqlx::postgres::PgConnection;
use sqlx::Executor;

use super::context::RunContext;
use crate::desired::{Desired, Region, TransactionShape};
use crate::plan::Action;
use crate::sql::{self, MigrationRun, RunValue, Statement, Step, Value};

/// Why an action failed: the migration version, when it was one, the database's error, and
/// whether trying again may succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ActionError {
    pub what: String,
    pub version: Option<u32>,
    pub message: String,
    /// A failure that may not happen again (a lock timeout, a deadlock, a serialization
    /// failure, a server shutting down, a lost connection), where repeating is safe.
    pub transient: bool,
}

impl ActionError {
    fn new(what: impl Into<String>, version: Option<u32>, e: impl std::fmt::Display) -> Self {
        ActionError {
            what: what.into(),
            version,
            message: e.to_string(),
            transient: false,
        }
    }
}

/// The values of a statement that only apply knows (see [`RunValue`]).
struct RunValues<'a> {
    ctx: &'a RunContext,
    run_id: i64,
    elapsed_ms: i64,
    error: &'a str,
    /// Statements of a failed no-transaction migration that completed (NULL otherwise).
    completed: Option<i32>,
}

/// Runs a target's actions in order on one connection (a tenant's, or one region-scope
/// action): their programs, joined into one transaction per run of transactional pieces when
/// the region's `[apply] transaction` is `"per_tenant"` (see [`sql::programs`], which
/// `plan --show-sql` shows). Not for `Bootstrap` and `UpdateRegistry`, which need other
/// connections and are run by the caller. `resume`: the first action failed before and is
/// tried again; its migrations that history shows as applied (by the earlier attempt, perhaps
/// with the acknowledgement of its commit lost) are skipped.
///
/// On failure: the index of the first action not completed (a failed transaction rolls back
/// to its `BEGIN`, so that is the action the transaction started in) and the error.
pub async fn run_actions(
    conn: &mut PgConnection,
    desired: &Desired,
    region: &Region,
    ctx: &RunContext,
    run_id: i64,
    actions: &[&Action],
    resume: bool,
) -> Result<(), (usize, ActionError)> {
    let mut programs = Vec::with_capacity(actions.len());
    for (i, action) in actions.iter().enumerate() {
        let what = super::report::describe(action);
        if matches!(
            action,
            Action::Bootstrap { .. } | Action::UpdateRegistry { .. }
        ) {
            return Err((i, ActionError::new(&what, None, "not run per tenant")));
        }
        let program = sql::program(action, desired, region)
            .map_err(|e| (i, ActionError::new(&what, None, e)))?;
        programs.push(program);
    }
    if resume {
        if let (Some(action), Some(program)) = (actions.first(), programs.first_mut()) {
            let applied = applied_versions(conn, action).await.map_err(|e| {
                let what = super::report::describe(action);
                (0, failed_action(&what, None, &e))
            })?;
            // A migration still to apply is not applied yet; an undo still to run undoes a
            // version that is still applied.
            program
                .migrations
                .retain(|m| applied.contains(&(m.version as i32)) == m.undo);
        }
    }
    match region.apply.transaction {
        TransactionShape::PerTenant => {
            sql::join_transactions(&mut programs.iter_mut().collect::<Vec<_>>())
        }
        TransactionShape::PerMigration => programs.iter_mut().for_each(sql::join_setup),
    }
    let mut tx = Transaction::default();
    for (i, (action, program)) in actions.iter().zip(&programs).enumerate() {
        let what = super::report::describe(action);
        if !program.setup.is_empty() {
            run_piece(conn, &program.setup, None, i, &mut tx, ctx, run_id)
                .await
                .map_err(|(at, e)| {
                    (
                        at,
                        ActionError {
                            what: what.clone(),
                            ..e
                        },
                    )
                })?;
        }
        for m in &program.migrations {
            let result = if m.no_transaction {
                apply_migration(conn, m, ctx, run_id)
                    .await
                    .map_err(|e| (i, e))
            } else {
                run_piece(conn, &m.steps, Some(m), i, &mut tx, ctx, run_id).await
            };
            result.map_err(|(at, e)| {
                (
                    at,
                    ActionError {
                        what: format!("{what}: {}", m.file),
                        ..e
                    },
                )
            })?;
        }
    }
    Ok(())
}

/// The versions of an action's set that history records as applied (and not reverted) in its
/// schema.
async fn applied_versions(
    conn: &mut PgConnection,
    action: &Action,
) -> Result<Vec<i32>, sqlx::Error> {
    let (Action::Migrate {
        schema, schema_set, ..
    }
    | Action::Rollback {
        schema, schema_set, ..
    }) = action
    else {
        return Ok(Vec::new());
    };
    sqlx::query_scalar(
        "SELECT version FROM neo_reconcile.schema_history \
         WHERE target_schema = $1 AND schema_set = $2 AND success \
         AND direction = 'apply' AND reverted_by IS NULL",
    )
    .bind(schema)
    .bind(schema_set)
    .fetch_all(&mut *conn)
    .await
}

fn failed_action(what: &str, version: Option<u32>, e: &sqlx::Error) -> ActionError {
    ActionError {
        transient: is_transient(e),
        ..ActionError::new(what, version, e)
    }
}

/// The transaction a target's pieces run in: open or not, the action it began in, and the
/// migrations it holds so far (logged as applied once it commits).
#[derive(Default)]
struct Transaction<'a> {
    open: bool,
    began_in: usize,
    pieces: usize,
    migrations: Vec<(&'a MigrationRun, Instant)>,
}

/// Runs one transactional piece of action `action` (a lifecycle action's or a migration's
/// steps, with or without their own `BEGIN`/`COMMIT` once joined). On failure the open
/// transaction is rolled back, a failed migration's attempt is recorded, and the error names
/// the action the rolled-back transaction began in.
async fn run_piece<'a>(
    conn: &mut PgConnection,
    steps: &[Step],
    migration: Option<&'a MigrationRun>,
    action: usize,
    tx: &mut Transaction<'a>,
    ctx: &RunContext,
    run_id: i64,
) -> Result<(), (usize, ActionError)> {
    if matches!(steps.first(), Some(Step::Begin)) {
        *tx = Transaction {
            began_in: action,
            ..Transaction::default()
        };
    }
    if let Some(m) = migration {
        tx.migrations.push((m, Instant::now()));
    }
    tx.pieces += 1;
    let mut values = RunValues {
        ctx,
        run_id,
        elapsed_ms: 0,
        error: "",
        completed: None,
    };
    match run_steps_in(conn, steps, &values, &mut tx.open).await {
        Ok(()) => {
            if !tx.open {
                for (m, started) in tx.migrations.drain(..) {
                    tracing::info!(file = %m.file, version = m.version, elapsed_ms = started.elapsed().as_millis() as u64, "Applied migration.");
                }
            }
            Ok(())
        }
        Err(failure) => {
            let error = failure.error.to_string();
            let others = tx.pieces - 1;
            let rolled_back = if others == 0 {
                "(the migration was rolled back)".to_string()
            } else {
                format!("(rolled back, with the {others} other change(s) of this target since its BEGIN)")
            };
            let version = migration.map(|m| m.version);
            if let Some(m) = migration {
                tracing::error!(file = %m.file, version = m.version, rolled_back_with = others, error = %error, "Migration failed; its transaction was rolled back.");
                values.error = &error;
                if let Err(f) = run_steps(conn, &m.on_failure, &values).await {
                    tracing::warn!(file = %m.file, error = %f.error, "Could not record the failed attempt in schema_history.");
                }
            }
            let rolled_back = if migration.is_some() {
                rolled_back
            } else {
                rolled_back.replace("the migration was", "it was")
            };
            Err((
                tx.began_in,
                ActionError {
                    what: String::new(),
                    version,
                    message: format!("{error} {rolled_back}"),
                    transient: is_transient(&failure.error),
                },
            ))
        }
    }
}

/// A step that failed, and whether a transaction was open when it did (it was rolled back).
struct StepFailure {
    /// The index of the failed step.
    step: usize,
    error: sqlx::Error,
}

/// Runs steps in order. When one fails inside a transaction, the transaction is rolled back
/// before the failure is returned, so the connection is usable again.
async fn run_steps(
    conn: &mut PgConnection,
    steps: &[Step],
    values: &RunValues<'_>,
) -> Result<(), StepFailure> {
    run_steps_in(conn, steps, values, &mut false).await
}

/// As [`run_steps`], for steps that may continue (or leave open) a transaction begun by
/// earlier steps: `in_transaction` says whether one is open, before and after.
async fn run_steps_in(
    conn: &mut PgConnection,
    steps: &[Step],
    values: &RunValues<'_>,
    in_transaction: &mut bool,
) -> Result<(), StepFailure> {
    for (i, step) in steps.iter().enumerate() {
        let result = match step {
            Step::Begin => {
                *in_transaction = true;
                conn.execute(sqlx::raw_sql("BEGIN")).await.map(|_| ())
            }
            Step::Commit => {
                *in_transaction = false;
                conn.execute(sqlx::raw_sql("COMMIT")).await.map(|_| ())
            }
            Step::Script { sql, .. } => conn.execute(sqlx::raw_sql(sql)).await.map(|_| ()),
            Step::Exec(statement) => exec(conn, statement, values).await,
            Step::Note(_) => Ok(()),
        };
        if let Err(error) = result {
            if std::mem::take(in_transaction) {
                if let Err(e) = conn.execute(sqlx::raw_sql("ROLLBACK")).await {
                    tracing::warn!(error = %e, "Could not roll back; the connection will be replaced.");
                }
            }
            return Err(StepFailure { step: i, error });
        }
    }
    Ok(())
}

/// Sends one statement: fixed text as a simple query, a statement with values through the
/// extended protocol with every value bound.
async fn exec(
    conn: &mut PgConnection,
    statement: &Statement,
    values: &RunValues<'_>,
) -> Result<(), sqlx::Error> {
    if statement.params.is_empty() {
        return conn
            .execute(sqlx::raw_sql(&statement.sql))
            .await
            .map(|_| ());
    }
    let mut query = sqlx::query(&statement.sql);
    for value in &statement.params {
        query = match value {
            Value::Text(t) => query.bind(t.as_str()),
            Value::OptText(t) => query.bind(t.as_deref()),
            Value::Int(i) => query.bind(*i),
            Value::TextArray(a) => query.bind(a.as_slice()),
            Value::OptTextArray(a) => query.bind(a.as_slice()),
            Value::IntArray(a) => query.bind(a.as_slice()),
            Value::Run(RunValue::RunId) => query.bind(values.run_id),
            Value::Run(RunValue::Host) => query.bind(values.ctx.host.as_str()),
            Value::Run(RunValue::Commit) => query.bind(values.ctx.commit.as_deref()),
            Value::Run(RunValue::ElapsedMs) => query.bind(values.elapsed_ms),
            Value::Run(RunValue::Error) => query.bind(values.error),
            Value::Run(RunValue::StatementsCompleted) => query.bind(values.completed),
        };
    }
    conn.execute(query).await.map(|_| ())
}

/// Runs steps that are not part of a tenant's work (the registry update) on a connection of
/// their own.
pub async fn run_setup(
    conn: &mut PgConnection,
    steps: &[Step],
    ctx: &RunContext,
) -> Result<(), sqlx::Error> {
    let values = RunValues {
        ctx,
        run_id: 0,
        elapsed_ms: 0,
        error: "",
        completed: None,
    };
    run_steps(conn, steps, &values).await.map_err(|f| f.error)
}

/// Whether an error may not happen again on a later try: a lock timeout (55P03), a deadlock
/// (40P01), a serialization failure (40001), the server shutting down or not accepting
/// connections yet (57P01, 57P02, 57P03), too many connections (53300), a connection
/// exception (class 08), or the connection lost on the way.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(
                code.as_ref(),
                "55P03" | "40P01" | "40001" | "57P01" | "57P02" | "57P03" | "53300"
            ) || code.starts_with("08")
        }),
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// Whether a no-transaction statement may safely run again after it failed. `CONCURRENTLY`
/// index builds are never repeated: an interrupted one leaves an invalid index behind, which
/// a repeated `IF NOT EXISTS` would accept silently.
fn safe_to_repeat(statement: &str) -> bool {
    !statement.to_ascii_uppercase().contains("CONCURRENTLY")
}

/// Applies one migration: its steps, and on failure what [`MigrationRun::on_failure`] says.
async fn apply_migration(
    conn: &mut PgConnection,
    m: &MigrationRun,
    ctx: &RunContext,
    run_id: i64,
) -> Result<(), ActionError> {
    let started = Instant::now();
    let mut values = RunValues {
        ctx,
        run_id,
        elapsed_ms: 0,
        error: "",
        completed: None,
    };
    // A no-transaction migration whose earlier attempt of the same file failed after some
    // statements continues after those: they stayed committed.
    let skipped = if m.no_transaction {
        resume_point(conn, m).await.map_err(|e| ActionError {
            transient: is_transient(&e),
            ..ActionError::new(&m.file, Some(m.version), &e)
        })?
    } else {
        0
    };
    let steps = skip_statements(&m.steps, skipped);
    if skipped > 0 {
        tracing::info!(file = %m.file, version = m.version, statements_skipped = skipped, "Continuing a no-transaction migration after the statements an earlier attempt completed.");
    }
    // The last step writes the history row; for a no-transaction migration it is bound with
    // the time the statements took.
    let (body, history) = steps.split_at(steps.len() - usize::from(m.no_transaction));
    let mut result = run_steps(conn, body, &values).await;
    if result.is_ok() && m.no_transaction {
        values.elapsed_ms = started.elapsed().as_millis() as i64;
        result = run_steps(conn, history, &values)
            .await
            .map_err(|f| StepFailure {
                step: f.step + body.len(),
                ..f
            });
    }
    let failure = match result {
        Ok(()) => {
            tracing::info!(file = %m.file, version = m.version, elapsed_ms = started.elapsed().as_millis() as u64, "Applied migration.");
            return Ok(());
        }
        Err(f) => f,
    };
    let error = failure.error.to_string();
    // A no-transaction migration repeats safely only when none of its statements completed
    // in this attempt and the one that failed may run again.
    let completed_scripts = steps[..failure.step]
        .iter()
        .filter(|s| matches!(s, Step::Script { .. }))
        .count();
    let transient = is_transient(&failure.error)
        && (!m.no_transaction
            || (completed_scripts == 0
                && matches!(&steps[failure.step], Step::Script { sql, .. } if safe_to_repeat(sql))));
    // What is reported and recorded. A transactional migration's history row keeps the
    // server's error exactly; a no-transaction one says which statements ran, because those
    // stay: nothing was rolled back.
    let (message, recorded) = if m.no_transaction {
        let total = m
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Script { .. }))
            .count();
        let completed = skipped + completed_scripts;
        values.completed = Some(completed as i32);
        let text = no_transaction_failure(
            &steps[failure.step],
            completed,
            failure.step >= body.len(),
            total,
            &error,
        );
        tracing::error!(file = %m.file, version = m.version, statements_completed = completed, statements = total, error = %error, "No-transaction migration failed; the statements that completed stay committed.");
        (text.clone(), text)
    } else {
        tracing::error!(file = %m.file, version = m.version, error = %error, "Migration failed; rolled back.");
        (format!("{error} (the migration was rolled back)"), error)
    };
    values.error = &recorded;
    if let Err(f) = run_steps(conn, &m.on_failure, &values).await {
        tracing::warn!(file = %m.file, error = %f.error, "Could not record the failed attempt in schema_history.");
    }
    Err(ActionError {
        what: m.file.clone(),
        version: Some(m.version),
        message,
        transient,
    })
}

/// What a failed `-- neo:no-transaction` migration reports and records: which statement
/// failed, how many completed before it (they stay), and that the next apply continues after
/// them. `at_history`: the failure came after the statements, at the session reset or the
/// history row.
fn no_transaction_failure(
    failed: &Step,
    completed: usize,
    at_history: bool,
    total: usize,
    error: &str,
) -> String {
    if at_history || completed == total {
        return format!(
            "all {total} statement(s) completed and stay committed, but the session reset or \
             the history row failed; the next apply records it without running them again: \
             {error}"
        );
    }
    let next = completed + 1;
    if !matches!(failed, Step::Script { .. }) {
        return format!(
            "failed before statement {next} of {total}; {completed} completed and stay \
             committed (the next apply continues with statement {next}): {error}"
        );
    }
    format!(
        "statement {next} of {total} failed; {completed} completed before it and stay \
         committed (the next apply continues with statement {next}): {error}"
    )
}

/// How many statements of a no-transaction migration (or undo file) an earlier attempt of the
/// same file (same checksum, same direction) in the same schema completed before it failed:
/// the latest failed attempt since the version last succeeded in either direction says (an
/// attempt before a version was applied, undone and applied again is over). 0 when there is
/// none or the file changed since.
async fn resume_point(conn: &mut PgConnection, m: &MigrationRun) -> Result<usize, sqlx::Error> {
    let last: Option<(String, Option<i32>)> = sqlx::query_as(
        "SELECT checksum, statements_completed FROM neo_reconcile.schema_history f \
         WHERE target_schema = $1 AND schema_set = $2 AND version = $3 AND NOT success \
         AND direction = $4 AND id > coalesce((SELECT max(id) FROM neo_reconcile.schema_history \
           WHERE target_schema = $1 AND schema_set = $2 AND version = $3 AND success), 0) \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(&m.schema)
    .bind(&m.set)
    .bind(m.version as i32)
    .bind(if m.undo { "undo" } else { "apply" })
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match last {
        Some((checksum, Some(n))) if checksum == m.checksum && n > 0 => n as usize,
        _ => 0,
    })
}

/// The steps without the first `skip` statements of the file (the session setup, the rest
/// and the history row stay).
fn skip_statements(steps: &[Step], skip: usize) -> std::borrow::Cow<'_, [Step]> {
    if skip == 0 {
        return std::borrow::Cow::Borrowed(steps);
    }
    let mut seen = 0;
    let kept = steps
        .iter()
        .filter(|s| {
            if !matches!(s, Step::Script { .. }) {
                return true;
            }
            seen += 1;
            seen > skip
        })
        .cloned()
        .collect();
    std::borrow::Cow::Owned(kept)
}
