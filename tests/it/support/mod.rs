//! Test support: throwaway PostgreSQL clusters and OpenBao servers, and logins handed to the
//! library directly.
#![allow(dead_code)]

pub mod bao;
pub mod catalog;
pub mod logins;
pub mod pg;
pub mod proxy;
pub mod vault_world;
