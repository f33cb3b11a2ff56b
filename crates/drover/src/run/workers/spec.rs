//! What a run's jobs carry for the workers: the run's deploy options as
//! recorded with its jobs, and the errors of work split across controllers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::host::Mode;
use crate::run::record;
use crate::run::spec::{Overrides, RunSpec};
use crate::transport::sim::SimArgs;
use crate::transport::Transport;

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error(
        "--workers needs a shared PostgreSQL state store, and this project's is SQLite ({0}): workers on other machines cannot reach that file, and it cannot hand jobs to several controllers. Set `[state] url = \"postgres://…\"` in drover.toml or DROVER_STATE_URL (docs/operations.md, \"Shared state on PostgreSQL\")"
    )]
    NeedsPostgres(String),
    #[error("--workers: {0} is not supported with workers yet; run it without --workers")]
    Unsupported(&'static str),
    #[error(
        "run {run_id} was started from project revision {theirs}, but this worker's project ({dir}) is at {ours}: a worker must deploy what the run planned. Check out the same revision (or run the worker with -C pointing at it)"
    )]
    Revision { run_id: i64, dir: String, theirs: String, ours: String },
    #[error("run {run_id}: its work spec cannot be read ({reason}); was it recorded by another drover version?")]
    BadSpec { run_id: i64, reason: String },
}

pub(super) fn store_lost(who: impl Into<String>, e: impl std::fmt::Display, in_flight: String) -> record::StoreLost {
    record::StoreLost { who: who.into(), reason: e.to_string(), in_flight }
}

/// What a worker needs to run a job the way the applying controller would
/// have: the run's deploy options. Stored as JSON with the run's jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkSpec {
    /// The project revision the run was planned from (see [`crate::store::project_rev`]).
    pub revision: String,
    /// `--simulate DIR` (absolute): simulated hosts instead of SSH.
    pub simulate: Option<PathBuf>,
    pub sim: SimSpec,
    pub retries: u32,
    pub op_timeout_ms: u64,
    pub confirm_timeout_ms: u64,
    pub parallel: usize,
    /// A rollout's `order = "stop-first"`.
    #[serde(default)]
    pub stop_first: bool,
}

/// The `--sim-*` flags, as recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SimSpec {
    pub latency: String,
    pub bandwidth: String,
    pub failure_rate: f64,
    pub processes: bool,
}

impl WorkSpec {
    /// The spec that runs hosts as `spec` would, at `dir`'s revision, on
    /// hosts simulated under `simulate` with links as `sim` describes.
    pub fn of_run(dir: &Path, spec: &RunSpec, simulate: Option<&Path>, sim: SimSpec) -> anyhow::Result<WorkSpec> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(WorkSpec {
            revision: crate::store::project_rev(dir),
            simulate: simulate.map(std::path::absolute).transpose()?,
            sim,
            retries: spec.job.retries,
            op_timeout_ms: ms(spec.job.timeouts.op),
            confirm_timeout_ms: spec.job.confirm_timeout.map_or(0, ms),
            parallel: spec.parallel,
            stop_first: spec.job.stop_first,
        })
    }

    pub(super) fn run_spec(&self, project: drover_spec::Project) -> anyhow::Result<RunSpec> {
        let sim = SimArgs {
            sim_latency: self.sim.latency.clone(),
            sim_bandwidth: self.sim.bandwidth.clone(),
            sim_failure_rate: self.sim.failure_rate,
            sim_processes: self.sim.processes,
        };
        let transport = Transport::for_hosts(self.simulate.as_deref(), Some(&sim))?;
        let o = Overrides {
            parallel: Some(self.parallel),
            confirm_timeout: Some(Some(Duration::from_millis(self.confirm_timeout_ms)).filter(|d| !d.is_zero())),
            retries: Some(self.retries),
            op_timeout: Some(Duration::from_millis(self.op_timeout_ms)),
        };
        let mut spec = RunSpec::of_project(Arc::new(project), transport, Mode::Apply, &o);
        spec.job.stop_first = self.stop_first;
        Ok(spec)
    }
}

impl SimSpec {
    /// The unshaped links `rollout --simulate` uses.
    pub fn unshaped() -> SimSpec {
        SimSpec { latency: "0".into(), bandwidth: "0".into(), failure_rate: 0.0, processes: true }
    }
}

impl From<&SimArgs> for SimSpec {
    fn from(a: &SimArgs) -> SimSpec {
        SimSpec {
            latency: a.sim_latency.clone(),
            bandwidth: a.sim_bandwidth.clone(),
            failure_rate: a.sim_failure_rate,
            processes: a.sim_processes,
        }
    }
}
