//! How the controller reaches a host's agent.
//!
//! - [`Transport::Ssh`]: the real thing. One SSH connection per host; the
//!   agent is installed in the root-owned `/var/lib/drover/agent/` on first
//!   contact (and after every drover upgrade: a new hash is a new file),
//!   checked by sha256 as root before every start, and started under `sudo`
//!   for non-root users. See [`bootstrap`].
//! - [`Transport::Sim`]: simulated hosts at scale, agents in-process (or as
//!   processes) over shaped links: latency, bandwidth, failures. See
//!   [`sim`].
//!
//! The remote commands are fixed strings whose only variable parts are the
//! agent's hex digests and a checked temporary path: there is no remote shell
//! built from user input. The protocol itself is typed frames.

pub mod bootstrap;
mod connection;
mod error;
pub mod link;
pub mod sim;
mod ssh;

use std::time::Instant;

use drover_spec::Host;

use connection::{hello, Keep};
pub use connection::{Connection, Timeouts};
pub use error::TransportError;
use link::AgentLink;
pub use ssh::ssh_target;

#[derive(Debug, Clone)]
pub enum Transport {
    Ssh,
    Sim(std::sync::Arc<sim::Sim>),
}

impl Transport {
    /// SSH, or with `--simulate DIR` simulated hosts `DIR/<host>` whose links
    /// `sim` shapes (`None`: unshaped links, one local agent process per
    /// connection: what `--simulate DIR` means for the commands without
    /// `--sim-*` flags: rollout, status, logs, exec, drain). The one place
    /// that choice is made.
    pub fn for_hosts(simulate: Option<&std::path::Path>, sim: Option<&sim::SimArgs>) -> anyhow::Result<Transport> {
        let Some(base) = simulate else { return Ok(Transport::Ssh) };
        let (shape, processes) = match sim {
            Some(a) => (a.shape()?, a.sim_processes),
            None => (sim::LinkShape::default(), true),
        };
        Ok(Transport::Sim(std::sync::Arc::new(sim::Sim::new(std::path::absolute(base)?, shape, processes))))
    }

    pub async fn connect(&self, host: &Host, t: Timeouts) -> Result<Connection, TransportError> {
        self.connect_as(host, t, false).await
    }

    /// A session that only looks (`drover plan`): the agent takes no lock,
    /// runs no recovery and writes nothing (at most, the agent binary is
    /// pushed to its cache on first contact).
    pub async fn connect_read_only(&self, host: &Host, t: Timeouts) -> Result<Connection, TransportError> {
        self.connect_as(host, t, true).await
    }

    async fn connect_as(&self, host: &Host, t: Timeouts, read_only: bool) -> Result<Connection, TransportError> {
        let start = Instant::now();
        let (mut c, connected) = match self {
            Transport::Ssh => ssh::connect_ssh(host, t, read_only).await?,
            Transport::Sim(sim) => {
                let (w, r, guard) = sim.open(host).await?;
                let connected = Instant::now();
                let link = AgentLink::start(w, r, None, t.op).await?;
                (hello(link, Keep::Sim(guard), read_only).await?, connected)
            }
        };
        c.connect_time = connected - start;
        c.hello_time = connected.elapsed();
        Ok(c)
    }
}
