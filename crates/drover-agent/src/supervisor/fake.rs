//! The supervisor of a simulated host: records each call and reports the
//! service up.
//!
//! Every call appends one line to [`CALLS`] under the host's root:
//! `start web`, `restart web`, `reload web`, `stop web`, `daemon-reload`,
//! and `health web <probe>` for each health check, so a test (or someone
//! curious about a simulated fleet) sees exactly what a change drove.
//!
//! Health probes on a simulated host: a `command` probe runs for real,
//! through `/bin/sh` in the host's root directory (so `test -f etc/x`
//! checks the simulated host's files, and `false` makes it unhealthy and
//! exercises the revert path). A `tcp` or `http` probe is not made: no
//! service runs, and the controller machine's ports are shared by every
//! simulated host, so a connection would test whatever that machine happens
//! to run (and an unanswered port would only cost the check's retries, up
//! to seconds per host). It is recorded and counts as healthy.

use std::io::Write;
use std::path::PathBuf;

use drover_proto::{HealthCheck, HealthProbe, ServiceAction, ServiceStatus, Supervisor};

use super::{unknown, Supervise};
use crate::layout::Layout;
use crate::{Context, Result};

/// The fake's record, relative to the host's root.
pub const CALLS: &str = "run/fake-supervisor/calls";

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

    /// Up (`run`) unless its last recorded call stopped it.
    fn status(&self, name: &str) -> ServiceStatus {
        let mut st = unknown(name);
        let calls = std::fs::read_to_string(self.calls()).unwrap_or_default();
        let last = calls.lines().rev().find_map(|l| {
            let (verb, rest) = l.split_once(' ')?;
            (rest == name).then_some(verb)
        });
        st.state = if last == Some("stop") { "down".into() } else { "run".into() };
        st.detail = format!("simulated host: fake {:?} supervisor", self.kind).to_lowercase();
        st
    }

    fn health(&self, name: &str, hc: &HealthCheck) -> std::result::Result<(), String> {
        let (kind, result) = match &hc.probe {
            HealthProbe::Command(_) => ("command", crate::health::check_in(hc, Some(&self.root))),
            HealthProbe::Tcp { .. } => ("tcp", Ok(())),
            HealthProbe::Http { .. } => ("http", Ok(())),
        };
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.record(&format!("health {name} {kind} {outcome}")).map_err(|e| e.0)?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(probe: HealthProbe) -> HealthCheck {
        HealthCheck { probe, timeout_ms: 1000, retries: 3, interval_ms: 10_000 }
    }

    /// Calls are recorded in order; status follows the last one; a command
    /// probe runs in the host's root; a TCP probe to a port nobody listens
    /// on answers at once (no retries waited out) and is recorded.
    #[test]
    fn records_calls_reports_up_and_probes_commands_in_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/ready"), b"").unwrap();
        let f = Fake::new(&Layout::new(d.path()), Supervisor::Runit);
        f.control("web", ServiceAction::Start).unwrap();
        assert_eq!(f.status("web").state, "run");
        f.control("web", ServiceAction::Stop).unwrap();
        assert_eq!(f.status("web").state, "down");
        f.control("web", ServiceAction::Restart).unwrap();
        assert_eq!(f.status("web").state, "run");
        assert!(f.health("web", &check(HealthProbe::Command("test -f etc/ready".into()))).is_ok());
        let t = std::time::Instant::now();
        assert!(f.health("web", &check(HealthProbe::Tcp { port: 1 })).is_ok());
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "a simulated TCP probe must not wait");
        let once = HealthCheck { retries: 1, ..check(HealthProbe::Command("test -f etc/missing".into())) };
        assert!(f.health("web", &once).is_err());
        let calls = std::fs::read_to_string(d.path().join(CALLS)).unwrap();
        assert_eq!(
            calls,
            "start web\nstop web\nrestart web\nhealth web command ok\nhealth web tcp ok\nhealth web command failed\n"
        );
    }
}
