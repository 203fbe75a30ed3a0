//! Computing expected shapes (the `compute_shape` action): what migrations 1..V of each set
//! give an empty schema. Apply runs them under the region lock into a scratch schema, created
//! as apply creates a target, inside a transaction that is always rolled back, describes the
//! result with the observer's own query, and keeps it in `neo_reconcile.expected_shapes`.
//! Plans only read that table, so observing stays read-only and never runs a migration.
//!
//! The scratch transaction has a statement and a lock timeout: a migration that waits on
//! outside state cannot hold the region for long. A migration that fails there leaves a
//! `failure` row (its targets are not checked until a file changes); a timeout or a lost
//! connection leaves nothing, and the next apply tries again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::PgConnection;
use sqlx::Executor;

use super::context::RunContext;
use super::execute::is_transient;
use crate::desired::{Desired, Scope};
use crate::observed::shape::{Shape, ShapeKey};
use crate::observed::shape_query::describe_in;
use crate::sql::{create_tenant, ident};

/// Scratch schemas of this process are numbered, so two computations never share one.
static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// How long one statement of the scratch run may take, and how long it may wait for a lock.
const SCRATCH_STATEMENT_TIMEOUT: &str = "60s";
const SCRATCH_LOCK_TIMEOUT: &str = "5s";

/// Why an expected shape was not computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeFailure {
    pub reason: String,
    /// Whether it fails the same way every time (a migration's own error), so the failure is
    /// kept instead of trying again at every apply.
    pub lasting: bool,
}

impl ShapeFailure {
    /// `migration`: the error is a migration's own (the others are about the scratch run).
    fn from_error(what: &str, e: &sqlx::Error, migration: bool) -> Self {
        let timeout = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "57014" || c == "55P03");
        ShapeFailure {
            reason: format!("{what}: {e}"),
            lasting: migration && !timeout && !is_transient(e),
        }
    }
}

/// Computes the expected shape of `key` and records it (or a lasting failure) in
/// `neo_reconcile.expected_shapes` under `id`. The row is written after the scratch
/// transaction is rolled back; a shape another run recorded first is kept.
pub async fn compute(
    conn: &mut PgConnection,
    desired: &Desired,
    ctx: &RunContext,
    key: &ShapeKey,
    id: &str,
    scope: Scope,
) -> Result<(), ShapeFailure> {
    let outcome = expected_shape(conn, desired, key, scope).await;
    let (fingerprint, entries, failure) = match &outcome {
        Ok(shape) => {
            let rows: Vec<_> = shape
                .entries
                .iter()
                .map(|e| (&e.object, &e.line, &e.create, &e.drop))
                .collect();
            let json = serde_json::to_string(&rows).expect("strings serialize");
            (Some(shape.fingerprint.clone()), Some(json), None)
        }
        Err(f) if f.lasting => (None, None, Some(f.reason.clone())),
        Err(f) => return Err(f.clone()),
    };
    sqlx::query(
        "INSERT INTO neo_reconcile.expected_shapes
             (id, server_major, versions, fingerprint, entries, failure, computed_by)
         VALUES ($1, current_setting('server_version_num')::int / 10000, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(key.to_string())
    .bind(fingerprint)
    .bind(entries)
    .bind(failure)
    .bind(format!("{}@{}", ctx.run_by, ctx.host))
    .execute(&mut *conn)
    .await
    .map_err(|e| ShapeFailure {
        reason: format!("recording the expected shape: {e}"),
        lasting: false,
    })?;
    outcome.map(|_| ())
}

/// The shape migrations 1..V of each set of `key` give an empty schema: created as apply
/// creates a target, migrated as apply migrates it, described, and rolled back. A
/// `-- neo:no-transaction` migration runs statement by statement inside the same
/// transaction, with `CONCURRENTLY` taken off (see [`for_shape`]).
async fn expected_shape(
    conn: &mut PgConnection,
    desired: &Desired,
    key: &ShapeKey,
    scope: Scope,
) -> Result<Shape, ShapeFailure> {
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    let scratch = format!("neo_shape_{}_{n}", std::process::id());
    let begin =
        |e: sqlx::Error| ShapeFailure::from_error("starting the scratch transaction", &e, false);
    conn.execute(sqlx::raw_sql("BEGIN")).await.map_err(begin)?;
    let limits = sqlx::query(
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true)",
    )
    .bind(SCRATCH_STATEMENT_TIMEOUT)
    .bind(SCRATCH_LOCK_TIMEOUT)
    .execute(&mut *conn)
    .await
    .map_err(begin);
    let result = match limits {
        Ok(_) => scratch_shape(conn, desired, key, scope, &scratch).await,
        Err(e) => Err(e),
    };
    conn.execute(sqlx::raw_sql("ROLLBACK"))
        .await
        .map_err(|e| ShapeFailure::from_error("rolling the scratch schema back", &e, false))?;
    result?.remove(&scratch).ok_or_else(|| ShapeFailure {
        reason: "the scratch schema was not described".to_string(),
        lasting: false,
    })
}

/// The work of [`expected_shape`] inside its transaction.
async fn scratch_shape(
    conn: &mut PgConnection,
    desired: &Desired,
    key: &ShapeKey,
    scope: Scope,
    scratch: &str,
) -> Result<BTreeMap<String, Shape>, ShapeFailure> {
    let owner = format!("{scratch}_owner");
    let create = match scope {
        Scope::Tenant => create_tenant(scratch, &owner, &format!("{scratch}_rw")),
        Scope::Region => [
            format!("CREATE ROLE {} NOLOGIN", ident(&owner)),
            format!("GRANT {} TO CURRENT_USER", ident(&owner)),
            format!(
                "CREATE SCHEMA {} AUTHORIZATION {}",
                ident(scratch),
                ident(&owner)
            ),
        ]
        .join(";\n"),
    };
    let fail = |what: &str, e: sqlx::Error| ShapeFailure::from_error(what, &e, false);
    conn.execute(sqlx::raw_sql(&create))
        .await
        .map_err(|e| fail("creating the scratch schema", e))?;
    let path = match desired.extensions.names.is_empty() {
        true => ident(scratch),
        false => format!("{}, {}", ident(scratch), ident(&desired.extensions.schema)),
    };
    for (set_name, version) in &key.0 {
        let set = desired.schema_set(set_name).ok_or_else(|| ShapeFailure {
            reason: format!("schema set {set_name} is not in the desired state"),
            lasting: false,
        })?;
        for m in &set.migrations[..(*version as usize).min(set.migrations.len())] {
            sqlx::query("SELECT set_config('role', $2, true), set_config('search_path', $1, true)")
                .bind(&path)
                .bind(&owner)
                .execute(&mut *conn)
                .await
                .map_err(|e| fail("setting the migration's role", e))?;
            let statements = if m.no_transaction {
                m.statements.iter().filter_map(|s| for_shape(s)).collect()
            } else {
                vec![m.sql.clone()]
            };
            for sql in &statements {
                conn.execute(sqlx::raw_sql(sql))
                    .await
                    .map_err(|e| ShapeFailure::from_error(&m.file, &e, true))?;
            }
            conn.execute(sqlx::raw_sql("RESET ROLE"))
                .await
                .map_err(|e| fail("resetting the role", e))?;
        }
    }
    describe_in(conn, &[scratch.to_string()], true)
        .await
        .map_err(|e| ShapeFailure {
            reason: format!("describing the scratch schema: {e}"),
            lasting: false,
        })
}

/// A statement of a `-- neo:no-transaction` migration as it runs for the expected shape,
/// inside a transaction: `CREATE INDEX CONCURRENTLY` and `DROP INDEX CONCURRENTLY` become
/// their plain forms (same result), and maintenance that changes no definition (`VACUUM`,
/// `ANALYZE`, `REINDEX`, `CLUSTER`) is left out. Anything else runs as written.
pub fn for_shape(statement: &str) -> Option<String> {
    use pg_query::NodeEnum;
    let Ok(mut parsed) = pg_query::parse(statement, 0) else {
        return Some(statement.to_string());
    };
    let mut changed = false;
    for raw in &mut parsed.protobuf.stmts {
        match raw.stmt.as_mut().and_then(|s| s.node.as_mut()) {
            Some(NodeEnum::IndexStmt(s)) if s.concurrent => {
                s.concurrent = false;
                changed = true;
            }
            Some(NodeEnum::DropStmt(s)) if s.concurrent => {
                s.concurrent = false;
                changed = true;
            }
            Some(NodeEnum::VacuumStmt(_) | NodeEnum::ReindexStmt(_) | NodeEnum::ClusterStmt(_)) => {
                return None
            }
            _ => {}
        }
    }
    if !changed {
        return Some(statement.to_string());
    }
    Some(
        parsed
            .protobuf
            .deparse(pg_query::DeparseOptions::default())
            .unwrap_or_else(|_| statement.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::for_shape;

    #[test]
    fn concurrent_index_statements_run_plain_for_the_shape() {
        let out = |s: &str| for_shape(s).unwrap_or_else(|| "(left out)".into());
        assert_eq!(
            out("CREATE INDEX CONCURRENTLY i ON t (a) WHERE NOT b"),
            "CREATE INDEX i ON t USING btree (a) WHERE NOT b"
        );
        assert_eq!(
            out("DROP INDEX CONCURRENTLY IF EXISTS i"),
            "DROP INDEX IF EXISTS i"
        );
        assert_eq!(out("VACUUM t"), "(left out)");
        assert_eq!(out("SELECT 1"), "SELECT 1");
    }
}
