//! The last step of an apply: the registry (`admin.database_connections`) written as the
//! regions were observed afterwards (what really happened, not what was planned), in one
//! transaction in the control-plane database.

use super::context::RunContext;
use super::execute;
use crate::db::Connectors;
use crate::desired::Desired;
use crate::engine;
use crate::plan::{self, Action, PlanOptions};
use crate::sql;

/// Re-observes every planned region and writes the registry as observed. Returns the number
/// of rows written.
pub(super) async fn update_registry(
    desired: &Desired,
    options: &PlanOptions,
    connectors: &Connectors,
    ctx: &RunContext,
) -> Result<usize, String> {
    let regions = engine::regions_to_observe(desired, options);
    let observed = crate::observed::postgres::observe(desired, &regions, connectors).await;
    let Some(Action::UpdateRegistry {
        database,
        upsert,
        delete,
        ..
    }) = plan::observed_registry(desired, &observed, options)
    else {
        return Ok(0);
    };
    let connector = connectors
        .get(&desired.control_plane.region)
        .ok_or_else(|| "the control-plane region has no connector".to_string())?;
    let mut conn = connector
        .connect(&database)
        .await
        .map_err(|e| e.to_string())?;
    let result = execute::run_setup(&mut conn, &sql::registry_update(&upsert, &delete), ctx).await;
    sqlx::Connection::close(conn).await.ok();
    result.map_err(|e| e.to_string())?;
    tracing::info!(
        upserted = upsert.len(),
        deleted = delete.len(),
        "Registry brought in line."
    );
    Ok(upsert.len() + delete.len())
}
