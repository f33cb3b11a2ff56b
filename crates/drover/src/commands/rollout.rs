//! `drover rollout start|pause|resume|abort|status`.

use std::path::{Path, PathBuf};

use drover_spec::rollout::{parse_batch_str, parse_order};

use super::deploy::duration;
use crate::exit::ExitStatus;
use crate::run::rollout::{self, Drive, Plan, PolicyOverrides, Resumed, RolloutReport};

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
    let dur = |flag: &str, v: &Option<String>| v.as_deref().map(|s| duration(flag, s)).transpose();
    let o = PolicyOverrides {
        batch: a.batch.as_deref().map(parse_batch_str).transpose().map_err(anyhow::Error::msg)?,
        canary: a.canary,
        delay: dur("--delay", &a.delay)?,
        max_failure_ratio: a.max_failure_ratio,
        min_healthy_time: dur("--min-healthy-time", &a.min_healthy_time)?,
        order: a.order.as_deref().map(parse_order).transpose().map_err(anyhow::Error::msg)?,
        no_revert: a.no_revert,
        reboot: a.reboot,
    };
    let report = rollout::start(dir, a.hosts.as_deref(), &o, &a.common.drive()?)?;
    finish(&report, a.common.json)
}

/// Print the report; exit 0 only when the rollout is done.
fn finish(report: &RolloutReport, json: bool) -> anyhow::Result<ExitStatus> {
    print(report, json)?;
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
    match rollout::resume(dir, a.force, &a.common.drive()?)? {
        Resumed::Unpaused { id, pid } => {
            println!("rollout {id} resumed (its controller, pid {pid}, continues)");
            Ok(ExitStatus::Success)
        }
        Resumed::Ran(report) => finish(&report, a.common.json),
    }
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
        let standing = crate::run::rollout::hold::standing(&store, &r)?;
        rows.push(serde_json::json!({
            "rollout": r.id,
            "status": r.status,
            "orphaned": matches!(standing, crate::run::rollout::hold::Standing::Orphaned(_)),
            "standing": standing.to_string(),
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
                r["standing"].as_str().unwrap_or(""),
                r["next_batch"],
                total
            );
        }
    }
    Ok(ExitStatus::Success)
}
