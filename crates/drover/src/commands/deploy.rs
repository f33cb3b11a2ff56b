//! `drover plan`, `drover apply`, `drover rollback`: one pipeline, three goals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_spec::Host;

use crate::exit::ExitStatus;
use crate::host::{Mode, RebootPlan};
use crate::run::workers::{SimSpec, WorkSpec, WorkersError};
use crate::run::{Overrides, RunReport, RunSpec};
use crate::select::select;
use crate::transport::Transport;

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
    /// Simulated transport: each host is the directory DIR/<host>, served by an
    /// in-process agent instead of SSH (scale tests, benchmarks; see --sim-*).
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
    #[command(flatten)]
    pub sim: crate::transport::sim::SimArgs,
    /// apply: record the run as one job per host in the shared PostgreSQL
    /// store and have N local `drover worker` processes run them (0: only
    /// workers started elsewhere); the report is the same.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub bundle: crate::commands::bundle::ApplyArgs,
    #[command(flatten)]
    pub reboot: RebootArgs,
}

/// Rebooting hosts after activation (see docs/operations.md, "Reboots").
#[derive(Debug, Clone, clap::Args)]
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

impl RebootArgs {
    /// `--reboot`, else what the project's policies ask for.
    pub fn plan(&self, project: Option<&drover_spec::Project>) -> anyhow::Result<Option<RebootPlan>> {
        let timeout = duration("--reboot-timeout", &self.reboot_timeout)?;
        Ok(if self.reboot {
            Some(RebootPlan::every_host(timeout))
        } else {
            project.and_then(|p| RebootPlan::from_project(p, timeout))
        })
    }
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
    if args.workers.is_some() {
        if !matches!(mode, Mode::Apply) {
            return Err(WorkersError::Unsupported("a command other than apply").into());
        }
        if args.bundle.wanted() {
            return Err(WorkersError::Unsupported("--bundle").into());
        }
        crate::run::workers::require_shared_store(project_dir)?;
    }
    if args.bundle.wanted() {
        return from_bundle(project_dir, args, mode);
    }
    let project = crate::store::load_project(project_dir)?;
    let mut hosts = select(&project.hosts, args.hosts.as_deref())?;
    if !matches!(mode, Mode::Rollback { .. }) {
        crate::run::spec::preflight(&project, &hosts)?;
    }
    crate::run::skip_drained(project_dir, &mut hosts, mode)?;
    let reboot = match mode {
        Mode::Plan(_) => None,
        _ => args.reboot.plan(Some(&project))?,
    };
    crate::host::reboot::refuse_simulated(reboot.as_ref(), args.simulate.as_deref())?;
    let transport = Transport::for_hosts(args.simulate.as_deref(), Some(&args.sim))?;
    let spec = RunSpec::of_project(Arc::new(project), transport, mode, &args.overrides()?).reboot(reboot);
    if let Some(n) = args.workers {
        if spec.job.reboot.is_some() {
            return Err(WorkersError::Unsupported("rebooting (--reboot or a policy's reboot)").into());
        }
        return apply_by_workers(project_dir, &args, &spec, hosts, n);
    }
    execute(project_dir, command(mode), spec, hosts, args.json)
}

fn command(mode: Mode) -> &'static str {
    match mode {
        Mode::Plan(_) => "plan",
        Mode::Apply => "apply",
        Mode::Rollback { .. } => "rollback",
        Mode::Reboot => "reboot",
    }
}

/// `plan`/`apply` with `--bundle` or `--relay`: the same run, its desired
/// state from a bundle or shipped through peer relays (`crate::run::bundle`).
fn from_bundle(dir: &Path, args: DeployArgs, mode: Mode) -> anyhow::Result<ExitStatus> {
    let ba = &args.bundle;
    if matches!(mode, Mode::Rollback { .. }) {
        anyhow::bail!("rollback takes no --bundle or --relay (generations are kept on the hosts)");
    }
    if ba.relay && args.simulate.is_some() {
        anyhow::bail!("--relay needs real hosts (relay servers listen on each host's address)");
    }
    let d = crate::run::bundle::delivery(dir, ba.signed().as_ref(), ba.relay_options())?;
    let mut hosts = select(&d.hosts, args.hosts.as_deref())?;
    crate::run::skip_drained(dir, &mut hosts, mode)?;
    let reboot = if matches!(mode, Mode::Plan(_)) { None } else { args.reboot.plan(None)? };
    crate::host::reboot::refuse_simulated(reboot.as_ref(), args.simulate.as_deref())?;
    let transport = Transport::for_hosts(args.simulate.as_deref(), None)?;
    let spec = RunSpec::new(d.source, transport, mode, d.settings, &args.overrides()?).reboot(reboot);
    let command = if matches!(mode, Mode::Plan(_)) { "plan" } else { "apply" };
    execute(dir, command, spec, hosts, args.json)
}

/// `apply --workers N` (see `crate::run::workers`): the same report,
/// assembled from what the workers recorded.
fn apply_by_workers(
    dir: &Path,
    args: &DeployArgs,
    spec: &RunSpec,
    hosts: Vec<Host>,
    n: usize,
) -> anyhow::Result<ExitStatus> {
    let sim = SimSpec::from(&args.sim);
    let work = WorkSpec::of_run(dir, spec, args.simulate.as_deref(), sim)?;
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let start = Instant::now();
    let reports = crate::run::workers::apply(dir, &work, &names, n, args.json)?;
    let report = RunReport {
        command: "apply".into(),
        phases: crate::phases::Phases::sum(reports.iter().map(|h| &h.phases)),
        hosts: reports,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(0),
        instances: vec![],
    };
    print_report(&report, args.json, false)?;
    Ok(ExitStatus::of_run(&report))
}

/// Run, print the table (or JSON), and the exit status scripts see.
fn execute(dir: &Path, command: &str, spec: RunSpec, hosts: Vec<Host>, json: bool) -> anyhow::Result<ExitStatus> {
    let plan = match spec.job.mode {
        Mode::Plan(o) => Some(o),
        _ => None,
    };
    let ran = crate::run::execute(dir, command, spec, hosts, !json)?;
    print_report(&ran.report, json, plan.is_some())?;
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
