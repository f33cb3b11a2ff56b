//! Refusals: a command that will not start because something outside it says
//! no (a lock held, an unfinished rollout, the machine lacks what it needs).
//! Exit code 3, decided in `crate::exit` from this type alone.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Another drover holds some of the hosts (the store's message names them).
    #[error("{0}")]
    HostsLocked(String),
    #[error("rollout {id} is {status} (batch {batch}); `drover rollout resume` or `drover rollout abort` it first")]
    RolloutUnfinished { id: i64, status: String, batch: i64 },
    /// A paused or orphaned rollout holds some of the hosts asked for (see
    /// `run::rollout::hold`).
    #[error(
        "rollout {id} is {standing} at batch {batch} and holds {}: {}. `drover rollout resume` or `drover rollout abort` it first, or pass --force to change them anyway",
        if hosts.len() == 1 { "1 of these hosts".to_string() } else { format!("{} of these hosts", hosts.len()) },
        hosts.join(", ")
    )]
    RolloutHolds { id: i64, standing: String, batch: i64, hosts: Vec<String> },
    #[error("rollout {id} is running (controller pid {pid})")]
    RolloutRunning { id: i64, pid: u32 },
    /// The project changed since the rollout started (see `run::resume::check_resume`).
    #[error(transparent)]
    Resume(#[from] super::resume::ResumeError),
    /// The machine cannot run a lab (not root, a tool missing).
    #[error("{0}")]
    Lab(String),
    #[error("no public key at {}: pass --pubkey", .0.display())]
    NoPublicKey(PathBuf),
}
