//! The one owner of the Vault token's and the dynamic logins' lifetimes while a process uses
//! them: [`LeaseKeeper`].
//!
//! Started after the regions' logins were fetched ([`crate::db::resolve`]), it runs one tokio
//! task that keeps, for the client token (when it expires at all) and for the current lease
//! of each region, a [`Lifetime`], and does what [`lifetime::next`] says, when it says:
//! - renew the token (`renew-self`) or a lease (`sys/leases/renew`) before it expires;
//! - replace a lease that cannot be extended (max TTL near, renewal refused, grace period):
//!   fetch new credentials and publish them with [`Connectors::replace`], so that new
//!   connections of the region use them while running transactions finish on the old ones
//!   (the old lease is left to its TTL, and revoked at the end);
//! - log in again (AppRole) when the token cannot be renewed any more, then replace every
//!   lease, since Vault revokes a token's leases with the token. A plain token cannot be
//!   replaced: that is logged as an error naming the way out.
//!
//! [`LeaseKeeper::expiries`] lets others read, at any time, how long the token and each
//! region's current lease have left (the daemon's metrics and `/status`).
//!
//! [`LeaseKeeper::finish`] stops the task and revokes every lease the process took; callers
//! run it on every path (success, failure, a stop request). Dropping a keeper without
//! finishing only stops the task: the leases then end at their TTL.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::lifetime::{self, LastError, Lifetime, Next};
use super::Vault;
use crate::db::{Connectors, Lease, Login};
use crate::desired::Region;

/// Owns the token's and the leases' lifetimes; see the module documentation.
#[derive(Debug)]
pub struct LeaseKeeper {
    vault: Arc<Vault>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    expiries: Expiries,
}

/// When the token and each region's current lease end, as the keeper last knew them: a
/// read-only view its task updates after every renewal or replacement.
#[derive(Debug, Clone, Default)]
pub struct Expiries(Arc<Mutex<Ends>>);

#[derive(Debug, Default)]
struct Ends {
    token: Option<Instant>,
    leases: Vec<(String, Instant)>,
}

/// Time left, as of one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ttls {
    /// The client token's, when it expires at all.
    pub token: Option<Duration>,
    /// Each region's current lease, by region name.
    pub leases: Vec<(String, Duration)>,
}

impl Expiries {
    /// The time left now on the token and on each lease (zero once past).
    pub fn ttls(&self) -> Ttls {
        let now = Instant::now();
        let ends = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ttls {
            token: ends.token.map(|at| at.saturating_duration_since(now)),
            leases: ends
                .leases
                .iter()
                .map(|(region, at)| (region.clone(), at.saturating_duration_since(now)))
                .collect(),
        }
    }

    /// Records the ends of what `tracked` holds, `origin` being the keeper's zero.
    fn publish(&self, origin: Instant, tracked: &[Tracked]) {
        let mut ends = Ends::default();
        for t in tracked {
            let at = origin + t.life.expires_at();
            match &t.item {
                Item::Token => ends.token = Some(at),
                Item::Lease { region, .. } => ends.leases.push((region.name.clone(), at)),
            }
        }
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = ends;
    }
}

/// What one tracked lifetime belongs to.
#[derive(Debug, Clone)]
enum Item {
    Token,
    Lease { region: Region, lease: Lease },
}

/// One tracked lifetime.
#[derive(Debug)]
struct Tracked {
    item: Item,
    life: Lifetime,
    /// Drawn once per grant, so that the schedule of one grant is stable.
    jitter: f64,
    last: LastError,
}

impl Tracked {
    fn new(item: Item, life: Lifetime) -> Tracked {
        Tracked {
            item,
            life,
            jitter: jitter(),
            last: LastError::None,
        }
    }

    /// Records a failed attempt: a refusal (4xx) once leads to a replacement; after that,
    /// and for transient errors, the attempts are counted for the backoff.
    fn failed(&mut self, transient: bool) {
        self.last = match (transient, self.last) {
            (true, LastError::Transient(n)) => LastError::Transient(n + 1),
            (true, _) => LastError::Transient(1),
            (false, LastError::Refused) => LastError::Transient(1),
            (false, LastError::Transient(n)) => LastError::Transient(n + 1),
            (false, LastError::None) => LastError::Refused,
        };
    }
}

impl LeaseKeeper {
    /// Starts keeping the token of `vault` and the leases it issued for `regions`, whose
    /// logins `connectors` hold. Call inside the tokio runtime.
    pub fn start(vault: Arc<Vault>, connectors: Arc<Connectors>, regions: &[&Region]) -> Self {
        let origin = Instant::now();
        let mut tracked = Vec::new();
        let token = vault.token_grant();
        if token.ttl > Duration::ZERO {
            tracked.push(Tracked::new(
                Item::Token,
                Lifetime::new(Duration::ZERO, token.ttl, token.renewable),
            ));
        }
        for (name, lease) in latest_leases(&vault) {
            let Some(region) = regions.iter().find(|r| r.name == name) else {
                continue;
            };
            if lease.duration > Duration::ZERO {
                let life = Lifetime::new(Duration::ZERO, lease.duration, lease.renewable);
                let item = Item::Lease {
                    region: (*region).clone(),
                    lease,
                };
                tracked.push(Tracked::new(item, life));
            }
        }
        let (stop, stopped) = oneshot::channel();
        let expiries = Expiries::default();
        expiries.publish(origin, &tracked);
        let task = Run {
            vault: vault.clone(),
            connectors,
            origin,
            tracked,
            expiries: expiries.clone(),
        };
        LeaseKeeper {
            vault,
            stop: Some(stop),
            task: Some(tokio::spawn(task.run(stopped))),
            expiries,
        }
    }

    /// A view of when the token and the leases this keeper holds end.
    pub fn expiries(&self) -> Expiries {
        self.expiries.clone()
    }

    /// Stops keeping, then revokes every lease the process took. Returns the regions whose
    /// current lease could not be revoked, with why (it then ends at its TTL).
    pub async fn finish(mut self) -> Vec<(String, String)> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.vault.revoke_leases().await
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The newest lease of each region.
fn latest_leases(vault: &Vault) -> Vec<(String, Lease)> {
    newest_per_region(vault.leases())
}

/// The last lease of each region in `leases` (oldest first), in the order of those.
fn newest_per_region(leases: Vec<(String, Lease)>) -> Vec<(String, Lease)> {
    let mut out: Vec<(String, Lease)> = Vec::new();
    for (region, lease) in leases {
        out.retain(|(r, _)| *r != region);
        out.push((region, lease));
    }
    out
}

/// The keeper's task.
struct Run {
    vault: Arc<Vault>,
    connectors: Arc<Connectors>,
    origin: Instant,
    tracked: Vec<Tracked>,
    expiries: Expiries,
}

impl Run {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        loop {
            let now = self.now();
            let due = self
                .tracked
                .iter()
                .enumerate()
                .map(|(i, t)| (i, lifetime::next(&t.life, now, t.jitter, t.last)))
                .min_by_key(|(_, next)| next.at());
            let Some((i, next)) = due else {
                let _ = stopped.await;
                return;
            };
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep_until(self.origin + next.at()) => {}
            }
            // An action runs to its end (each Vault request has a timeout), so that a lease
            // Vault issued is always recorded and revoked at the end.
            self.act(i, next).await;
            self.expiries.publish(self.origin, &self.tracked);
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn act(&mut self, i: usize, next: Next) {
        match (self.tracked[i].item.clone(), next) {
            (Item::Token, Next::Renew { .. }) => self.renew_token(i).await,
            (Item::Token, Next::Replace { why, .. }) => self.log_in_again(i, why).await,
            (Item::Lease { region, lease }, Next::Renew { .. }) => {
                self.renew_lease(i, &region, &lease).await
            }
            (Item::Lease { region, .. }, Next::Replace { why, .. }) => {
                tracing::info!(region = %region.name, reason = %why, "Fetching a new dynamic login for the region.");
                self.replace_lease(i, &region).await
            }
        }
    }

    async fn renew_token(&mut self, i: usize) {
        let t = &mut self.tracked[i];
        match self.vault.renew_token(t.life.basis).await {
            Ok(grant) => {
                tracing::info!(ttl_secs = grant.ttl.as_secs(), "Renewed the Vault token.");
                t.life = t
                    .life
                    .renewed(self.origin.elapsed(), grant.ttl, grant.renewable);
                t.jitter = jitter();
                t.last = LastError::None;
            }
            Err(fault) => {
                tracing::warn!(error = %fault, "Cannot renew the Vault token.");
                t.failed(fault.transient);
            }
        }
    }

    async fn log_in_again(&mut self, i: usize, why: lifetime::Why) {
        if !self.vault.can_log_in_again() {
            let t = &self.tracked[i];
            let left = t.life.expires_at().saturating_sub(self.now());
            tracing::error!(
                reason = %why,
                expires_in_secs = left.as_secs(),
                "The Vault token cannot be renewed any more and neo-reconcile was given a token, not AppRole, so it cannot log in again: the dynamic logins end with the token. Use AppRole, or a periodic token."
            );
            self.tracked.remove(i);
            return;
        }
        tracing::info!(reason = %why, "Logging in to Vault again.");
        match self.vault.log_in_again().await {
            Ok(grant) => {
                let life = Lifetime::new(self.now(), grant.ttl, grant.renewable);
                self.tracked[i] = Tracked::new(Item::Token, life);
                // The old token's leases die with it: every region gets a new login now.
                for j in 0..self.tracked.len() {
                    if let Item::Lease { region, .. } = self.tracked[j].item.clone() {
                        self.replace_lease(j, &region).await;
                    }
                }
            }
            Err(fault) => {
                tracing::warn!(error = %fault, "Cannot log in to Vault again.");
                self.tracked[i].failed(true);
            }
        }
    }

    async fn renew_lease(&mut self, i: usize, region: &Region, lease: &Lease) {
        let t = &mut self.tracked[i];
        match self.vault.renew_lease(lease, t.life.basis).await {
            Ok(renewed) => {
                tracing::info!(region = %region.name, ttl_secs = renewed.duration.as_secs(), "Renewed the lease of the region's dynamic login.");
                t.life = t
                    .life
                    .renewed(self.origin.elapsed(), renewed.duration, renewed.renewable);
                t.jitter = jitter();
                t.last = LastError::None;
            }
            Err(fault) => {
                tracing::warn!(region = %region.name, error = %fault, "Cannot renew the lease of the region's dynamic login.");
                t.failed(fault.transient);
            }
        }
    }

    /// Fetches a new login for `region` and publishes it; the old lease is left to its TTL
    /// (connections on it finish their work) and revoked at the end.
    async fn replace_lease(&mut self, i: usize, region: &Region) {
        match self.vault.fetch(region).await {
            Ok(creds) => {
                // A login without a lease does not expire: nothing to renew for a century.
                let lease = creds.lease.clone().unwrap_or(Lease {
                    id: String::new(),
                    duration: Duration::from_secs(100 * 365 * 24 * 3600),
                    renewable: false,
                });
                self.connectors.replace(
                    &region.name,
                    Login {
                        username: creds.username,
                        password: creds.password,
                        lease: creds.lease,
                        set_role: region.credentials.set_role.clone(),
                    },
                );
                tracing::info!(region = %region.name, ttl_secs = lease.duration.as_secs(), "New connections of the region use a new dynamic login.");
                let life = Lifetime::new(self.now(), lease.duration, lease.renewable);
                let item = Item::Lease {
                    region: region.clone(),
                    lease,
                };
                self.tracked[i] = Tracked::new(item, life);
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot fetch a new dynamic login.");
                self.tracked[i].failed(true);
            }
        }
    }
}

/// A jitter fraction in 0..1 from the standard library's randomly keyed hasher.
fn jitter() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x6a69_7474_6572);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str) -> Lease {
        Lease {
            id: id.into(),
            duration: Duration::from_secs(60),
            renewable: true,
        }
    }

    #[test]
    fn failures_are_counted_and_a_refusal_is_remembered_once() {
        let life = Lifetime::new(Duration::ZERO, Duration::from_secs(60), true);
        let mut t = Tracked::new(Item::Token, life);
        let mut seen = Vec::new();
        for transient in [false, false, true, true] {
            t.failed(transient);
            seen.push(t.last);
        }
        assert_eq!(
            seen,
            [
                LastError::Refused,
                LastError::Transient(1),
                LastError::Transient(2),
                LastError::Transient(3)
            ]
        );
        t.last = LastError::None;
        t.failed(true);
        assert_eq!(t.last, LastError::Transient(1));
        assert!((0.0..1.0).contains(&t.jitter));
    }

    #[test]
    fn the_keeper_tracks_the_newest_lease_of_each_region() {
        let leases = vec![
            ("us".to_string(), lease("a")),
            ("eu".to_string(), lease("b")),
            ("us".to_string(), lease("c")),
        ];
        let newest: Vec<(String, String)> = newest_per_region(leases)
            .into_iter()
            .map(|(r, l)| (r, l.id))
            .collect();
        assert_eq!(
            newest,
            [("eu".into(), "b".into()), ("us".into(), "c".into())]
        );
    }
}
