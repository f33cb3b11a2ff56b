//! What the resident holds for one host, and how it starts that host's
//! agent: an SSH session (a real host), or for simulated hosts
//! (`--simulate`) the way to reach the simulated hosts' process, whose
//! links carry the simulation's latency, bandwidth and failures between
//! the resident and the agent, where a real link's would be.

use std::sync::Arc;

use drover_spec::Host;
use drover_ssh::Session;

use super::super::bootstrap;
use super::super::connection::Timeouts;
use super::super::sim::{hosts, Sim};
use super::super::ssh::ssh_target;
use super::splice::Agent;

/// The simulation a resident serves, and its hosts' process.
pub struct SimHosts {
    pub sim: Arc<Sim>,
    pub process: hosts::Process,
}

/// One host's held session.
#[derive(Clone)]
pub enum Held {
    Ssh(Session),
    /// A simulated host has no login to keep: what is held is its kept
    /// agent's link alone (the simulation leaves the SSH session out).
    Sim(Arc<SimHosts>),
}

impl Held {
    /// Log in to `host` (with `sim`: nothing to log in to).
    pub async fn login(host: &Host, t: Timeouts, sim: Option<&Arc<SimHosts>>) -> Result<Held, String> {
        match sim {
            Some(s) => Ok(Held::Sim(s.clone())),
            None => Session::connect(&ssh_target(host, t)).await.map(Held::Ssh).map_err(|e| e.to_string()),
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Held::Ssh(s) => s.is_closed(),
            Held::Sim(_) => false,
        }
    }

    /// Start `host`'s agent: over SSH the same checked start command as a
    /// direct connection; simulated, a new link to the host's agent.
    pub async fn start_agent(&self, host: &Host) -> Result<Agent, String> {
        match self {
            Held::Ssh(s) => {
                s.exec(&bootstrap::serve_command(&host.user)).await.map(Agent::new).map_err(|e| e.to_string())
            }
            Held::Sim(s) => {
                let fate = s.sim.fate(host).map_err(|e| e.to_string())?;
                let (w, r) = hosts::connect(&s.process.socket, &host.name).await.map_err(|e| e.to_string())?;
                let (w, r) = s.sim.shaped(w, r, fate);
                Ok(Agent::sim(w, r))
            }
        }
    }

    pub async fn close(self) {
        if let Held::Ssh(s) = self {
            s.close().await;
        }
    }
}
