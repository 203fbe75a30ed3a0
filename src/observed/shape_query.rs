//! Observing live-schema shapes: a fixed number of read-only queries per region whatever the
//! number of tenants. One catalog query (`describe.sql`) returns the fingerprint of every
//! checked schema, computed by the server; one reads the expected shapes apply cached in
//! `neo_reconcile.expected_shapes` (see `apply::shape`); one the accepted ones; and one more
//! describes, line by line, only the schemas whose fingerprint differs from the expected one.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use super::postgres::ObserveError;
use super::shape::{
    describe_id, shape_id, targets, Accepted, Expected, Shape, ShapeEntry, ShapeKey, Shapes,
    DESCRIBE,
};
use super::state::Bookkeeping;
use crate::desired::{DriftPolicy, SchemaSet};

/// Observes the shapes of a region's checked schemas (see [`targets`]) in a fixed number of
/// read-only queries: the fingerprints of all of them, the cached expected shapes, the
/// accepted ones, and the descriptions of only those whose fingerprint differs.
pub async fn observe_shapes(
    conn: &mut PgConnection,
    sets: &[SchemaSet],
    bookkeeping: Option<&Bookkeeping>,
) -> Result<Shapes, ObserveError> {
    if sets.iter().all(|s| s.drift == DriftPolicy::Off) {
        return Ok(Shapes::default());
    }
    let Some(bookkeeping) = bookkeeping.filter(|b| b.version >= DRIFT_SINCE) else {
        // Nothing is cached before the bookkeeping has the table.
        return Ok(Shapes {
            cache_read: true,
            ..Shapes::default()
        });
    };
    let targets = targets(sets, bookkeeping);
    // One id per distinct combination of versions, not per target.
    let distinct: BTreeSet<&ShapeKey> = targets.values().map(|t| &t.key).collect();
    let keys: BTreeMap<String, ShapeKey> = distinct
        .into_iter()
        .filter_map(|key| shape_id(sets, key).map(|id| (id, key.clone())))
        .collect();
    let (computed, expected) = read_expected(conn, &keys).await?;
    for (key, shape) in &expected {
        if let Expected::Failed { reason } = shape {
            tracing::warn!(versions = %key, reason = %reason, "The expected shape of these versions could not be computed (a migration fails in a scratch schema): targets at them are not checked for drift until a file changes.");
        }
    }
    let unchecked = Shapes {
        computed: computed.clone(),
        cache_read: true,
        ..Shapes::default()
    };
    // Only the schemas whose expected shape is known are fingerprinted.
    let names: Vec<String> = targets
        .iter()
        .filter(|(_, t)| matches!(expected.get(&t.key), Some(Expected::Known(_))))
        .map(|(schema, _)| schema.clone())
        .collect();
    if names.is_empty() {
        return Ok(Shapes {
            targets,
            expected,
            ..unchecked
        });
    }
    // The signature first, then the description: a change between the two makes the recorded
    // signature older than the fingerprint, which only costs a description next time.
    let (signatures, mut fingerprints) = read_signatures(conn, &names).await?;
    let described: BTreeSet<String> = signatures
        .keys()
        .filter(|s| !fingerprints.contains_key(*s))
        .cloned()
        .collect();
    let stale: Vec<String> = described.iter().cloned().collect();
    match describe(conn, &stale, false).await {
        Ok(found) => {
            fingerprints.extend(found.into_iter().map(|(s, shape)| (s, shape.fingerprint)))
        }
        Err(ObserveError::Query(e)) if is_lock_timeout(&e) => {
            tracing::warn!("A checked schema is locked (another session holds an exclusive lock on one of its tables or views): live-schema drift is not checked in this region this time.");
            return Ok(unchecked);
        }
        Err(e) => return Err(e),
    }
    let accepted = read_accepted(conn).await?;
    let differing: Vec<String> = fingerprints
        .iter()
        .filter(|(schema, _)| {
            accepted.get(*schema).map_or(true, |a: &Accepted| {
                a.versions != targets[*schema].key.to_string()
                    || Some(&a.fingerprint) != fingerprints.get(*schema)
            })
        })
        .filter(|(schema, fingerprint)| {
            matches!(expected.get(&targets[*schema].key),
                Some(Expected::Known(shape)) if shape.fingerprint != **fingerprint)
        })
        .map(|(schema, _)| schema.clone())
        .collect();
    let live = if differing.is_empty() {
        BTreeMap::new()
    } else {
        match describe(conn, &differing, true).await {
            Ok(found) => found,
            Err(ObserveError::Query(e)) if is_lock_timeout(&e) => {
                tracing::warn!("A drifted schema is locked: live-schema drift is not checked in this region this time.");
                return Ok(unchecked);
            }
            Err(e) => return Err(e),
        }
    };
    Ok(Shapes {
        targets,
        fingerprints,
        signatures,
        described,
        live,
        expected,
        computed,
        cache_read: true,
        accepted,
    })
}

/// `signature.sql` joined with the fingerprints recorded at the same signatures.
const SIGNATURES_WITH_FINGERPRINTS: &str = concat!(
    "SELECT sig.schema, sig.signature, lf.fingerprint FROM (\n",
    include_str!("signature.sql"),
    ") sig
     LEFT JOIN neo_reconcile.live_fingerprints lf
       ON lf.target_schema = sig.schema AND lf.signature = sig.signature
      AND lf.describe_id = $2
      AND lf.server_version = current_setting('server_version_num')::int"
);

/// The signature of each schema of `names` that exists, and the fingerprint the last apply
/// recorded for it when its signature is still the one recorded (this build's description,
/// this server version), in one read-only query.
async fn read_signatures(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), ObserveError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(SIGNATURES_WITH_FINGERPRINTS)
        .bind(names)
        .bind(describe_id())
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let (mut signatures, mut fingerprints) = (BTreeMap::new(), BTreeMap::new());
    for r in &rows {
        let schema: String = r.try_get("schema")?;
        if let Some(fp) = r.try_get::<Option<String>, _>("fingerprint")? {
            fingerprints.insert(schema.clone(), fp);
        }
        signatures.insert(schema, r.try_get("signature")?);
    }
    Ok((signatures, fingerprints))
}

/// Records the fingerprints an observation computed (`Shapes::described`) with the signature
/// the schema had just before, so that later plans describe only schemas that changed since.
/// Apply calls it under the region lock after its own changes.
pub async fn record_fingerprints(
    conn: &mut PgConnection,
    shapes: &Shapes,
) -> Result<(), sqlx::Error> {
    let mut schemas = Vec::new();
    let mut signatures = Vec::new();
    let mut fingerprints = Vec::new();
    for schema in &shapes.described {
        if let (Some(sig), Some(fp)) = (
            shapes.signatures.get(schema),
            shapes.fingerprints.get(schema),
        ) {
            schemas.push(schema.as_str());
            signatures.push(sig.as_str());
            fingerprints.push(fp.as_str());
        }
    }
    if schemas.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO neo_reconcile.live_fingerprints
             (target_schema, describe_id, server_version, signature, fingerprint)
         SELECT s, $4, current_setting('server_version_num')::int, g, f
         FROM unnest($1::text[], $2::text[], $3::text[]) AS u(s, g, f)
         ON CONFLICT (target_schema) DO UPDATE SET describe_id = excluded.describe_id,
             server_version = excluded.server_version, signature = excluded.signature,
             fingerprint = excluded.fingerprint, described_at = now()",
    )
    .bind(&schemas)
    .bind(&signatures)
    .bind(&fingerprints)
    .bind(describe_id())
    .execute(conn)
    .await?;
    Ok(())
}

/// The bookkeeping version that has `neo_reconcile.accepted_drift` and
/// `neo_reconcile.expected_shapes`.
const DRIFT_SINCE: u32 = 6;

/// The ids of every expected shape cached for this server's major version, and the shapes
/// themselves for `keys` (by id), in a read-only transaction.
async fn read_expected(
    conn: &mut PgConnection,
    keys: &BTreeMap<String, ShapeKey>,
) -> Result<(BTreeSet<String>, BTreeMap<ShapeKey, Expected>), ObserveError> {
    let ids: Vec<&str> = keys.keys().map(String::as_str).collect();
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(
        "SELECT id, fingerprint, failure, CASE WHEN id = ANY($1) THEN entries END AS entries
         FROM neo_reconcile.expected_shapes
         WHERE server_major = current_setting('server_version_num')::int / 10000",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut computed = BTreeSet::new();
    let mut expected = BTreeMap::new();
    for r in &rows {
        let id: String = r.try_get("id")?;
        if let Some(key) = keys.get(&id) {
            let failure: Option<String> = r.try_get("failure")?;
            let entries: Option<String> = r.try_get("entries")?;
            let shape = match (failure, entries) {
                (Some(reason), _) => Expected::Failed { reason },
                (None, Some(json)) => Expected::Known(Shape {
                    fingerprint: r
                        .try_get::<Option<String>, _>("fingerprint")?
                        .unwrap_or_default(),
                    entries: parse_entries(&json).map_err(|message| ObserveError::Corrupt {
                        table: "neo_reconcile.expected_shapes",
                        message,
                    })?,
                }),
                (None, None) => {
                    return Err(ObserveError::Corrupt {
                        table: "neo_reconcile.expected_shapes",
                        message: format!("row {id} has neither a shape nor a failure"),
                    })
                }
            };
            expected.insert(key.clone(), shape);
        }
        computed.insert(id);
    }
    Ok((computed, expected))
}

/// The latest accepted live shape of each schema, in a read-only transaction.
async fn read_accepted(
    conn: &mut PgConnection,
) -> Result<BTreeMap<String, Accepted>, ObserveError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(
        "SELECT DISTINCT ON (target_schema) target_schema, versions, fingerprint
         FROM neo_reconcile.accepted_drift ORDER BY target_schema, id DESC",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("target_schema")?,
                Accepted {
                    versions: r.try_get("versions")?,
                    fingerprint: r.try_get("fingerprint")?,
                },
            ))
        })
        .collect()
}

/// How long the description of live schemas waits for a lock: deparsing a view locks the
/// tables it reads, and an exclusive lock held elsewhere must not stall the plan.
const DESCRIBE_LOCK_TIMEOUT: &str = "500ms";

/// Whether an error is a lock timeout (SQLSTATE 55P03).
fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03")
}

/// How many schemas one description transaction covers: deparsing a view keeps a lock on it
/// and on the tables it reads until the transaction ends, and the server's lock table holds
/// `max_locks_per_transaction` (64) times `max_connections` (100) locks by default, which
/// 4,500 tenant schemas of three locks each overflow ("out of shared memory").
const DESCRIBE_CHUNK: usize = 500;

/// Runs the description query in read-only transactions of [`DESCRIBE_CHUNK`] schemas.
async fn describe(
    conn: &mut PgConnection,
    schemas: &[String],
    with_lines: bool,
) -> Result<BTreeMap<String, Shape>, ObserveError> {
    let mut shapes = BTreeMap::new();
    for chunk in schemas.chunks(DESCRIBE_CHUNK) {
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(DESCRIBE_LOCK_TIMEOUT)
            .execute(&mut *tx)
            .await?;
        shapes.extend(describe_in(&mut tx, chunk, with_lines).await?);
        tx.commit().await?;
    }
    Ok(shapes)
}

/// Runs the description query in the current transaction (`search_path` empty until its
/// end).
pub(crate) async fn describe_in(
    conn: &mut PgConnection,
    schemas: &[String],
    with_lines: bool,
) -> Result<BTreeMap<String, Shape>, ObserveError> {
    // Definitions are deparsed against `search_path`: with only `pg_catalog` on it, every
    // other schema is named, so a live schema and a scratch one read alike. JIT compilation
    // is turned off: the planner's estimate grows with the number of schemas, and past a few
    // thousand it would compile the plan with inlining and optimization, which costs seconds
    // while the query spends its time in the deparsing functions, which JIT does not speed up.
    sqlx::query("SELECT set_config('search_path', '', true), set_config('jit', 'off', true)")
        .execute(&mut *conn)
        .await?;
    let rows = sqlx::query(DESCRIBE)
        .bind(schemas)
        .bind(with_lines)
        .fetch_all(conn)
        .await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let schema: String = r.try_get("schema")?;
        let entries: Option<String> = r.try_get("entries")?;
        let entries = match entries {
            None => Vec::new(),
            Some(json) => parse_entries(&json).map_err(|message| ObserveError::Corrupt {
                table: "the schema description",
                message,
            })?,
        };
        out.insert(
            schema,
            Shape {
                fingerprint: r.try_get("fingerprint")?,
                entries,
            },
        );
    }
    Ok(out)
}

/// The JSON lines of the description: `[object, line, create, drop]` each.
fn parse_entries(json: &str) -> Result<Vec<ShapeEntry>, String> {
    type Raw = (String, String, Option<String>, Option<String>);
    let raw: Vec<Raw> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(raw
        .into_iter()
        .map(|(object, line, create, drop)| ShapeEntry {
            object,
            line,
            create,
            drop,
        })
        .collect())
}
