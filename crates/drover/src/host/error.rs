//! Why one host's session failed, and whether trying again may help. Each
//! variant is one way a session fails; its message is what the run's table,
//! `--json` and the dashboard show for the host.

use std::time::Duration;

use crate::transport::link::LinkError;
use crate::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The project does not compile for this host (rendered diagnostic).
    #[error("{0}")]
    Compile(String),
    /// The agent answered a request with something else than that request's reply.
    #[error("unexpected reply to {request}: {reply}")]
    Unexpected { request: &'static str, reply: String },
    /// A file of the project (or a package) could not be read to ship it.
    #[error("read {path}: {error}")]
    Read { path: String, error: String },
    #[error("compress: {0}")]
    Compress(String),
    /// The agent asked for a blob the desired state does not have.
    #[error("agent asked for unknown blob {0}")]
    UnknownBlob(String),
    /// A bundle's stored blob could not be read.
    #[error("{0}")]
    Bundle(String),
    /// The run is shutting down its transfers.
    #[error("transfer slots closed: {0}")]
    SlotsClosed(String),
    #[error(
        "generation {generation} is live but could not be confirmed over a new connection ({cause}); the host reverts it by itself"
    )]
    Unconfirmed { generation: u64, cause: String },
    #[error("generation {0} still awaits confirmation; apply again to finish it before rebooting")]
    AwaitingConfirm(u64),
    #[error(
        "no reply to Reboot ({0}); the host may be rebooting: unless confirmed after its boot, it reverts by itself"
    )]
    RebootUnanswered(String),
    #[error("reboot refused: {0}")]
    RebootRefused(String),
    #[error("did not come back from the reboot within {waited:?}: {why}")]
    NotBack { waited: Duration, why: String },
    #[error("services unhealthy after the reboot: {0}")]
    UnhealthyAfterReboot(String),
}

impl HostError {
    pub fn is_transient(&self) -> bool {
        match self {
            HostError::Transport(e) => e.is_transient(),
            HostError::Link(e) => e.is_transient(),
            _ => false,
        }
    }

    /// The agent's `reply` to `request` was not the one expected.
    pub fn unexpected(request: &'static str, reply: &impl std::fmt::Debug) -> HostError {
        HostError::Unexpected { request, reply: format!("{reply:?}") }
    }
}
