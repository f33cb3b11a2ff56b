//! The host's service supervisor, as a type chosen from the host
//! environment ([`HostEnv`]), never from the target root.
//!
//! A real host drives the supervisor each service names (runit, systemd,
//! OpenRC, in [`system`]) through its own command-line tool. A simulated
//! host (a directory on the controller machine) gets the [`fake`]
//! supervisor: it records every call in the host's root and reports the
//! service up, so simulated fleets go through the same restart, reload,
//! health-check and revert path as real ones, and tests can assert which
//! calls a change made.

use drover_proto::{HealthCheck, ServiceAction, ServiceStatus, Supervisor};

use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::Result;

pub mod fake;
mod system;

/// What the agent asks of a supervisor for one kind of service.
pub trait Supervise {
    /// Start, stop, restart or reload the service `name`.
    fn control(&self, name: &str, action: ServiceAction) -> Result<()>;

    /// Make the supervisor re-read its unit files (systemd's
    /// `daemon-reload`); nothing for supervisors that read them on start.
    fn daemon_reload(&self) -> Result<()> {
        Ok(())
    }

    /// What the supervisor says about `name` (for `drover status`).
    fn status(&self, name: &str) -> ServiceStatus;

    /// Probe `name`'s health after a start, restart or reload. A real host
    /// probes for real; the fake decides per probe (see [`fake`]).
    fn health(&self, _name: &str, hc: &HealthCheck) -> std::result::Result<(), String> {
        crate::health::check(hc)
    }
}

impl HostEnv {
    /// The supervisor for services of `kind` on this host.
    pub fn supervisor(self, layout: &Layout, kind: Supervisor) -> Box<dyn Supervise> {
        match (self, kind) {
            (HostEnv::Simulated | HostEnv::InProcess, kind) => Box::new(fake::Fake::new(layout, kind)),
            (HostEnv::System, Supervisor::Runit) => Box::new(system::Runit),
            (HostEnv::System, Supervisor::Systemd) => Box::new(system::Systemd),
            (HostEnv::System, Supervisor::OpenRc) => Box::new(system::OpenRc),
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

/// A status with nothing known yet.
pub(crate) fn unknown(name: &str) -> ServiceStatus {
    ServiceStatus {
        name: name.to_string(),
        state: "unknown".into(),
        pid: None,
        uptime_s: None,
        healthy: None,
        detail: String::new(),
    }
}
