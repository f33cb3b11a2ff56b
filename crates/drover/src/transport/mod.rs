//! How the controller reaches a host's agent.
//!
//! - [`Transport::Ssh`]: the real thing. One SSH connection per host; the
//!   agent is installed in the root-owned `/var/lib/drover/agent/` on first
//!   contact (and after every drover upgrade: a new hash is a new file),
//!   checked by sha256 as root before every start, and started under `sudo`
//!   for non-root users. See [`bootstrap`].
//! - [`Transport::Persist`]: the same, through the project's resident
//!   process when one serves (`[ssh] persist`, see [`resident`]): its held
//!   SSH session replaces the login; anything wrong with the resident and
//!   the connection goes direct, as [`Transport::Ssh`] (or, for simulated
//!   hosts, as [`Transport::Sim`]: the resident serves those too).
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
pub mod resident;
pub mod sim;
mod ssh;

use std::sync::Arc;
use std::time::Instant;

use drover_spec::{Host, Project};

use connection::{hello, hello_within, Keep};
pub use connection::{Connection, Timeouts};
pub use error::TransportError;
use link::AgentLink;
pub use resident::Via;
pub use ssh::ssh_target;

#[derive(Debug, Clone)]
pub enum Transport {
    Ssh,
    Persist(Arc<resident::Client>),
    Sim(Arc<sim::Sim>),
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
        Ok(Transport::Sim(Arc::new(sim::Sim::new(std::path::absolute(base)?, shape, processes))))
    }

    /// Through `project`'s resident when its `[ssh] persist` is set, for
    /// SSH and simulated hosts alike (a project without it: unchanged).
    pub fn persistent(self, project: &Project) -> Transport {
        let sim = match &self {
            Transport::Ssh => None,
            Transport::Sim(s) => Some(s.clone()),
            Transport::Persist(_) => return self,
        };
        match resident::Client::for_project(project, sim) {
            Some(c) => Transport::Persist(Arc::new(c)),
            None => self,
        }
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

    /// A connection of its own, never through the resident: the magic
    /// rollback's confirmation, whose point is that a new login still works.
    pub async fn connect_fresh(&self, host: &Host, t: Timeouts) -> Result<Connection, TransportError> {
        match self {
            Transport::Persist(client) => client_direct(client).connect_as(host, t, false).await,
            other => other.connect_as(host, t, false).await,
        }
    }

    async fn connect_as(&self, host: &Host, t: Timeouts, read_only: bool) -> Result<Connection, TransportError> {
        let start = Instant::now();
        let (mut c, connected) = match self {
            Transport::Ssh => ssh::connect_ssh(host, t, read_only).await?,
            Transport::Persist(client) => match through_resident(client, host, t, read_only).await? {
                Some(c) => c,
                None => match client.sim() {
                    Some(sim) => connect_sim(sim, host, t, read_only).await?,
                    None => ssh::connect_ssh(host, t, read_only).await?,
                },
            },
            Transport::Sim(sim) => connect_sim(sim, host, t, read_only).await?,
        };
        c.connect_time = connected - start;
        c.hello_time = connected.elapsed();
        Ok(c)
    }
}

/// How `client`'s hosts are reached without it.
fn client_direct(client: &resident::Client) -> Transport {
    client.sim().map_or(Transport::Ssh, |s| Transport::Sim(s.clone()))
}

async fn connect_sim(
    sim: &sim::Sim,
    host: &Host,
    t: Timeouts,
    read_only: bool,
) -> Result<(Connection, Instant), TransportError> {
    let (w, r, guard) = sim.open(host).await?;
    let connected = Instant::now();
    let link = AgentLink::start(w, r, None, t.op).await?;
    Ok((hello(link, Keep::Sim(guard), read_only).await?, connected))
}

/// The agent through the resident, or `None` (traced) to go direct: the
/// resident absent, not holding a session to the host yet (it logs in in
/// the background, for the next command), refusing, or its agent not
/// answering the hello (a host without the agent: the direct path installs
/// it). A host the agent reports busy is busy either way: that error is the
/// answer.
async fn through_resident(
    client: &resident::Client,
    host: &Host,
    t: Timeouts,
    read_only: bool,
) -> Result<Option<(Connection, Instant)>, TransportError> {
    let (w, r) = match client.open(host, read_only, t.connect).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("{}: not through the resident: {e}", host.name);
            return Ok(None);
        }
    };
    let connected = Instant::now();
    let password = if host.user == "root" { None } else { host.auth.password.as_deref() };
    // The agent may be one the resident kept from the last command, on a
    // host that froze since: its first answer is due within the connect
    // timeout, as a new SSH session's would be.
    let hello = async {
        let link = AgentLink::start(w, r, password, t.op).await?;
        hello_within(link, Keep::Resident, read_only, t.connect).await
    };
    match hello.await {
        Ok(c) => Ok(Some((c, connected))),
        Err(e @ TransportError::Link(link::LinkError::Busy(_))) => Err(e),
        Err(e) => {
            tracing::debug!("{}: the resident's agent did not answer ({e}); going direct", host.name);
            Ok(None)
        }
    }
}

/// Every connection is a file descriptor or two (SSH socket; for simulated
/// hosts a socket pair or pipes; the resident's Unix sockets), and
/// hundreds are open at once: lift the soft limit (often 1024) to the hard
/// one, as a server would. Used by a run and by the resident.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own; RLIMIT_NOFILE is valid.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur >= lim.rlim_max {
        return;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above; raising the soft limit up to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        tracing::debug!("could not raise the open-files limit: {}", std::io::Error::last_os_error());
    }
}
