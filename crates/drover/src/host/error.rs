//! Why one host's session failed, and whether trying again may help.

use crate::transport::link::LinkError;
use crate::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{0}")]
    Spec(String),
    #[error("{0}")]
    Other(String),
}

impl HostError {
    pub fn is_transient(&self) -> bool {
        match self {
            HostError::Transport(e) => e.is_transient(),
            HostError::Link(e) => e.is_transient(),
            _ => false,
        }
    }
}
