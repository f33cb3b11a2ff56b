//! Errors, each naming the host and saying what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{addr}: cannot connect: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{addr}: timed out during {stage}")]
    Timeout { addr: String, stage: &'static str },
    #[error(
        "{addr}: host key changed: expected {}, server offered {got}. If the host was reinstalled, update the pinned key (`drover trust --replace`); otherwise someone may be intercepting the connection",
        .expected.join(" or ")
    )]
    HostKeyMismatch { addr: String, expected: Vec<String>, got: String },
    #[error(
        "{addr}: no pinned host key (server offered {got}); check the fingerprint and run `drover trust` to pin it"
    )]
    HostKeyUnknown { addr: String, got: String },
    #[error("{addr}: bad pinned host key {line:?}: {reason}")]
    BadPinnedKey { addr: String, line: String, reason: String },
    #[error("{addr}: authentication as {user} failed ({method}); check the inventory's user, key or password")]
    AuthFailed { addr: String, user: String, method: &'static str },
    #[error("cannot load SSH key {}: {reason}", .path.display())]
    KeyLoad { path: PathBuf, reason: String },
    #[error("{addr}: ssh-agent: {reason}")]
    Agent { addr: String, reason: String },
    #[error("{addr}: SSH channel: {source}")]
    Channel { addr: String, source: russh::Error },
    #[error("{addr}: connection lost ({reason})")]
    Disconnected { addr: String, reason: String },
    /// Reaching or logging in to jump host `hop` (number `n` of `of`)
    /// failed: the bastion, not the target, is the problem.
    #[error("jump host {hop} (hop {n} of {of}): {source}")]
    Jump { hop: String, n: usize, of: usize, source: Box<SshError> },
    /// Another host's login to a jump host failed while this one waited for
    /// that login: the same failure (`message` is its text), not tried again.
    #[error("{message}")]
    JumpShared { message: String, transient: bool },
    /// Jump host `via` is up but could not open a connection onwards to `to`
    /// (the target, or the next hop).
    #[error("{to}: unreachable through jump host {via}: {reason}")]
    Forward { via: String, to: String, reason: String },
}

impl SshError {
    /// Worth another attempt: the network, not the configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            SshError::Connect { source, .. } => !matches!(source.kind(), std::io::ErrorKind::InvalidInput),
            SshError::Timeout { .. } | SshError::Disconnected { .. } | SshError::Channel { .. } => true,
            SshError::Jump { source, .. } => source.is_transient(),
            SshError::JumpShared { transient, .. } => *transient,
            SshError::Forward { reason, .. } => !reason.contains("refuses forwarding"),
            _ => false,
        }
    }

    /// Classify a russh error seen on an established connection.
    pub(crate) fn from_russh(addr: &str, e: russh::Error) -> SshError {
        use russh::Error as E;
        match e {
            E::KeepaliveTimeout | E::InactivityTimeout | E::ConnectionTimeout => {
                SshError::Timeout { addr: addr.into(), stage: "keepalive" }
            }
            E::Disconnect | E::HUP | E::SendError | E::RecvError | E::IO(_) => {
                SshError::Disconnected { addr: addr.into(), reason: e.to_string() }
            }
            other => SshError::Channel { addr: addr.into(), source: other },
        }
    }
}
