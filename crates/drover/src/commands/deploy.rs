//! `drover plan`, `drover apply`, `drover rollback`: one pipeline, three goals.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exit::ExitStatus;
use crate::host::Mode;
use crate::run::deploy::Request;
use crate::run::{Overrides, RunReport};

#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// Only these hosts: host, group or role names, comma-separated.
    #[arg(long)]
    pub hosts: Option<String>,
    /// Print the report as JSON on stdout (no table, no progress).
    #[arg(long)]
    pub json: bool,
    /// Hosts handled at once [default: drover.toml apply.parallel, else 512].
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Revert unconfirmed generations after this ("0s" disables) [default: drover.toml].
    #[arg(long, value_name = "DURATION")]
    pub confirm_timeout: Option<String>,
    /// Extra attempts per host after a transient failure (connection lost, timeout) [default: 3].
    #[arg(long)]
    pub retries: Option<u32>,
    /// Longest silence tolerated from an agent during one step [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub op_timeout: Option<String>,
    /// Apply (or roll back) hosts that a paused or orphaned rollout holds;
    /// without it such a run is refused, naming the rollout.
    #[arg(long)]
    pub force: bool,
    /// apply: record the run as one job per host in the shared PostgreSQL
    /// store and have N local `drover worker` processes run them (0: only
    /// workers started elsewhere); the report is the same.
    #[arg(long, value_name = "N", help_heading = "Work split across controllers")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub bundle: crate::commands::bundle::ApplyArgs,
    #[command(flatten)]
    pub reboot: RebootArgs,
    /// Simulated transport: each host is the directory DIR/<host>, served by an
    /// in-process agent instead of SSH (scale tests, benchmarks; see --sim-*).
    #[arg(long, value_name = "DIR", help_heading = "Simulated transport (with --simulate)")]
    pub simulate: Option<PathBuf>,
    // Last: its heading applies to the flags after it in --help.
    #[command(flatten)]
    pub sim: crate::transport::sim::SimArgs,
}

/// Rebooting hosts after activation (see docs/operations.md, "Reboots").
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Reboots")]
pub struct RebootArgs {
    /// Reboot each host after activation; confirm the generation only once
    /// the host is back, over a new connection, with healthy services
    /// (`reboot = true` in a `[rollout]` policy does the same for its hosts).
    #[arg(long)]
    pub reboot: bool,
    /// How long a host may take to come back from a reboot.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub reboot_timeout: String,
}

/// A duration flag's value, or an error naming the flag.
pub fn duration(flag: &str, s: &str) -> anyhow::Result<Duration> {
    drover_spec::parse_duration(s).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

impl DeployArgs {
    /// What these flags override of drover.toml's settings and the defaults.
    pub fn overrides(&self) -> anyhow::Result<Overrides> {
        let confirm = self.confirm_timeout.as_deref().map(|s| duration("--confirm-timeout", s)).transpose()?;
        Ok(Overrides {
            parallel: self.parallel,
            confirm_timeout: confirm.map(|d| Some(d).filter(|d| !d.is_zero())),
            retries: self.retries,
            op_timeout: self.op_timeout.as_deref().map(|s| duration("--op-timeout", s)).transpose()?,
        })
    }

    /// The run these flags ask for.
    pub fn request(&self, mode: Mode) -> anyhow::Result<Request> {
        Ok(Request {
            mode,
            hosts: self.hosts.clone(),
            simulate: self.simulate.clone(),
            sim: Some(self.sim.clone()),
            overrides: self.overrides()?,
            reboot: self.reboot.reboot,
            reboot_timeout: duration("--reboot-timeout", &self.reboot.reboot_timeout)?,
            workers: self.workers,
            bundle: self.bundle.signed(),
            relay: self.bundle.relay_options(),
            show: !self.json,
            force: self.force,
        })
    }
}

/// `drover plan`: the deploy options, plus what to show and how to exit.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Show each change in full: unified diffs of text files (up to 64 KiB;
    /// binary and larger files by size and hash), mode/owner/link-target
    /// changes, the services that would restart. The host side is read from
    /// the host.
    #[arg(long)]
    pub diff: bool,
    /// Exit 0 when nothing would change, 2 when something would, 1 on any
    /// error (as `terraform plan -detailed-exitcode`).
    #[arg(long)]
    pub exit_code: bool,
    #[command(flatten)]
    pub args: DeployArgs,
}

pub fn plan(project_dir: &Path, a: PlanArgs) -> anyhow::Result<ExitStatus> {
    let opts = crate::host::diff::PlanOptions { diff: a.diff, detailed_exit: a.exit_code };
    run(project_dir, a.args, Mode::Plan(opts))
}

pub fn run(project_dir: &Path, args: DeployArgs, mode: Mode) -> anyhow::Result<ExitStatus> {
    let ran = crate::run::deploy::run(project_dir, &args.request(mode)?)?;
    let plan = match mode {
        Mode::Plan(o) => Some(o),
        _ => None,
    };
    print_report(&ran.report, args.json, plan.is_some())?;
    if let Some(lost) = ran.lost {
        return Err(lost.into());
    }
    Ok(match plan {
        Some(o) => crate::exit::plan_status(o.detailed_exit, ran.report.failed(), ran.report.planned()),
        None => ExitStatus::of_run(&ran.report),
    })
}

fn print_report(report: &RunReport, json: bool, plan: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.table(plan));
        print!("{}", crate::run::report::render_diffs(&report.hosts));
        print!("{}", crate::instances::render(&report.instances));
    }
    Ok(())
}
