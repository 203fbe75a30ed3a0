//! `neo-reconcile daemon`: the GitOps loop that runs for months on bastion hosts.
//!
//! The loop (see ARCHITECTURE.md) fetches the source, loads and validates the desired state,
//! and calls [`crate::reconcile::once`], the same entry point as the CLI; it never plans or
//! applies by itself. What it does is reported through one [`observer::Observer`], which the
//! HTTP endpoints, the metrics and systemd's notifications are built on.
//!
//! - [`config`]: the configuration file, validated with file:line:column diagnostics.
//! - [`schedule`]: the pure decisions (windows, resync, poll jitter, backoff, next wake-up).

pub mod config;
pub mod observer;
pub mod schedule;
