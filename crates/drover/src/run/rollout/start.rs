//! Starting a rollout (the plan recorded before any host is touched) and
//! resuming one whose controller stopped (only with the project it started
//! with, unless forced).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use drover_spec::rollout::{BatchSize, Order};
use drover_spec::{Host, Project, RolloutPolicy};
use drover_state::RolloutStatus;

use super::plan::{Plan, RolloutReport};
use super::Drive;
use crate::revision::Revision;
use crate::run::record::Run;
use crate::run::refusal::Refusal;
use crate::run::workers::WorkersError;
use crate::select::select;

/// What `rollout start`'s flags change of the project's `[rollout]` policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyOverrides {
    pub batch: Option<BatchSize>,
    pub canary: Option<usize>,
    pub delay: Option<Duration>,
    pub max_failure_ratio: Option<f64>,
    pub min_healthy_time: Option<Duration>,
    pub order: Option<Order>,
    pub no_revert: bool,
    pub reboot: bool,
}

impl PolicyOverrides {
    fn apply(&self, mut p: RolloutPolicy) -> anyhow::Result<RolloutPolicy> {
        if let Some(r) = self.max_failure_ratio {
            anyhow::ensure!((0.0..=1.0).contains(&r), "--max-failure-ratio must be between 0 and 1");
            p.max_failure_ratio = r;
        }
        p.batch = self.batch.unwrap_or(p.batch);
        p.canary = self.canary.unwrap_or(p.canary);
        p.delay = self.delay.unwrap_or(p.delay);
        p.min_healthy_time = self.min_healthy_time.unwrap_or(p.min_healthy_time);
        p.order = self.order.unwrap_or(p.order);
        p.revert_failed_batch &= !self.no_revert;
        p.reboot |= self.reboot;
        Ok(p)
    }
}

/// `rollout start`: plan the batches of the selected hosts (drained ones
/// left out), record the plan, and run it.
pub fn start(dir: &Path, selector: Option<&str>, o: &PolicyOverrides, d: &Drive) -> anyhow::Result<RolloutReport> {
    if d.workers.is_some() {
        crate::run::workers::require_shared_store(dir)?;
    }
    let project = Arc::new(crate::store::load_project(dir)?);
    let mut hosts = select(&project.hosts, selector)?;
    crate::run::spec::preflight(&project, &hosts)?;
    let drained = crate::store::drained(dir)?;
    hosts.retain(|h| !drained.iter().any(|(d, _)| *d == h.name));
    let policy = o.apply(project.rollout_policy(policy_role(&project, selector, &hosts).as_deref()))?;
    if policy.reboot && d.workers.is_some() {
        return Err(WorkersError::Unsupported("rebooting (--reboot or a policy's reboot)").into());
    }
    if policy.reboot {
        // Before the rollout is recorded: nothing to abort afterwards.
        let plan = crate::host::RebootPlan::every_host(Duration::ZERO);
        crate::host::reboot::refuse_simulated(Some(&plan), d.simulate.as_deref())?;
    }
    let store = crate::store::open(dir)?;
    if let Some(r) = store.unfinished_rollout()? {
        return Err(
            Refusal::RolloutUnfinished { id: r.id, status: r.status.to_string(), batch: r.next_batch + 1 }.into()
        );
    }
    drop(store);
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let plan = Plan { batches: policy.batches(&names), policy };
    let mut run = Run::start(dir, "rollout", &names)?;
    let revision = Revision::of(dir).to_string();
    let id = run.store.create_rollout(Some(run.id), &serde_json::to_string(&plan)?, &revision)?;
    super::execute(dir, &project, run, id, &plan, 0, d)
}

/// Whose `[rollout]` applies: the role named by `--hosts`, else the one role
/// with a policy that the selected hosts have; else the project default.
fn policy_role(project: &Project, sel: Option<&str>, hosts: &[Host]) -> Option<String> {
    if let Some(s) = sel.filter(|s| project.has_rollout_policy(s)) {
        return Some(s.to_string());
    }
    let mut roles: Vec<&String> =
        hosts.iter().flat_map(|h| h.roles.iter()).filter(|r| project.has_rollout_policy(r)).collect();
    roles.sort();
    roles.dedup();
    match roles.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

/// What `rollout resume` did.
pub enum Resumed {
    /// The rollout's own controller still runs; it was paused and now
    /// continues there.
    Unpaused { id: i64, pid: u32 },
    /// This process took the rollout over and ran its remaining batches.
    Ran(RolloutReport),
}

/// `rollout resume`: unpause a rollout whose controller runs, or take over
/// one whose controller died, from its first unfinished batch.
pub fn resume(dir: &Path, force: bool, d: &Drive) -> anyhow::Result<Resumed> {
    if d.workers.is_some() {
        crate::run::workers::require_shared_store(dir)?;
    }
    let mut store = crate::store::open(dir)?;
    let Some(r) = store.unfinished_rollout()? else { anyhow::bail!("no paused or interrupted rollout to resume") };
    let owner = r.run_id.map(|id| store.run_pid(id)).transpose()?.flatten();
    let recorded_owner = r.run_id.map(|id| store.run(id)).transpose()?.flatten().and_then(|run| run.owner);
    // By lease (any machine) when the run has an owner; runs recorded
    // before owners were, by pid on this machine.
    let owner_alive = match recorded_owner {
        Some(_) => matches!(super::hold::standing(&store, &r)?, super::hold::Standing::Live(_)),
        None => owner.is_some_and(|p| p != std::process::id() && Path::new(&format!("/proc/{p}")).exists()),
    };
    if owner_alive {
        if r.status == RolloutStatus::Paused {
            store.update_rollout(r.id, r.next_batch, RolloutStatus::Running)?;
            return Ok(Resumed::Unpaused { id: r.id, pid: owner.unwrap_or(0) });
        }
        return Err(Refusal::RolloutRunning { id: r.id, pid: owner.unwrap_or(0) }.into());
    }
    let now = Revision::of(dir);
    crate::run::resume::check_resume(r.id, r.revision.as_deref(), &now, force).map_err(Refusal::Resume)?;
    if force && r.revision.as_deref().map(Revision::parse).is_none_or(|s| !s.same_inputs(&now)) {
        eprintln!(
            "warning: rollout {} started at {}; continuing with the project at {now} (--force)",
            r.id,
            r.revision.as_deref().unwrap_or("an unrecorded revision")
        );
    }
    let plan: Plan = serde_json::from_str(&r.plan)?;
    if plan.policy.reboot && d.workers.is_some() {
        return Err(WorkersError::Unsupported("rebooting (--reboot or a policy's reboot)").into());
    }
    let from = usize::try_from(r.next_batch).unwrap_or(0);
    let project = Arc::new(crate::store::load_project(dir)?);
    let names: Vec<String> = plan.batches.iter().skip(from).flatten().cloned().collect();
    drop(store);
    let mut run = Run::start(dir, "rollout resume", &names)?;
    // This process drives the rollout now: a later `pause` and `resume`
    // must find it, not the controller that died.
    run.store.take_over_rollout(r.id, run.id)?;
    if !d.quiet {
        eprintln!("continuing rollout {} from batch {} of {}", r.id, from + 1, plan.batches.len());
    }
    Ok(Resumed::Ran(super::execute(dir, &project, run, r.id, &plan, from, d)?))
}
