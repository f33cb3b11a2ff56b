//! The supervisor of a simulated host: records each call and reports the
//! service up.
//!
//! Every call appends one line to [`CALLS`] under the host's root:
//! `start web`, `restart web`, `reload web`, `stop web`, `daemon-reload`,
//! and `health web <probe> ok|failed` once per health gate, so a test (or
//! someone curious about a simulated fleet) sees exactly what a change
//! drove.
//!
//! Health probes on a simulated host: a `command` probe runs for real,
//! through `/bin/sh` in the host's root directory (so `test -f etc/x`
//! checks the simulated host's files, and `false` makes it unhealthy and
//! exercises the revert path). A `tcp` or `http` probe is not made: no
//! service runs, and the controller machine's ports are shared by every
//! simulated host, so a connection would test whatever that machine happens
//! to run (and an unanswered port would only cost the check's retries, up
//! to seconds per host). It is recorded and counts as healthy.
//!
//! A service reports running (pid 1000 + its starts and restarts) unless
//! its last call stopped it, or a file [`EXITS`]`/<name>` in the root holds
//! an exit code: then its process exits as soon as it starts, and it
//! reports `restarting` with that code (a crash loop, whatever its probe
//! says). Its log is the file a generated runit unit writes
//! ([`drover_proto::service_log_file`]) under the root.

use std::io::Write;
use std::path::PathBuf;

use drover_proto::{Exit, HealthCheck, HealthProbe, ServiceAction, ServiceStatus, Supervisor, SupervisorState};

use super::Supervise;
use crate::health::ProbeError;
use crate::layout::Layout;
use crate::{Context, Result};

/// The fake's record, relative to the host's root.
pub const CALLS: &str = "run/fake-supervisor/calls";
/// Services that crash as they start: `<EXITS>/<name>` holds the exit code.
pub const EXITS: &str = "run/fake-supervisor/exit";

pub struct Fake {
    root: PathBuf,
    kind: Supervisor,
}

impl Fake {
    pub fn new(layout: &Layout, kind: Supervisor) -> Fake {
        Fake { root: layout.root().to_path_buf(), kind }
    }

    fn calls(&self) -> PathBuf {
        self.root.join(CALLS)
    }

    fn record(&self, line: &str) -> Result<()> {
        let path = self.calls();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        // One write per line: O_APPEND keeps concurrent writers' lines whole.
        f.write_all(format!("{line}\n").as_bytes()).ctx(|| format!("write {}", path.display()))
    }
}

fn verb(action: ServiceAction) -> &'static str {
    match action {
        ServiceAction::Start => "start",
        ServiceAction::Stop => "stop",
        ServiceAction::Restart => "restart",
        ServiceAction::Reload => "reload",
    }
}

impl Supervise for Fake {
    fn control(&self, name: &str, action: ServiceAction) -> Result<()> {
        self.record(&format!("{} {name}", verb(action)))
    }

    fn daemon_reload(&self) -> Result<()> {
        self.record("daemon-reload")
    }

    /// Running unless its last recorded call stopped it, or it is made to
    /// crash (see the module's doc).
    fn status(&self, name: &str) -> ServiceStatus {
        let mut st = ServiceStatus::unknown(name);
        let calls = std::fs::read_to_string(self.calls()).unwrap_or_default();
        let mine: Vec<&str> = calls
            .lines()
            .filter_map(|l| {
                let (verb, rest) = l.split_once(' ')?;
                (rest == name).then_some(verb)
            })
            .collect();
        let exit = std::fs::read_to_string(self.root.join(EXITS).join(name)).ok();
        st.state = match (mine.last(), exit) {
            (Some(&"stop"), _) => SupervisorState::Down { exit: None },
            (_, Some(code)) => SupervisorState::Restarting { exit: code.trim().parse().ok().map(Exit::Code) },
            _ => {
                let starts = mine.iter().filter(|v| matches!(**v, "start" | "restart")).count();
                SupervisorState::Running { pid: u32::try_from(1000 + starts).ok(), uptime_ms: None }
            }
        };
        st.detail = format!("simulated host: fake {:?} supervisor", self.kind).to_lowercase();
        st
    }

    fn probe(&self, _name: &str, hc: &HealthCheck) -> std::result::Result<(), ProbeError> {
        match &hc.probe {
            HealthProbe::Command(_) => {
                let timeout = std::time::Duration::from_millis(hc.timeout_ms.max(1));
                crate::health::probe(&hc.probe, timeout, Some(&self.root))
            }
            HealthProbe::Tcp { .. } | HealthProbe::Http { .. } => Ok(()),
        }
    }

    fn probed(&self, name: &str, probe: &HealthProbe, passed: bool) {
        let kind = match probe {
            HealthProbe::Command(_) => "command",
            HealthProbe::Tcp { .. } => "tcp",
            HealthProbe::Http { .. } => "http",
        };
        let _ = self.record(&format!("health {name} {kind} {}", if passed { "ok" } else { "failed" }));
    }

    /// Nothing runs on a simulated host: nothing to watch.
    fn settle(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    fn log_tail(&self, name: &str) -> Vec<String> {
        super::file_tail(&self.root.join(drover_proto::service_log_file(name).trim_start_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(probe: HealthProbe) -> HealthCheck {
        HealthCheck { probe, timeout_ms: 1000, retries: 3, interval_ms: 10_000 }
    }

    /// Calls are recorded in order; status follows the last one (and the
    /// pid each start); a service made to crash reports restarting with its
    /// exit code; a command probe runs in the host's root; a TCP probe to a
    /// port nobody listens on answers at once and passes.
    #[test]
    fn records_calls_reports_state_and_probes_commands_in_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/ready"), b"").unwrap();
        let f = Fake::new(&Layout::new(d.path()), Supervisor::Runit);
        f.control("web", ServiceAction::Start).unwrap();
        assert_eq!(f.status("web").state, SupervisorState::Running { pid: Some(1001), uptime_ms: None });
        f.control("web", ServiceAction::Stop).unwrap();
        assert_eq!(f.status("web").state, SupervisorState::Down { exit: None });
        f.control("web", ServiceAction::Restart).unwrap();
        assert_eq!(f.status("web").state.pid(), Some(1002));
        std::fs::create_dir_all(d.path().join(EXITS)).unwrap();
        std::fs::write(d.path().join(EXITS).join("web"), "127\n").unwrap();
        assert_eq!(f.status("web").state, SupervisorState::Restarting { exit: Some(Exit::Code(127)) });
        assert!(f.probe("web", &check(HealthProbe::Command("test -f etc/ready".into()))).is_ok());
        let t = std::time::Instant::now();
        assert!(f.probe("web", &check(HealthProbe::Tcp { port: 1 })).is_ok());
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "a simulated TCP probe must not wait");
        assert!(f.probe("web", &check(HealthProbe::Command("test -f etc/missing".into()))).is_err());
        f.probed("web", &HealthProbe::Tcp { port: 1 }, true);
        f.probed("web", &HealthProbe::Command("x".into()), false);
        let calls = std::fs::read_to_string(d.path().join(CALLS)).unwrap();
        assert_eq!(calls, "start web\nstop web\nrestart web\nhealth web tcp ok\nhealth web command failed\n");
    }
}
