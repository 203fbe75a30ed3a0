//! The daemon's Prometheus metrics, kept with the `prometheus-client` crate.
//!
//! [`MetricsObserver`] is an [`Observer`] that updates the metrics; [`MetricsHandle`] encodes
//! them for `/metrics`, in Prometheus text format 0.0.4 or in OpenMetrics text. Names follow
//! Prometheus' conventions (the `neo_reconcile_` prefix, base units, `_total` for counters,
//! `_seconds` and `_timestamp_seconds`); Flux's `gotk_reconcile_duration_seconds` and Argo
//! CD's `argocd_app_reconcile` are the models for the reconcile metrics. Labels are bounded:
//! only `region`, `outcome`, `kind` and `result`, whose values come from the configuration or
//! from closed sets. The commit is never a label of a counter; it is in the
//! `neo_reconcile_commit_info` gauge, which holds one series at a time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::observer::{Fetched, Loaded, Observer, Reconciled, Trigger};
use super::status::{epoch_seconds, kind_label, region_views, Clock};

/// The `Content-Type` of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of the OpenMetrics text format 1.0.0.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The buckets of the reconcile duration histogram, in seconds: from a no-change poll of a
/// few tenants to a long migration run.
const DURATION_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabels {
    region: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    region: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    region: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabels {
    commit: String,
}

type FGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Every metric the daemon keeps.
#[derive(Debug)]
struct Metrics {
    runs: Family<OutcomeLabels, Counter>,
    failures: Family<KindLabels, Counter>,
    start_failures: Counter,
    duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    last_success: Family<RegionLabels, FGauge>,
    pending: Family<RegionLabels, Gauge>,
    blocked: Family<RegionLabels, Gauge>,
    drift: Family<RegionLabels, Gauge>,
    commit_info: Family<CommitLabels, Gauge>,
    invalid_commit_info: Family<CommitLabels, Gauge>,
    invalid_commits: Counter,
    fetch_failures: Counter,
    rewinds: Counter,
    last_fetch_success: FGauge,
    vault_token_ttl: FGauge,
    vault_lease_min_ttl: FGauge,
    vault_leases: Gauge,
    reloads: Family<ResultLabels, Counter>,
    last_reload_ok: Gauge,
    last_tick: FGauge,
    ready: Gauge,
}

/// The [`Observer`] that keeps the metrics.
#[derive(Debug, Clone)]
pub struct MetricsObserver {
    metrics: Arc<Metrics>,
    /// The last successful fetch (the start until one succeeds), for the staleness gauge
    /// computed at each scrape.
    fetched_at: Arc<Mutex<SystemTime>>,
}

/// Encodes the metrics for `/metrics`.
#[derive(Clone)]
pub struct MetricsHandle {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsHandle").finish_non_exhaustive()
    }
}

/// `neo_reconcile_source_staleness_seconds`, computed when scraped.
struct Staleness {
    fetched_at: Arc<Mutex<SystemTime>>,
    clock: Clock,
}

impl std::fmt::Debug for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staleness").finish_non_exhaustive()
    }
}

impl Collector for Staleness {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let since = *self.fetched_at.lock().unwrap_or_else(|e| e.into_inner());
        let age = (self.clock)()
            .duration_since(since)
            .unwrap_or_default()
            .as_secs_f64();
        let gauge = ConstGauge::new(age);
        let metric = encoder.encode_descriptor(
            "source_staleness",
            "Seconds since the last successful fetch of the source (since the start when none succeeded).",
            Some(&Unit::Seconds),
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

impl MetricsObserver {
    /// The metrics of a daemon started at `started`, and the handle that encodes them;
    /// `clock` tells the time when the staleness gauge is scraped.
    pub fn new(started: SystemTime, clock: Clock) -> (Self, MetricsHandle) {
        let metrics = Metrics {
            runs: Family::default(),
            failures: Family::default(),
            start_failures: Counter::default(),
            duration: Family::new_with_constructor(duration_histogram),
            last_success: Family::default(),
            pending: Family::default(),
            blocked: Family::default(),
            drift: Family::default(),
            commit_info: Family::default(),
            invalid_commit_info: Family::default(),
            invalid_commits: Counter::default(),
            fetch_failures: Counter::default(),
            rewinds: Counter::default(),
            last_fetch_success: FGauge::default(),
            vault_token_ttl: FGauge::default(),
            vault_lease_min_ttl: FGauge::default(),
            vault_leases: Gauge::default(),
            reloads: Family::default(),
            last_reload_ok: Gauge::default(),
            last_tick: FGauge::default(),
            ready: Gauge::default(),
        };
        metrics.last_reload_ok.set(1);
        let fetched_at = Arc::new(Mutex::new(started));
        let mut registry = Registry::with_prefix("neo_reconcile");
        register(&mut registry, &metrics);
        registry.register_collector(Box::new(Staleness {
            fetched_at: Arc::clone(&fetched_at),
            clock,
        }));
        let observer = MetricsObserver {
            metrics: Arc::new(metrics),
            fetched_at,
        };
        let handle = MetricsHandle {
            registry: Arc::new(registry),
        };
        (observer, handle)
    }
}

/// Registers every metric, with its help text, under the registry's prefix (prometheus-client
/// ends each help text with a period).
fn register(r: &mut Registry, m: &Metrics) {
    let s = Unit::Seconds;
    r.register(
        "build",
        "The build of neo-reconcile that runs (always 1)",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    r.register(
        "reconcile_runs",
        "Reconciles finished, per region and outcome (converged, changes_pending, blocked, failed)",
        m.runs.clone(),
    );
    r.register("reconcile_failures", "Regions whose reconcile failed, per region and error kind (transient, needs_human, target)", m.failures.clone());
    r.register(
        "reconcile_start_failures",
        "Reconciles that could not start at all (for example an invalid selection)",
        m.start_failures.clone(),
    );
    r.register_with_unit(
        "reconcile_duration",
        "How long a reconcile took (the whole run), per region and outcome",
        s.clone(),
        m.duration.clone(),
    );
    r.register_with_unit("reconcile_last_success_timestamp", "When a reconcile of the region last succeeded (converged, or changes pending where apply was not allowed), as a Unix time", s.clone(), m.last_success.clone());
    r.register("pending_changes", "Planned changes not applied by the last reconcile (detect-only, window closed, refused or failed), per region", m.pending.clone());
    r.register(
        "blocked_targets",
        "Blocked findings waiting for a human after the last reconcile, per region",
        m.blocked.clone(),
    );
    r.register(
        "drift_changes",
        "Changes the last resync found without a new commit (out-of-band drift), per region",
        m.drift.clone(),
    );
    register_source_and_process(r, m);
}

/// Registers the metrics of the source, Vault and the process itself.
fn register_source_and_process(r: &mut Registry, m: &Metrics) {
    let s = Unit::Seconds;
    r.register(
        "commit_info",
        "The commit being reconciled (the last one that loaded and validated) as the `commit` label, always 1",
        m.commit_info.clone(),
    );
    r.register(
        "invalid_commit_info",
        "The branch's head as the `commit` label while it fails validation and is not applied, always 1",
        m.invalid_commit_info.clone(),
    );
    r.register(
        "invalid_commits",
        "Commits that failed validation and were not applied",
        m.invalid_commits.clone(),
    );
    r.register(
        "source_fetch_failures",
        "Fetches of the source that failed (the last good commit stays in use)",
        m.fetch_failures.clone(),
    );
    r.register(
        "source_rewinds",
        "Fetches that found the branch moved backwards or sideways, refused",
        m.rewinds.clone(),
    );
    r.register_with_unit(
        "source_last_fetch_success_timestamp",
        "When a fetch of the source last succeeded, as a Unix time",
        s.clone(),
        m.last_fetch_success.clone(),
    );
    r.register_with_unit(
        "vault_token_ttl",
        "Seconds left on Vault's client token",
        s.clone(),
        m.vault_token_ttl.clone(),
    );
    r.register_with_unit(
        "vault_lease_min_ttl",
        "Seconds left on the Vault lease that expires first",
        s.clone(),
        m.vault_lease_min_ttl.clone(),
    );
    r.register("vault_leases", "Vault leases held", m.vault_leases.clone());
    r.register(
        "config_reloads",
        "Configuration reloads (SIGHUP), per result (success, failure)",
        m.reloads.clone(),
    );
    r.register(
        "config_last_reload_successful",
        "Whether the last configuration reload succeeded (1) or was refused (0)",
        m.last_reload_ok.clone(),
    );
    r.register_with_unit(
        "loop_last_tick_timestamp",
        "When the daemon's loop last went round, as a Unix time",
        s,
        m.last_tick.clone(),
    );
    r.register(
        "ready",
        "Whether the first reconcile finished (1) or not yet (0)",
        m.ready.clone(),
    );
}

impl MetricsHandle {
    /// The metrics in Prometheus text format 0.0.4 ([`PROMETHEUS_TEXT`]).
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoding error would be a bug in a metric.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "Could not encode the metrics.");
        }
        out
    }

    /// The metrics in OpenMetrics text format ([`OPENMETRICS_TEXT`]), `# EOF` included.
    pub fn openmetrics_text(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "Could not encode the metrics.");
        }
        out
    }
}

fn region(name: &str) -> RegionLabels {
    RegionLabels {
        region: name.to_string(),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Observer for MetricsObserver {
    fn tick(&self, now: SystemTime) {
        self.metrics.last_tick.set(epoch_seconds(now));
    }

    fn fetched(&self, now: SystemTime, fetched: &Fetched) {
        let m = &self.metrics;
        match fetched {
            Fetched::Failed { .. } => {
                m.fetch_failures.inc();
                return;
            }
            Fetched::Rewound { .. } => {
                m.rewinds.inc();
            }
            Fetched::Commit { .. } => {}
        }
        m.last_fetch_success.set(epoch_seconds(now));
        *self.fetched_at.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    fn loaded(&self, _now: SystemTime, loaded: &Loaded) {
        let m = &self.metrics;
        match loaded {
            Loaded::Valid { sha } => {
                // A new good commit supersedes an invalid one (as in the status).
                let label = CommitLabels {
                    commit: sha.clone(),
                };
                if m.commit_info.get(&label).is_none() {
                    m.invalid_commit_info.clear();
                }
                m.commit_info.clear();
                m.commit_info.get_or_create(&label).set(1);
            }
            Loaded::Invalid { sha, .. } => {
                m.invalid_commits.inc();
                m.invalid_commit_info.clear();
                let label = CommitLabels {
                    commit: sha.clone(),
                };
                m.invalid_commit_info.get_or_create(&label).set(1);
            }
        }
    }

    fn reconciled(&self, run: &Reconciled<'_>) {
        let m = &self.metrics;
        m.ready.set(1);
        let outcome = match run.outcome {
            Ok(outcome) => outcome,
            Err(_) => {
                m.start_failures.inc();
                return;
            }
        };
        for view in region_views(outcome) {
            let labels = OutcomeLabels {
                region: view.name.clone(),
                outcome: view.outcome.to_string(),
            };
            m.runs.get_or_create(&labels).inc();
            m.duration.get_or_create(&labels).observe(secs(run.took));
            if let Some(kind) = view.kind {
                let labels = KindLabels {
                    region: view.name.clone(),
                    kind: kind_label(kind).to_string(),
                };
                m.failures.get_or_create(&labels).inc();
            }
            let r = region(&view.name);
            if view.success {
                m.last_success
                    .get_or_create(&r)
                    .set(epoch_seconds(run.finished));
            }
            m.pending.get_or_create(&r).set(view.pending as i64);
            m.blocked.get_or_create(&r).set(view.blocked.len() as i64);
            if run.trigger == Trigger::Resync {
                let drift = (view.pending + view.applied) as i64;
                m.drift.get_or_create(&r).set(drift);
            }
        }
    }

    fn reloaded(&self, result: Result<(), &str>) {
        let m = &self.metrics;
        let label = if result.is_ok() { "success" } else { "failure" };
        let labels = ResultLabels {
            result: label.to_string(),
        };
        m.reloads.get_or_create(&labels).inc();
        m.last_reload_ok.set(i64::from(result.is_ok()));
    }

    fn vault_ttls(&self, token_ttl: Option<Duration>, lease_ttls: &[(String, Duration)]) {
        let m = &self.metrics;
        m.vault_token_ttl.set(token_ttl.map_or(0.0, secs));
        let min = lease_ttls.iter().map(|(_, d)| *d).min();
        m.vault_lease_min_ttl.set(min.map_or(0.0, secs));
        m.vault_leases.set(lease_ttls.len() as i64);
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
