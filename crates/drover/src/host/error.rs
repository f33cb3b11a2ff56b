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
    /// The host's agent reported, at `Confirm`, that the generation is no
    /// longer live, and why (see [`drover_proto::Unconfirmable`]).
    #[error("{}", not_confirmed(*generation, *current, why))]
    NotConfirmed { generation: u64, current: Option<u64>, why: drover_proto::Unconfirmable },
    /// The host waits for the confirmation of another generation than the
    /// one this run would install (another controller's, or one killed
    /// after activating it): nothing was shipped.
    #[error(
        "waiting for confirmation of generation {generation} until {}, which is not what this run would install (another controller's apply, or a run killed after activating it). Nothing was sent. Apply again after that deadline (the host reverts it then), or apply the project that generation came from to confirm it",
        crate::human::utc(*until_ms)
    )]
    PendingOther { generation: u64, until_ms: u64 },
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

fn not_confirmed(generation: u64, current: Option<u64>, why: &drover_proto::Unconfirmable) -> String {
    use drover_proto::Unconfirmable as U;
    let on = current.map_or_else(|| "none".to_string(), |c| c.to_string());
    match why {
        U::Replaced { by, rollback: true } => format!(
            "generation {generation} was replaced by generation {by} (rolled back by another controller) before this run confirmed it; the host is on generation {on}"
        ),
        U::Replaced { by, rollback: false } => format!(
            "generation {generation} was replaced by generation {by} (activated by another controller) before this run confirmed it; the host is on generation {on}"
        ),
        U::Expired { deadline_ms } => format!(
            "generation {generation} was reverted because confirmation came too late (the host's deadline was {}); the host is on generation {on}",
            crate::human::utc(*deadline_ms)
        ),
        U::NotLive => format!("generation {generation} is no longer live (the host is on generation {on})"),
    }
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
