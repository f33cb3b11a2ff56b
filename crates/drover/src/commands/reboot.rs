//! `drover reboot TARGET`: rolling reboots (for what packages installed, a
//! kernel say), one batch at a time, each host back and healthy before the
//! next batch starts. The logic is in [`crate::reboot`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deploy::{Job, Mode};
use crate::exit::ExitStatus;
use crate::fleet::runtime;
use crate::progress::Progress;
use crate::report::RunReport;
use crate::runlog;
use crate::select::select;
use crate::transport::{Timeouts, Transport};

#[derive(Debug, clap::Args)]
pub struct RebootCmd {
    /// Host, group or role names (comma-separated), or `all`.
    pub target: String,
    /// Hosts rebooted at once.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// How long a host may take to come back and answer SSH.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub reboot_timeout: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Simulated transport (see `drover apply --simulate`): refused, a
    /// simulated host cannot reboot.
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
}

pub fn run(dir: &Path, a: RebootCmd) -> anyhow::Result<ExitStatus> {
    anyhow::ensure!(a.batch > 0, "--batch must be at least 1");
    let project = runlog::load_project(dir)?;
    let mut hosts = select(&project.hosts, (a.target != "all").then_some(a.target.as_str()))?;
    crate::commands::deploy::skip_drained(dir, &mut hosts, Mode::Reboot)?;
    let timeout =
        drover_spec::parse_duration(&a.reboot_timeout).map_err(|e| anyhow::anyhow!("--reboot-timeout: {e}"))?;
    let plan = crate::reboot::RebootPlan::every_host(timeout);
    crate::reboot::refuse_simulated(Some(&plan), a.simulate.as_deref())?;
    let job = Job {
        timeouts: Timeouts { connect: project.settings.connect_timeout, op: Duration::from_secs(60) },
        confirm_timeout: project.settings.confirm_timeout,
        parallel: a.batch,
        retries: 0,
        stop_first: false,
        reboot: Some(plan),
        fence: Default::default(),
        transport: match &a.simulate {
            Some(d) => Transport::local(d)?,
            None => Transport::Ssh,
        },
        mode: Mode::Reboot,
        project: Arc::new(project),
    };
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let mut run = runlog::Run::start(dir, "reboot", &names)?;
    let start = Instant::now();
    let rt = runtime()?;
    let json = a.json;
    let reports = rt.block_on(crate::reboot::rolling(Arc::new(job), hosts, a.batch, |n| Progress::new(n, !json)));
    rt.shutdown_timeout(Duration::from_secs(1));
    let report = RunReport {
        command: "reboot".into(),
        phases: crate::phases::Phases::sum(reports.iter().map(|h| &h.phases)),
        hosts: reports,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(0),
        instances: Vec::new(),
    };
    run.record_all(&report.hosts)?;
    run.finish(report.failed() == 0)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table(false));
    }
    Ok(ExitStatus::of_run(&report))
}
