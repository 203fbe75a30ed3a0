//! `neo-reconcile daemon`: the GitOps loop that runs for months on bastion hosts.
//!
//! The loop (see ARCHITECTURE.md) fetches the source, loads and validates the desired state,
//! and calls [`crate::reconcile::once`], the same entry point as the CLI; it never plans or
//! applies by itself. What it does is reported through one [`observer::Observer`], which the
//! HTTP endpoints, the metrics and systemd's notifications are built on.

pub mod http;
pub mod metrics;
pub mod notify;
pub mod observer;
pub mod ops;
pub mod status;
#[cfg(test)]
mod testing;
