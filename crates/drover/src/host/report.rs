//! What happened on one host: its outcome, changes, bytes and phases.

use drover_proto::{Change, FailureCause, ServiceAction, ServiceFailure, ServiceRestart};
use serde::{Deserialize, Serialize};

use crate::phases::Phases;

/// What happened on a host: the same type the state store records (one
/// `Outcome`, one spelling of each).
pub use drover_state::Outcome;

/// Deserialized too: a run split across workers is reported from the
/// reports its workers recorded (`crate::run::workers`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    pub host: String,
    pub outcome: Outcome,
    pub generation: Option<u64>,
    pub changes: Vec<Change>,
    /// Services restarted (`plan`: to be started, stopped, restarted or
    /// reloaded). In JSON each is the service's name, or `name:action` for
    /// anything but a restart, as before these were typed.
    #[serde(with = "restart_text")]
    pub restarts: Vec<ServiceRestart>,
    /// Packages, users and groups the host lacked (see `Response::Diff`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// Compressed blob bytes sent, deltas included (0 on a no-op).
    pub bytes_sent: u64,
    /// Blobs sent whole.
    pub blobs_sent: u64,
    /// Blobs sent as binary deltas against the version the host held.
    #[serde(default)]
    pub deltas_sent: u64,
    /// Deltas the host could not use (its base gone, a rebuilt blob that
    /// did not verify), and why: those blobs were then sent whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delta_failed: Vec<String>,
    /// Paths the agent wrote or removed.
    pub files_written: u64,
    pub duration_ms: u64,
    /// When the host's session began (ms since the epoch): the dashboard's
    /// run timeline places the host's bar by it. Absent in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    /// How its last session reached the agent: `resident` (a held SSH
    /// session, `[ssh] persist`) or `direct`. Absent when none was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<crate::transport::Via>,
    /// Where `duration_ms` went (see [`crate::phases`]). Absent in a
    /// report read back from an older run's JSON.
    #[serde(default)]
    pub phases: Phases,
    pub attempts: u32,
    pub error: Option<String>,
    /// Why a service failed its health gate or its (re)start, as data: the
    /// supervisor's state, the exit code when known, the last lines of its
    /// log (the project's secret values replaced), a health command's
    /// output. `error` says the same in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ServiceFailure>,
    /// The filesystem that refused a write of the transition, or on which
    /// the agent's check before it found too little room: its mount point,
    /// free and needed bytes, and where that left the host, as data.
    /// `error` says the same in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<drover_proto::StorageFailure>,
    /// What the agent's start-up recovery did, if anything.
    pub recovered: Option<String>,
    /// `plan --diff` only: each change, host content against project content.
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub diffs: Option<Vec<super::diff::FileDiff>>,
    /// Services a revert (after a failed health check, or of an unconfirmed
    /// generation) could not stop or start again: the files are back, but
    /// these may not be running.
    pub revert_errors: Vec<String>,
    /// Why each earlier attempt ended, when the session was tried again
    /// after a transient failure (an agent killed mid-transfer, a cut link):
    /// a host that converged on its second try still says what happened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<String>,
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
            deltas_sent: 0,
            delta_failed: vec![],
            files_written: 0,
            duration_ms: 0,
            started_ms: None,
            via: None,
            phases: Phases::default(),
            attempts: 0,
            error: None,
            failure: None,
            storage: None,
            recovered: None,
            diffs: None,
            revert_errors: vec![],
            retried: vec![],
            rebooted: false,
        }
    }
}

/// A restart as people and `--json` read it: `web`, `web:reload`, `node-3:stop`.
pub fn restart_text(r: &ServiceRestart) -> String {
    match r.action {
        ServiceAction::Restart => r.name.clone(),
        a => format!("{}:{}", r.name, a.as_str()),
    }
}

/// A service's failure for people, one line each (the run table prints
/// them under the host's row): what failed, the supervisor's state, a
/// health command's output, the service's last log lines.
pub fn failure_lines(f: &ServiceFailure) -> Vec<String> {
    let s = &f.service;
    let mut out = vec![match &f.cause {
        FailureCause::Control { action, error } => format!("service {s}: {} failed: {error}", action.as_str()),
        FailureCause::NotRunning {} => format!("service {s}: not running when its health gate began"),
        FailureCause::Exited {} => format!("service {s}: exited during its health gate"),
        FailureCause::Restarted { pid_before } => format!(
            "service {s}: restarted during its health gate (a new process{})",
            pid_before.map(|p| format!(" replaced pid {p}")).unwrap_or_default()
        ),
        FailureCause::Probe { probe, attempts, error, .. } => {
            format!("service {s}: {probe} failed {attempts} times, last: {error}")
        }
    }];
    out.push(format!(
        "supervisor: {}{}",
        f.state.state,
        if f.state.detail.is_empty() { String::new() } else { format!(" [{}]", f.state.detail) }
    ));
    if let FailureCause::Probe { output: Some(o), .. } = &f.cause {
        let how = match (o.code, o.timed_out) {
            (_, true) => "timed out".to_string(),
            (Some(c), false) => format!("exit status {c}"),
            (None, false) => "killed by a signal".to_string(),
        };
        out.push(format!("health command: {how}"));
        for (name, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            for line in text.lines() {
                out.push(format!("  {name}: {line}"));
            }
        }
    }
    if f.log.is_empty() {
        out.push(format!("no log lines from {s}"));
    } else {
        out.push(format!("last {} log lines of {s}:", f.log.len()));
        out.extend(f.log.iter().map(|l| format!("  {l}")));
    }
    out
}

/// The agent reports what it restarted after an activation as text (`web`,
/// `web:reload`): read it back into the type once, here.
pub fn parse_restart(s: &str) -> ServiceRestart {
    let action = |a: &str| match a {
        "start" => Some(ServiceAction::Start),
        "restart" => Some(ServiceAction::Restart),
        "stop" => Some(ServiceAction::Stop),
        "reload" => Some(ServiceAction::Reload),
        _ => None,
    };
    match s.rsplit_once(':').and_then(|(n, a)| Some((n, action(a)?))) {
        Some((name, action)) => ServiceRestart { name: name.to_string(), action },
        None => ServiceRestart { name: s.to_string(), action: ServiceAction::Restart },
    }
}

/// `HostReport::restarts` as a list of strings in JSON.
mod restart_text {
    use drover_proto::ServiceRestart;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[ServiceRestart], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(super::restart_text).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServiceRestart>, D::Error> {
        Ok(Vec::<String>::deserialize(d)?.iter().map(|s| super::parse_restart(s)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_read_back_as_written() {
        for text in ["web", "web:reload", "node-3:stop", "node-12:start", "a:b:reload", "odd:name"] {
            assert_eq!(restart_text(&parse_restart(text)), text, "{text}");
        }
        let r = parse_restart("odd:name");
        assert_eq!((r.name.as_str(), r.action), ("odd:name", ServiceAction::Restart));
    }
}
