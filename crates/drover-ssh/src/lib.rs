//! The SSH transport: one russh connection per host, in-process; hosts
//! behind jump hosts share one session per bastion (see `jump`).
//!
//! It holds connecting (pinned host keys; key, password or agent
//! authentication; deadlines), remote processes with streamed stdio, and
//! host-key fingerprints. It carries bytes and knows nothing of what they
//! mean: it must not import any other drover crate (the project, the
//! agent's protocol, the state store); the caller hands it a [`Target`]
//! (the only file it reads is the private key a target names). Its async
//! API runs on the caller's tokio runtime; it starts none of its own.
//!
//! What it guarantees the rest of drover:
//! - the server's key is one of the pinned keys, or the connection stops with
//!   [`SshError::HostKeyMismatch`] / [`SshError::HostKeyUnknown`] — there is
//!   no accept-on-first-use;
//! - every stage (TCP connect, handshake, authentication) has a deadline, and
//!   keepalives detect a dead link, so nothing hangs;
//! - remote commands get streamed stdin/stdout with backpressure, and stderr
//!   and the exit status afterwards ([`RemoteProcess`]).

mod error;
mod hostkey;
mod jump;
mod process;
mod session;
mod target;

pub use error::SshError;
pub use hostkey::{fingerprint, scan_host_key, scan_host_key_through};
pub use process::{ExitInfo, ExitWaiter, Output, RemoteProcess};
pub use session::Session;
pub use target::{Auth, Hop, Secret, Target, Timeouts};
