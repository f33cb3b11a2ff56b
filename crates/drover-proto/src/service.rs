//! What a supervisor says about a service, and why a service failed: the
//! types the agent's health gate, `drover status` and every report carry.
//!
//! A state is a type, not the supervisor's word (`run`, `active`): runit,
//! systemd and OpenRC each say it differently, and "is it up" must mean the
//! same everywhere (`drover status`, the gate after a restart, a rollout's
//! re-check, the dashboard). In JSON a [`ServiceStatus`] stays flat and
//! readable (`"state": "running", "pid": 123, "uptime_ms": 4500`): it is
//! (de)serialized through [`StatusRecord`], on the wire as in `--json`.

use serde::{Deserialize, Serialize};

use crate::ServiceAction;

/// Last lines of a service's log carried in a failure report (oldest first).
pub const LOG_TAIL_LINES: usize = 20;
/// Most bytes of log lines (or of a health command's output) in one report.
pub const LOG_TAIL_BYTES: usize = 4096;

/// How a process ended, when the supervisor knows it (systemd does; runit
/// and OpenRC do not record it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What the supervisor says about a service now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorState {
    /// Up: its main process (when the supervisor names one) and how long it
    /// has been up (when the supervisor says).
    Running { pid: Option<u32>, uptime_ms: Option<u64> },
    /// Being started (systemd's `activating`): not up yet, not failed.
    Starting,
    /// Its process ended and the supervisor will start it again: a crash
    /// loop looks like this most of the time.
    Restarting { exit: Option<Exit> },
    /// Not running, and not meant to be (stopped, or never started).
    Down { exit: Option<Exit> },
    /// The supervisor gave up on it (systemd's `failed`, OpenRC's `crashed`).
    Failed { exit: Option<Exit> },
    /// The supervisor could not be asked, or said something else.
    Unknown,
}

impl SupervisorState {
    /// The one word for it, as `status` and `--json` show it.
    pub fn word(&self) -> &'static str {
        match self {
            SupervisorState::Running { .. } => "running",
            SupervisorState::Starting => "starting",
            SupervisorState::Restarting { .. } => "restarting",
            SupervisorState::Down { .. } => "down",
            SupervisorState::Failed { .. } => "failed",
            SupervisorState::Unknown => "unknown",
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self, SupervisorState::Running { .. })
    }

    pub fn exit(&self) -> Option<Exit> {
        match self {
            SupervisorState::Restarting { exit }
            | SupervisorState::Down { exit }
            | SupervisorState::Failed { exit } => *exit,
            _ => None,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            SupervisorState::Running { pid, .. } => *pid,
            _ => None,
        }
    }

    pub fn uptime_ms(&self) -> Option<u64> {
        match self {
            SupervisorState::Running { uptime_ms, .. } => *uptime_ms,
            _ => None,
        }
    }
}

/// `running (pid 123, up 4.5s)`, `restarting (last exit: exit code 127)`.
impl std::fmt::Display for SupervisorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())?;
        let mut parts = Vec::new();
        if let Some(p) = self.pid() {
            parts.push(format!("pid {p}"));
        }
        if let Some(u) = self.uptime_ms() {
            parts.push(format!("up {:.1}s", u as f64 / 1000.0));
        }
        if let Some(e) = self.exit() {
            parts.push(format!("last exit: {e}"));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StatusRecord", from = "StatusRecord")]
pub struct ServiceStatus {
    pub name: String,
    pub state: SupervisorState,
    /// Up and passing its health check now (see [`ServiceStatus::is_up`]);
    /// `None` without a health check.
    pub healthy: Option<bool>,
    /// The supervisor's own words, or why the health check failed.
    pub detail: String,
}

impl ServiceStatus {
    /// A status with nothing known yet.
    pub fn unknown(name: &str) -> ServiceStatus {
        ServiceStatus { name: name.to_string(), state: SupervisorState::Unknown, healthy: None, detail: String::new() }
    }

    /// Running, and not failing its health check: what every caller means
    /// by a service being fine (status, rollout gates, the dashboard).
    pub fn is_up(&self) -> bool {
        self.state.is_running() && self.healthy != Some(false)
    }
}

/// [`ServiceStatus`] as it is written: a word and flat fields.
#[derive(Serialize, Deserialize)]
struct StatusRecord {
    name: String,
    state: String,
    pid: Option<u32>,
    uptime_ms: Option<u64>,
    exit_code: Option<i32>,
    exit_signal: Option<i32>,
    healthy: Option<bool>,
    detail: String,
}

impl From<ServiceStatus> for StatusRecord {
    fn from(s: ServiceStatus) -> StatusRecord {
        let exit = s.state.exit();
        StatusRecord {
            state: s.state.word().to_string(),
            pid: s.state.pid(),
            uptime_ms: s.state.uptime_ms(),
            exit_code: match exit {
                Some(Exit::Code(c)) => Some(c),
                _ => None,
            },
            exit_signal: match exit {
                Some(Exit::Signal(c)) => Some(c),
                _ => None,
            },
            name: s.name,
            healthy: s.healthy,
            detail: s.detail,
        }
    }
}

impl From<StatusRecord> for ServiceStatus {
    fn from(r: StatusRecord) -> ServiceStatus {
        let exit = r.exit_code.map(Exit::Code).or(r.exit_signal.map(Exit::Signal));
        let state = match r.state.as_str() {
            "running" => SupervisorState::Running { pid: r.pid, uptime_ms: r.uptime_ms },
            "starting" => SupervisorState::Starting,
            "restarting" => SupervisorState::Restarting { exit },
            "down" => SupervisorState::Down { exit },
            "failed" => SupervisorState::Failed { exit },
            _ => SupervisorState::Unknown,
        };
        ServiceStatus { name: r.name, state, healthy: r.healthy, detail: r.detail }
    }
}

/// What a health `command` printed, and how it ended (tails, bounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// `None` when it was killed (timed out, or by a signal).
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// What a service failed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureCause {
    /// The supervisor could not start, restart or reload it.
    Control { action: ServiceAction, error: String },
    /// Not running when its gate began. (Every variant has fields, so that
    /// each is an object in JSON: `{"not-running": {}}`.)
    NotRunning {},
    /// Its process ended during the gate.
    Exited {},
    /// A new process replaced the one the gate began with: it exited and
    /// the supervisor started it again.
    Restarted { pid_before: Option<u32> },
    /// Its health probe never passed.
    Probe {
        /// The probe, as people read it (`GET http://127.0.0.1:9000/health`).
        probe: String,
        attempts: u32,
        /// Why the last attempt failed.
        error: String,
        /// A `command` probe's output and exit status (last attempt).
        output: Option<CommandOutput>,
    },
}

/// Why a service failed its gate or its start, as data: what failed, what
/// the supervisor said then, and the last lines the service logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFailure {
    pub service: String,
    pub cause: FailureCause,
    pub state: ServiceStatus,
    /// At most [`LOG_TAIL_LINES`] lines and [`LOG_TAIL_BYTES`] bytes,
    /// oldest first; the controller replaces the project's secret values in
    /// them before showing or storing them.
    pub log: Vec<String>,
}

/// One line, for a table's DETAIL column and a batch's reason: what failed,
/// the supervisor's state, and the service's last log line.
impl std::fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.service;
        match &self.cause {
            FailureCause::Control { action, error } => write!(f, "service {s}: {} failed: {error}", action.as_str())?,
            FailureCause::NotRunning {} => write!(f, "service {s} is not running")?,
            FailureCause::Exited {} => write!(f, "service {s} exited during its health gate")?,
            FailureCause::Restarted { .. } => write!(f, "service {s} restarted during its health gate")?,
            FailureCause::Probe { probe, attempts, error, .. } => {
                write!(f, "service {s}: {probe} after {attempts} attempts: {error}")?
            }
        }
        write!(f, "; supervisor: {}", self.state.state)?;
        if let Some(last) = self.log.last() {
            write!(f, "; last log line: {last}")?;
        }
        Ok(())
    }
}

/// The last `max_lines` lines of `text` within `max_bytes` (whole lines;
/// one longer line is cut from its start), oldest first.
pub fn tail_lines(text: &str, max_lines: usize, max_bytes: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut bytes = 0;
    for line in text.lines().rev().filter(|l| !l.trim().is_empty()) {
        if out.len() == max_lines {
            break;
        }
        let line = line.trim_end();
        if bytes + line.len() > max_bytes {
            if out.is_empty() {
                let mut cut = line.len() - max_bytes;
                while !line.is_char_boundary(cut) {
                    cut += 1;
                }
                out.push(format!("…{}", &line[cut..]));
            }
            break;
        }
        bytes += line.len();
        out.push(line.to_string());
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_back_as_written_and_is_a_word_plus_fields_in_json() {
        let states = [
            SupervisorState::Running { pid: Some(42), uptime_ms: Some(1500) },
            SupervisorState::Running { pid: None, uptime_ms: None },
            SupervisorState::Starting,
            SupervisorState::Restarting { exit: Some(Exit::Code(127)) },
            SupervisorState::Down { exit: None },
            SupervisorState::Failed { exit: Some(Exit::Signal(9)) },
            SupervisorState::Unknown,
        ];
        for state in states {
            let s = ServiceStatus { name: "web".into(), state, healthy: Some(true), detail: "d".into() };
            let wire: ServiceStatus = postcard::from_bytes(&postcard::to_stdvec(&s).unwrap()).unwrap();
            assert_eq!(wire, s);
        }
        let s = ServiceStatus {
            name: "web".into(),
            state: SupervisorState::Restarting { exit: Some(Exit::Code(127)) },
            healthy: Some(false),
            detail: String::new(),
        };
        let record = StatusRecord::from(s.clone());
        assert_eq!((record.state.as_str(), record.exit_code, record.pid), ("restarting", Some(127), None));
        assert!(!s.is_up());
        assert_eq!(s.state.to_string(), "restarting (last exit: exit code 127)");
    }

    #[test]
    fn tails_keep_the_last_lines_within_the_byte_bound() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let t = tail_lines(&text, 20, 4096);
        assert_eq!((t.len(), t[0].as_str(), t[19].as_str()), (20, "line 11", "line 30"));
        assert_eq!(tail_lines(&text, 20, 16), ["line 29", "line 30"]);
        let long = "x".repeat(5000);
        let t = tail_lines(&long, 20, 4096);
        assert_eq!(t.len(), 1);
        assert!(t[0].len() <= 4096 + "…".len());
        assert!(tail_lines("\n\n", 5, 10).is_empty());
    }
}
