//! The daemon's clock, injected: the system's, or a manual one that tests move forward.
//!
//! Every schedule of the loop is a wall-clock time (cron expressions and maintenance windows
//! are about the calendar). With [`Clock::manual`], time stands still until the test moves it,
//! so schedules, windows and backoff are tested without sleeping; unlike tokio's paused clock
//! it does not jump while the loop waits for PostgreSQL or git, which would fire the
//! connection timeouts of a real reconcile.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// Where the loop reads the time and how it waits.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Manual(Arc<watch::Sender<DateTime<Utc>>>),
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(watch::channel(start).0))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(tx) => *tx.borrow(),
        }
    }

    /// Moves a manual clock forward (a no-op on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(tx) = self {
            tx.send_modify(|t| *t += chrono::Duration::from_std(by).expect("a sane duration"));
        }
    }

    /// Resolves once the clock reads `at` or later.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        match self {
            Clock::System => {
                // Waits in steps of at most a minute, so a wall clock that was set forward
                // or back is noticed.
                loop {
                    let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                    if left.is_zero() {
                        return;
                    }
                    tokio::time::sleep(left.min(Duration::from_secs(60))).await;
                }
            }
            Clock::Manual(tx) => {
                let mut rx = tx.subscribe();
                // The sender lives as long as the clock, so this never fails while waited on.
                let _ = rx.wait_for(|t| *t >= at).await;
            }
        }
    }
}
