//! `drover reboot TARGET`: rolling reboots (for what packages installed, a
//! kernel say), one batch at a time, each host back and healthy before the
//! next batch starts. The batches are
//! [`crate::run::reboot`], the per-host step [`crate::host::reboot`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::exit::ExitStatus;
use crate::host::{Mode, RebootPlan};
use crate::run::{Overrides, RunSpec};
use crate::select::select;
use crate::transport::Transport;

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
    let project = crate::store::load_project(dir)?;
    let mut hosts = select(&project.hosts, (a.target != "all").then_some(a.target.as_str()))?;
    crate::run::skip_drained(dir, &mut hosts, Mode::Reboot)?;
    let timeout = super::deploy::duration("--reboot-timeout", &a.reboot_timeout)?;
    let plan = RebootPlan::every_host(timeout);
    crate::host::reboot::refuse_simulated(Some(&plan), a.simulate.as_deref())?;
    let transport = Transport::for_hosts(a.simulate.as_deref(), None)?.persistent(&project);
    // A batch at a time, and no retries: a retry would find the generation
    // awaiting confirmation and confirm it without checking the host.
    let o = Overrides { parallel: Some(a.batch), retries: Some(0), ..Default::default() };
    let spec = RunSpec::of_project(Arc::new(project), transport, Mode::Reboot, &o).reboot(Some(plan));
    let report = crate::run::reboot::execute(dir, &spec, hosts, a.batch, !a.json)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table(false));
    }
    Ok(ExitStatus::of_run(&report))
}
