//! The on-host agent.
//!
//! It speaks the framed protocol of `drover-proto` on stdin/stdout, keeps a
//! content-addressed blob store and numbered generations under
//! `/var/lib/drover`, and moves the host between generations with a journaled
//! [`transition`]: a host is always on one whole generation, whatever is
//! killed when.
//!
//! It is built as a static binary with few dependencies (hashing, compression,
//! serde) so it runs on any x86_64 Linux without anything installed: no
//! Python, no shell tools beyond the supervisor's own.

pub mod accounts;
pub mod blobs;
pub mod boot;
pub mod cli;
pub mod diff;
pub mod dpkg;
pub mod engine;
pub mod facts;
pub mod fsops;
pub mod gc;
pub mod health;
pub mod hooks;
pub mod hostenv;
pub mod inspect;
pub mod install;
pub mod layout;
pub mod logs;
pub mod ops;
pub mod pathstate;
pub mod reexec;
pub mod relay;
pub mod runit;
pub mod safefs;
pub mod sealed;
pub mod serve;
pub mod services;
pub mod session;
pub mod setup;
pub mod state;
pub mod supervisor;
pub mod transition;

/// Errors are reported to the controller as text; inside the agent a plain
/// string with context is all we need, so no error enum hierarchy here.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

#[derive(Debug)]
pub struct AgentError(pub String);

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AgentError {}

/// Attach context to an I/O error: what we were doing, and to which path.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| AgentError(format!("{}: {e}", what())))
    }
}

/// Shorthand for returning an error built with `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::AgentError(format!($($arg)*))) };
}
