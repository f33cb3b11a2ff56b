//! An open session with a host's agent, after the hello exchange, however
//! the bytes travel (SSH channel or simulated link).

use std::time::Duration;

use drover_proto::{Facts, HostState, Request, Response, PROTOCOL_VERSION};

use super::error::TransportError;
use super::link::{AgentLink, LinkError};
use super::resident::Via;
use crate::agent_bin::{self, Agent, Arch};

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest silence tolerated from an agent during an operation.
    pub op: Duration,
}

/// An open session with a host's agent, after the hello exchange.
pub struct Connection {
    pub link: AgentLink,
    pub facts: Facts,
    pub state: HostState,
    /// How long the transport took to reach the host (SSH: TCP, handshake,
    /// authentication) and then to start the agent and exchange the hello
    /// (an agent push included): the `connect` and `hello` phases.
    pub connect_time: Duration,
    pub hello_time: Duration,
    /// Through the resident, or a session of its own.
    pub via: super::resident::Via,
    _keep: Keep,
}

pub(super) enum Keep {
    Ssh(drover_ssh::Session),
    Sim(super::sim::Guard),
    /// The resident holds the SSH session; this end is only the socket.
    Resident,
}

impl Connection {
    /// The agent of this controller's table for the host's machine, by what
    /// the running agent reports (`facts.arch`, the machine it was built
    /// for): the one the bootstrap installed there. `None` only for a
    /// machine this controller carries no agent for, which the bootstrap
    /// refuses before an agent ever runs.
    pub fn agent(&self) -> Option<&'static Agent> {
        agent_bin::for_arch(&Arch::from_uname(&self.facts.arch))
    }

    pub async fn close(self) {
        match self._keep {
            // The resident keeps the agent for the next command.
            Keep::Resident => return self.link.detach().await,
            _ => self.link.close().await,
        }
        match self._keep {
            Keep::Ssh(s) => s.close().await,
            Keep::Sim(g) => g.close().await,
            Keep::Resident => {}
        }
    }
}

pub(super) async fn hello(link: AgentLink, keep: Keep, read_only: bool) -> Result<Connection, TransportError> {
    let within = link.timeout();
    hello_within(link, keep, read_only, within).await
}

/// [`hello`] whose first answer is due within `first` (see
/// [`AgentLink::call_first_within`]).
pub(super) async fn hello_within(
    mut link: AgentLink,
    keep: Keep,
    read_only: bool,
    first: Duration,
) -> Result<Connection, TransportError> {
    let req = Request::Hello {
        protocol: PROTOCOL_VERSION,
        controller: format!("drover {}", env!("CARGO_PKG_VERSION")),
        idle_ms: u64::try_from(link.timeout().as_millis()).unwrap_or(u64::MAX),
        read_only,
    };
    match link.call_first_within(&req, first, &mut |_| {}).await? {
        Response::Hello { protocol, facts, state, .. } if protocol == PROTOCOL_VERSION => {
            let via = if matches!(keep, Keep::Resident) { Via::Resident } else { Via::Direct };
            Ok(Connection {
                link,
                facts,
                state,
                connect_time: Duration::ZERO,
                hello_time: Duration::ZERO,
                via,
                _keep: keep,
            })
        }
        Response::Hello { protocol, .. } => Err(TransportError::Version(protocol)),
        other => Err(LinkError::Protocol(format!("expected Hello, got {other:?}")).into()),
    }
}
