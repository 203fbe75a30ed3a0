//! The builder: one plan action in, the steps apply runs out. `plan --show-sql` renders the
//! same [`Program`], so the two cannot drift apart.

use super::statement::{ident, RunValue, Statement, Step, Value};
use crate::desired::{
    identifiers, ApplySettings, Desired, Migration, Region, SchemaSet, Scope, TransactionShape,
};
use crate::observed::RegistryRow;
use crate::plan::{Action, MigrationStep};

/// What apply runs for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Steps before any migration (the whole program for every action but `migrate`).
    pub setup: Vec<Step>,
    /// The migrations of a `migrate` action, in order.
    pub migrations: Vec<MigrationRun>,
}

/// One migration: its steps, and what runs when one of them fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRun {
    pub version: u32,
    pub file: String,
    /// `-- neo:no-transaction`: the steps run outside a transaction, one statement at a time.
    pub no_transaction: bool,
    /// Where its history rows go and the file's checksum: a failed attempt of a
    /// no-transaction migration is continued only for the same file in the same schema.
    pub schema: String,
    pub set: String,
    pub checksum: String,
    /// It adds an enum value, so its transaction commits right after it (a later migration
    /// may use the value only then): no piece is joined after it.
    pub ends_transaction: bool,
    /// An undo file (a rollback): it runs in a transaction of its own, never joined with the
    /// pieces around it, so that a failed undo leaves the target at the last good version.
    pub undo: bool,
    pub steps: Vec<Step>,
    /// Runs after a failed step (after `ROLLBACK` when the migration ran in a transaction):
    /// resets the session where needed and records the failed attempt.
    pub on_failure: Vec<Step>,
}

impl Program {
    /// Every step in the order apply runs them when nothing fails.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.setup
            .iter()
            .chain(self.migrations.iter().flat_map(|m| &m.steps))
    }

    /// The program as `plan --show-sql` prints it.
    pub fn render(&self) -> Vec<String> {
        let mut out = super::statement::render_steps(&self.setup);
        for m in &self.migrations {
            out.extend(super::statement::render_steps(&m.steps));
            out.push(if m.no_transaction {
                "-- on failure: the session is reset and the attempt recorded (success = false); statements that completed stay".into()
            } else if matches!(m.steps.first(), Some(Step::Begin))
                && matches!(m.steps.last(), Some(Step::Commit))
            {
                "-- on failure: ROLLBACK, then the attempt is recorded (success = false)".into()
            } else {
                "-- on failure: ROLLBACK of the target's whole transaction (every change since its BEGIN), then the attempt is recorded (success = false)".into()
            });
        }
        out
    }
}

/// Why an action has no program: the desired state does not hold what the plan names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProgramError(pub String);

pub use crate::desired::identifiers::region_set_owner;

/// The program of one action in `region`. Bootstrap and registry actions run on connections
/// of their own (see [`bootstrap_schema`], [`registry_update`]); their program is what
/// `--show-sql` shows for them.
pub fn program(
    action: &Action,
    desired: &Desired,
    region: &Region,
) -> Result<Program, ProgramError> {
    let setup = match action {
        Action::Bootstrap {
            database,
            schema,
            create_database: create,
            from,
            to,
        } => {
            let mut steps = Vec::new();
            if *create {
                steps.push(Step::Exec(create_database(database)));
            }
            steps.push(Step::Exec(bootstrap_schema(schema)));
            steps.push(Step::Note(format!(
                "neo-reconcile's embedded migrations {} to {to} of schema {schema}, in database {database}",
                from + 1
            )));
            steps
        }
        Action::CreateExtension {
            name,
            schema,
            create_schema,
        } => {
            let s = ident(schema);
            let mut ddl = String::new();
            if *create_schema {
                ddl = format!(
                    "CREATE SCHEMA IF NOT EXISTS {s};\nGRANT USAGE ON SCHEMA {s} TO PUBLIC;\n"
                );
            }
            ddl.push_str(&format!(
                "CREATE EXTENSION IF NOT EXISTS {} SCHEMA {s}",
                ident(name)
            ));
            vec![Step::Begin, Step::Exec(Statement::fixed(ddl)), Step::Commit]
        }
        Action::Migrate { .. } => return migrate_program(action, desired, region),
        Action::Rollback { .. } => return super::undo::rollback_program(action, desired, region),
        Action::RepairDrift { .. } => super::drift::repair_program(action, desired),
        Action::UpdateRegistry { upsert, delete, .. } => registry_update(upsert, delete),
        // Run by `apply::shape`: the migrations' SQL, the description, then the cache row.
        Action::ComputeShape { versions, .. } => vec![Step::Note(format!(
            "in a transaction that is rolled back (statement_timeout 60s, lock_timeout 5s): create a scratch schema and its roles as for a new target, run the migrations of {versions} in it as its owner, describe it; then INSERT INTO neo_reconcile.expected_shapes the description (or the migration's error)"
        ))],
        // Done by apply's own bookkeeping under the region lock, which every apply runs.
        Action::CloseDeadRun { .. } => vec![Step::Note(
            "the region lock is taken and its lock_holder row replaced; the run's start marks the runs still marked running as interrupted".into(),
        )],
        _ => lifecycle(action),
    };
    Ok(Program {
        setup,
        migrations: Vec::new(),
    })
}

/// The programs of a region's actions, as apply runs them: with `[apply] transaction =
/// "per_tenant"`, each target's (a tenant's actions, or one region-scope action) are joined
/// into as few transactions as its no-transaction migrations allow (see
/// [`join_transactions`]).
pub fn programs(
    actions: &[Action],
    desired: &Desired,
    region: &Region,
) -> Vec<Result<Program, ProgramError>> {
    let mut programs: Vec<_> = actions
        .iter()
        .map(|a| program(a, desired, region))
        .collect();
    if region.apply.transaction == TransactionShape::PerMigration {
        for p in programs.iter_mut().flatten() {
            join_setup(p);
        }
        return programs;
    }
    // The targets in plan order: a tenant's actions together, any other action alone.
    let mut targets: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        match action.tenant() {
            Some(t) => match targets.iter_mut().find(|(k, _)| *k == Some(t)) {
                Some((_, list)) => list.push(i),
                None => targets.push((Some(t), vec![i])),
            },
            None => targets.push((None, vec![i])),
        }
    }
    for (_, indices) in targets {
        let mut joined: Vec<&mut Program> = Vec::new();
        let mut rest = programs.iter_mut().enumerate();
        for &i in &indices {
            let Some((_, Ok(p))) = rest.by_ref().find(|(j, _)| *j == i) else {
                continue;
            };
            joined.push(p);
        }
        join_transactions(&mut joined);
    }
    programs
}

/// Joins a target's transactions into one: between two transactional pieces that follow each
/// other (a lifecycle action's, a migration's), the first one's `COMMIT` and the second one's
/// `BEGIN` are left out. A `-- neo:no-transaction` migration, which runs outside any
/// transaction, ends the group before it and starts a new one after it; a migration that adds
/// an enum value ends the group after it (PostgreSQL refuses a use of the new value in the
/// transaction that added it: "unsafe use of new value"). Pure: the same join
/// serves `plan --show-sql` and apply.
pub fn join_transactions(programs: &mut [&mut Program]) {
    // Each piece, and whether it must commit before the next piece starts.
    let mut pieces: Vec<&mut Vec<Step>> = Vec::new();
    let mut commits: Vec<bool> = Vec::new();
    // Pieces that keep a transaction of their own (undo files).
    let mut alone: Vec<bool> = Vec::new();
    for p in programs.iter_mut() {
        if !p.setup.is_empty() {
            pieces.push(&mut p.setup);
            commits.push(false);
            alone.push(false);
        }
        for m in &mut p.migrations {
            commits.push(m.ends_transaction);
            alone.push(m.undo);
            pieces.push(&mut m.steps);
        }
    }
    let wrapped: Vec<bool> = pieces
        .iter()
        .map(|steps| {
            matches!(steps.first(), Some(Step::Begin)) && matches!(steps.last(), Some(Step::Commit))
        })
        .collect();
    for i in 1..pieces.len() {
        if wrapped[i - 1] && wrapped[i] && !commits[i - 1] && !alone[i - 1] && !alone[i] {
            pieces[i - 1].pop();
            pieces[i].remove(0);
            chain_into_previous(&mut pieces[..=i]);
        }
    }
}

/// Once two pieces share a transaction: when the first ends with a bookkeeping row and the
/// second starts with its session settings, both go in one statement (one round trip fewer
/// per migration), the settings still before the second piece's file.
fn chain_into_previous(pieces: &mut [&mut Vec<Step>]) {
    let [.., before, next] = pieces else {
        return;
    };
    let (Some(Step::Exec(first)), Some(Step::Exec(then))) = (before.last(), next.first()) else {
        return;
    };
    if let Some(chained) = first.chain(then) {
        *before.last_mut().expect("checked") = Step::Exec(chained);
        next.remove(0);
    }
}

/// With `[apply] transaction = "per_migration"`: an action's setup (a new region-scope set's
/// schema and owner role) commits with its first migration, never alone, so that a process
/// killed between the two cannot leave a schema without history (which would block the
/// region until adopted).
pub fn join_setup(program: &mut Program) {
    let Some(first) = program.migrations.first_mut() else {
        return;
    };
    let wrapped = |steps: &[Step]| {
        matches!(steps.first(), Some(Step::Begin)) && matches!(steps.last(), Some(Step::Commit))
    };
    if !program.setup.is_empty()
        && wrapped(&program.setup)
        && wrapped(&first.steps)
        && !first.no_transaction
    {
        program.setup.pop();
        first.steps.remove(0);
    }
}

/// The runs of `versions` of a set in one target: each file (the undo file when `undo`)
/// looked up by version and checked against the checksum the plan saw.
pub(super) fn runs(
    set: &SchemaSet,
    owner: &str,
    search_path: &SearchPath,
    schema_set: &str,
    versions: &[MigrationStep],
    settings: &ApplySettings,
    undo: bool,
) -> Result<Vec<MigrationRun>, ProgramError> {
    versions
        .iter()
        .map(|step| {
            let file = if undo {
                set.undo(step.version)
            } else {
                set.migration(step.version)
            };
            let m = file
                .filter(|m| m.checksum == step.checksum)
                .ok_or_else(|| {
                    ProgramError(format!("{} changed since the plan was made", step.file))
                })?;
            Ok(migration_run(
                search_path,
                owner,
                schema_set,
                m,
                step,
                settings,
                undo,
            ))
        })
        .collect()
}

/// What the migrations (or undo files) of a set run with in a schema: the set, the owner role
/// they run as, and the search path.
pub(super) fn target<'a>(
    desired: &'a Desired,
    tenant: Option<&str>,
    schema_set: &str,
    schema: &'a str,
) -> Result<(&'a SchemaSet, String, SearchPath<'a>), ProgramError> {
    let set = desired.schema_set(schema_set).ok_or_else(|| {
        ProgramError(format!(
            "schema set {schema_set} is not in the desired state"
        ))
    })?;
    let owner = match tenant {
        Some(t) => desired
            .tenants
            .get(t)
            .map_or_else(|| identifiers::tenant_owner_role(t), |t| t.owner_role()),
        None => region_set_owner(schema_set),
    };
    let search_path = SearchPath {
        schema,
        extensions: (!desired.extensions.names.is_empty())
            .then_some(desired.extensions.schema.as_str()),
    };
    Ok((set, owner, search_path))
}

/// A `migrate` action: the region-scope set's schema when it is new, then each migration.
fn migrate_program(
    action: &Action,
    desired: &Desired,
    region: &Region,
) -> Result<Program, ProgramError> {
    let Action::Migrate {
        tenant,
        schema_set,
        schema,
        from,
        versions,
        ..
    } = action
    else {
        unreachable!("called for migrate actions only");
    };
    let (set, owner, search_path) = target(desired, tenant.as_deref(), schema_set, schema)?;
    let mut setup = Vec::new();
    if tenant.is_none() && *from == 0 && set.scope == Scope::Region {
        setup = create_region_set_schema(schema);
    }
    let migrations = runs(
        set,
        &owner,
        &search_path,
        schema_set,
        versions,
        &region.apply,
        false,
    )?;
    Ok(Program { setup, migrations })
}

/// A tenant's lifecycle action: its DDL and its bookkeeping row, in one transaction.
fn lifecycle(action: &Action) -> Vec<Step> {
    match action {
        Action::CreateTenant {
            tenant,
            schema,
            owner_role,
            rw_role,
        } => in_transaction(
            create_tenant(schema, owner_role, rw_role),
            Statement::with(
                "INSERT INTO neo_reconcile.tenants (slug, status, schema_name, owner_role, rw_role, git_commit) \
                 VALUES ($1, 'active', $2, $3, $4, $5) \
                 ON CONFLICT (slug) DO UPDATE SET status = 'active', schema_name = EXCLUDED.schema_name, \
                 owner_role = EXCLUDED.owner_role, rw_role = EXCLUDED.rw_role, updated_at = now(), git_commit = EXCLUDED.git_commit",
                vec![
                    Value::Text(tenant.clone()),
                    Value::Text(schema.clone()),
                    Value::Text(owner_role.clone()),
                    Value::Text(rw_role.clone()),
                    Value::Run(RunValue::Commit),
                ],
            ),
        ),
        Action::SuspendTenant {
            tenant,
            schema,
            rw_role,
        } => in_transaction(
            format!("REVOKE USAGE ON SCHEMA {} FROM {}", ident(schema), ident(rw_role)),
            set_status(tenant, "suspended", None),
        ),
        Action::ResumeTenant {
            tenant,
            schema,
            rw_role,
        } => in_transaction(
            format!("GRANT USAGE ON SCHEMA {} TO {}", ident(schema), ident(rw_role)),
            set_status(tenant, "active", None),
        ),
        Action::ArchiveTenant {
            tenant,
            schema,
            archived_schema,
            rw_role,
        } => in_transaction(
            format!(
                "ALTER SCHEMA {} RENAME TO {};\nREVOKE USAGE ON SCHEMA {} FROM {}",
                ident(schema),
                ident(archived_schema),
                ident(archived_schema),
                ident(rw_role)
            ),
            set_status(tenant, "archived", Some(archived_schema)),
        ),
        Action::RestoreTenant {
            tenant,
            archived_schema,
            schema,
            rw_role,
        } => in_transaction(
            format!(
                "ALTER SCHEMA {} RENAME TO {};\nGRANT USAGE ON SCHEMA {} TO {}",
                ident(archived_schema),
                ident(schema),
                ident(schema),
                ident(rw_role)
            ),
            set_status(tenant, "active", Some(schema)),
        ),
        Action::DestroyTenant {
            tenant,
            schema,
            owner_role,
            rw_role,
        } => {
            // Dropping the schema also removes the rw role's grants and default privileges
            // there; `DROP OWNED` catches anything the owner role still owns elsewhere in
            // this database.
            let (o, r) = (ident(owner_role), ident(rw_role));
            in_transaction(
                format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE;\nDROP OWNED BY {o};\nDROP ROLE IF EXISTS {r};\nDROP ROLE IF EXISTS {o}",
                    ident(schema)
                ),
                set_status(tenant, "deleted", None),
            )
        }
        Action::Bootstrap { .. }
        | Action::CreateExtension { .. }
        | Action::Migrate { .. }
        | Action::CloseDeadRun { .. }
        | Action::Rollback { .. }
        | Action::RepairDrift { .. }
        | Action::ComputeShape { .. }
        | Action::UpdateRegistry { .. } => unreachable!("not a lifecycle action"),
    }
}

/// Fixed DDL and the bookkeeping row that goes with it, in one transaction.
fn in_transaction(ddl: String, bookkeeping: Statement) -> Vec<Step> {
    vec![
        Step::Begin,
        Step::Exec(Statement::fixed(ddl)),
        Step::Exec(bookkeeping),
        Step::Commit,
    ]
}

fn set_status(tenant: &str, status: &str, schema: Option<&str>) -> Statement {
    Statement::with(
        "UPDATE neo_reconcile.tenants SET status = $2, schema_name = coalesce($3, schema_name), \
         archived_at = CASE WHEN $2 = 'archived' THEN now() END, updated_at = now(), git_commit = $4 \
         WHERE slug = $1",
        vec![
            Value::Text(tenant.into()),
            Value::Text(status.into()),
            Value::OptText(schema.map(str::to_string)),
            Value::Run(RunValue::Commit),
        ],
    )
}

/// `CREATE DATABASE`, run on a connection to the region's own database.
pub fn create_database(database: &str) -> Statement {
    Statement::fixed(format!("CREATE DATABASE {}", ident(database)))
}

/// Creates one of neo-reconcile's own schemas and puts it on the session's search path,
/// where sqlx's migrator keeps its `_sqlx_migrations` table.
pub fn bootstrap_schema(schema: &str) -> Statement {
    Statement::fixed(format!(
        "CREATE SCHEMA IF NOT EXISTS {0};\nSET search_path TO {0}",
        ident(schema)
    ))
}

/// Creates a tenant's roles and schema, and the grants that let its rw role use every object
/// the owner role will create (fixed text: identifiers only).
pub fn create_tenant(schema: &str, owner: &str, rw: &str) -> String {
    let (s, o, r) = (ident(schema), ident(owner), ident(rw));
    [
        format!("CREATE ROLE {o} NOLOGIN"),
        format!("CREATE ROLE {r} NOLOGIN"),
        // The login role applies migrations under SET ROLE, so it must be a member.
        format!("GRANT {o} TO CURRENT_USER"),
        format!("CREATE SCHEMA {s} AUTHORIZATION {o}"),
        format!("REVOKE ALL ON SCHEMA {s} FROM PUBLIC"),
        format!("GRANT USAGE ON SCHEMA {s} TO {r}"),
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}"),
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {r}"),
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT EXECUTE ON FUNCTIONS TO {r}"),
    ]
    .join(";\n")
}

/// Creates a region-scope set's owner role and schema, if they do not exist yet. The role's
/// name reaches the `DO` block as a bound, transaction-local setting, quoted there by
/// `format('%I')`.
fn create_region_set_schema(schema: &str) -> Vec<Step> {
    let owner = region_set_owner(schema);
    vec![
        Step::Begin,
        Step::Exec(Statement::with(
            "SELECT set_config('neo_reconcile.role', $1, true)",
            vec![Value::Text(owner.clone())],
        )),
        Step::Exec(Statement::fixed(format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_setting('neo_reconcile.role')) \
             THEN EXECUTE format('CREATE ROLE %I NOLOGIN', current_setting('neo_reconcile.role')); END IF; END$$;\n\
             GRANT {o} TO CURRENT_USER;\n\
             CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {o}",
            o = ident(&owner),
            s = ident(schema)
        ))),
        Step::Commit,
    ]
}

/// A migration's search path: its target schema, then the extension schema when
/// `[extensions]` lists any.
pub(super) struct SearchPath<'a> {
    pub(super) schema: &'a str,
    pub(super) extensions: Option<&'a str>,
}

impl SearchPath<'_> {
    /// The value of `search_path`: quoted identifiers, comma-separated.
    fn render(&self) -> String {
        match self.extensions {
            Some(e) if e != self.schema => format!("{}, {}", ident(self.schema), ident(e)),
            _ => ident(self.schema),
        }
    }
}

/// The settings a migration runs under: the target schema first on the search path, the
/// region's timeouts, and the owner role. `local`: only for the current transaction, whose id
/// is then noted too, for [`TRANSACTION_GUARD`].
fn session_settings(
    path: &SearchPath,
    owner: &str,
    settings: &ApplySettings,
    local: bool,
) -> Statement {
    let millis = |d: std::time::Duration| Value::Text(format!("{}ms", d.as_millis()));
    // The transaction's id, for the guard, and when this migration started, for its history
    // row (several migrations may share a transaction, so `now()` would not do).
    let txid = if local {
        ", set_config('neo_reconcile.txid', txid_current()::text, true), \
         set_config('neo_reconcile.started', clock_timestamp()::text, true)"
    } else {
        ""
    };
    Statement::with(
        format!(
            "SELECT set_config('search_path', $1, {local}), set_config('lock_timeout', $2, {local}), \
             set_config('statement_timeout', $3, {local}), set_config('role', $4, {local}){txid}"
        ),
        vec![
            Value::Text(path.render()),
            millis(settings.lock_timeout),
            millis(settings.statement_timeout),
            Value::Text(owner.to_string()),
        ],
    )
}

/// Run after a transactional migration's text, before its history row: fails when the
/// migration's own transaction control (a `COMMIT`, `ROLLBACK` or `BEGIN` that validation
/// did not catch) ended the transaction neo-reconcile opened, so that the rest is rolled back
/// and the migration is recorded as failed instead of applied. A second wall behind
/// `validate`.
const TRANSACTION_GUARD: &str = "RESET ROLE;\n\
DO $$BEGIN IF current_setting('neo_reconcile.txid', true) IS DISTINCT FROM txid_current()::text THEN \
RAISE EXCEPTION 'the migration ended the transaction neo-reconcile opened for it (transaction control in the file): what it did before that is committed, the rest is rolled back'; \
END IF; END$$";

/// Undoes the session settings of a `-- neo:no-transaction` migration.
fn reset_session() -> Statement {
    Statement::fixed(
        "RESET ROLE;\nRESET search_path;\nRESET lock_timeout;\nRESET statement_timeout",
    )
}

/// How a migration attempt ended, for its history row.
#[derive(Clone, Copy)]
enum Attempt {
    /// Applied inside its transaction: timed from the transaction's start (`now()`).
    InTransaction,
    /// Applied outside a transaction; the time is bound when apply knows it.
    Alone,
    /// Failed; the error text is bound when apply knows it.
    Failed,
}

/// The history row of a migration attempt. `undo`: of an undo file (`m` is the undo file), a
/// row with `direction = 'undo'` that, when it succeeded, also marks the row of the
/// application it reverses (`reverted_by`), in the same statement.
fn history_insert(
    schema: &str,
    set: &str,
    m: &Migration,
    attempt: Attempt,
    undo: bool,
) -> Statement {
    let (elapsed, success, error) = match attempt {
        Attempt::InTransaction => (
            "(extract(epoch FROM clock_timestamp() - current_setting('neo_reconcile.started')::timestamptz) * 1000)::bigint",
            "true",
            "NULL",
        ),
        Attempt::Alone => ("$9", "true", "NULL"),
        Attempt::Failed => ("0", "false", "$9"),
    };
    let completed = if matches!(attempt, Attempt::Failed) {
        "$10"
    } else {
        "NULL"
    };
    let mut params = vec![
        Value::Text(schema.into()),
        Value::Text(set.into()),
        Value::Int(m.version.into()),
        Value::Text(m.description.clone()),
        Value::Text(m.checksum.clone()),
        Value::Run(RunValue::Host),
        Value::Run(RunValue::Commit),
        Value::Run(RunValue::RunId),
    ];
    match attempt {
        Attempt::InTransaction => {}
        Attempt::Alone => params.push(Value::Run(RunValue::ElapsedMs)),
        Attempt::Failed => params.extend([
            Value::Run(RunValue::Error),
            Value::Run(RunValue::StatementsCompleted),
        ]),
    }
    let insert = format!(
        "INSERT INTO neo_reconcile.schema_history \
         (target_schema, schema_set, version, description, checksum, applied_by, git_commit, execution_ms, success, run_id, error, statements_completed, direction) \
         VALUES ($1, $2, $3::int, $4, $5, session_user || '@' || $6, $7, {elapsed}, {success}, $8, {error}, {completed}::int, '{}')",
        if undo { "undo" } else { "apply" }
    );
    if !undo {
        return Statement::with(insert, params);
    }
    Statement::with(
        format!(
            "WITH undo AS ({insert} RETURNING id, success) \
             UPDATE neo_reconcile.schema_history h SET reverted_by = undo.id FROM undo \
             WHERE undo.success AND h.target_schema = $1 AND h.schema_set = $2 AND h.version = $3::int \
             AND h.success AND h.direction = 'apply' AND h.reverted_by IS NULL"
        ),
        params,
    )
}

/// One migration's steps: in a transaction with its history row, or, for a
/// `-- neo:no-transaction` migration, its statements one by one and then its history row.
/// `undo`: `m` is an undo file, run in a transaction of its own and recorded as an undo.
pub(super) fn migration_run(
    path: &SearchPath,
    owner: &str,
    set: &str,
    m: &Migration,
    step: &MigrationStep,
    settings: &ApplySettings,
    undo: bool,
) -> MigrationRun {
    let schema = path.schema;
    let failed = Step::Exec(history_insert(schema, set, m, Attempt::Failed, undo));
    let (steps, on_failure) = if step.no_transaction {
        let statements = m.statements.clone();
        let n = statements.len();
        let mut steps = vec![Step::Exec(session_settings(path, owner, settings, false))];
        steps.extend(
            statements
                .into_iter()
                .enumerate()
                .map(|(i, sql)| Step::Script {
                    file: format!("{} (statement {} of {n}, no transaction)", m.file, i + 1),
                    sql,
                }),
        );
        steps.push(Step::Exec(reset_session()));
        steps.push(Step::Exec(history_insert(
            schema,
            set,
            m,
            Attempt::Alone,
            undo,
        )));
        (steps, vec![Step::Exec(reset_session()), failed])
    } else {
        let steps = vec![
            Step::Begin,
            Step::Exec(session_settings(path, owner, settings, true)),
            // The guard goes with the file, in the same simple query: one round trip.
            Step::Script {
                file: m.file.clone(),
                sql: format!("{}\n;\n{TRANSACTION_GUARD}", m.sql),
            },
            Step::Exec(history_insert(schema, set, m, Attempt::InTransaction, undo)),
            Step::Commit,
        ];
        (steps, vec![failed])
    };
    MigrationRun {
        version: m.version,
        file: m.file.clone(),
        no_transaction: step.no_transaction,
        schema: schema.to_string(),
        set: set.to_string(),
        checksum: m.checksum.clone(),
        ends_transaction: m.adds_enum_value || undo,
        undo,
        steps,
        on_failure,
    }
}

/// The registry change in one transaction: every upserted row in one statement (arrays bound
/// as parameters and unnested by the server), every deleted slug in another.
pub fn registry_update(upsert: &[RegistryRow], delete: &[String]) -> Vec<Step> {
    // One registry writer at a time: a transaction-level lock, released at commit.
    let mut steps = vec![
        Step::Begin,
        Step::Exec(Statement::with(
            "SELECT pg_advisory_xact_lock($1)",
            vec![Value::Int(super::statement::REGISTRY_LOCK_KEY)],
        )),
    ];
    if !upsert.is_empty() {
        let col =
            |f: &dyn Fn(&RegistryRow) -> String| Value::TextArray(upsert.iter().map(f).collect());
        steps.push(Step::Exec(Statement::with(
            "INSERT INTO admin.database_connections (tenant_slug, region, host, port, database_name, schema_name, status, schema_versions, updated_at, git_commit) \
             SELECT tenant_slug, region, host, port, database_name, schema_name, status, schema_versions::jsonb, now(), git_commit \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
             AS u(tenant_slug, region, host, port, database_name, schema_name, status, schema_versions, git_commit) \
             ON CONFLICT (tenant_slug) DO UPDATE SET region = EXCLUDED.region, host = EXCLUDED.host, port = EXCLUDED.port, \
             database_name = EXCLUDED.database_name, schema_name = EXCLUDED.schema_name, status = EXCLUDED.status, \
             schema_versions = EXCLUDED.schema_versions, updated_at = now(), git_commit = EXCLUDED.git_commit",
            vec![
                col(&|r| r.tenant.clone()),
                col(&|r| r.region.clone()),
                col(&|r| r.host.clone()),
                Value::IntArray(upsert.iter().map(|r| i32::from(r.port)).collect()),
                col(&|r| r.database.clone()),
                col(&|r| r.schema.clone()),
                col(&|r| r.status.as_str().to_string()),
                col(&|r| {
                    serde_json::to_string(&r.schema_versions).expect("a map of versions serializes")
                }),
                Value::OptTextArray(upsert.iter().map(|r| r.commit.clone()).collect()),
            ],
        )));
    }
    if !delete.is_empty() {
        steps.push(Step::Exec(Statement::with(
            "DELETE FROM admin.database_connections WHERE tenant_slug = ANY($1::text[])",
            vec![Value::TextArray(delete.to_vec())],
        )));
    }
    steps.push(Step::Commit);
    steps
}
