//! One reconcile of the good commit, as the loop runs it: regions split by their maintenance
//! windows, [`reconcile::once`] in apply mode where allowed and in plan mode elsewhere, the
//! plan logged, the outcome reported, and the timers set from how it ended.

use super::*;
use crate::sources::vault::keeper::LeaseKeeper;

/// One call of `once` and what the observer is told about it.
struct Part {
    applying: bool,
    windows_closed: Vec<String>,
    outcome: Result<RunOutcome, String>,
}

impl Daemon {
    /// Reconciles the good commit (nothing without one, or once stopping).
    pub(super) async fn reconcile(&mut self, trigger: Trigger) {
        let Some(good) = &self.good else {
            tracing::warn!("No valid commit yet: nothing to reconcile.");
            self.after(Ended::NeedsHuman);
            return;
        };
        if self.stop.is_requested() {
            return;
        }
        let span = tracing::info_span!("reconcile", commit = %good.sha, trigger = ?trigger);
        let ended = self.reconcile_good(trigger).instrument(span).await;
        self.after(ended);
    }

    async fn reconcile_good(&self, trigger: Trigger) -> Ended {
        let good = self.good.as_ref().expect("checked by the caller");
        let started = Instant::now();
        let now = self.now();
        let all: Vec<String> = good.desired.regions.keys().cloned().collect();
        let windows = &self.config.reconcile.windows;
        let (open, closed) = if self.config.reconcile.auto_apply {
            schedule::split_by_windows(&all, windows, now)
        } else {
            (Vec::new(), Vec::new())
        };
        for (region, why) in &closed {
            tracing::info!(region = %region, reason = %why, "Maintenance window closed: planning only.");
        }
        let planned: Vec<String> = if self.config.reconcile.auto_apply {
            closed.iter().map(|(r, _)| r.clone()).collect()
        } else {
            all.clone()
        };
        tracing::info!(apply = ?open, plan = ?planned, "Reconciling.");

        let options = reconcile::plan_options(&good.desired, &Selection::default());
        let regions = match &options {
            Ok(o) => crate::engine::regions_to_observe(&good.desired, o),
            Err(_) => Vec::new(),
        };
        // This reconcile's logins, fetched once per region; with Vault, a lease keeper renews
        // (or replaces) them and the token while the reconcile runs, and revokes them at its
        // end, as for a CLI run.
        let connectors = Arc::new(db::resolve(&regions, &*self.inputs.credentials).await);
        let keeper = self
            .inputs
            .vault
            .as_ref()
            .map(|vault| LeaseKeeper::start(vault.clone(), connectors.clone(), &regions));
        self.report_vault(keeper.as_ref().map(LeaseKeeper::expiries).as_ref());
        let mut parts = Vec::new();
        if !open.is_empty() {
            let outcome = self.once_apply(good, &open, trigger, &connectors).await;
            parts.push(Part {
                applying: true,
                windows_closed: Vec::new(),
                outcome,
            });
        }
        if !planned.is_empty() {
            let outcome = self.once_plan(good, &planned, &connectors).await;
            parts.push(Part {
                applying: false,
                windows_closed: closed.iter().map(|(r, _)| r.clone()).collect(),
                outcome,
            });
        }
        drop(connectors);
        if let Some(keeper) = keeper {
            for (region, reason) in keeper.finish().await {
                tracing::warn!(region = %region, reason = %reason, "Cannot revoke a dynamic login's lease; it ends at its TTL.");
            }
            self.report_vault(None);
        }
        let took = started.elapsed();
        let finished = self.wall();
        let mut worst = Ended::Fine;
        for part in &parts {
            let ended = match &part.outcome {
                Ok(o) => schedule::ended(Ok(o)),
                Err(_) => Ended::NeedsHuman,
            };
            worst = worse(worst, ended);
            log_outcome(part);
            self.observer.reconciled(&Reconciled {
                commit: &good.sha,
                trigger,
                finished,
                took,
                applying: part.applying,
                windows_closed: &part.windows_closed,
                outcome: part.outcome.as_ref().map_err(String::as_str),
            });
        }
        worst
    }

    async fn once_apply(
        &self,
        good: &Good,
        regions: &[String],
        trigger: Trigger,
        connectors: &db::Connectors,
    ) -> Result<RunOutcome, String> {
        let approve = |_: &Plan, _: &str| Approval::Approved;
        let command = format!("neo-reconcile daemon ({trigger:?})");
        let mode = Mode::Apply {
            saved: None,
            approve: &approve,
            ctx: RunContext::current(command, Some(good.sha.clone())),
            // A mass prune waits for a human with `apply --allow-mass-prune`.
            allow_mass_prune: false,
        };
        let selection = Selection {
            regions: regions.to_vec(),
            tenants: Vec::new(),
        };
        reconcile::once(&good.desired, &selection, &mode, connectors, &self.stop)
            .await
            .map_err(|e| e.to_string())
    }

    async fn once_plan(
        &self,
        good: &Good,
        regions: &[String],
        connectors: &db::Connectors,
    ) -> Result<RunOutcome, String> {
        let selection = Selection {
            regions: regions.to_vec(),
            tenants: Vec::new(),
        };
        let outcome = reconcile::once(
            &good.desired,
            &selection,
            &Mode::Plan,
            connectors,
            &self.stop,
        )
        .await
        .map_err(|e| e.to_string())?;
        // The plan is logged whether or not it is applied.
        let text = render::text(&outcome.plan, &good.desired, TextOptions::default());
        tracing::info!(changes = outcome.plan.summary.changes, plan = %text, "Plan (not applied).");
        Ok(outcome)
    }

    /// Sets the timers after a reconcile that ended as `ended`.
    fn after(&mut self, ended: Ended) {
        let now = self.now();
        self.attempt = if ended == Ended::Transient {
            self.attempt + 1
        } else {
            0
        };
        let poll = schedule::poll_delay(
            self.config.source.poll_interval,
            self.jitter.next_fraction(),
        );
        let backoff = schedule::backoff(self.attempt, self.jitter.next_fraction());
        let resync = self
            .config
            .reconcile
            .resync
            .as_ref()
            .and_then(|s| schedule::next_resync(s, now));
        let window = if self.config.reconcile.auto_apply {
            schedule::next_window_change(&self.config.reconcile.windows, now)
        } else {
            None
        };
        // A reconcile does not delay the next poll: keep the earlier of the two.
        let poll_at = self.timers.poll;
        self.timers = schedule::after_reconcile(ended, now, poll, backoff, resync, window);
        self.timers.poll = self.timers.poll.min(poll_at.max(now));
        if ended == Ended::Transient {
            tracing::warn!(attempt = self.attempt, retry_in = ?backoff, "Transient failure: retrying with backoff.");
        } else if ended == Ended::NeedsHuman {
            tracing::warn!(
                "The reconcile needs a human: waiting for a new commit (the resync still runs)."
            );
        }
    }
}

fn worse(a: Ended, b: Ended) -> Ended {
    let rank = |e| match e {
        Ended::Fine => 0,
        Ended::NeedsHuman => 1,
        Ended::Transient => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn log_outcome(part: &Part) {
    let outcome = match &part.outcome {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "The reconcile could not start.");
            return;
        }
    };
    if let Some((kind, reasons)) = &outcome.refused {
        tracing::warn!(kind = ?kind, reasons = ?reasons, "Apply refused.");
    }
    for (region, status) in &outcome.regions {
        tracing::info!(region = %region, applying = part.applying, status = ?status, "Region reconciled.");
    }
}
