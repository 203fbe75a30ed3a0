//! Asking long work to stop at a safe point.
//!
//! A [`Shutdown`] is handed into a reconcile. Once it is triggered, apply starts no new tenant
//! and no new region-scope set, lets the transaction that is running finish (or roll back),
//! records the run, and releases its locks; a waiter for a region lock stops waiting. The CLI
//! triggers it on Ctrl-C (SIGINT) and SIGTERM; a long-lived process triggers it when it is
//! told to stop.

use tokio::sync::watch;

/// The receiving side: cheap to clone, one per task that must notice.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side, kept by whoever decides to stop.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Shutdown {
    /// A pair: the trigger and the signal it sets.
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Shutdown(rx))
    }

    /// A signal that is never triggered (tests, one-shot library use).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Keep the channel open for ever: a dropped sender would read as "closed", not as
        // "stop".
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Whether stopping was asked for.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once stopping is asked for (never, if the trigger is dropped untriggered).
    pub async fn requested(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Trigger {
    /// Asks every holder of the signal to stop at its next safe point.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn triggering_reaches_every_clone() {
        let (trigger, shutdown) = Shutdown::new();
        let other = shutdown.clone();
        assert!(!shutdown.is_requested());
        trigger.trigger();
        assert!(shutdown.is_requested() && other.is_requested());
        other.requested().await;
    }

    #[tokio::test(start_paused = true)]
    async fn never_is_never_requested() {
        let s = Shutdown::never();
        let waited =
            tokio::time::timeout(std::time::Duration::from_secs(3600), s.requested()).await;
        assert!(waited.is_err() && !s.is_requested());
    }
}
