//! `adopt --accept-drift`: records a tenant's live shape as accepted at its current versions
//! (`neo_reconcile.accepted_drift`, with who accepted it and why), so that a deliberate
//! out-of-band change stops blocking the tenant until its next migration or a further change.

use crate::apply::RunContext;
use crate::db::{ConnectError, Connector};
use crate::desired::{Desired, Tenant};
use crate::observed::postgres::{observe_region, ObserveError};
use crate::observed::shape::Expected;

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("recording the acceptance failed: {0}")]
    Record(#[from] sqlx::Error),
    #[error("{0}")]
    Refused(String),
}

/// What was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The live shape of `schema` at `versions` is accepted.
    Recorded { schema: String, versions: String },
    /// The live shape already is the expected one (or accepted): nothing recorded.
    NoDrift { schema: String },
}

/// Accepts a tenant's live schema as it is now.
pub async fn accept_drift(
    desired: &Desired,
    tenant: &Tenant,
    connector: &Connector,
    ctx: &RunContext,
    reason: &str,
) -> Result<Accepted, AcceptError> {
    let region = &desired.regions[&tenant.region];
    let state = observe_region(desired, region, connector).await?;
    let version = state.bookkeeping.as_ref().map_or(0, |b| b.version);
    if version < 5 {
        return Err(AcceptError::Refused(format!(
            "the bookkeeping of region {} is at version {version}, without accepted_drift: run `neo-reconcile apply` first",
            region.name
        )));
    }
    let schema = tenant.schema();
    let shapes = &state.shapes;
    let (Some(target), Some(fingerprint)) = (
        shapes.targets.get(&schema),
        shapes.fingerprints.get(&schema),
    ) else {
        return Err(AcceptError::Refused(format!(
            "schema {schema} of tenant {} is not checked for drift (the tenant is not active, has no history, or its sets say drift = \"off\")",
            tenant.slug
        )));
    };
    let same = matches!(shapes.expected.get(&target.key), Some(Expected::Known(e)) if e.fingerprint == *fingerprint);
    if same || shapes.is_accepted(&schema, &target.key) {
        return Ok(Accepted::NoDrift { schema });
    }
    let versions = target.key.to_string();
    let mut conn = connector.connect_region().await?;
    let result = sqlx::query(
        "INSERT INTO neo_reconcile.accepted_drift
             (target_schema, versions, fingerprint, accepted_by, reason, git_commit)
         VALUES ($1, $2, $3, $4 || '@' || $5 || ' (' || session_user || ')', $6, $7)",
    )
    .bind(&schema)
    .bind(&versions)
    .bind(fingerprint)
    .bind(&ctx.run_by)
    .bind(&ctx.host)
    .bind(reason)
    .bind(&ctx.commit)
    .execute(&mut conn)
    .await;
    sqlx::Connection::close(conn).await.ok();
    result?;
    Ok(Accepted::Recorded { schema, versions })
}
