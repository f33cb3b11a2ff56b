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
//!
//! # Layers
//!
//! Imports go down only, never up nor around in a circle. From the top:
//!
//! 1. Entry: [`cli`] (the verbs: `serve`, `watchdog`, `boot`, `install`,
//!    `relay`), [`serve`] (the byte stream: magic, frames, the idle limit)
//!    and [`session`] (one controller session: a method per request).
//! 2. Operations on a host that a session or a verb asks for: [`boot`]
//!    (magic rollback across a reboot), [`ops`] and [`logs`] (day-2),
//!    [`install`] (a signed bundle without a controller).
//! 3. [`engine`]: the host under its lock: recovery, diff, apply, revert,
//!    roll back, confirm, and its [`engine::watchdog`].
//! 4. What the engine drives: [`diff`], [`transition`], [`services`],
//!    the health [`gate`], [`gc`], [`setup`] (accounts, packages), [`sealed`]
//!    secrets, [`inspect`], the peer [`relay`].
//! 5. The host's parts: [`state`] (the agent's bookkeeping files),
//!    [`safefs`] (every managed path, no symlink followed), [`blobs`],
//!    [`delta`] (blobs rebuilt from a delta against a stored one),
//!    [`supervisor`], [`dpkg`], [`facts`].
//! 6. Leaves: [`layout`], [`pathstate`], [`hostenv`], [`fsops`], [`space`]
//!    (filesystems: free space, mount points, refused writes),
//!    [`accounts`], [`hooks`], [`health`], [`runit`], [`runsvdir`], [`reexec`].
//!
//! # What it must not import
//!
//! - The controller (`drover`) or anything of it: the controller embeds this
//!   crate (its simulated hosts), never the other way round.
//! - Anything async (tokio, futures) or networking beyond `std::net`: the
//!   agent is synchronous, one session per process, threads where it waits.
//! - Frameworks and heavy dependencies (clap, tracing, an SSH or HTTP
//!   stack): every dependency ships in the static binary on every host.
//!   Its own crates are `drover-proto` (the protocol) and `drover-bundle`
//!   (signed bundles) only.
//!
//! Which host it serves, and whether it may reboot it, is never guessed
//! from the target root: it is a [`hostenv::HostEnv`], chosen where the
//! agent is started and passed down.

pub mod accounts;
pub mod blobs;
pub mod boot;
pub mod cli;
pub mod delta;
pub mod diff;
pub mod dpkg;
pub mod engine;
pub mod facts;
pub mod fsops;
pub mod gate;
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
pub mod runsvdir;
pub mod safefs;
pub mod sealed;
pub mod serve;
pub mod services;
pub mod session;
pub mod setup;
pub mod space;
pub mod state;
pub mod supervisor;
pub mod transition;

/// Errors are reported to the controller as text; inside the agent a plain
/// string with context is all we need, so no error enum hierarchy here. The
/// one failure the controller must see as data is a write the host's storage
/// refused ([`space`]): it rides along, and the session sends it typed.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

#[derive(Debug)]
pub struct AgentError(pub String, pub Option<Box<drover_proto::StorageFailure>>);

impl AgentError {
    pub fn new(message: String) -> AgentError {
        AgentError(message, None)
    }

    /// The filesystem's refusal, when that is what this is.
    pub fn storage(&self) -> Option<&drover_proto::StorageFailure> {
        self.1.as_deref()
    }
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.1 {
            Some(s) => write!(f, "{s}"),
            None => f.write_str(&self.0),
        }
    }
}

impl std::error::Error for AgentError {}

/// Attach context to an I/O error: what we were doing, and to which path.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| AgentError::new(format!("{}: {e}", what())))
    }
}

/// Shorthand for returning an error built with `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::AgentError::new(format!($($arg)*))) };
}
