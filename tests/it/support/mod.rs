//! Test support: throwaway PostgreSQL clusters and OpenBao servers.
#![allow(dead_code)]

pub mod bao;
pub mod pg;
