//! Why a host's agent could not be reached. A leaf of the transport layer:
//! every way of reaching an agent (SSH, bootstrap, simulated) reports in it.

use drover_proto::PROTOCOL_VERSION;

use super::link::LinkError;

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
}

impl TransportError {
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Ssh(e) => e.is_transient(),
            TransportError::Link(e) => e.is_transient(),
            TransportError::Start(_) | TransportError::Version(_) => false,
        }
    }
}
