//! `drover plan`, `drover apply`, `drover rollback`: one pipeline, three goals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_spec::Host;

use crate::deploy::{self, Job, Mode};
use crate::exit::ExitStatus;
use crate::progress::Progress;
use crate::report::RunReport;
use crate::runlog;
use crate::select::select;
use crate::transport::{Timeouts, Transport};

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
    /// Extra attempts per host after a transient failure (connection lost, timeout).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Longest silence tolerated from an agent during one step.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub op_timeout: String,
    /// Simulated transport: each host is the directory DIR/<host>, served by an
    /// in-process agent instead of SSH (scale tests, benchmarks; see --sim-*).
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
    #[command(flatten)]
    pub sim: crate::sim::SimArgs,
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
    pub fn plan(&self, project: Option<&drover_spec::Project>) -> anyhow::Result<Option<crate::reboot::RebootPlan>> {
        let timeout =
            drover_spec::parse_duration(&self.reboot_timeout).map_err(|e| anyhow::anyhow!("--reboot-timeout: {e}"))?;
        Ok(if self.reboot {
            Some(crate::reboot::RebootPlan::every_host(timeout))
        } else {
            project.and_then(|p| crate::reboot::RebootPlan::from_project(p, timeout))
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
    let opts = crate::plan::PlanOptions { diff: a.diff, detailed_exit: a.exit_code };
    run(project_dir, a.args, Mode::Plan(opts))
}

pub fn run(project_dir: &std::path::Path, args: DeployArgs, mode: Mode) -> anyhow::Result<ExitStatus> {
    if args.workers.is_some() {
        if !matches!(mode, Mode::Apply) {
            return Err(crate::workers::WorkersError::Unsupported("a command other than apply").into());
        }
        if args.bundle.wanted() {
            return Err(crate::workers::WorkersError::Unsupported("--bundle").into());
        }
        crate::workers::require_shared_store(project_dir)?;
    }
    if args.bundle.wanted() {
        return crate::commands::bundle::apply(project_dir, args, mode);
    }
    let project = runlog::load_project(project_dir)?;
    let mut hosts = select(&project.hosts, args.hosts.as_deref())?;
    if !matches!(mode, Mode::Rollback { .. }) {
        deploy::preflight(&project, &hosts)?;
    }
    skip_drained(project_dir, &mut hosts, mode)?;
    let dur = |s: &str| drover_spec::parse_duration(s).map_err(anyhow::Error::msg);
    let confirm_timeout = match &args.confirm_timeout {
        Some(s) => dur(s)?,
        None => project.settings.confirm_timeout,
    };
    let reboot = match mode {
        Mode::Plan(_) => None,
        _ => args.reboot.plan(Some(&project))?,
    };
    crate::reboot::refuse_simulated(reboot.as_ref(), args.simulate.as_deref())?;
    if let Some(n) = args.workers {
        if reboot.is_some() {
            return Err(crate::workers::WorkersError::Unsupported("rebooting (--reboot or a policy's reboot)").into());
        }
        return apply_by_workers(project_dir, &args, confirm_timeout, project.settings.parallel, hosts, n);
    }
    let job = Job {
        timeouts: Timeouts { connect: project.settings.connect_timeout, op: dur(&args.op_timeout)? },
        confirm_timeout,
        parallel: args.parallel.unwrap_or(project.settings.parallel),
        retries: args.retries,
        stop_first: false,
        reboot,
        fence: Default::default(),
        transport: match &args.simulate {
            Some(dir) => args.sim.transport(dir)?,
            None => Transport::Ssh,
        },
        mode,
        project: Arc::new(project),
    };
    let command = match mode {
        Mode::Plan(_) => "plan",
        Mode::Apply => "apply",
        Mode::Rollback { .. } => "rollback",
        Mode::Reboot => "reboot",
    };
    execute(project_dir, command, job, hosts, args.json)
}

/// `apply --workers N` (see `crate::workers`): the same report, assembled
/// from what the workers recorded.
fn apply_by_workers(
    dir: &Path,
    args: &DeployArgs,
    confirm_timeout: Duration,
    parallel: usize,
    hosts: Vec<Host>,
    n: usize,
) -> anyhow::Result<ExitStatus> {
    let op = drover_spec::parse_duration(&args.op_timeout).map_err(anyhow::Error::msg)?;
    let spec = crate::workers::WorkSpec {
        revision: runlog::project_rev(dir),
        simulate: args.simulate.as_deref().map(std::path::absolute).transpose()?,
        sim: crate::workers::SimSpec {
            latency: args.sim.sim_latency.clone(),
            bandwidth: args.sim.sim_bandwidth.clone(),
            failure_rate: args.sim.sim_failure_rate,
            processes: args.sim.sim_processes,
        },
        retries: args.retries,
        op_timeout_ms: u64::try_from(op.as_millis()).unwrap_or(u64::MAX),
        confirm_timeout_ms: u64::try_from(confirm_timeout.as_millis()).unwrap_or(u64::MAX),
        parallel: args.parallel.unwrap_or(parallel),
        stop_first: false,
    };
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let start = Instant::now();
    let reports = crate::workers::apply(dir, &spec, &names, n, args.json)?;
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

fn print_report(report: &RunReport, json: bool, plan: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.table(plan));
        print!("{}", crate::plan::render(&report.hosts));
        print!("{}", crate::instances::render(&report.instances));
    }
    Ok(())
}

/// Drained hosts are left out of everything but `plan`, each with a word.
pub(crate) fn skip_drained(dir: &Path, hosts: &mut Vec<Host>, mode: Mode) -> anyhow::Result<()> {
    if matches!(mode, Mode::Plan(_)) {
        return Ok(());
    }
    let drained = runlog::drained(dir)?;
    hosts.retain(|h| match drained.iter().find(|(d, _)| *d == h.name) {
        Some((_, reason)) => {
            eprintln!("skipping {}: drained ({reason}); `drover undrain {}` to include it", h.name, h.name);
            false
        }
        None => true,
    });
    Ok(())
}

/// Run `job` on `hosts` with live progress, record the run in the state
/// store, print the table (or JSON); the exit status scripts see.
pub(crate) fn execute(
    dir: &Path,
    command: &str,
    mut job: Job,
    hosts: Vec<Host>,
    json: bool,
) -> anyhow::Result<ExitStatus> {
    raise_fd_limit();
    let plan = match job.mode {
        Mode::Plan(o) => Some(o),
        _ => None,
    };
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let project = job.project.clone();
    let mut run = runlog::Run::start(dir, command, &names)?;
    job.fence = run.watch();
    let start = Instant::now();
    let progress = Progress::new(hosts.len(), !json);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let reports = rt.block_on(deploy::run(Arc::new(job), hosts, progress.clone()));
    progress.finish();
    rt.shutdown_timeout(Duration::from_secs(1));
    let instances = match plan {
        Some(_) => crate::instances::from_reports(&reports, &project.services()),
        None => vec![],
    };
    let report = RunReport {
        command: command.into(),
        phases: crate::phases::Phases::sum(reports.iter().map(|h| &h.phases)),
        hosts: reports,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(0),
        instances,
    };
    // A lost store must not lose the report too: print it, then say so.
    let recorded = run.record_all(&report.hosts);
    if let Some(reason) = run.watch().lost().map(String::from).or(recorded.as_ref().err().map(|e| format!("{e:#}"))) {
        print_report(&report, json, plan.is_some())?;
        let skipped = report.hosts.iter().filter(|h| h.outcome == crate::report::Outcome::Skipped).count();
        let in_flight = format!(
            "the hosts already started finished (the report above; {skipped} not started), their results unrecorded"
        );
        return Err(runlog::StoreLost { who: format!("run {}", run.id), reason, in_flight }.into());
    }
    run.finish(report.failed() == 0)?;
    print_report(&report, json, plan.is_some())?;
    Ok(match plan {
        Some(o) => crate::exit::plan_status(o.detailed_exit, report.failed(), report.planned()),
        None => ExitStatus::of_run(&report),
    })
}

/// Every connection is a file descriptor or two (SSH socket; for simulated
/// hosts a socket pair or pipes), and hundreds are open at once: lift the
/// soft limit (often 1024) to the hard one, as a server would.
fn raise_fd_limit() {
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
