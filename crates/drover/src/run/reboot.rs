//! `drover reboot`: hosts rebooted batch by batch through the scheduler,
//! each batch back and healthy before the next (the per-host reboot step is
//! `crate::host::reboot`).

use std::path::Path;
use std::time::{Duration, Instant};

use drover_spec::Host;

use super::report::RunReport;
use super::spec::RunSpec;
use crate::host::{HostReport, Outcome};
use crate::progress::Progress;

/// `drover reboot`: `hosts` in batches of `batch`, each batch back and
/// healthy before the next starts; after a batch with a failure, the rest
/// are not rebooted (reported `skipped`, with the reason).
pub async fn rolling(
    spec: &RunSpec,
    hosts: Vec<Host>,
    batch: usize,
    progress: impl Fn(usize) -> Progress,
) -> Vec<HostReport> {
    let mut out: Vec<HostReport> = Vec::with_capacity(hosts.len());
    let mut stopped: Option<String> = None;
    for chunk in hosts.chunks(batch.max(1)) {
        if let Some(why) = &stopped {
            for h in chunk {
                let mut r = HostReport::new(&h.name);
                r.outcome = Outcome::Skipped;
                r.error = Some(why.clone());
                out.push(r);
            }
            continue;
        }
        let p = progress(chunk.len());
        let reports = super::schedule::sessions(spec, chunk.to_vec(), p.clone()).await;
        p.finish();
        let failed: Vec<&str> = reports.iter().filter(|r| r.outcome.is_failure()).map(|r| r.host.as_str()).collect();
        if !failed.is_empty() {
            stopped = Some(format!("not rebooted: the batch of {} failed", failed.join(", ")));
        }
        out.extend(reports);
    }
    out
}

/// `drover reboot`: the rolling reboot of `hosts`, recorded as a run.
pub fn execute(dir: &Path, spec: &RunSpec, hosts: Vec<Host>, batch: usize, show: bool) -> anyhow::Result<RunReport> {
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let mut run = super::record::Run::start(dir, "reboot", &names)?;
    let start = Instant::now();
    let rt = super::fleet::runtime()?;
    let reports = rt.block_on(rolling(spec, hosts, batch, |n| Progress::new(n, show)));
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
    Ok(report)
}
