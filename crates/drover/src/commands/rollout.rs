//! `drover rollout start|pause|resume|abort|status`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use drover_spec::rollout::{parse_batch_str, parse_order};
use drover_spec::Project;

use super::deploy::duration;
use crate::exit::ExitStatus;
use crate::revision::Revision;
use crate::run::rollout::{self, Drive, Plan, RolloutReport};
use crate::run::workers::WorkersError;
use crate::run::Refusal;
use crate::select::select;

#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Start a rolling upgrade of the selected hosts, batch by batch.
    Start(StartArgs),
    /// Pause the running rollout after its current batch.
    Pause,
    /// Resume a paused rollout, or continue one whose controller died
    /// (refused if the project changed since it started, unless --force).
    Resume(ResumeArgs),
    /// Stop the rollout after its current batch; later batches stay untouched.
    Abort,
    /// Show recent rollouts.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Machine-readable report on stdout.
    #[arg(long)]
    pub json: bool,
    /// Simulated transport (see `drover apply --simulate`).
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
    /// Longest silence tolerated from an agent during one step [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub op_timeout: Option<String>,
    /// Extra attempts per host after a transient failure (connection lost, timeout) [default: 3].
    #[arg(long)]
    pub retries: Option<u32>,
    /// How long a host may take to come back from a reboot (rollouts with
    /// `--reboot` or `reboot = true`).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub reboot_timeout: String,
    /// Hand each batch to N local worker processes and any `drover worker
    /// --follow` on the same PostgreSQL store (0: only those), as
    /// `apply --workers` does; gates and reverts stay here.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// Continue a rollout whose controller died even though the project
    /// changed since it started (the remaining batches get the project as it
    /// is now).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Hosts to upgrade: host, group or role names, comma-separated. A single
    /// role name also selects that role's `[rollout]` policy.
    #[arg(long)]
    pub hosts: Option<String>,
    /// Hosts per batch, or a percentage ("25%").
    #[arg(long)]
    pub batch: Option<String>,
    /// Size of a first, canary batch.
    #[arg(long)]
    pub canary: Option<usize>,
    /// Pause between batches (e.g. 30s).
    #[arg(long, value_name = "DURATION")]
    pub delay: Option<String>,
    /// Failed hosts per batch (ratio) tolerated before stopping.
    #[arg(long)]
    pub max_failure_ratio: Option<f64>,
    /// How long a batch must stay healthy before it counts as done.
    #[arg(long, value_name = "DURATION")]
    pub min_healthy_time: Option<String>,
    /// stop-first or start-first.
    #[arg(long)]
    pub order: Option<String>,
    /// Do not revert the hosts of a failed batch.
    #[arg(long)]
    pub no_revert: bool,
    /// Reboot each host after activation and confirm it once back healthy
    /// (as `reboot = true` in the policy); a failed batch's revert reboots too.
    #[arg(long)]
    pub reboot: bool,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(dir: &Path, a: RolloutArgs) -> anyhow::Result<ExitStatus> {
    match a.action {
        Action::Start(s) => start(dir, s),
        Action::Resume(r) => resume(dir, r),
        Action::Pause => set_status(dir, drover_state::RolloutStatus::Paused),
        Action::Abort => set_status(dir, drover_state::RolloutStatus::Aborted),
        Action::Status { json } => status(dir, json),
    }
}

impl Common {
    fn drive(&self) -> anyhow::Result<Drive> {
        Ok(Drive {
            simulate: self.simulate.clone(),
            retries: self.retries,
            op_timeout: self.op_timeout.as_deref().map(|s| duration("--op-timeout", s)).transpose()?,
            reboot_timeout: duration("--reboot-timeout", &self.reboot_timeout)?,
            workers: self.workers,
            quiet: self.json,
        })
    }
}

fn start(dir: &Path, a: StartArgs) -> anyhow::Result<ExitStatus> {
    if a.common.workers.is_some() {
        crate::run::workers::require_shared_store(dir)?;
    }
    let project = Arc::new(crate::store::load_project(dir)?);
    let mut hosts = select(&project.hosts, a.hosts.as_deref())?;
    crate::run::spec::preflight(&project, &hosts)?;
    let drained = crate::store::drained(dir)?;
    hosts.retain(|h| !drained.iter().any(|(d, _)| *d == h.name));
    let mut policy = project.rollout_policy(policy_role(&project, a.hosts.as_deref(), &hosts).as_deref());
    let dur = |s: &str| drover_spec::parse_duration(s).map_err(anyhow::Error::msg);
    if let Some(b) = &a.batch {
        policy.batch = parse_batch_str(b).map_err(anyhow::Error::msg)?;
    }
    if let Some(c) = a.canary {
        policy.canary = c;
    }
    if let Some(d) = &a.delay {
        policy.delay = dur(d)?;
    }
    if let Some(r) = a.max_failure_ratio {
        anyhow::ensure!((0.0..=1.0).contains(&r), "--max-failure-ratio must be between 0 and 1");
        policy.max_failure_ratio = r;
    }
    if let Some(d) = &a.min_healthy_time {
        policy.min_healthy_time = dur(d)?;
    }
    if let Some(o) = &a.order {
        policy.order = parse_order(o).map_err(anyhow::Error::msg)?;
    }
    if a.no_revert {
        policy.revert_failed_batch = false;
    }
    if a.reboot {
        policy.reboot = true;
    }
    if policy.reboot && a.common.workers.is_some() {
        return Err(WorkersError::Unsupported("rebooting (--reboot or a policy's reboot)").into());
    }
    if policy.reboot {
        // Before the rollout is recorded: nothing to abort afterwards.
        let plan = crate::host::RebootPlan::every_host(std::time::Duration::ZERO);
        crate::host::reboot::refuse_simulated(Some(&plan), a.common.simulate.as_deref())?;
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
    let mut run = crate::run::record::Run::start(dir, "rollout", &names)?;
    let revision = Revision::of(dir).to_string();
    let id = run.store.create_rollout(Some(run.id), &serde_json::to_string(&plan)?, &revision)?;
    execute(dir, &project, run, id, &plan, 0, &a.common)
}

/// Whose `[rollout]` applies: the role named by `--hosts`, else the one role
/// with a policy that the selected hosts have; else the project default.
fn policy_role(project: &Project, sel: Option<&str>, hosts: &[drover_spec::Host]) -> Option<String> {
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

fn execute(
    dir: &Path,
    project: &Arc<Project>,
    run: crate::run::record::Run,
    id: i64,
    plan: &Plan,
    from: usize,
    c: &Common,
) -> anyhow::Result<ExitStatus> {
    let report = rollout::execute(dir, project, run, id, plan, from, &c.drive()?)?;
    print(&report, c.json)?;
    Ok(if report.status == drover_state::RolloutStatus::Done { ExitStatus::Success } else { ExitStatus::HostsFailed })
}

fn print(r: &RolloutReport, json: bool) -> anyhow::Result<()> {
    if json {
        /// The report with every host's phases added up.
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a RolloutReport,
            phases: crate::phases::Phases,
        }
        let hosts = r.batches.iter().flat_map(|b| b.reports.iter().chain(&b.reverted));
        let out = Out { report: r, phases: crate::phases::Phases::sum(hosts.map(|h| &h.phases)) };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{:<6} {:<8} {:<30} DETAIL", "BATCH", "RESULT", "HOSTS");
    for b in &r.batches {
        println!(
            "{:<6} {:<8} {:<30} {}",
            b.index + 1,
            b.outcome,
            b.hosts.join(","),
            b.reason.clone().unwrap_or_default()
        );
        for h in b.reverted.iter() {
            println!(
                "{:<6} {:<8} {:<30} reverted to generation {}",
                "",
                "",
                h.host,
                h.generation.map_or("-".into(), |g| g.to_string())
            );
        }
    }
    println!("\nrollout {}: {}", r.rollout, r.status);
    Ok(())
}

fn resume(dir: &Path, a: ResumeArgs) -> anyhow::Result<ExitStatus> {
    let c = a.common;
    if c.workers.is_some() {
        crate::run::workers::require_shared_store(dir)?;
    }
    let mut store = crate::store::open(dir)?;
    let Some(r) = store.unfinished_rollout()? else { anyhow::bail!("no paused or interrupted rollout to resume") };
    let owner = r.run_id.map(|id| store.run_pid(id)).transpose()?.flatten();
    let owner_alive = owner.is_some_and(|p| p != std::process::id() && Path::new(&format!("/proc/{p}")).exists());
    if owner_alive {
        if r.status == drover_state::RolloutStatus::Paused {
            store.update_rollout(r.id, r.next_batch, drover_state::RolloutStatus::Running)?;
            println!("rollout {} resumed (its controller, pid {}, continues)", r.id, owner.unwrap_or(0));
            return Ok(ExitStatus::Success);
        }
        return Err(Refusal::RolloutRunning { id: r.id, pid: owner.unwrap_or(0) }.into());
    }
    let now = Revision::of(dir);
    crate::run::resume::check_resume(r.id, r.revision.as_deref(), &now, a.force).map_err(Refusal::Resume)?;
    if a.force && r.revision.as_deref().map(Revision::parse).is_none_or(|s| !s.same_inputs(&now)) {
        eprintln!(
            "warning: rollout {} started at {}; continuing with the project at {now} (--force)",
            r.id,
            r.revision.as_deref().unwrap_or("an unrecorded revision")
        );
    }
    let plan: Plan = serde_json::from_str(&r.plan)?;
    if plan.policy.reboot && c.workers.is_some() {
        return Err(WorkersError::Unsupported("rebooting (--reboot or a policy's reboot)").into());
    }
    let from = usize::try_from(r.next_batch).unwrap_or(0);
    let project = Arc::new(crate::store::load_project(dir)?);
    let names: Vec<String> = plan.batches.iter().skip(from).flatten().cloned().collect();
    drop(store);
    let mut run = crate::run::record::Run::start(dir, "rollout resume", &names)?;
    // This process drives the rollout now: a later `pause` and `resume`
    // must find it, not the controller that died.
    run.store.take_over_rollout(r.id, run.id)?;
    if !c.json {
        eprintln!("continuing rollout {} from batch {} of {}", r.id, from + 1, plan.batches.len());
    }
    execute(dir, &project, run, r.id, &plan, from, &c)
}

fn set_status(dir: &Path, status: drover_state::RolloutStatus) -> anyhow::Result<ExitStatus> {
    let mut store = crate::store::open(dir)?;
    let Some(r) = store.unfinished_rollout()? else { anyhow::bail!("no rollout in progress") };
    store.update_rollout(r.id, r.next_batch, status)?;
    println!("rollout {}: {status} (takes effect between batches)", r.id);
    Ok(ExitStatus::Success)
}

fn status(dir: &Path, json: bool) -> anyhow::Result<ExitStatus> {
    let store = crate::store::open(dir)?;
    let mut rows = Vec::new();
    for r in store.rollouts(10)? {
        let plan: Plan = serde_json::from_str(&r.plan)?;
        rows.push(serde_json::json!({
            "rollout": r.id,
            "status": r.status,
            "next_batch": r.next_batch,
            "batches": plan.batches,
            "revision": r.revision,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in rows {
            let total = r["batches"].as_array().map_or(0, Vec::len);
            println!(
                "rollout {}: {} ({} of {} batches done)",
                r["rollout"],
                r["status"].as_str().unwrap_or(""),
                r["next_batch"],
                total
            );
        }
    }
    Ok(ExitStatus::Success)
}
