//! Why a host's agent could not be reached. A leaf of the transport layer:
//! every way of reaching an agent (SSH, bootstrap, simulated) reports in it.

use drover_proto::PROTOCOL_VERSION;

use super::link::LinkError;
use crate::agent_bin::{arch_list, Arch};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Ssh(#[from] drover_ssh::SshError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("could not start the agent: {0}")]
    Start(String),
    #[error("agent speaks protocol {0}, this drover {PROTOCOL_VERSION}")]
    Version(u32),
    /// The host's machine (what its `uname -m` said) has no agent in this
    /// controller's table: refused before anything was uploaded, and not
    /// retried (the host will not change machine).
    #[error(
        "architecture {arch} is not supported: drover carries agents for {}; nothing was uploaded to the host (leave it out of the run with --hosts, or use a drover that carries an agent for {arch})",
        arch_list(carried)
    )]
    UnsupportedArch { arch: Arch, carried: Vec<Arch> },
}

impl TransportError {
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Ssh(e) => e.is_transient(),
            TransportError::Link(e) => e.is_transient(),
            TransportError::Start(_) | TransportError::Version(_) | TransportError::UnsupportedArch { .. } => false,
        }
    }
}
