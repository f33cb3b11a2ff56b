//! `drover worker`: claim and run host jobs of runs split across
//! controllers (logic: `crate::workers`).

use std::path::Path;

use crate::exit::ExitStatus;
use crate::run::workers::{self, WorkerOptions};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The shared state store (PostgreSQL URL) to take jobs from [default:
    /// the project's: DROVER_STATE_URL, else `[state] url`].
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,
    /// Keep polling for new runs instead of exiting when no run has
    /// unfinished jobs.
    #[arg(long)]
    pub follow: bool,
    /// Jobs (hosts) claimed at once; small batches keep the split among
    /// workers even.
    #[arg(long, default_value_t = 16)]
    pub batch: i64,
    /// Hosts this worker runs at once (it claims more batches while fewer
    /// are in flight; a run's own --parallel also caps it).
    #[arg(long, default_value_t = 128)]
    pub parallel: usize,
    /// How long a claimed job stays this worker's without renewal; a job of
    /// a worker that died is claimable again this long after its last renewal.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub lease: String,
}

pub fn run(dir: &Path, a: WorkerArgs) -> anyhow::Result<ExitStatus> {
    if let Some(url) = &a.state {
        // Everything else that opens the store (the fact cache of each
        // host's compile) reads it from the environment; nothing else runs
        // yet, so setting it here is race-free.
        std::env::set_var("DROVER_STATE_URL", url);
    }
    let lease = drover_spec::parse_duration(&a.lease).map_err(|e| anyhow::anyhow!("--lease: {e}"))?;
    anyhow::ensure!(lease >= std::time::Duration::from_millis(300), "--lease {}: use at least 300ms", a.lease);
    let s = workers::work(dir, &WorkerOptions { batch: a.batch, parallel: a.parallel, lease, follow: a.follow })?;
    eprintln!("worker {}: {} host(s) done in run(s) {:?}", s.id, s.hosts, s.runs);
    Ok(ExitStatus::Success)
}
