//! The host's service supervisor, as a type chosen from the host
//! environment ([`HostEnv`]), never from the target root.
//!
//! A real host drives the supervisor each service names (runit, systemd,
//! OpenRC, in [`system`]) through its own command-line tool or files. A
//! simulated host (a directory on the controller machine) gets the [`fake`]
//! supervisor: it records every call in the host's root and reports the
//! service up, so simulated fleets go through the same restart, reload,
//! health-check and revert path as real ones, and tests can assert which
//! calls a change made.

use std::time::Duration;

use drover_proto::{HealthCheck, HealthProbe, ServiceAction, ServiceStatus, Supervisor};

use crate::health::ProbeError;
use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::Result;

pub mod fake;
mod openrc;
mod system;

/// How long a service must have been up, in one process, before its gate
/// passes (see [`crate::gate`]): a service that crashes as it starts (its
/// port taken, its binary missing, its config unreadable) does so well
/// within this, while its probe may already have reached something else.
pub const SETTLE: Duration = Duration::from_secs(1);

/// What the agent asks of a supervisor for one kind of service.
pub trait Supervise {
    /// Start, stop, restart or reload the service `name`.
    fn control(&self, name: &str, action: ServiceAction) -> Result<()>;

    /// Make the supervisor re-read its unit files (systemd's
    /// `daemon-reload`); nothing for supervisors that read them on start.
    fn daemon_reload(&self) -> Result<()> {
        Ok(())
    }

    /// What the supervisor says about `name` now (`healthy` left `None`).
    fn status(&self, name: &str) -> ServiceStatus;

    /// One attempt of `name`'s health probe. A real host probes for real;
    /// the fake decides per probe (see [`fake`]).
    fn probe(&self, _name: &str, hc: &HealthCheck) -> std::result::Result<(), ProbeError> {
        crate::health::probe(&hc.probe, Duration::from_millis(hc.timeout_ms.max(1)), None)
    }

    /// Told once per gate how its probe ended (the fake records it).
    fn probed(&self, _name: &str, _probe: &HealthProbe, _passed: bool) {}

    /// How long a service must stay up before its gate passes: [`SETTLE`]
    /// on a real host; nothing on a simulated one, where nothing runs.
    fn settle(&self) -> Duration {
        SETTLE
    }

    /// The last lines `name` logged (bounded: [`drover_proto::LOG_TAIL_LINES`],
    /// [`drover_proto::LOG_TAIL_BYTES`]), oldest first, without timestamps.
    fn log_tail(&self, name: &str) -> Vec<String>;
}

impl HostEnv {
    /// The supervisor for services of `kind` on this host.
    pub fn supervisor(self, layout: &Layout, kind: Supervisor) -> Box<dyn Supervise> {
        match (self, kind) {
            (HostEnv::Simulated | HostEnv::InProcess, kind) => Box::new(fake::Fake::new(layout, kind)),
            (HostEnv::System, Supervisor::Runit) => Box::new(system::Runit),
            (HostEnv::System, Supervisor::Systemd) => Box::new(system::Systemd),
            (HostEnv::System, Supervisor::OpenRc) => Box::new(openrc::OpenRc),
        }
    }

    /// Whether systemd's journal is this host's (a simulated host has none:
    /// the controller machine's journal is not its log).
    pub fn has_journal(self) -> bool {
        self == HostEnv::System
    }

    /// The name of the host's pid 1 (`/proc/1/comm`); empty on a simulated
    /// host, whose pid 1 would be the controller machine's.
    pub fn init_name(self) -> String {
        match self {
            HostEnv::System => std::fs::read_to_string("/proc/1/comm").unwrap_or_default().trim().to_string(),
            HostEnv::Simulated | HostEnv::InProcess => String::new(),
        }
    }
}

/// The tail of a log file drover's units write (svlogd's `current`, with
/// `-tt` timestamps, which are dropped): only its last bytes are read.
pub(crate) fn file_tail(path: &std::path::Path) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return vec![] };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(4 * drover_proto::LOG_TAIL_BYTES as u64);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return vec![];
    }
    let mut bytes = Vec::new();
    let _ = f.take(len - from).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    // A read from the middle of the file starts mid-line: drop that part.
    let text = if from > 0 { text.split_once('\n').map_or("", |(_, rest)| rest) } else { &text };
    let plain: String = text.lines().map(|l| format!("{}\n", strip_svlogd_stamp(l))).collect();
    drover_proto::tail_lines(&plain, drover_proto::LOG_TAIL_LINES, drover_proto::LOG_TAIL_BYTES)
}

/// `2026-11-22_19:10:00.12345 text` → `text` (svlogd `-tt`); other lines as they are.
fn strip_svlogd_stamp(line: &str) -> &str {
    match line.split_once(' ') {
        Some((ts, rest)) if ts.len() > 20 && ts.as_bytes().get(10) == Some(&b'_') && ts.contains(':') => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_file_tail_drops_svlogd_stamps_and_keeps_the_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("current");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("2026-11-22_19:10:00.{i:05} line {i}\n"));
        }
        text.push_str("no stamp here\n");
        std::fs::write(&p, text).unwrap();
        let t = file_tail(&p);
        assert_eq!(t.len(), drover_proto::LOG_TAIL_LINES);
        assert_eq!((t[0].as_str(), t[19].as_str()), ("line 81", "no stamp here"));
        assert!(file_tail(&d.path().join("missing")).is_empty());
    }
}
