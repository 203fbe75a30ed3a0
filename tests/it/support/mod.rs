//! Test support: throwaway PostgreSQL clusters, and logins handed to the library directly.
#![allow(dead_code)]

pub mod logins;
pub mod pg;
