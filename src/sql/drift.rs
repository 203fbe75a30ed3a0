//! The program of a `repair_drift` action: the expected definitions of a drifted schema's
//! objects, run in one transaction with the schema first on `search_path` and as its owner
//! role, the placeholders of the description (`"@schema"`, `"@owner"`, `"@rw"`) replaced by
//! the target's real, quoted names.

use super::statement::{ident, Statement, Step, Value};
use crate::desired::{identifiers, Desired};
use crate::plan::Action;

/// The steps of a `repair_drift` action.
pub fn repair_program(action: &Action, desired: &Desired) -> Vec<Step> {
    let Action::RepairDrift {
        tenant,
        schema,
        expected,
        statements,
    } = action
    else {
        unreachable!("called for repair_drift actions only");
    };
    let (owner, rw) = match tenant {
        Some(t) => match desired.tenants.get(t) {
            Some(t) => (t.owner_role(), t.rw_role()),
            None => (
                identifiers::tenant_owner_role(t),
                identifiers::tenant_rw_role(t),
            ),
        },
        None => (
            identifiers::region_set_owner(schema),
            format!("{schema}_rw"),
        ),
    };
    let sql = statements
        .iter()
        .map(|s| {
            let s = s
                .replace("\"@schema\"", &ident(schema))
                .replace("\"@owner\"", &ident(&owner))
                .replace("\"@rw\"", &ident(&rw));
            format!("{};\n", s.trim_end().trim_end_matches(';'))
        })
        .collect();
    let path = if desired.extensions.names.is_empty() || desired.extensions.schema == *schema {
        ident(schema)
    } else {
        format!("{}, {}", ident(schema), ident(&desired.extensions.schema))
    };
    vec![
        Step::Begin,
        Step::Exec(Statement::with(
            "SELECT set_config('role', $2, true), set_config('search_path', $1, true)",
            vec![Value::Text(path), Value::Text(owner)],
        )),
        Step::Script {
            file: format!("the definitions of {expected}, put back into {schema}"),
            sql,
        },
        Step::Exec(Statement::fixed("RESET ROLE")),
        Step::Commit,
    ]
}
