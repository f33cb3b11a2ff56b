//! Rolling upgrades: batch by batch behind health gates, resumable.
//!
//! A rollout is a plan (batches of host names and the policy) stored in the
//! state store before the first host is touched; `next_batch` advances only
//! when a batch is done, so a controller that dies mid-rollout is resumed by
//! `drover rollout resume` from the first unfinished batch. Between batches
//! the store is re-read: `pause` and `abort` from another terminal take
//! effect there.
//!
//! A batch is done when every host applied (the agent's service health
//! checks passed), stayed healthy for `min-healthy-time`, its `after-host`
//! hook passed, and the cluster check passed. Otherwise the rollout stops,
//! later batches stay untouched, and (by policy) the batch's updated hosts
//! are rolled back to their previous generation.

pub mod hold;
mod plan;
mod runner;
mod start;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drover_spec::rollout::Order;
use drover_spec::Project;

pub use plan::{BatchReport, Plan, RolloutReport};
use runner::Runner;
pub use start::{resume, start, PolicyOverrides, Resumed};

use super::fleet::Fleet;
use super::record::Run;
use super::spec::{Overrides, RunSpec};
use crate::host::{Mode, RebootPlan};
use crate::transport::Transport;

/// How this controller drives a rollout's batches (from `rollout start`'s
/// and `rollout resume`'s flags).
#[derive(Debug, Clone)]
pub struct Drive {
    /// Simulated hosts under this directory instead of SSH.
    pub simulate: Option<PathBuf>,
    pub retries: Option<u32>,
    pub op_timeout: Option<Duration>,
    /// How long a host may take to come back from a reboot (policies with `reboot = true`).
    pub reboot_timeout: Duration,
    /// Hand each batch to N local workers (and any on the same store).
    pub workers: Option<usize>,
    /// No progress on stderr.
    pub quiet: bool,
}

/// Run rollout `id`'s `plan` from batch `from` as `run`, and finish the run.
pub fn execute(
    dir: &Path,
    project: &Arc<Project>,
    mut run: Run,
    id: i64,
    plan: &Plan,
    from: usize,
    d: &Drive,
) -> anyhow::Result<RolloutReport> {
    let o = Overrides { retries: d.retries, op_timeout: d.op_timeout, ..Default::default() };
    let transport = Transport::for_hosts(d.simulate.as_deref(), None)?.persistent(project);
    let mut spec = RunSpec::of_project(project.clone(), transport, Mode::Apply, &o);
    if plan.policy.reboot {
        spec.job.reboot = Some(RebootPlan::every_host(d.reboot_timeout));
    }
    let mut fleet = Fleet::new(project, d.simulate.as_deref())?;
    fleet.timeouts.op = spec.job.timeouts.op;
    if !d.quiet {
        eprintln!(
            "rollout {id}: {} hosts in {} batches",
            plan.batches.iter().map(Vec::len).sum::<usize>(),
            plan.batches.len()
        );
    }
    let workers = match d.workers {
        Some(local) => {
            let mut work = super::workers::WorkSpec::of_run(
                dir,
                &spec,
                d.simulate.as_deref(),
                super::workers::SimSpec::unshaped(),
            )?;
            work.stop_first = plan.policy.order == Order::StopFirst;
            Some(super::workers::Workers { dir: dir.to_path_buf(), spec: work, local })
        }
        None => None,
    };
    spec.fence = run.watch();
    spec.job.activations = run.activations();
    let rt = super::fleet::runtime()?;
    let report = rt.block_on(async {
        let mut runner =
            Runner { project: project.clone(), fleet, spec, run: &mut run, rollout_id: id, json: d.quiet, workers };
        runner.run(plan, from).await
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    run.finish(report.status == drover_state::RolloutStatus::Done)?;
    Ok(report)
}
