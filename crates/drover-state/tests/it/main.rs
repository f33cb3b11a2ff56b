//! drover-state's integration tests, one binary (as ripgrep's): the store's
//! behaviour on both backends, run splitting across workers, what only
//! PostgreSQL does (leases, TLS), and the per-host cost of each.
//!
//! PostgreSQL tests start a throwaway server themselves (`drover-pgtest`),
//! shared by the whole binary.

#[macro_use]
mod support;

mod backends;
mod jobs;
mod leases;
mod overhead;
mod pg;
mod tls;
