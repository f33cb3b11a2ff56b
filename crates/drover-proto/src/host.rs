//! What a host says about itself: its facts, its generations (and the one
//! awaiting confirmation, until when), its status, its log lines, and what
//! became of a generation a controller could not confirm.

use serde::{Deserialize, Serialize};

use crate::{Hash, ServiceStatus, Supervisor};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub state: HostState,
    /// Managed paths edited on the host since they were applied.
    pub drift: Vec<String>,
    pub services: Vec<ServiceStatus>,
    /// Drain reason, when drained.
    pub drained: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub at_ms: u64,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub os_id: String,
    pub os_version: String,
    pub arch: String,
    pub kernel: String,
    pub supervisor: Option<Supervisor>,
    pub cpus: u32,
    pub mem_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    pub current: Option<u64>,
    pub current_manifest: Option<Hash>,
    /// The number the next generation will get (numbers are never reused).
    pub next: u64,
    /// A generation activated but not yet confirmed.
    pub pending_confirm: Option<u64>,
    /// Until when (Unix ms) the agent waits for `pending_confirm`'s
    /// confirmation before reverting it: until then it refuses to activate
    /// another generation, so a controller with a different desired state
    /// knows before shipping anything.
    pub pending_deadline_ms: Option<u64>,
    /// What start-up recovery did, if anything (e.g. an interrupted apply
    /// rolled back, an unconfirmed generation reverted).
    pub recovered: Option<String>,
    /// Services that recovery's revert could not put back (the files are
    /// back; these may not be running).
    pub revert_errors: Vec<String>,
    /// All kept generations, oldest first.
    pub generations: Vec<u64>,
    /// Boots the agent's boot-time hook has counted (see `Reboot`).
    pub boots: u64,
}

/// What became of an activated generation that was never confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unconfirmable {
    /// Another activation replaced it while it awaited confirmation: a
    /// rollback (`rollback: true`) from a controller that does not share
    /// this one's state store, for one.
    Replaced { by: u64, rollback: bool },
    /// The agent reverted it: no confirmation came before its deadline.
    Expired { deadline_ms: u64 },
    /// It is not live, and the agent kept no record of why (an agent
    /// older than these records, or one long ago).
    NotLive,
}
