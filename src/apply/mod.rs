//! Apply: converging live PostgreSQL to an approved plan, safely.
//!
//! Regions are applied in parallel, each under its advisory lock ([`lock`]). Under the lock,
//! the region is observed and planned again: if nothing is left to do (another run did it)
//! the region reports "no changes"; if the fresh plan differs from the approved one, the
//! region is refused as stale and nothing changes. Then bookkeeping is bootstrapped, the run
//! is recorded in `neo_reconcile.runs`, region-scope sets are migrated in order, and tenants
//! run in parallel (at most `max_parallel`, canaries first) on workers that each own a connection,
//! renewed every few dozen tenants.
//! Once `max_failures` tenants have failed in a region, no new tenant starts there. Last, the
//! registry is brought in line with what actually happened, in one transaction.

pub mod adopt;
pub mod execute;
pub mod lock;
pub mod retry;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

use crate::bookkeeping;
use crate::desired::{Desired, Region};
use crate::engine;
use crate::observed::postgres::{connect, observe_region};
use crate::observed::{Observed, RegionObservation};
use crate::plan::{self, Action, Plan, PlanOptions, RegionPlan, BOOKKEEPING_SCHEMA};
use crate::sources::credentials::{Credentials, DbCredentials};
use crate::sql;
use lock::RegionLock;

/// Who runs this apply, for the audit trail and the lock holder row.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The command line, without secrets (neo-reconcile takes none on its command line).
    pub command: String,
    pub host: String,
    pub pid: u32,
    /// The operating-system user.
    pub run_by: String,
    /// The desired state's git commit.
    pub commit: Option<String>,
}

impl RunContext {
    pub fn current(command: String, commit: Option<String>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown-host".into());
        let run_by = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .or_else(user_from_passwd)
            .unwrap_or_else(|| "unknown-user".into());
        RunContext {
            command,
            host,
            pid: std::process::id(),
            run_by,
            commit,
        }
    }
}

/// The name of this process's user from /etc/passwd (services often have no `$USER`).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}

/// What happened in each region, and to the registry.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub regions: Vec<RegionReport>,
    pub registry: Option<Result<usize, String>>,
}

impl ApplyReport {
    pub fn succeeded(&self) -> bool {
        self.regions.iter().all(|r| r.succeeded()) && !matches!(self.registry, Some(Err(_)))
    }
}

#[derive(Debug, Clone)]
pub struct RegionReport {
    pub name: String,
    pub outcome: RegionOutcome,
    /// Actions that completed.
    pub applied: usize,
    pub failed: Vec<TenantFailure>,
    /// Tenants not started because of `max_failures` or a failed canary, with the reason.
    pub not_started: Vec<(String, String)>,
    pub run_id: Option<i64>,
}

impl RegionReport {
    fn new(name: &str, outcome: RegionOutcome) -> Self {
        RegionReport {
            name: name.to_string(),
            outcome,
            applied: 0,
            failed: Vec::new(),
            not_started: Vec::new(),
            run_id: None,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(
            self.outcome,
            RegionOutcome::Applied | RegionOutcome::NoChanges
        ) && self.failed.is_empty()
            && self.not_started.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionOutcome {
    /// Every planned action ran (some tenants may have failed: see the report).
    Applied,
    /// Nothing to do, or another run already did it.
    NoChanges,
    /// The live state changed since the plan; nothing was changed here.
    Stale(String),
    /// Another neo-reconcile held the region for longer than `lock_wait`.
    LockTimeout(String),
    /// The region could not be reached, or a step outside any tenant failed.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct TenantFailure {
    pub tenant: String,
    pub error: String,
}

/// A short description of an action, for logs and reports.
pub fn describe(action: &Action) -> String {
    plan::render::action_line(action)
        .trim_start_matches(['+', '~', '-', ' '])
        .to_string()
}

/// The actions of a region plan that apply runs per region (the registry is updated once, at
/// the end, from what actually happened).
fn region_actions(r: &RegionPlan) -> Vec<&Action> {
    r.actions
        .iter()
        .filter(|a| !matches!(a, Action::UpdateRegistry { .. }))
        .collect()
}

/// Why a freshly computed region plan differs from the approved one, if it does.
pub fn stale_reason(approved: &RegionPlan, fresh: &RegionPlan) -> Option<String> {
    let (a, f) = (region_actions(approved), region_actions(fresh));
    if a == f {
        return None;
    }
    for old in &a {
        if f.contains(old) {
            continue;
        }
        if let Action::Migrate {
            tenant,
            schema_set,
            schema,
            from,
            ..
        } = old
        {
            let who = tenant
                .as_ref()
                .map_or_else(|| format!("schema {schema}"), |t| format!("tenant {t}"));
            let now = f.iter().find_map(|n| match n {
                Action::Migrate {
                    tenant: t2,
                    schema_set: s2,
                    from: f2,
                    ..
                } if t2 == tenant && s2 == schema_set => Some(*f2),
                _ => None,
            });
            return Some(match now {
                Some(now) => format!(
                    "{who} is now at version {now} of {schema_set}, the plan expected {from}"
                ),
                None => format!("{who} no longer needs {schema_set} migrated from version {from}"),
            });
        }
        return Some(format!(
            "`{}` is no longer what the live state needs",
            describe(old)
        ));
    }
    let new = f
        .iter()
        .find(|n| !a.contains(n))
        .map(|n| describe(n))
        .unwrap_or_default();
    Some(format!("`{new}` is now needed but is not in the plan"))
}

/// Checks an approved plan against the live state before anything changes: every region of
/// the plan must plan exactly the same actions now.
pub fn check_not_stale(approved: &Plan, fresh: &Plan) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    for a in approved
        .regions
        .iter()
        .filter(|r| !region_actions(r).is_empty())
    {
        match fresh.regions.iter().find(|f| f.name == a.name) {
            Some(f) if !f.reachable => reasons.push(format!(
                "region {} is unreachable: {}",
                a.name,
                f.reason.as_deref().unwrap_or("")
            )),
            Some(f) => {
                if let Some(r) = stale_reason(a, f) {
                    reasons.push(format!("region {}: {r}", a.name));
                }
            }
            None => reasons.push(format!("region {} is not planned any more", a.name)),
        }
    }
    for f in &fresh.regions {
        let in_approved = approved
            .regions
            .iter()
            .any(|a| a.name == f.name && !region_actions(a).is_empty());
        if !in_approved && !region_actions(f).is_empty() {
            reasons.push(format!(
                "region {}: `{}` is now needed but is not in the plan",
                f.name,
                describe(region_actions(f)[0])
            ));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Applies an approved plan. `plan_text` is stored with each region's run for the audit.
pub async fn apply(
    desired: &Desired,
    approved: &Plan,
    options: &PlanOptions,
    credentials: &dyn Credentials,
    ctx: &RunContext,
    plan_text: &str,
) -> ApplyReport {
    let futures = approved
        .regions
        .iter()
        .filter(|r| {
            (r.reachable && !region_actions(r).is_empty())
                || is_control_plane_with_registry(desired, r)
        })
        .map(|r| apply_region(desired, r, options, credentials, ctx, plan_text));
    let mut report = ApplyReport {
        regions: futures_util::future::join_all(futures).await,
        registry: None,
    };

    // The registry follows what actually happened: observe again and apply its update.
    let touched = report.regions.iter().any(|r| r.applied > 0)
        || approved
            .regions
            .iter()
            .flat_map(|r| &r.actions)
            .any(|a| matches!(a, Action::UpdateRegistry { .. }));
    if touched {
        report.registry = Some(update_registry(desired, options, credentials, ctx).await);
    }
    report
}

fn is_control_plane_with_registry(desired: &Desired, r: &RegionPlan) -> bool {
    r.name == desired.control_plane.region
        && r.actions
            .iter()
            .any(|a| matches!(a, Action::UpdateRegistry { .. }))
}

async fn apply_region(
    desired: &Desired,
    approved: &RegionPlan,
    options: &PlanOptions,
    credentials: &dyn Credentials,
    ctx: &RunContext,
    plan_text: &str,
) -> RegionReport {
    let region = &desired.regions[&approved.name];
    let fail = |e: String| RegionReport::new(&region.name, RegionOutcome::Failed(e));
    let creds = match credentials.fetch(region).await {
        Ok(c) => c,
        Err(e) => return fail(format!("credentials: {e}")),
    };
    let mut lock_conn = match connect(&region.postgres, &region.postgres.database, &creds).await {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let lock = match RegionLock::acquire(&mut lock_conn, region.apply.lock_wait).await {
        Ok(l) => l,
        Err(lock::LockError::Timeout {
            waited_secs,
            holder,
        }) => {
            return RegionReport::new(
                &region.name,
                RegionOutcome::LockTimeout(format!(
                    "region {} is locked by {holder}; gave up after {waited_secs}s",
                    region.name
                )),
            )
        }
        Err(e) => return fail(e.to_string()),
    };
    tracing::info!(region = %region.name, "Took the region lock.");
    let report = apply_locked(
        &mut lock_conn,
        &lock,
        desired,
        region,
        approved,
        options,
        credentials,
        &creds,
        ctx,
        plan_text,
    )
    .await;
    lock.release(&mut lock_conn).await;
    lock_conn.close().await.ok();
    report
}

#[allow(clippy::too_many_arguments)]
async fn apply_locked(
    lock_conn: &mut PgConnection,
    lock: &RegionLock,
    desired: &Desired,
    region: &Region,
    approved: &RegionPlan,
    options: &PlanOptions,
    credentials: &dyn Credentials,
    creds: &DbCredentials,
    ctx: &RunContext,
    plan_text: &str,
) -> RegionReport {
    let name = region.name.as_str();
    let mut report = RegionReport::new(name, RegionOutcome::Applied);

    // Plan again under the lock: another run may have changed the region while we waited.
    let state = match observe_region(desired, region, credentials).await {
        Ok(s) => s,
        Err(e) => return RegionReport::new(name, RegionOutcome::Failed(e.to_string())),
    };
    let observed = Observed {
        regions: [(name.to_string(), RegionObservation::Reachable(state))]
            .into_iter()
            .collect(),
    };
    let region_only = PlanOptions {
        regions: [name.to_string()].into_iter().collect(),
        ..options.clone()
    };
    let fresh = plan::plan(desired, &observed, &region_only);
    let Some(fresh) = fresh.regions.into_iter().next() else {
        return RegionReport::new(name, RegionOutcome::NoChanges);
    };
    let actions = region_actions(&fresh);
    if actions.is_empty() {
        if !region_actions(approved).is_empty() {
            tracing::info!(region = %name, "Nothing left to do: the live state already matches (another run applied it).");
        }
        return RegionReport::new(name, RegionOutcome::NoChanges);
    }
    if let Some(reason) = stale_reason(approved, &fresh) {
        tracing::warn!(region = %name, reason = %reason, "Stale plan; changing nothing in this region.");
        return RegionReport::new(name, RegionOutcome::Stale(format!("stale plan: {reason}")));
    }

    // Bootstrap neo-reconcile's own schemas first: the run and the lock holder are recorded there.
    for action in &actions {
        if let Action::Bootstrap {
            database,
            schema,
            create_database,
            from,
            to,
        } = action
        {
            if let Err(e) =
                bootstrap(lock_conn, region, creds, database, schema, *create_database).await
            {
                return RegionReport::new(
                    name,
                    RegionOutcome::Failed(format!("bootstrap of {schema} in {database}: {e}")),
                );
            }
            tracing::info!(region = %name, database = %database, schema = %schema, from, to, "Bootstrapped.");
            report.applied += 1;
        }
    }
    if let Err(e) = lock.record_holder(lock_conn, ctx).await {
        tracing::warn!(region = %name, error = %e, "Could not record the lock holder.");
    }
    let run_id = match start_run(lock_conn, desired, ctx, plan_text).await {
        Ok(id) => id,
        Err(e) => {
            return RegionReport::new(
                name,
                RegionOutcome::Failed(format!("cannot record the run: {e}")),
            )
        }
    };
    report.run_id = Some(run_id);

    let runner = TenantRunner {
        creds,
        desired,
        region,
        ctx,
        run_id,
        failures: AtomicU32::new(0),
        results: Mutex::new(TenantResults::default()),
    };

    // Extensions, then region-scope sets, in order; tenants depend on them.
    for action in actions.iter().filter(|a| {
        matches!(
            a,
            Action::CreateExtension { .. } | Action::Migrate { tenant: None, .. }
        )
    }) {
        let mut conn = None;
        let (applied, error) = runner
            .run_target(&mut conn, &describe(action), &[action])
            .await;
        if let Some(c) = conn {
            c.close().await.ok();
        }
        report.applied += applied;
        if let Some(e) = error {
            finish_run(lock_conn, run_id, "failed", Some(&e)).await;
            report.outcome = RegionOutcome::Failed(e);
            return report;
        }
    }

    // Tenants: grouped, in plan order (canaries first).
    let mut groups: Vec<(String, Vec<&Action>)> = Vec::new();
    for action in &actions {
        if let Some(t) = action.tenant() {
            match groups.iter_mut().find(|(slug, _)| slug == t) {
                Some((_, list)) => list.push(action),
                None => groups.push((t.to_string(), vec![action])),
            }
        }
    }
    let (canaries, fleet): (Vec<_>, Vec<_>) = groups.into_iter().partition(|(slug, _)| {
        desired
            .tenants
            .get(slug)
            .is_some_and(|t| t.is_canary(desired))
    });
    runner.run(&canaries, u32::MAX).await;
    let canary_failed = runner.lock().failed.first().map(|f| f.tenant.clone());
    match canary_failed {
        Some(canary) => {
            let mut r = runner.lock();
            for (slug, _) in &fleet {
                r.not_started
                    .push((slug.clone(), format!("canary {canary} failed")));
            }
        }
        None => runner.run(&fleet, region.apply.max_failures).await,
    }

    let r = runner
        .results
        .into_inner()
        .expect("no panics hold this lock");
    report.applied += r.applied;
    report.failed = r.failed;
    report.not_started = r.not_started;
    let (outcome, error) = if report.failed.is_empty() && report.not_started.is_empty() {
        ("succeeded", None)
    } else {
        let failed: Vec<String> = report
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.tenant, f.error))
            .collect();
        (
            "failed",
            Some(format!(
                "{} tenant(s) failed, {} not started: {}",
                report.failed.len(),
                report.not_started.len(),
                failed.join("; ")
            )),
        )
    };
    finish_run(lock_conn, run_id, outcome, error.as_deref()).await;
    report
}

#[derive(Debug, Default)]
struct TenantResults {
    applied: usize,
    failed: Vec<TenantFailure>,
    not_started: Vec<(String, String)>,
}

/// How many tenants one connection serves before it is closed and replaced by a fresh one.
///
/// A PostgreSQL backend caches the catalog entries of every schema it touches, and at every
/// transaction start it processes the invalidations of every other session's DDL against that
/// cache. After a few hundred tenant schemas each transaction pays for it: in the apply bench
/// (BENCHMARKS.md) psql running 12 migrations x 1,000 tenants, one transaction per migration
/// on four long-lived sessions, took 31.9 s, and 18.5 s when it reconnected every 25 tenants.
/// A new connection costs a few milliseconds (a backend start and SCRAM authentication).
const TENANTS_PER_CONNECTION: usize = 25;

/// Opens one of the connections migrations run on (never a pooled one: each worker owns its
/// connection and knows how many tenants it has served).
async fn worker_connection(region: &Region, creds: &DbCredentials) -> Result<PgConnection, String> {
    let mut conn = connect(&region.postgres, &region.postgres.database, creds)
        .await
        .map_err(|e| e.to_string())?;
    // If neo-reconcile dies mid-migration, the server aborts the running statement within
    // seconds instead of finishing it for nobody (PostgreSQL 14 and later).
    conn.execute(
        "SELECT set_config('client_connection_check_interval', '2s', false)
         WHERE current_setting('server_version_num')::int >= 140000",
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// The tenants of one region, in plan order, taken one at a time by the workers.
type TenantQueue<'q, 'a> = Mutex<std::slice::Iter<'q, (String, Vec<&'a Action>)>>;

/// Runs a region's tenants, counting failures across calls.
struct TenantRunner<'a> {
    creds: &'a DbCredentials,
    desired: &'a Desired,
    region: &'a Region,
    ctx: &'a RunContext,
    run_id: i64,
    failures: AtomicU32,
    results: Mutex<TenantResults>,
}

impl TenantRunner<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, TenantResults> {
        self.results.lock().expect("no panics hold this lock")
    }

    /// Runs tenants at most `max_parallel` at once, on as many workers; once `max_failures`
    /// have failed, the rest are not started (those already running finish).
    async fn run(&self, groups: &[(String, Vec<&Action>)], max_failures: u32) {
        let queue: TenantQueue = Mutex::new(groups.iter());
        let workers = (self.region.apply.max_parallel as usize).min(groups.len());
        futures_util::future::join_all((0..workers).map(|_| self.worker(&queue, max_failures)))
            .await;
    }

    /// One worker: takes the next tenant until none is left, on its own connection, which it
    /// replaces after [`TENANTS_PER_CONNECTION`] tenants and after a failure.
    async fn worker(&self, queue: &TenantQueue<'_, '_>, max_failures: u32) {
        let region = &self.region.name;
        let mut conn: Option<PgConnection> = None;
        let mut served = 0;
        loop {
            let Some((slug, actions)) = queue.lock().expect("no panics hold this lock").next()
            else {
                break;
            };
            if self.failures.load(Ordering::SeqCst) >= max_failures {
                let reason = format!("max_failures = {max_failures} reached in region {region}");
                self.lock().not_started.push((slug.clone(), reason));
                continue;
            }
            if served == TENANTS_PER_CONNECTION {
                if let Some(old) = conn.take() {
                    old.close().await.ok();
                }
            }
            if conn.is_none() {
                served = 0;
            }
            served += 1;
            let (applied, error) = self.run_target(&mut conn, slug, actions).await;
            let mut results = self.lock();
            results.applied += applied;
            match error {
                None => tracing::info!(region = %region, tenant = %slug, "Tenant converged."),
                Some(error) => {
                    self.failures.fetch_add(1, Ordering::SeqCst);
                    tracing::error!(region = %region, tenant = %slug, error = %error, "Tenant failed; its remaining actions are skipped.");
                    results.failed.push(TenantFailure {
                        tenant: slug.clone(),
                        error,
                    });
                }
            }
        }
        if let Some(c) = conn {
            c.close().await.ok();
        }
    }
}

impl TenantRunner<'_> {
    /// Runs one target's actions in order on `conn` (opening one when there is none),
    /// retrying transient failures up to `[apply] retries` times with backoff. A retry starts
    /// on a fresh connection at the action that failed, skipping the migrations history shows
    /// as applied. Returns how many actions completed and the error that stopped the rest.
    async fn run_target(
        &self,
        conn: &mut Option<PgConnection>,
        target: &str,
        actions: &[&Action],
    ) -> (usize, Option<String>) {
        let region = &self.region.name;
        let retries = self.region.apply.retries;
        let (mut done, mut retry) = (0, 0);
        loop {
            let result = match conn {
                Some(c) => self.run_from(c, &actions[done..], retry > 0).await,
                None => match worker_connection(self.region, self.creds).await {
                    Ok(c) => {
                        self.run_from(conn.insert(c), &actions[done..], retry > 0)
                            .await
                    }
                    Err(e) => Err((0, format!("cannot open a connection: {e}"), true)),
                },
            };
            let (completed, error, transient) = match result {
                Ok(completed) => return (done + completed, None),
                Err(failure) => failure,
            };
            done += completed;
            // The connection may be what failed: the next attempt or target gets a fresh one.
            if let Some(old) = conn.take() {
                old.close().await.ok();
            }
            if !transient || retry >= retries {
                let tries = if retry > 0 {
                    format!(" (tried {} times)", retry + 1)
                } else {
                    String::new()
                };
                return (done, Some(format!("{error}{tries}")));
            }
            retry += 1;
            let pause = retry::pause(retry, retry::jitter());
            tracing::warn!(region = %region, target = %target, retry, retries, pause_ms = pause.as_millis() as u64, error = %error, "Transient failure; trying again.");
            tokio::time::sleep(pause).await;
        }
    }

    /// Runs actions in order; on failure, how many completed, the error, and whether it was
    /// transient.
    async fn run_from(
        &self,
        conn: &mut PgConnection,
        actions: &[&Action],
        resume: bool,
    ) -> Result<usize, (usize, String, bool)> {
        for (i, action) in actions.iter().enumerate() {
            execute::run_action(
                conn,
                self.desired,
                self.region,
                self.ctx,
                self.run_id,
                action,
                resume && i == 0,
            )
            .await
            .map_err(|e| (i, e.to_string(), e.transient))?;
        }
        Ok(actions.len())
    }
}

/// Creates or upgrades one of neo-reconcile's own schemas with the embedded migrations.
async fn bootstrap(
    lock_conn: &mut PgConnection,
    region: &Region,
    creds: &DbCredentials,
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
    let mut conn = connect(&region.postgres, database, creds)
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

async fn start_run(
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

async fn finish_run(conn: &mut PgConnection, run_id: i64, outcome: &str, error: Option<&str>) {
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

/// Re-observes every planned region and writes the registry as observed (what really
/// happened, not what was planned), in one transaction in the control-plane database.
/// Returns the number of rows written.
async fn update_registry(
    desired: &Desired,
    options: &PlanOptions,
    credentials: &dyn Credentials,
    ctx: &RunContext,
) -> Result<usize, String> {
    let regions = engine::regions_to_observe(desired, options);
    let observed = crate::observed::postgres::observe(desired, &regions, credentials).await;
    let Some(Action::UpdateRegistry {
        database,
        upsert,
        delete,
        ..
    }) = plan::observed_registry(desired, &observed, options)
    else {
        return Ok(0);
    };
    let region = &desired.regions[&desired.control_plane.region];
    let creds = credentials.fetch(region).await.map_err(|e| e.to_string())?;
    let mut conn = connect(&region.postgres, &database, &creds)
        .await
        .map_err(|e| e.to_string())?;
    let result = execute::run_setup(&mut conn, &sql::registry_update(&upsert, &delete), ctx).await;
    conn.close().await.ok();
    result.map_err(|e| e.to_string())?;
    tracing::info!(
        upserted = upsert.len(),
        deleted = delete.len(),
        "Registry brought in line."
    );
    Ok(upsert.len() + delete.len())
}

/// Per-region counts of actions, for the log lines that precede an apply.
pub fn log_plan(plan: &Plan) {
    for r in &plan.regions {
        for a in &r.actions {
            tracing::info!(region = %r.name, kind = a.kind(), tenant = a.tenant().unwrap_or("-"), "Planned: {}", describe(a));
        }
        for b in &r.blocked {
            tracing::warn!(region = %r.name, tenant = b.tenant.as_deref().unwrap_or("-"), "Blocked: {}", b.message);
        }
        if !r.reachable {
            tracing::warn!(region = %r.name, "Unreachable: {}", r.reason.as_deref().unwrap_or(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::MigrationStep;

    fn migrate(tenant: &str, from: u32) -> Action {
        Action::Migrate {
            tenant: Some(tenant.into()),
            schema_set: "app".into(),
            schema: format!("tenant_{tenant}"),
            from,
            to: 5,
            versions: vec![MigrationStep {
                version: 5,
                description: "x".into(),
                file: "schemas/app/V5__x.sql".into(),
                checksum: "c".into(),
                no_transaction: false,
            }],
        }
    }

    fn region(actions: Vec<Action>) -> RegionPlan {
        RegionPlan {
            name: "us".into(),
            reachable: true,
            reason: None,
            actions,
            blocked: vec![],
            unmanaged: vec![],
            scheduled: vec![],
        }
    }

    #[test]
    fn stale_reasons_name_the_tenant_and_versions() {
        let approved = region(vec![migrate("acme", 3)]);
        assert_eq!(
            stale_reason(&approved, &region(vec![migrate("acme", 3)])),
            None
        );
        assert_eq!(
            stale_reason(&approved, &region(vec![migrate("acme", 4)])).unwrap(),
            "tenant acme is now at version 4 of app, the plan expected 3"
        );
        assert_eq!(
            stale_reason(&approved, &region(vec![])).unwrap(),
            "tenant acme no longer needs app migrated from version 3"
        );
        assert_eq!(
            stale_reason(&region(vec![]), &region(vec![migrate("beta", 1)])).unwrap(),
            "`migrate tenant beta: app 1 -> 5 in schema tenant_beta` is now needed but is not in the plan"
        );
    }
}
