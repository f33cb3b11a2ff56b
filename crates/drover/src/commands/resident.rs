//! `drover resident` (hidden): the per-user process that holds a project's
//! SSH sessions between commands (`[ssh] persist`, docs/ssh.md
//! "Persistent connections"). Started by the first command that wants it;
//! the logic is `crate::transport::resident`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exit::ExitStatus;
use crate::transport::{resident, sim, Timeouts, Transport};

#[derive(Debug, clap::Args)]
pub struct ResidentArgs {
    /// The socket to serve (named by the client; checked against the
    /// project and inventory as loaded here).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Exit after this many milliseconds with no client.
    #[arg(long, value_name = "MS")]
    pub idle_ms: u64,
    /// Simulated hosts under DIR (`--simulate`) instead of SSH.
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
    #[command(flatten)]
    pub sim: crate::transport::sim::SimArgs,
    /// Be the simulated hosts' process of a resident (started by it, with
    /// its stdin a pipe from it): serve the agents under `--simulate` at
    /// `--socket` until stdin ends.
    #[arg(long, requires = "simulate")]
    pub sim_hosts: bool,
}

pub fn run(dir: &Path, a: ResidentArgs) -> anyhow::Result<ExitStatus> {
    if let (true, Some(base)) = (a.sim_hosts, &a.simulate) {
        sim::hosts::serve(base, &a.socket)?;
        return Ok(ExitStatus::Success);
    }
    let project = drover_spec::Project::load(dir)?;
    let canonical = std::fs::canonicalize(dir)?;
    let sim = match Transport::for_hosts(a.simulate.as_deref(), Some(&a.sim))? {
        Transport::Sim(s) => Some(s),
        _ => None,
    };
    let expected = resident::socket_name(&canonical, &project.hosts, sim.as_deref());
    // The project or inventory changed between the client's load and ours:
    // serving under the client's name would bind it to hosts it did not see.
    anyhow::ensure!(
        a.socket.file_name().is_some_and(|n| n == expected.as_str())
            && a.socket.parent().is_some_and(|d| resident::socket_dir().as_deref() == Some(d)),
        "{}: not this project's resident socket (expected {expected}); the inventory changed?",
        a.socket.display()
    );
    let spec = resident::ServeSpec {
        socket: a.socket,
        hosts: project.hosts,
        timeouts: Timeouts { connect: project.settings.connect_timeout, op: crate::run::spec::OP_TIMEOUT },
        idle: Duration::from_millis(a.idle_ms),
        sim,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(resident::serve(spec))?;
    Ok(ExitStatus::Success)
}
