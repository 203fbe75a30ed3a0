//! The program of a rollback: each undo file of an [`Action::Rollback`], newest version
//! first, run as a migration is (the target schema first on the search path, the owner role,
//! the region's timeouts; `-- neo:no-transaction` files statement by statement), but each in a
//! transaction of its own with its history row (`direction = 'undo'`, which also marks the
//! reversed application as reverted), never joined with other pieces.

use super::actions::{runs, target, Program, ProgramError};
use crate::desired::{Desired, Region};
use crate::plan::Action;

/// The program of a `rollback` action.
pub(super) fn rollback_program(
    action: &Action,
    desired: &Desired,
    region: &Region,
) -> Result<Program, ProgramError> {
    let Action::Rollback {
        tenant,
        schema_set,
        schema,
        versions,
        ..
    } = action
    else {
        unreachable!("called for rollback actions only");
    };
    let (set, owner, search_path) = target(desired, tenant.as_deref(), schema_set, schema)?;
    let migrations = runs(
        set,
        &owner,
        &search_path,
        schema_set,
        versions,
        &region.apply,
        true,
    )?;
    Ok(Program {
        setup: Vec::new(),
        migrations,
    })
}
