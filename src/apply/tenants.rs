//! Running a region's targets: tenants in parallel on workers that each own a connection,
//! `max_parallel` and `max_failures`, retries of transient failures with backoff.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use sqlx::postgres::PgConnection;
use sqlx::Connection;

use super::execute;
use super::region::RegionRun;
use super::report::TenantFailure;
use super::retry;
use crate::plan::Action;

#[derive(Debug, Default)]
pub(super) struct TenantResults {
    pub applied: usize,
    pub failed: Vec<TenantFailure>,
    pub not_started: Vec<(String, String)>,
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

/// The tenants of one region, in plan order, taken one at a time by the workers.
type TenantQueue<'q, 'a> = Mutex<std::slice::Iter<'q, (String, Vec<&'a Action>)>>;

/// Runs a region's targets (its region-scope sets, then its tenants), counting failures
/// across calls.
pub(super) struct TenantRunner<'a> {
    pub run: &'a RegionRun<'a>,
    pub run_id: i64,
    pub failures: AtomicU32,
    pub results: Mutex<TenantResults>,
}

impl TenantRunner<'_> {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, TenantResults> {
        self.results.lock().expect("no panics hold this lock")
    }

    /// Runs tenants at most `max_parallel` at once, on as many workers; once `max_failures`
    /// have failed, the rest are not started (those already running finish).
    pub async fn run(&self, groups: &[(String, Vec<&Action>)], max_failures: u32) {
        let queue: TenantQueue = Mutex::new(groups.iter());
        let workers = (self.run.region.apply.max_parallel as usize).min(groups.len());
        futures_util::future::join_all((0..workers).map(|_| self.worker(&queue, max_failures)))
            .await;
    }

    /// One worker: takes the next tenant until none is left, on its own connection, which it
    /// replaces after [`TENANTS_PER_CONNECTION`] tenants, after a failure, and when the
    /// region's login was replaced.
    async fn worker(&self, queue: &TenantQueue<'_, '_>, max_failures: u32) {
        let region = &self.run.region.name;
        let mut conn: Option<PgConnection> = None;
        let mut served = 0;
        let mut login = self.run.connector.login_watch();
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
            if self.run.shutdown.is_requested() {
                let reason = "neo-reconcile was asked to stop".to_string();
                self.lock().not_started.push((slug.clone(), reason));
                continue;
            }
            // A replaced login (renewed dynamic credentials) reaches the worker here, between
            // tenants: the old connection has finished its transactions.
            if served == TENANTS_PER_CONNECTION || login.changed() {
                if let Some(old) = conn.take() {
                    old.close().await.ok();
                }
            }
            if conn.is_none() {
                served = 0;
                login.seen();
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
    pub async fn run_target(
        &self,
        conn: &mut Option<PgConnection>,
        target: &str,
        actions: &[&Action],
    ) -> (usize, Option<String>) {
        let region = &self.run.region.name;
        let retries = self.run.region.apply.retries;
        let (mut done, mut retry) = (0, 0);
        loop {
            let result = match conn {
                Some(c) => self.run_from(c, &actions[done..], retry > 0).await,
                None => match self.run.connector.connect_worker().await {
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
            if !transient || retry >= retries || self.run.shutdown.is_requested() {
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
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.run.shutdown.requested() => {}
            }
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
        execute::run_actions(
            conn,
            self.run.desired,
            self.run.region,
            self.run.ctx,
            self.run_id,
            actions,
            resume,
        )
        .await
        .map_err(|(i, e)| (i, e.to_string(), e.transient))?;
        Ok(actions.len())
    }
}
