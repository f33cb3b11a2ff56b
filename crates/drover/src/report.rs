//! What happened on each host, as a table for people and JSON for machines.

use std::fmt::Write as _;

use drover_proto::Change;
use serde::{Deserialize, Serialize};

use crate::phases::Phases;

/// What happened on a host: the same type the state store records (one
/// `Outcome`, one spelling of each).
pub use drover_state::Outcome;

/// Deserialized too: a run split across workers is reported from the
/// reports its workers recorded (`crate::workers`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    pub host: String,
    pub outcome: Outcome,
    pub generation: Option<u64>,
    pub changes: Vec<Change>,
    pub restarts: Vec<String>,
    /// Packages, users and groups the host lacked (see `Response::Diff`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// Compressed blob bytes sent (0 on a no-op).
    pub bytes_sent: u64,
    pub blobs_sent: u64,
    /// Paths the agent wrote or removed.
    pub files_written: u64,
    pub duration_ms: u64,
    /// Where `duration_ms` went (see [`crate::phases`]). Absent in a
    /// report read back from an older run's JSON.
    #[serde(default)]
    pub phases: Phases,
    pub attempts: u32,
    pub error: Option<String>,
    /// What the agent's start-up recovery did, if anything.
    pub recovered: Option<String>,
    /// `plan --diff` only: each change, host content against project content.
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub diffs: Option<Vec<crate::plan::FileDiff>>,
    /// Services a revert (after a failed health check, or of an unconfirmed
    /// generation) could not stop or start again: the files are back, but
    /// these may not be running.
    pub revert_errors: Vec<String>,
    /// The host was rebooted in this run (`--reboot`, `drover reboot`).
    pub rebooted: bool,
}

impl HostReport {
    pub fn new(host: &str) -> HostReport {
        HostReport {
            host: host.to_string(),
            outcome: Outcome::Failed,
            generation: None,
            changes: vec![],
            restarts: vec![],
            setup: vec![],
            bytes_sent: 0,
            blobs_sent: 0,
            files_written: 0,
            duration_ms: 0,
            phases: Phases::default(),
            attempts: 0,
            error: None,
            recovered: None,
            diffs: None,
            revert_errors: vec![],
            rebooted: false,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub command: String,
    pub hosts: Vec<HostReport>,
    pub duration_ms: u64,
    /// Every host's phases added up: where the fleet's time went.
    pub phases: Phases,
    /// `plan` only: service instances that would be added, removed or
    /// moved to another host (see `crate::instances`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<crate::instances::InstanceChange>,
}

impl RunReport {
    pub fn failed(&self) -> usize {
        self.hosts.iter().filter(|h| h.outcome.is_failure()).count()
    }

    /// Hosts where `plan` found something to do.
    pub fn planned(&self) -> usize {
        self.hosts.iter().filter(|h| h.outcome == Outcome::Planned).count()
    }

    /// The summary table printed at the end of a run.
    pub fn table(&self, with_changes: bool) -> String {
        let mut out = String::new();
        let w = self.hosts.iter().map(|h| h.host.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            out,
            "{:<w$}  {:<11}  {:>4}  {:>7}  {:>9}  {:<20}  DETAIL",
            "HOST", "RESULT", "GEN", "CHANGES", "SENT", "RESTARTED"
        );
        for h in &self.hosts {
            let gen = h.generation.map_or("-".to_string(), |g| g.to_string());
            let mut detail = h.error.clone().or_else(|| h.recovered.clone()).unwrap_or_default();
            if h.rebooted && detail.is_empty() {
                detail = "rebooted".into();
            }
            for e in &h.revert_errors {
                let _ = write!(detail, "{}revert left a service down: {e}", if detail.is_empty() { "" } else { "; " });
            }
            let restarted = if h.restarts.is_empty() { "-".to_string() } else { h.restarts.join(",") };
            let _ = writeln!(
                out,
                "{:<w$}  {:<11}  {:>4}  {:>7}  {:>9}  {:<20}  {}",
                h.host,
                h.outcome.as_str(),
                gen,
                h.changes.len(),
                human_bytes(h.bytes_sent),
                restarted,
                detail
            );
            if with_changes {
                for c in &h.changes {
                    let _ = writeln!(out, "{:<w$}    {} {}", "", c.kind.symbol(), c.path);
                }
            }
        }
        let count = |o: Outcome| self.hosts.iter().filter(|h| h.outcome == o).count();
        let sent: u64 = self.hosts.iter().map(|h| h.bytes_sent).sum();
        let _ = writeln!(
            out,
            "\n{} hosts: {} changed, {} unchanged, {} planned, {} rolled back, {} failed, {} unreachable; {} sent in {:.1}s",
            self.hosts.len(),
            count(Outcome::Changed),
            count(Outcome::Unchanged),
            count(Outcome::Planned),
            count(Outcome::RolledBack),
            count(Outcome::Failed),
            count(Outcome::Unreachable),
            human_bytes(sent),
            self.duration_ms as f64 / 1000.0
        );
        out
    }
}

pub fn human_bytes(b: u64) -> String {
    match b {
        0..=1023 => format!("{b} B"),
        1024..=1_048_575 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}
