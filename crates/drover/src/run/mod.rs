//! Runs over many hosts: a run's settings resolved once ([`spec`]), the one
//! scheduler every kind of run goes through ([`schedule`]), the batchers
//! above it (rollouts, reboots, work split across controllers), the
//! fleet-wide small operations (status, exec, logs, drain), the run's record
//! in the state store and its report.
//!
//! Layer rule: `run` imports `host`, `transport` and the base modules, never
//! `commands` or `serve`, and prints nothing but progress: callers print
//! reports.

pub mod bundle;
pub mod container;
pub mod deploy;
pub mod fleet;
mod heartbeat;
pub mod logs;
pub mod reboot;
pub mod record;
pub mod refusal;
pub mod report;
pub mod resume;
pub mod rollout;
pub mod schedule;
pub mod spec;
pub mod status;
pub mod workers;

use std::path::Path;
use std::time::{Duration, Instant};

use drover_spec::Host;

pub use record::StoreLost;
pub use refusal::Refusal;
pub use report::RunReport;
pub use spec::{Overrides, RunSpec, Settings};

use crate::host::{Mode, Outcome};
use crate::progress::Progress;

/// A run that went through its hosts: the report, and whether the state
/// store was lost on the way (the report is then unrecorded: print it, then
/// fail with the error).
pub struct Ran {
    pub report: RunReport,
    pub lost: Option<StoreLost>,
}

/// Run `spec` on `hosts` with live progress (`show`) and record the run in
/// the state store.
pub fn execute(dir: &Path, command: &str, mut spec: RunSpec, hosts: Vec<Host>, show: bool) -> anyhow::Result<Ran> {
    crate::transport::raise_fd_limit();
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let source = spec.job.project.clone();
    let plan = matches!(spec.job.mode, Mode::Plan(_));
    let mut run = record::Run::start(dir, command, &names)?;
    spec.fence = run.watch();
    spec.job.activations = run.activations();
    let start = Instant::now();
    let progress = Progress::new(hosts.len(), show);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let reports = rt.block_on(schedule::sessions(&spec, hosts, progress.clone()));
    progress.finish();
    rt.shutdown_timeout(Duration::from_secs(1));
    let instances = if plan { report::instances_moved(&reports, &source.services()) } else { vec![] };
    let report = RunReport {
        command: command.into(),
        phases: crate::phases::Phases::sum(reports.iter().map(|h| &h.phases)),
        hosts: reports,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(0),
        instances,
    };
    // A lost store must not lose the report too.
    let recorded = run.record_all(&report.hosts);
    if let Some(reason) = run.watch().lost().map(String::from).or(recorded.as_ref().err().map(|e| format!("{e:#}"))) {
        let skipped = report.hosts.iter().filter(|h| h.outcome == Outcome::Skipped).count();
        let in_flight = format!(
            "the hosts already started finished (the report above; {skipped} not started), their results unrecorded"
        );
        let lost = StoreLost { who: format!("run {}", run.id), reason, in_flight };
        return Ok(Ran { report, lost: Some(lost) });
    }
    run.finish(report.failed() == 0)?;
    Ok(Ran { report, lost: None })
}

/// Drained hosts are left out of everything but `plan`, each with a word.
pub fn skip_drained(dir: &Path, hosts: &mut Vec<Host>, mode: Mode) -> anyhow::Result<()> {
    if matches!(mode, Mode::Plan(_)) {
        return Ok(());
    }
    let drained = crate::store::drained(dir)?;
    hosts.retain(|h| match drained.iter().find(|(d, _)| *d == h.name) {
        Some((_, reason)) => {
            eprintln!("skipping {}: drained ({reason}); `drover undrain {}` to include it", h.name, h.name);
            false
        }
        None => true,
    });
    Ok(())
}
