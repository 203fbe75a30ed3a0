//! Test support: throwaway PostgreSQL clusters.
#![allow(dead_code)]

pub mod pg;
