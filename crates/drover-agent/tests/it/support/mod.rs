//! What the agent's integration tests share: a client for the real agent
//! binary ([`Agent`]), and manifests built from file contents, with ways to
//! look at what a session left on disk ([`files`]).

mod client;
pub mod files;

pub use client::Agent;
